import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Model } from '../src/model.js';
import { loadModel } from '../src/node.js';
import { onnx } from '../src/onnx/proto.js';
import { DeviceLostError, OnnxFormatError } from '../src/runtime/errors.js';
import { GpuContext } from '../src/runtime/device.js';
import { Tensor } from '../src/runtime/tensor.js';
import { gpu } from './helpers/gpu.js';
import { randomArray, relError, rng } from './helpers/random.js';
import { conv2dRef } from './reference/cpu.js';

type TensorInit = { name: string; dims: number[]; dataType: number; rawData?: Uint8Array; floatData?: number[]; int64Data?: number[]; dataLocation?: number; externalData?: { key: string; value: string }[] };

function model(nodes: { opType: string; input: string[]; output: string[]; name: string; attribute?: object[] }[], init: TensorInit[], inputs: [string, number[]][], outputs: string[], opset = 17): Uint8Array {
  const vi = (name: string, dims?: number[]) => ({ name, type: { tensorType: { elemType: 1, shape: dims ? { dim: dims.map((d) => ({ dimValue: d })) } : undefined } } });
  return onnx.ModelProto.encode(onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }],
    graph: { name: 'g', node: nodes, initializer: init, input: inputs.map(([n, d]) => vi(n, d)), output: outputs.map((o) => vi(o)) },
  })).finish();
}

const ints = (name: string, v: number[]) => ({ name, type: 7, ints: v });

/** A 3×3 conv over a [1, 2, 5, 5] input, weights in whichever storage form `weightInit` picks. */
function convModel(weightInit: TensorInit, opset = 17) {
  return model(
    [{ opType: 'Conv', name: 'conv', input: ['x', 'w'], output: ['y'], attribute: [ints('pads', [1, 1, 1, 1])] }],
    [weightInit], [['x', [1, 2, 5, 5]]], ['y'], opset,
  );
}

async function runConv(m: Model, x: Float32Array): Promise<Float32Array> {
  const t = Tensor.fromData(m.ctx, x, [1, 2, 5, 5]);
  const r = await m.run(t);
  const y = await r.outputs.get('y')!.read();
  t.dispose();
  return y;
}

describe('ONNX import', () => {
  const rand = rng(3);
  const w = randomArray(3 * 2 * 3 * 3, rand);
  const x = randomArray(2 * 5 * 5, rand);
  const ref = conv2dRef(x, [1, 2, 5, 5], w, [3, 2, 3, 3], null, { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1 }).data;

  it('reads initializers from raw_data, float_data and external data files', async () => {
    const ctx = await gpu();
    const raw = convModel({ name: 'w', dims: [3, 2, 3, 3], dataType: 1, rawData: new Uint8Array(w.buffer.slice(0)) });
    const typed = convModel({ name: 'w', dims: [3, 2, 3, 3], dataType: 1, floatData: Array.from(w) });
    const dir = mkdtempSync(join(tmpdir(), 'camgpu-ext-'));
    // External data at a non-zero offset, as exporters write several tensors to one file.
    const blob = new Uint8Array(64 + w.byteLength);
    blob.set(new Uint8Array(w.buffer.slice(0)), 64);
    writeFileSync(join(dir, 'weights.bin'), blob);
    writeFileSync(join(dir, 'm.onnx'), convModel({
      name: 'w', dims: [3, 2, 3, 3], dataType: 1, dataLocation: 1,
      externalData: [{ key: 'location', value: 'weights.bin' }, { key: 'offset', value: '64' }, { key: 'length', value: String(w.byteLength) }],
    }));
    for (const m of [Model.fromBytes(ctx, raw), Model.fromBytes(ctx, typed), loadModel(ctx, join(dir, 'm.onnx'))]) {
      expect(relError(await runConv(m, x), ref)).toBeLessThan(1e-5);
      await m.dispose();
    }
    writeFileSync(join(dir, 'short.bin'), blob.subarray(0, 100));
    writeFileSync(join(dir, 'bad.onnx'), convModel({
      name: 'w', dims: [3, 2, 3, 3], dataType: 1, dataLocation: 1,
      externalData: [{ key: 'location', value: 'short.bin' }, { key: 'offset', value: '64' }, { key: 'length', value: String(w.byteLength) }],
    }));
    expect(() => loadModel(ctx, join(dir, 'bad.onnx'))).toThrow(/external data 'short\.bin' holds 100 bytes/);
    writeFileSync(join(dir, 'escape.onnx'), convModel({
      name: 'w', dims: [3, 2, 3, 3], dataType: 1, dataLocation: 1, externalData: [{ key: 'location', value: '../etc/passwd' }],
    }));
    expect(() => loadModel(ctx, join(dir, 'escape.onnx'))).toThrow(/must be a relative path inside the model's folder/);
  });

  it('rejects data that does not fill the declared dims', async () => {
    const short = convModel({ name: 'w', dims: [3, 2, 3, 3], dataType: 1, floatData: Array.from(w).slice(0, 10) });
    expect(() => Model.fromBytes({} as never, short, { name: 'short.onnx' })).toThrow(/short\.onnx: tensor 'w': holds 10 values/);
  });

  it('accepts opsets 7 through 21 and names the range otherwise', async () => {
    const ctx = await gpu();
    const init = { name: 'w', dims: [3, 2, 3, 3], dataType: 1, floatData: Array.from(w) };
    for (const opset of [7, 11, 13, 21]) {
      const m = Model.fromBytes(ctx, convModel(init, opset));
      expect(relError(await runConv(m, x), ref)).toBeLessThan(1e-5);
      await m.dispose();
    }
    for (const opset of [6, 22]) {
      expect(() => Model.fromBytes(ctx, convModel(init, opset), { name: 'm.onnx' })).toThrow(new RegExp(`opset ${opset} is not supported \\(supported: 7 through 21\\)`));
    }
  });

  it('folds the Shape → Gather → Unsqueeze → Concat → Reshape sub-graph torch emits for x.view(x.size(0), -1)', async () => {
    const ctx = await gpu();
    const i64 = (name: string, v: number[], dims: number[]) => ({ name, dims, dataType: 7, int64Data: v });
    const bytes = model([
      { opType: 'Shape', name: 'shape', input: ['x'], output: ['s'] },
      { opType: 'Gather', name: 'gather', input: ['s', 'zero'], output: ['n'], attribute: [{ name: 'axis', type: 2, i: 0 }] },
      { opType: 'Unsqueeze', name: 'unsq', input: ['n', 'axes'], output: ['n1'] },
      { opType: 'Concat', name: 'cat', input: ['n1', 'minus1'], output: ['target'], attribute: [{ name: 'axis', type: 2, i: 0 }] },
      { opType: 'Reshape', name: 'reshape', input: ['x', 'target'], output: ['flat'] },
      { opType: 'Identity', name: 'id', input: ['flat'], output: ['flat2'] },
      { opType: 'Relu', name: 'relu', input: ['flat2'], output: ['y'] },
    ], [i64('zero', [0], []), i64('axes', [0], [1]), i64('minus1', [-1], [1])], [['x', [2, 3, 4, 4]]], ['y']);
    const m = Model.fromBytes(ctx, bytes, { name: 'view.onnx' });
    const data = randomArray(2 * 3 * 4 * 4, rand);
    const t = Tensor.fromData(ctx, data, [2, 3, 4, 4]);
    const r = await m.run(t, { taps: ['flat', 'id'] });
    expect(r.outputs.get('y')!.shape).toEqual([2, 48]);
    expect(Array.from(await r.outputs.get('y')!.read())).toEqual(Array.from(data, (v) => Math.max(v, 0)));
    // The shape sub-graph ran on the CPU: only the ReLU is a GPU launch.
    const a = m.analyze(new Map([['x', [2, 3, 4, 4]]]), new Set());
    expect(a.ops.map((o) => o.kind)).toEqual(['alias', 'alias', 'unary']);
    expect(Array.from(await r.taps.get('id')!.value.read())).toEqual(Array.from(data));
    await m.dispose();
  });

  it('folds BatchNormalization into the preceding Conv, and runs it standalone when it cannot', async () => {
    const ctx = await gpu();
    const c = 3;
    const bn = [randomArray(c, rand), randomArray(c, rand), randomArray(c, rand), Float32Array.from(randomArray(c, rand), (v) => 0.5 + Math.abs(v))];
    const init = [
      { name: 'w', dims: [3, 2, 3, 3], dataType: 1, floatData: Array.from(w) },
      ...['scale', 'bias', 'mean', 'var'].map((n, i) => ({ name: n, dims: [c], dataType: 1, floatData: Array.from(bn[i]) })),
    ];
    const bytes = model([
      { opType: 'Conv', name: 'conv', input: ['x', 'w'], output: ['c'], attribute: [ints('pads', [1, 1, 1, 1])] },
      { opType: 'BatchNormalization', name: 'bn', input: ['c', 'scale', 'bias', 'mean', 'var'], output: ['b'], attribute: [{ name: 'epsilon', type: 1, f: 1e-3 }] },
      { opType: 'Relu', name: 'relu', input: ['b'], output: ['y'] },
    ], init, [['x', [1, 2, 5, 5]]], ['y']);
    const want = ref.map((v, i) => {
      const ch = Math.floor(i / 25);
      const z = ((v - bn[2][ch]) / Math.sqrt(bn[3][ch] + 1e-3)) * bn[0][ch] + bn[1][ch];
      return Math.max(z, 0);
    });
    const m = Model.fromBytes(ctx, bytes);
    const shapes = new Map([['x', [1, 2, 5, 5]]]);
    expect(m.analyze(shapes, new Set()).ops.map((o) => o.kind)).toEqual(['conv']);
    expect(relError(await runConv(m, x), want)).toBeLessThan(1e-5);
    // Tapping the conv output keeps it: BN then runs as its own per-channel affine.
    expect(m.analyze(shapes, new Set(['c'])).ops.map((o) => o.kind)).toEqual(['conv', 'affine']);
    const t = Tensor.fromData(ctx, x, [1, 2, 5, 5]);
    const r = await m.run(t, { taps: ['conv'] });
    expect(relError(await r.outputs.get('y')!.read(), want)).toBeLessThan(1e-5);
    expect(relError(await r.taps.get('conv')!.value.read(), ref)).toBeLessThan(1e-5);
    await m.dispose();
  });

  it('names the file for a graph that reads an undefined tensor', () => {
    const bytes = model([{ opType: 'Relu', name: 'r', input: ['nowhere'], output: ['y'] }], [], [['x', [1]]], ['y']);
    expect(() => Model.fromBytes({} as never, bytes, { name: 'dangling.onnx' })).toThrow(OnnxFormatError);
    expect(() => Model.fromBytes({} as never, bytes, { name: 'dangling.onnx' })).toThrow(/dangling\.onnx: node 'r' \(Relu\) reads 'nowhere'/);
  });
});

describe('device loss', () => {
  it('is reported as DeviceLostError instead of hanging', async () => {
    const ctx = await GpuContext.create();
    const t = Tensor.fromData(ctx, new Float32Array([1, 2, 3]), [3]);
    ctx.device.destroy();
    await expect(t.read()).rejects.toThrow(DeviceLostError);
    expect(ctx.isLost).toBe(true);
  });
});

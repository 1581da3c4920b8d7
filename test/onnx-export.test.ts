import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { beforeAll, describe, expect, it } from 'vitest';
import { exportModel } from '../src/export-model.js';
import { Model } from '../src/model.js';
import { EXPORT_DEFAULT_OPSET, exportOnnx } from '../src/onnx/export.js';
import { importOnnx } from '../src/onnx/import.js';
import { int64, onnx } from '../src/onnx/proto.js';
import type { GraphOp, OpGraph } from '../src/ops/graph.js';
import { UnsupportedOpError, InputError } from '../src/runtime/errors.js';
import { hostTensor } from '../src/runtime/host-tensor.js';
import type { GpuContext } from '../src/runtime/device.js';
import { Tensor } from '../src/runtime/tensor.js';
import { FIXTURES, npy, torchManifest } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { buildModel, type NodeSpec } from './helpers/onnx-build.js';
import { maxAbsDiff, randomArray, relError, rng } from './helpers/random.js';

const TORCH = join(FIXTURES, 'torch');

beforeAll(() => {
  // With more threads ORT fetches its threaded wasm glue by URL, which Node cannot (see tools/bench-peer.mjs).
  ort.env.wasm.numThreads = 1;
});

type Feeds = Map<string, { data: Float32Array; shape: number[] }>;

async function runOrt(bytes: Uint8Array, feeds: Feeds): Promise<Map<string, { data: Float32Array; dims: number[] }>> {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  try {
    const input: Record<string, ort.Tensor> = {};
    for (const [name, t] of feeds) input[name] = new ort.Tensor('float32', t.data, t.shape);
    const r = await session.run(input);
    return new Map(session.outputNames.map((n) => [n, { data: r[n].data as Float32Array, dims: [...r[n].dims] }]));
  } finally {
    await session.release();
  }
}

async function runCamgpu(ctx: GpuContext, model: Model, feeds: Feeds): Promise<Map<string, Float32Array>> {
  const xs = new Map([...feeds].map(([n, t]) => [n, Tensor.fromData(ctx, t.data, t.shape)]));
  const r = await model.run(xs);
  const out = new Map<string, Float32Array>();
  for (const [n, t] of r.outputs) {
    out.set(n, await t.read());
    t.dispose();
  }
  for (const x of xs.values()) x.dispose();
  return out;
}

/** What an op computes, without the names it reads and writes, and its constant operands' values. */
function signature(a: OpGraph): unknown[] {
  return a.ops.map((op: GraphOp) => {
    const { node, inputs, output, ...rest } = op as GraphOp & Record<string, unknown>;
    void node;
    // coerce2d on the last axis is plain opset-13 Softmax: the export writes it so.
    if (op.kind === 'softmax') Object.assign(rest, { coerce2d: undefined });
    return { ...rest, shape: a.shapes.get(output), constants: inputs.map((i) => a.constants.get(i)?.data ?? null), inputShapes: inputs.map((i) => a.shapes.get(i)) };
  });
}

function decode(bytes: Uint8Array) {
  return onnx.ModelProto.decode(bytes);
}

const TORCH_MODELS = ['resnet18-w8', 'resnet50-w8', 'vgg11_bn-w8', 'vgg16-w8'];

describe.each(TORCH_MODELS)('%s exported', (name) => {
  const m = torchManifest(TORCH, name);
  const bytes = new Uint8Array(readFileSync(join(TORCH, m.model)));
  const input = npy(join(TORCH, m.input.file));
  const feeds: Feeds = new Map([[m.input.name, { data: input.data, shape: input.shape }]]);
  const golden = npy(join(TORCH, m.output.file));

  it('round-trips through our importer unchanged (same ops, same logits, same file when exported again)', async () => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, bytes, { name: m.model });
    const exported = exportModel(model);
    const again = Model.fromBytes(ctx, exported, { name: `${name} (exported)` });
    const one = new Map([[m.input.name, [1, ...input.shape.slice(1)]]]);
    const before = model.analyze(one, new Set());
    const after = again.analyze(one, new Set());
    expect(after.ops.map((o) => o.kind)).toEqual(before.ops.map((o) => o.kind));
    expect(signature(after)).toEqual(signature(before));
    // BatchNorm is folded and every activation is fused: the file holds no BatchNormalization.
    const proto = decode(exported);
    expect(proto.graph!.node!.map((n) => n.opType)).not.toContain('BatchNormalization');
    expect(proto.graph!.input![0].type!.tensorType!.shape!.dim![0].dimParam).toBe('N');
    expect(int64(proto.opsetImport![0].version)).toBe(EXPORT_DEFAULT_OPSET);

    const a = (await runCamgpu(ctx, model, feeds)).get(m.output.name)!;
    const b = (await runCamgpu(ctx, again, feeds)).get(m.output.name)!;
    expect(maxAbsDiff(b, a)).toBeLessThanOrEqual(1e-6);
    expect(relError(b, golden.data)).toBeLessThan(1e-4);

    expect(Buffer.from(exportModel(again)).equals(Buffer.from(exported))).toBe(true);
    await again.dispose();
    await model.dispose();
  });

  it('runs in onnxruntime (wasm) at another batch size than the analysis', async () => {
    const model = Model.fromBytes({} as GpuContext, bytes, { name: m.model });
    const exported = exportModel(model);
    // Analyzed at batch 1; the golden input is a batch of 3.
    const r = (await runOrt(exported, feeds)).get(m.output.name)!;
    expect(r.dims).toEqual(golden.shape);
    expect(relError(r.data, golden.data)).toBeLessThan(1e-4);
    const per = input.data.length / input.shape[0];
    const first = (await runOrt(exported, new Map([[m.input.name, { data: input.data.slice(0, per), shape: [1, ...input.shape.slice(1)] }]]))).get(m.output.name)!;
    expect(relError(first.data, golden.data.slice(0, golden.data.length / golden.shape[0]))).toBeLessThan(1e-4);
  });
});

const rand = rng(20240611);
const f32 = (n: number, scale = 1) => randomArray(n, rand, scale);
const i64 = (values: number[]) => BigInt64Array.from(values.map((v) => BigInt(v)));
const positive = (n: number) => Float32Array.from(f32(n), (v) => 0.5 + Math.abs(v));

/** Every GraphOp kind an ONNX model lowers to, with the attributes that need care. */
function zoo2d(): Uint8Array {
  const nodes: NodeSpec[] = [
    { op: 'Conv', inputs: ['x', 'w1', 'b1'], outputs: ['c1'], attrs: { kernel_shape: [3, 3], pads: [1, 0, 1, 2], strides: [1, 2] } },
    { op: 'Clip', inputs: ['c1', 'zero', 'six'], outputs: ['a1'] },
    { op: 'MaxPool', inputs: ['a1'], outputs: ['p1'], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [0, 1, 1, 0], ceil_mode: 1 } },
    // After a pool, BatchNormalization stays a per-channel affine op (nothing to fold into).
    { op: 'BatchNormalization', inputs: ['p1', 'bn_s', 'bn_b', 'bn_m', 'bn_v'], outputs: ['bn'], attrs: { epsilon: 0.001 } },
    { op: 'LeakyRelu', inputs: ['bn'], outputs: ['l1'], attrs: { alpha: 0.1 } },
    { op: 'AveragePool', inputs: ['l1'], outputs: ['q1'], attrs: { kernel_shape: [2, 2], pads: [1, 1, 0, 0], count_include_pad: 1 } },
    { op: 'AveragePool', inputs: ['l1'], outputs: ['q2'], attrs: { kernel_shape: [3, 2], strides: [2, 2], pads: [1, 0, 1, 1], ceil_mode: 1 } },
    { op: 'Pad', inputs: ['q1', 'pads', 'half'], outputs: ['pd'] },
    { op: 'Pad', inputs: ['q1', 'pads'], outputs: ['pr'], attrs: { mode: 'reflect' } },
    { op: 'Conv', inputs: ['pr', 'w2'], outputs: ['g'], attrs: { pads: [1, 1, 1, 1], group: 2 } },
    { op: 'Sigmoid', inputs: ['g'], outputs: ['s2'] },
    { op: 'Concat', inputs: ['pd', 's2'], outputs: ['cat'], attrs: { axis: 1 } },
    { op: 'Add', inputs: ['cat', 'k1'], outputs: ['add'] },
    { op: 'Relu', inputs: ['add'], outputs: ['r'] },
    { op: 'Mul', inputs: ['r', 'cat'], outputs: ['mul'] },
    { op: 'Sub', inputs: ['mul', 'k2'], outputs: ['sub'] },
    { op: 'Div', inputs: ['sub', 'two'], outputs: ['div'] },
    { op: 'GlobalAveragePool', inputs: ['div'], outputs: ['gp'] },
    { op: 'GlobalMaxPool', inputs: ['q2'], outputs: ['gm'] },
    { op: 'Flatten', inputs: ['gp'], outputs: ['f'] },
    { op: 'Gemm', inputs: ['f', 'wg', 'cg'], outputs: ['gemm'], attrs: { transB: 1, alpha: 0.5, beta: 1.5 } },
    { op: 'Relu', inputs: ['gemm'], outputs: ['gr'] },
    { op: 'MatMul', inputs: ['gr', 'wm'], outputs: ['mm'] },
    { op: 'Reshape', inputs: ['mm', 'shape'], outputs: ['rs'] },
    { op: 'Softmax', inputs: ['rs'], outputs: ['out1'], attrs: { axis: -1 } },
    { op: 'LogSoftmax', inputs: ['mm'], outputs: ['out2'], attrs: { axis: 1 } },
    { op: 'Flatten', inputs: ['gm'], outputs: ['fm'] },
    // Read twice, so it stays a unary op of its own.
    { op: 'Sigmoid', inputs: ['fm'], outputs: ['sig'] },
    { op: 'Mul', inputs: ['sig', 'sig'], outputs: ['sq'] },
    { op: 'Clip', inputs: ['sq', '', 'cap'], outputs: ['out3'] },
  ];
  return buildModel({
    nodes,
    inputs: [{ name: 'x', dims: ['batch', 3, 10, 11] }],
    outputs: [{ name: 'out1' }, { name: 'out2' }, { name: 'out3' }],
    initializers: [
      { name: 'w1', dims: [8, 3, 3, 3], data: f32(216, 0.4) },
      { name: 'b1', dims: [8], data: f32(8) },
      { name: 'zero', dims: [], data: new Float32Array([0]) },
      { name: 'six', dims: [], data: new Float32Array([0.6]) },
      { name: 'bn_s', dims: [8], data: f32(8) },
      { name: 'bn_b', dims: [8], data: f32(8) },
      { name: 'bn_m', dims: [8], data: f32(8, 0.1) },
      { name: 'bn_v', dims: [8], data: positive(8) },
      { name: 'pads', dims: [8], data: i64([0, 0, 1, 1, 0, 0, 0, 1]) },
      { name: 'half', dims: [], data: new Float32Array([0.5]) },
      { name: 'w2', dims: [8, 4, 3, 3], data: f32(288, 0.4) },
      { name: 'k1', dims: [16, 1, 1], data: f32(16) },
      { name: 'k2', dims: [1, 1, 5], data: f32(5) },
      { name: 'two', dims: [1], data: new Float32Array([2]) },
      { name: 'wg', dims: [12, 16], data: f32(192) },
      { name: 'cg', dims: [12], data: f32(12) },
      { name: 'wm', dims: [12, 6], data: f32(72) },
      { name: 'shape', dims: [3], data: i64([0, 2, 3]) },
      { name: 'cap', dims: [], data: new Float32Array([0.3]) },
    ],
  });
}

/** 1-D convolution and pools (GraphOps hold them as 2-D with H = 1), BatchNorm on [N, C, L]. */
function zoo1d(): Uint8Array {
  return buildModel({
    nodes: [
      { op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attrs: { kernel_shape: [3], pads: [1, 2], strides: [2], dilations: [2] } },
      { op: 'Relu', inputs: ['c'], outputs: ['r'] },
      { op: 'MaxPool', inputs: ['r'], outputs: ['p'], attrs: { kernel_shape: [3], strides: [2], pads: [1, 1], ceil_mode: 1 } },
      { op: 'AveragePool', inputs: ['p'], outputs: ['q'], attrs: { kernel_shape: [2], strides: [2], pads: [1, 0] } },
      { op: 'BatchNormalization', inputs: ['q', 's', 't', 'm', 'v'], outputs: ['bn'] },
      { op: 'GlobalAveragePool', inputs: ['bn'], outputs: ['g'] },
      { op: 'Flatten', inputs: ['g'], outputs: ['out'] },
    ],
    inputs: [{ name: 'x', dims: ['batch', 4, 20] }],
    outputs: [{ name: 'bn' }, { name: 'out' }],
    initializers: [
      { name: 'w', dims: [6, 4, 3], data: f32(72, 0.5) },
      { name: 'b', dims: [6], data: f32(6) },
      { name: 's', dims: [6], data: f32(6) },
      { name: 't', dims: [6], data: f32(6) },
      { name: 'm', dims: [6], data: f32(6, 0.1) },
      { name: 'v', dims: [6], data: positive(6) },
    ],
  });
}

/** Opset 11: Softmax flattens [axis, rank) (exported as Flatten + Softmax + Reshape); Clip bounds as inputs. */
function zooOpset11(): Uint8Array {
  return buildModel({
    opset: 11,
    nodes: [
      { op: 'Softmax', inputs: ['x'], outputs: ['s'], attrs: { axis: 1 } },
      // Flattened to [N·3, 20]: the Reshape back says -1 for the batch.
      { op: 'Softmax', inputs: ['x'], outputs: ['s2'], attrs: { axis: 2 } },
      { op: 'LogSoftmax', inputs: ['x'], outputs: ['l'], attrs: { axis: 3 } },
      { op: 'Clip', inputs: ['x', 'lo', 'hi'], outputs: ['c'] },
    ],
    inputs: [{ name: 'x', dims: ['batch', 3, 4, 5] }],
    outputs: [{ name: 's' }, { name: 's2' }, { name: 'l' }, { name: 'c' }],
    initializers: [
      { name: 'lo', dims: [], data: new Float32Array([-0.5]) },
      { name: 'hi', dims: [], data: new Float32Array([0.5]) },
    ],
  });
}

describe.each([
  ['2-D op zoo', zoo2d, [3, 10, 11], ['Conv', 'Clip', 'MaxPool', 'BatchNormalization', 'LeakyRelu', 'AveragePool', 'Pad', 'Sigmoid', 'Concat', 'Add', 'Relu', 'Mul', 'Sub', 'Div', 'GlobalAveragePool', 'GlobalMaxPool', 'Flatten', 'Gemm', 'MatMul', 'Reshape', 'Softmax', 'LogSoftmax']],
  ['1-D conv and pools', zoo1d, [4, 20], ['Conv', 'Relu', 'MaxPool', 'AveragePool', 'BatchNormalization', 'GlobalAveragePool', 'Flatten']],
  ['opset-11 softmax and clip', zooOpset11, [3, 4, 5], ['Flatten', 'Softmax', 'Reshape', 'LogSoftmax', 'Clip']],
] as const)('%s', (_, build, perImage, opTypes) => {
  // Pre-opset-13 Softmax over several axes comes back as Flatten + Softmax + Reshape.
  const sameOps = build !== zooOpset11;
  it('round-trips through our importer and matches onnxruntime at batch 3', async () => {
    const ctx = await gpu();
    const original = build();
    const model = Model.fromBytes(ctx, original, { name: _ });
    const exported = exportModel(model);
    const proto = decode(exported);
    expect(new Set(proto.graph!.node!.map((n) => n.opType))).toEqual(new Set(opTypes));
    const again = Model.fromBytes(ctx, exported, { name: `${_} (exported)` });
    const one = new Map([['x', [1, ...perImage]]]);
    const after = again.analyze(one, new Set());
    if (sameOps) expect(signature(after)).toEqual(signature(model.analyze(one, new Set())));
    else expect(after.ops.map((o) => o.kind)).toEqual(['alias', 'softmax', 'alias', 'alias', 'softmax', 'alias', 'softmax', 'unary']);
    // Every output keeps the batch dynamic.
    expect(proto.graph!.output!.map((o) => o.type!.tensorType!.shape!.dim![0].dimParam)).toEqual(proto.graph!.output!.map(() => 'N'));
    expect(Buffer.from(exportModel(again)).equals(Buffer.from(exported))).toBe(true);

    const x = { data: f32(3 * perImage.reduce((p, d) => p * d, 1), 2), shape: [3, ...perImage] };
    const feeds: Feeds = new Map([['x', x]]);
    const ours = await runCamgpu(ctx, model, feeds);
    const ours2 = await runCamgpu(ctx, again, feeds);
    const ref = await runOrt(original, feeds);
    const theirs = await runOrt(exported, feeds);
    expect([...theirs.keys()]).toEqual([...ref.keys()]);
    for (const [name, r] of ref) {
      expect(theirs.get(name)!.dims, name).toEqual(r.dims);
      expect(relError(theirs.get(name)!.data, r.data), name).toBeLessThan(1e-5);
      expect(maxAbsDiff(ours2.get(name)!, ours.get(name)!), name).toBeLessThanOrEqual(1e-6);
      expect(relError(ours.get(name)!, r.data), name).toBeLessThan(1e-4);
    }
    await again.dispose();
    await model.dispose();
  });
});

describe('OpGraphs from tapes', () => {
  const origin = (name: string, opType: string) => ({ name, opType });

  it('transposed matmul operands and run-time affine parameters export as standard ONNX', async () => {
    // y = relu(x · Wᵀ) · s + t, with s and t computed from the input (no constant to fold into BatchNormalization).
    const w = hostTensor('float32', [3, 4], f32(12));
    const g: OpGraph = {
      ops: [
        { kind: 'matmul', node: origin('mm', 'MatMul'), inputs: ['x', 'w'], output: 'h', activation: { kind: 'relu' }, transB: true },
        { kind: 'global_pool', node: origin('gp', 'GlobalAveragePool'), pool: 'avg', inputs: ['x4'], output: 'm' },
        { kind: 'alias', node: origin('flat', 'Flatten'), inputs: ['m'], output: 'mf' },
        { kind: 'alias', node: origin('row', 'Reshape'), inputs: ['mf'], output: 's' },
        { kind: 'affine', node: origin('aff', 'Affine'), inputs: ['x4', 's', 's'], output: 'y', activation: { kind: 'clip', min: -Infinity, max: 1 } },
      ],
      shapes: new Map([['x', [2, 4]], ['w', [3, 4]], ['h', [2, 3]], ['x4', [1, 3, 2, 2]], ['m', [1, 3, 1, 1]], ['mf', [1, 3]], ['s', [3]], ['y', [1, 3, 2, 2]]]),
      constants: new Map([['w', w]]),
      inputs: ['x', 'x4'],
      outputs: ['h', 'y'],
    };
    const bytes = exportOnnx(g, { inputs: [{ name: 'x' }, { name: 'x4', batchAxis: false }], outputs: ['h', 'y'] });
    const proto = decode(bytes);
    expect(proto.graph!.node!.map((n) => n.opType)).toEqual(['MatMul', 'Relu', 'GlobalAveragePool', 'Flatten', 'Reshape', 'Reshape', 'Mul', 'Reshape', 'Add', 'Clip']);
    expect(proto.graph!.output!.map((o) => o.type!.tensorType!.shape!.dim![0].dimParam || null)).toEqual(['N', null]);
    const x = f32(8);
    const x4 = f32(12);
    const r = await runOrt(bytes, new Map([['x', { data: x, shape: [2, 4] }], ['x4', { data: x4, shape: [1, 3, 2, 2] }]]));
    const h = new Float32Array(6);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) h[i * 3 + j] = Math.max(0, [0, 1, 2, 3].reduce((acc, k) => acc + x[i * 4 + k] * w.data[j * 4 + k], 0));
    expect(maxAbsDiff(r.get('h')!.data, h)).toBeLessThan(1e-6);
    const y = Float32Array.from(x4, (v, i) => {
      const c = Math.floor(i / 4);
      const s = (x4[c * 4] + x4[c * 4 + 1] + x4[c * 4 + 2] + x4[c * 4 + 3]) / 4;
      return Math.min(v * s + s, 1);
    });
    expect(maxAbsDiff(r.get('y')!.data, y)).toBeLessThan(1e-6);
    // The graph is valid for our importer too.
    expect(importOnnx(bytes).nodes.length).toBe(10);
  });

  it('refuses what ONNX cannot express, naming the op', () => {
    const g: OpGraph = {
      ops: [{ kind: 'reduce', node: origin('score', 'ReduceSum'), reduce: 'sum', inputs: ['x'], output: 'y', axes: [1] }],
      shapes: new Map([['x', [1, 4]], ['y', [1, 1]]]),
      constants: new Map(),
      inputs: ['x'],
      outputs: ['y'],
    };
    expect(() => exportOnnx(g, { inputs: [{ name: 'x' }], outputs: ['y'] })).toThrow(UnsupportedOpError);
    expect(() => exportOnnx(g, { inputs: [{ name: 'x' }], outputs: ['y'] })).toThrow(/'score'.*'reduce'/);
    expect(() => exportOnnx(g, { inputs: [{ name: 'x' }], outputs: ['nope'] })).toThrow(InputError);
    expect(() => exportOnnx(g, { inputs: [{ name: 'x' }], outputs: ['y'], opset: 12 })).toThrow(/opset 12/);
    const relu: OpGraph = { ...g, ops: [{ kind: 'unary', node: origin('act', 'Relu'), inputs: ['x'], output: 'y', activation: { kind: 'relu' } }] };
    expect(() => exportOnnx(relu, { inputs: [], outputs: ['y'] })).toThrow(/'act' reads graph input 'x', which options.inputs does not list/);
    expect(decode(exportOnnx(relu, { inputs: [{ name: 'x' }], outputs: ['y'] })).graph!.node!.map((n) => n.name)).toEqual(['act']);
  });
});

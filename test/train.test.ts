import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Model } from '../src/model.js';
import { exportOnnx } from '../src/onnx/export.js';
import { ProgramRunner } from '../src/ops/program.js';
import { SGD_DEFAULTS } from '../src/ops/optim.js';
import { Tape } from '../src/ops/tape.js';
import { Recorder } from '../src/runtime/recorder.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { WeightStore } from '../src/runtime/weights.js';
import { batchGather, GpuImageSet, type HostImageSet, IndexBuffer } from '../src/train/data.js';
import type { Net } from '../src/train/net.js';
import { Rng } from '../src/train/rng.js';
import { type Architecture, TrainingSession } from '../src/train/session.js';
import { findFashionMnist, IMAGES_MAGIC, LABELS_MAGIC, loadFashionMnist, preprocess, readIdxFile } from '../tools/fashion-mnist.js';
import { learningRate, splitTrain } from '../tools/train.js';
import { gpu } from './helpers/gpu.js';
import { relError } from './helpers/random.js';

function idx(magic: number, dims: number[], payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, magic, false);
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  out.set(payload, 4 + 4 * dims.length);
  return out;
}

describe('Fashion-MNIST IDX files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'camgpu-idx-'));
  const pixels = Uint8Array.from({ length: 3 * 28 * 28 }, (_, i) => (i * 7) % 256);
  const file = (name: string, bytes: Uint8Array) => {
    writeFileSync(join(dir, name), bytes);
    return join(dir, name);
  };

  it('reads plain and gzipped files alike', () => {
    const raw = idx(IMAGES_MAGIC, [3, 28, 28], pixels);
    const a = readIdxFile(file('plain', raw), IMAGES_MAGIC);
    const b = readIdxFile(file('packed.gz', gzipSync(raw)), IMAGES_MAGIC);
    expect(a.dims).toEqual([3, 28, 28]);
    expect(b.dims).toEqual([3, 28, 28]);
    expect(Buffer.compare(a.data, pixels)).toBe(0);
    expect(Buffer.compare(b.data, pixels)).toBe(0);
  });

  it('rejects a wrong magic number, a truncated header, a size mismatch and a broken gzip stream', () => {
    expect(() => readIdxFile(file('labels-as-images', idx(LABELS_MAGIC, [3], new Uint8Array(3))), IMAGES_MAGIC)).toThrow(/magic number 0x00000801, expected 0x00000803/);
    expect(() => readIdxFile(file('short', idx(IMAGES_MAGIC, [3, 28, 28], pixels).subarray(0, 9)), IMAGES_MAGIC)).toThrow(/truncated header/);
    expect(() => readIdxFile(file('size', idx(IMAGES_MAGIC, [4, 28, 28], pixels)), IMAGES_MAGIC)).toThrow(/dims \[4, 28, 28\] need 3152 bytes, the file has 2368/);
    expect(() => readIdxFile(file('bad.gz', Uint8Array.from([0x1f, 0x8b, 1, 2, 3])), IMAGES_MAGIC)).toThrow(/not a valid gzip stream/);
  });

  it('reports where it looked when the dataset is missing', () => {
    expect(() => loadFashionMnist(dir)).toThrow(/Fashion-MNIST not found in .*camgpu-idx-/);
  });
});

/** Images a tiny network can learn without Fashion-MNIST: class k is a bright 6×6 square at a class-specific place, with noise. */
function syntheticSet(count: number, seed: number): HostImageSet {
  const rng = new Rng(seed);
  const images = new Uint8Array(count * 784);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const k = rng.int(10);
    labels[i] = k;
    const [y0, x0] = [3 + 5 * Math.floor(k / 4), 3 + 6 * (k % 4)];
    for (let p = 0; p < 784; p++) {
      const y = Math.floor(p / 28);
      const x = p % 28;
      const inside = y >= y0 && y < y0 + 6 && x >= x0 && x < x0 + 6;
      images[i * 784 + p] = Math.min(255, (inside ? 160 : 20) + rng.int(80));
    }
  }
  return { images, labels, count, rows: 28, cols: 28 };
}

const DATA = findFashionMnist();

describe('batches gathered on the GPU', () => {
  it('match the CPU preprocessing reference (normalize, then bilinear half-pixel resize) and carry −onehot/batch seeds', async () => {
    const ctx = await gpu();
    const host = syntheticSet(40, 3);
    const set = GpuImageSet.upload(ctx, host, 'synthetic');
    const B = 6;
    const order = Uint32Array.from([17, 3, 39, 0, 22, 8, 5, 11, 30, 2, 1, 7]);
    const index = new IndexBuffer(ctx, 12);
    index.write(order, B);
    const [mean, std] = [0.3, 0.25];
    const tape = new Tape();
    const x = tape.input('x', [B, 1, 28, 28]);
    const y = tape.resize(x, [56, 56], { alignCorners: false });
    const images = ctx.pool.acquire(B * 784 * 4);
    const seed = Tensor.empty(ctx, [B, 10]);
    const labels = Tensor.empty(ctx, [B]);
    const weights = new WeightStore(ctx);
    const runner = new ProgramRunner(ctx, weights);
    // The resize reads the gathered images in place (a bound input), in the same encoder as the gather.
    const spec = { key: 'resize', split: false, build: () => ({ graph: tape.graph, bound: new Map([['x', images]]) }) };
    const gather = await batchGather(set, index, B, 10, { images: { buffer: images, offset: 0, size: B * 784 * 4 }, seed: seed.binding(), labels: labels.binding() }, mean, std);
    const rec = new Recorder(ctx);
    gather.encode(rec, { offset: B });
    const r = await runner.record(rec, { ...spec, batch: B, feeds: {}, results: { [y.name]: { batchAxis: 0 } } });
    rec.submit();
    const resized = r.results.get(y.name)!;
    const [got, seeds, labs] = await readTensors(ctx, [resized, seed, labels]);
    const items = Array.from(order.subarray(B, 2 * B));
    expect(relError(got, preprocess(host, items, 56, mean, std))).toBeLessThan(1e-6);
    const want = new Float32Array(B * 10);
    items.forEach((it, b) => (want[b * 10 + host.labels[it]] = -1 / B));
    expect(Array.from(seeds)).toEqual(Array.from(want));
    expect(Array.from(new Uint32Array(labs.buffer))).toEqual(items.map((it) => host.labels[it]));
    for (const t of [seed, labels, resized]) t.dispose();
    ctx.pool.release(images);
    gather.dispose();
    await runner.dispose();
    weights.dispose();
    index.dispose();
    set.dispose();
  });
});

/** A tiny network with every training op: strided conv, max pool, batch norm with a fused ReLU, dense layers. */
const tiny: Architecture = {
  name: 'tiny',
  inputSize: 32,
  channels: 1,
  classes: 10,
  targetLayer: 'features.5',
  build(net: Net, x) {
    let y = net.relu(net.conv(x, 'features.0', { out: 8, stride: 2 }), 'features.1');
    y = net.maxPool(y, 'features.2');
    y = net.relu(net.batchNorm(net.conv(y, 'features.3', { out: 12, bias: false }), 'features.4'), 'features.5');
    y = net.flatten(y);
    return net.linear(y, 'fc', 10, { output: 'logits' });
  },
};

describe('training a tiny network', () => {
  const source = DATA ? 'Fashion-MNIST' : 'synthetic data (Fashion-MNIST is not installed)';
  it(`lowers the loss over 300 steps, is reproducible from its seed, and exports what it evaluates (${source})`, async () => {
    const ctx = await gpu();
    const ds = DATA ? loadFashionMnist(DATA) : null;
    const trainHost = ds ? ds.train : syntheticSet(6000, 1);
    const testHost = ds ? ds.test : syntheticSet(1000, 2);
    const [mean, std] = [0.286, 0.353];
    const train = GpuImageSet.upload(ctx, trainHost, 'train');
    const test = GpuImageSet.upload(ctx, testHost, 'test');
    const { train: items } = splitTrain(trainHost.count, 4, 1000);
    const subset = items.subarray(0, 150 * 32);
    const session = async (seed: number, epochs: number) => {
      const s = await TrainingSession.create(ctx, tiny, train, { batch: 32, evalBatch: 100, mean, std, seed, optimizer: { ...SGD_DEFAULTS, lr: 0.05 } });
      const shuffle = Rng.derive(seed, 'shuffle');
      const losses: number[] = [];
      for (let e = 0; e < epochs; e++) {
        const order = subset.slice();
        shuffle.shuffle(order);
        const steps = s.beginEpoch(order);
        for (let k = 0; k < steps; k++) await s.step(learningRate(e * steps + k, epochs * steps, 0.05));
        losses.push((await s.epochMetrics()).loss);
      }
      return { s, losses };
    };
    const a = await session(5, 2);
    expect(a.s.stepsTaken).toBe(300);
    // Mean loss of the second 150 steps well under the first's (which starts at ln 10 ≈ 2.3).
    expect(a.losses[1]).toBeLessThan(0.75 * a.losses[0]);
    const testItems = Uint32Array.from({ length: 300 }, (_, i) => i);
    const ev = await a.s.evaluate(test, testItems, { predictions: true });
    expect(ev.accuracy).toBeGreaterThan(0.6);
    // Same seed, same weights, bit for bit (no atomics anywhere); another seed differs.
    const b = await session(5, 1);
    const c = await session(6, 1);
    const a1 = await session(5, 1);
    const [pa, pb, pc] = [await a1.s.parameters(), await b.s.parameters(), await c.s.parameters()];
    for (const [name, v] of pa) expect(Buffer.compare(Buffer.from(v.buffer), Buffer.from(pb.get(name)!.buffer)), name).toBe(0);
    expect([...pa].some(([name, v]) => Buffer.compare(Buffer.from(v.buffer), Buffer.from(pc.get(name)!.buffer)) !== 0)).toBe(true);
    // The exported graph (batch norm folded) run by camgpu predicts what the session evaluated.
    const graph = await a.s.exportGraph();
    expect(graph.ops.some((op) => op.kind === 'affine' || op.kind.startsWith('batchnorm'))).toBe(false);
    const model = Model.fromBytes(ctx, exportOnnx(graph, { inputs: [{ name: 'input' }], outputs: ['logits'] }));
    const x = Tensor.fromData(ctx, preprocess(testHost, Array.from(testItems), 32, mean, std), [300, 1, 32, 32]);
    const r = await model.run(x);
    const logits = await r.outputs.get('logits')!.read();
    let same = 0;
    for (let i = 0; i < 300; i++) {
      const row = Array.from(logits.subarray(i * 10, i * 10 + 10));
      if (row.indexOf(Math.max(...row)) === ev.predictions![i]) same++;
    }
    expect(same).toBeGreaterThanOrEqual(299);
    x.dispose();
    for (const t of r.outputs.values()) t.dispose();
    await model.dispose();
    for (const s of [a.s, b.s, c.s, a1.s]) s.dispose();
    train.dispose();
    test.dispose();
  });
});

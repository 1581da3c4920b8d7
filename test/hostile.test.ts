import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { formatNpy } from '../src/io/npy.js';
import { Model } from '../src/model.js';
import { loadModel } from '../src/node.js';
import { compilePlan } from '../src/ops/compile.js';
import { ProgramRunner } from '../src/ops/program.js';
import { BufferPool } from '../src/runtime/buffer-pool.js';
import { CamgpuError, InternalError, LimitError } from '../src/runtime/errors.js';
import { Tensor } from '../src/runtime/tensor.js';
import { WeightStore } from '../src/runtime/weights.js';
import { encode, int, REGRESSIONS, type Regression } from './fuzz/regressions.js';
import { gpu } from './helpers/gpu.js';

/**
 * Malformed models (issue 8): every defect class the fuzzer found, as a named fixture
 * (test/fuzz/regressions.ts) that must fail with its exact typed error — through the
 * library and through the CLI — and give every pool buffer back.
 */

const root = mkdtempSync(join(tmpdir(), 'camgpu-hostile-'));

/** Writes a regression's model (and the files beside it) to its own folder; returns the model path. */
function materialize(r: Regression, k: number): string {
  const dir = join(root, `case-${k}`);
  mkdirSync(dir, { recursive: true });
  for (const f of r.files ?? []) writeFileSync(join(dir, f.name), f.bytes);
  for (const s of r.symlinks ?? []) symlinkSync(s.target, join(dir, s.name));
  const path = join(dir, 'model.onnx');
  writeFileSync(path, encode(r.model));
  return path;
}

/** Imports and runs a regression's model; the error it raised (null if it ran). */
async function failure(r: Regression, path: string): Promise<unknown> {
  const ctx = await gpu();
  const shape = r.feed ?? [1, 4];
  let model: Model | null = null;
  const x = Tensor.fromData(ctx, new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  try {
    model = loadModel(ctx, path);
    const res = await model.run(x);
    for (const t of res.outputs.values()) t.dispose();
    return null;
  } catch (e) {
    return e;
  } finally {
    x.dispose();
    await model?.dispose();
  }
}

describe('every defect class fails with its exact typed error', () => {
  it.each(REGRESSIONS.map((r, k) => [r.name, r, k] as const))('%s', async (_name, r, k) => {
    const ctx = await gpu();
    const path = materialize(r, k);
    const before = ctx.pool.getStats().inUseBytes;
    const t0 = performance.now();
    const e = await failure(r, path);
    const ms = performance.now() - t0;
    expect(e, 'the model ran').not.toBeNull();
    expect(e).toBeInstanceOf(CamgpuError);
    expect(e).not.toBeInstanceOf(InternalError);
    const err = e as CamgpuError;
    expect(err.code, err.message).toBe(r.expect.code);
    expect(err.message).toMatch(r.expect.message);
    if (r.expect.node !== undefined) expect(err.node, err.message).toBe(r.expect.node);
    if (r.expect.field !== undefined) expect(err.field, err.message).toBe(r.expect.field);
    if (r.withinMs) expect(ms, 'took too long').toBeLessThan(r.withinMs);
    expect(ctx.pool.getStats().inUseBytes, 'pool bytes checked out').toBe(before);
  });
});

describe('checked models that are valid still load', () => {
  it('an acyclic graph stored out of order is sorted, not refused', async () => {
    const ctx = await gpu();
    const bytes = encode({
      nodes: [{ op: 'Sigmoid', name: 'b', in: ['h'], out: ['y'] }, { op: 'Relu', name: 'a', in: ['x'], out: ['h'] }],
      outputs: ['y'],
    });
    const m = Model.fromBytes(ctx, bytes, { name: 'unsorted.onnx' });
    expect(m.graph.nodes.map((n) => n.name)).toEqual(['a', 'b']);
    const x = Tensor.fromData(ctx, Float32Array.from([-1, 0, 1, 2]), [1, 4]);
    const y = (await m.run(x)).outputs.get('y')!;
    const got = await y.read();
    [0.5, 0.5, 1 / (1 + Math.exp(-1)), 1 / (1 + Math.exp(-2))].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));
    y.dispose();
    x.dispose();
    await m.dispose();
  });

  it('a Slice to INT64_MAX (torch exports) still folds', async () => {
    const ctx = await gpu();
    const big = 2n ** 63n - 1n;
    const i64 = (v: bigint[]) => ({ dataType: 7, rawData: new Uint8Array(BigInt64Array.from(v).buffer) });
    const bytes = encode({
      nodes: [{ op: 'Shape', name: 'shape', in: ['x'], out: ['s'] }, { op: 'Slice', name: 'slice', in: ['s', 'st', 'en'], out: ['tail'] },
        { op: 'Concat', name: 'cat', in: ['one', 'tail'], out: ['shape2'], attrs: [int('axis', 0)] }, { op: 'Reshape', name: 'reshape', in: ['x', 'shape2'], out: ['y'] }],
      inits: [{ name: 'st', dims: [1], proto: i64([1n]) }, { name: 'en', dims: [1], proto: i64([big]) }, { name: 'one', dims: [1], i64: [1] }],
      outputs: ['y'],
    });
    const m = Model.fromBytes(ctx, bytes, { name: 'slice-max.onnx' });
    const x = Tensor.fromData(ctx, new Float32Array(4), [1, 4]);
    const y = (await m.run(x)).outputs.get('y')!;
    expect(y.shape).toEqual([1, 4]);
    y.dispose();
    x.dispose();
    await m.dispose();
  });
});

describe('no GPU memory is lost on error paths', () => {
  it('a plan compilation that throws midway returns every buffer it took', async () => {
    const ctx = await gpu();
    // relu takes buffers, then Pad's [1, 2^25 + 4] output is over the binding limit.
    const m = Model.fromBytes(ctx, encode({
      nodes: [{ op: 'Relu', name: 'relu', in: ['x'], out: ['h'] }, { op: 'Pad', name: 'pad', in: ['h', 'pads'], out: ['y'] }],
      inits: [{ name: 'pads', dims: [4], i64: [0, 0, 0, 2 ** 25] }],
      outputs: ['y'],
    }), { name: 'pad.onnx' });
    const before = ctx.pool.getStats();
    const g = m.analyze(new Map([['x', [1, 4]]]), new Set());
    const store = new WeightStore(ctx);
    await expect(compilePlan(ctx, g, store, new Set())).rejects.toThrow(LimitError);
    const after = ctx.pool.getStats();
    expect(after.created + after.reused).toBeGreaterThan(before.created + before.reused); // it did take buffers …
    expect(after.inUseBytes).toBe(before.inUseBytes); // … and gave them all back
    store.dispose();
    await m.dispose();
  });

  it('a program whose builder throws a plain Error fails with an InternalError and keeps nothing', async () => {
    const ctx = await gpu();
    const runner = new ProgramRunner(ctx, new WeightStore(ctx));
    const before = ctx.pool.getStats().inUseBytes;
    const x = Tensor.fromData(ctx, new Float32Array(4), [1, 4]);
    const run = runner.run({ key: 'bad', build: () => { throw new TypeError('boom'); }, batch: 1, feeds: { x: { tensor: x, batchAxis: 0 } }, results: {} });
    await expect(run).rejects.toBeInstanceOf(InternalError);
    await expect(run).rejects.toMatchObject({ code: 'INTERNAL', message: /internal error during analysis: TypeError: boom/ });
    x.dispose();
    expect(ctx.pool.getStats().inUseBytes).toBe(before);
    await runner.dispose();
  });

  it('the pool caps its free list, trims on demand and when idle', async () => {
    const ctx = await gpu();
    const pool = new BufferPool(ctx.device, { maxFreeBytes: 64 * 1024, idleMs: 100 });
    const bufs = Array.from({ length: 8 }, () => pool.acquire(16 * 1024));
    for (const b of bufs) pool.release(b);
    let s = pool.getStats();
    expect(s.inUseBytes).toBe(0);
    expect(s.freeBytes).toBe(64 * 1024); // 4 of 8 kept …
    expect(s.destroyed).toBe(4); // … the 4 released first destroyed
    pool.release(pool.acquire(16 * 1024)); // reuses one
    expect(pool.getStats().created).toBe(8);
    pool.trim();
    expect(pool.getStats().freeBytes).toBe(0);
    pool.release(pool.acquire(1024));
    expect(pool.getStats().freeBytes).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 300));
    s = pool.getStats();
    expect(s.freeBytes, 'trimmed when idle').toBe(0);
    pool.destroyAll();
  });

  it('ctx.trim() returns the shared pool\'s free buffers', async () => {
    const ctx = await gpu();
    const t = Tensor.empty(ctx, [1024]);
    t.dispose();
    expect(ctx.pool.getStats().freeBytes).toBeGreaterThan(0);
    ctx.trim();
    expect(ctx.pool.getStats().freeBytes).toBe(0);
  });
});

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'bin', 'camgpu.js');

describe('the CLI gives one line with the code and exits 1 for every class', () => {
  const npy = new Map<string, string>();
  const input = (shape: number[]) => {
    const key = shape.join('x');
    if (!npy.has(key)) {
      const p = join(root, `x-${key}.npy`);
      writeFileSync(p, formatNpy(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape));
      npy.set(key, p);
    }
    return npy.get(key)!;
  };
  it.each(REGRESSIONS.map((r, k) => [r.name, r, k] as const))('%s', async (_name, r, k) => {
    const path = materialize(r, 1000 + k);
    let code = 0;
    let stderr = '';
    try {
      await run(process.execPath, [CLI, 'run', '--model', path, '--input-npy', input(r.feed ?? [1, 4])], { timeout: 60_000 });
    } catch (e) {
      ({ code, stderr } = e as { code: number; stderr: string });
    }
    const lines = stderr.split('\n').filter((l) => l && !/artificially reduced/.test(l));
    expect(lines, stderr).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^camgpu: error \\[${r.expect.code}\\]: `));
    expect(lines[0]).toMatch(r.expect.message);
    expect(code).toBe(1);
  });
});


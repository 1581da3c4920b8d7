import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SUPPORTED_OPS } from '../../src/onnx/analyze.js';
import { decodeTensor, onnx } from '../../src/onnx/proto.js';
import { CamgpuError, GpuContext, InternalError, loadModel, Model, readTensors, Tensor } from '../../src/node.js';
import type { HostTensor } from '../../src/runtime/host-tensor.js';
import { type Base, buildCase, type FuzzCase, listBases, planSteps, type Step } from './mutate.js';

/**
 * The fuzzer's child process: runs cases sent by the parent (test/fuzz/harness.ts) one at a
 * time on its own GPU device: import (from a folder when the case has external data),
 * analysis, compilation and a run with real or synthetic inputs (and a gradient pass for
 * some), then disposal, and reports how each ended and whether any pool buffer stayed
 * checked out. Hangs and crashes are the parent's to see: it kills this process on a hang.
 */

export type Status = 'ok' | 'typed' | 'untyped' | 'leak' | 'gpu' | 'crash' | 'hang';

export interface Outcome {
  status: Status;
  code?: string;
  message?: string;
  stack?: string;
  /** Pool bytes still checked out after the case. */
  leakBytes?: number;
  ms: number;
  mutations?: string[];
}

export interface CaseRequest {
  kind: 'case';
  id: number;
  base: string;
  seed: number;
  /** Explicit steps (minimization); default planSteps(seed). */
  steps?: Step[];
}

export interface SoakRequest {
  kind: 'soak';
  id: number;
  seed: number;
  loads: number;
  sampleEvery: number;
}

export interface SoakSample {
  loads: number;
  rssMB: number;
  heapMB: number;
  inUseBytes: number;
  freeBytes: number;
  /** Cases so far by how they ended. */
  statuses: Partial<Record<Status, number>>;
}

const MAX_FEED_ELEMENTS = 1 << 22;

function feedData(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37) * 0.5;
  return a;
}

/** Plan-time values and GPU feeds of a case: a node test's data set (edited), else synthetic inputs of the declared shape. */
function inputsFor(ctx: GpuContext, model: Model, base: Base, c: FuzzCase): { feeds: Map<string, Tensor>; values: Map<string, HostTensor> | undefined; shapes: Map<string, number[]> } {
  const decls = model.graph.inputs;
  const values = new Map<string, HostTensor>();
  if (base.dataDir) {
    const files = readdirSync(base.dataDir).filter((f) => f.startsWith('input_') && f.endsWith('.pb'));
    files.sort((a, b) => Number(a.slice(6, -3)) - Number(b.slice(6, -3)));
    files.forEach((f, k) => {
      const proto = onnx.TensorProto.decode(new Uint8Array(readFileSync(join(base.dataDir!, f))));
      let t: HostTensor;
      try {
        t = decodeTensor(proto, f, null);
      } catch {
        return;
      }
      const edits = c.feedEdits.filter((e) => e.input === k);
      if (edits.length && t.data.length) {
        const data = t.data.slice();
        for (const e of edits) data[e.index % data.length] = e.value;
        t = { ...t, data };
      }
      const decl = decls.find((d) => d.name === proto.name) ?? decls[k];
      if (decl) values.set(decl.name, t);
    });
  }
  const feeds = new Map<string, Tensor>();
  const shapes = new Map<string, number[]>();
  for (const d of decls) {
    const v = values.get(d.name);
    if ((d.elemType !== 0 && d.elemType !== 1) || shapes.has(d.name)) continue;
    const shape = v ? v.dims : (d.dims ?? []).map((x) => (typeof x === 'number' ? x : 1));
    shapes.set(d.name, shape);
    const size = shape.reduce((a, b) => a * b, 1);
    if (size > MAX_FEED_ELEMENTS) continue;
    const data = v ? Float32Array.from(v.data) : feedData(size);
    feeds.set(d.name, Tensor.fromData(ctx, data, shape, d.name));
  }
  return { feeds, values: base.dataDir ? values : undefined, shapes };
}

async function runOne(ctx: GpuContext, base: Base, c: FuzzCase, scratch: string): Promise<Outcome> {
  const t0 = performance.now();
  const before = ctx.pool.getStats().inUseBytes;
  let model: Model | null = null;
  const held: Tensor[] = [];
  let dir: string | null = null;
  let outcome: Outcome;
  try {
    if (c.files.length || c.symlinks.length || c.dirs.length) {
      dir = mkdtempSync(join(scratch, 'case-'));
      for (const d of c.dirs) mkdirSync(join(dir, d), { recursive: true });
      for (const f of c.files) writeFileSync(join(dir, f.name), f.bytes);
      for (const s of c.symlinks) symlinkSync(s.target, join(dir, s.name));
      writeFileSync(join(dir, 'model.onnx'), c.bytes);
      model = loadModel(ctx, join(dir, 'model.onnx'));
    } else {
      model = Model.fromBytes(ctx, c.bytes, { name: `${c.base}#${c.seed}` });
    }
    const { feeds, values, shapes } = inputsFor(ctx, model, base, c);
    held.push(...feeds.values());
    if (feeds.size !== shapes.size || feeds.size === 0) {
      // Inputs too large (or none) to feed: analysis alone.
      model.analyze(shapes, new Set(), values);
    } else {
      const only = feeds.size === 1 ? [...feeds.values()][0] : null;
      const taps = base.dataDir ? [] : ['auto'];
      const r = only && !values ? await model.run(only, { taps }) : await model.run(feeds, { inputValues: values });
      const outs = [...r.outputs.values(), ...[...r.taps.values()].map((t) => t.value)];
      held.push(...outs);
      await readTensors(ctx, outs);
      if (c.grad && only) {
        const g = await model.grad(only, { wrt: ['input'] });
        const gs = [...g.outputs.values(), ...[...g.gradients.values()].map((t) => t.value)];
        held.push(...gs);
        await readTensors(ctx, gs);
      }
    }
    outcome = { status: 'ok', ms: 0 };
  } catch (e) {
    if (e instanceof InternalError || !(e instanceof CamgpuError)) {
      const cause = e instanceof InternalError ? e.cause : e;
      outcome = { status: 'untyped', message: (e as Error).message, stack: (cause as Error)?.stack, ms: 0 };
    } else {
      outcome = { status: e.code === 'GPU_ERROR' || e.code === 'DEVICE_LOST' ? 'gpu' : 'typed', code: e.code, message: e.message, ms: 0 };
    }
  }
  for (const t of held) t.dispose();
  try {
    await model?.dispose();
  } catch (e) {
    outcome = { status: 'untyped', message: `dispose: ${(e as Error).message}`, stack: (e as Error).stack, ms: 0 };
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
  const leak = ctx.pool.getStats().inUseBytes - before;
  if (leak !== 0 && outcome.status !== 'untyped') outcome = { ...outcome, status: 'leak', leakBytes: leak, message: `${leak} pool bytes still checked out after: ${outcome.status}${outcome.code ? ` ${outcome.code}` : ''} ${outcome.message ?? ''}` };
  outcome.ms = performance.now() - t0;
  return outcome;
}

async function main(): Promise<void> {
  const ctx = await GpuContext.create();
  const bases = listBases(new Set(SUPPORTED_OPS));
  const byName = new Map(bases.map((b) => [b.name, b]));
  const scratch = mkdtempSync(join(tmpdir(), 'camgpu-fuzz-'));
  process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
  const send = (m: unknown) => new Promise<void>((res) => process.send!(m, () => res()));
  let queue = Promise.resolve();
  process.on('message', (msg: CaseRequest | SoakRequest | { kind: 'exit' }) => {
    queue = queue.then(async () => {
      if (msg.kind === 'exit') process.exit(0);
      if (msg.kind === 'soak') {
        await send({ id: msg.id, samples: await soak(ctx, bases, msg, scratch) });
        return;
      }
      const base = byName.get(msg.base);
      if (!base) {
        await send({ id: msg.id, outcome: { status: 'untyped', message: `no base '${msg.base}'`, ms: 0 } });
        return;
      }
      const c = buildCase(base, msg.seed, msg.steps ?? planSteps(msg.seed));
      const outcome = await runOne(ctx, base, c, scratch);
      outcome.mutations = c.mutations;
      await send({ id: msg.id, outcome });
      if (outcome.code === 'DEVICE_LOST') process.exit(3);
    });
  });
  await send({ ready: true, bases: bases.length });
}

/** Many loads in this one process: pool bytes checked out and RSS sampled as they go. */
async function soak(ctx: GpuContext, bases: Base[], req: SoakRequest, scratch: string): Promise<SoakSample[]> {
  const { caseAt } = await import('./mutate.js');
  const samples: SoakSample[] = [];
  const statuses: Partial<Record<Status, number>> = {};
  const sample = (loads: number) => {
    const m = process.memoryUsage();
    const p = ctx.pool.getStats();
    samples.push({ loads, rssMB: Math.round(m.rss / 2 ** 20), heapMB: Math.round(m.heapUsed / 2 ** 20), inUseBytes: p.inUseBytes, freeBytes: p.freeBytes, statuses: { ...statuses } });
  };
  sample(0);
  for (let i = 0; i < req.loads; i++) {
    const { base, seed } = caseAt(bases, req.seed, i);
    const c = buildCase(base, seed, planSteps(seed));
    const o = await runOne(ctx, base, c, scratch);
    statuses[o.status] = (statuses[o.status] ?? 0) + 1;
    if ((i + 1) % req.sampleEvery === 0 || i + 1 === req.loads) sample(i + 1);
  }
  return samples;
}

main().catch((e) => {
  console.error(`fuzz worker failed to start: ${(e as Error).stack}`);
  process.exit(2);
});

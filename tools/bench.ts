import { EagerEnv } from '../src/ops/env.js';
import { lowerMatMul } from '../src/ops/gemm.js';
import { bound } from '../src/ops/types.js';
import { GpuContext, loadModel, type OpTiming, readTensors, Recorder, Tensor } from '../src/node.js';

export interface BenchOptions {
  /** Also time forward+backward to the input (∂logit of each image's top class / ∂x). */
  grad?: boolean;
  batch: number[];
  iters: number;
  warmup: number;
  profile: boolean;
  json: boolean;
}

function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function seededInput(n: number): Float32Array {
  let s = 12345;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = (s / 4294967296) * 2 - 1;
  }
  return a;
}

export interface OpKindTime {
  opType: string;
  ms: number;
  gflops: number;
  launches: number;
}

export interface BatchBench {
  batch: number;
  medianMs: number;
  p10Ms: number;
  p90Ms: number;
  gflopPerPass: number;
  gflops: number;
  imagesPerSec: number;
  chunk: number;
  gpuMs?: number;
  byOp?: OpKindTime[];
  /** Forward and backward to the input, with readback of the gradient. */
  grad?: { medianMs: number; p10Ms: number; p90Ms: number; backwardOverForward: number; gpuMs?: number; byOp?: OpKindTime[] };
}

export interface ModelBench {
  model: string;
  adapter: string;
  date: string;
  coldFirstResultMs: number;
  importMs: number;
  pipelines: number;
  pipelineCompileMs: number;
  batches: BatchBench[];
}

function groupTimings(timings: OpTiming[], opTypeOf: (label: string) => string): OpKindTime[] {
  const by = new Map<string, OpKindTime>();
  for (const t of timings) {
    const k = opTypeOf(t.label);
    const e = by.get(k) ?? { opType: k, ms: 0, gflops: 0, launches: 0 };
    e.ms += t.ms;
    e.gflops += t.flops;
    e.launches++;
    by.set(k, e);
  }
  return [...by.values()]
    .map((e) => ({ ...e, gflops: e.ms > 0 ? e.gflops / (e.ms * 1e6) : 0 }))
    .sort((a, b) => b.ms - a.ms);
}

/**
 * Times a model: the cold first result (device, import, pipeline compilation, first pass
 * and readback), then per batch size warm iterations of a forward pass plus the readback
 * of its outputs, and one profiled pass for per-op GPU time.
 */
export async function runBench(path: string, o: BenchOptions): Promise<ModelBench> {
  const tStart = performance.now();
  const ctx = await GpuContext.create();
  const tImport = performance.now();
  const model = loadModel(ctx, path);
  const importMs = performance.now() - tImport;
  const opTypes = new Map(model.graph.nodes.map((n) => [n.name, n.opType]));
  const opTypeOf = (label: string): string => {
    // Launches of one node that has several ("node (winograd input)") are told apart by their part.
    const part = /^(.*) \(([^()]*)\)$/.exec(label);
    if (part) return `${opTypeOf(part[1])} (${part[2]})`;
    // Backward launches are labelled "<node>/grad_<what>" by autodiff.
    const grad = /^(.*)\/grad(?:_(\w+))?$/.exec(label);
    if (grad) return `${opTypeOf(grad[1])} grad${grad[2] ? ` ${grad[2]}` : ''}`;
    return opTypes.get(label) ?? label;
  };
  const inShape = model.defaultInputShape(1).slice(1);
  const per = inShape.reduce((a, b) => a * b, 1);
  let coldFirstResultMs = 0;
  const batches: BatchBench[] = [];
  const log = (s: string) => {
    if (!o.json) console.log(s);
  };
  log(`model ${path} on ${ctx.adapterInfo.description || ctx.adapterInfo.device}`);
  for (const [bi, b] of o.batch.entries()) {
    const x = Tensor.fromData(ctx, seededInput(b * per), [b, ...inShape]);
    const once = async (profile = false) => {
      const r = await model.run(x, { profile });
      const outs = [...r.outputs.values()];
      await readTensors(ctx, outs);
      for (const t of outs) t.dispose();
      return r;
    };
    if (bi === 0) {
      await once();
      coldFirstResultMs = performance.now() - tStart;
      log(`cold start to first result: ${coldFirstResultMs.toFixed(0)} ms (import ${importMs.toFixed(0)} ms, ${ctx.pipelines.getStats().pipelines} pipelines compiled in ${ctx.pipelines.getStats().compileMs.toFixed(0)} ms)`);
    }
    for (let i = 0; i < o.warmup; i++) await once();
    const times: number[] = [];
    let flops = 0;
    let chunk = b;
    for (let i = 0; i < o.iters; i++) {
      const t0 = performance.now();
      const r = await once();
      times.push(performance.now() - t0);
      flops = r.flops;
      chunk = r.chunk;
    }
    times.sort((p, q) => p - q);
    const median = quantile(times, 0.5);
    const entry: BatchBench = {
      batch: b, medianMs: median, p10Ms: quantile(times, 0.1), p90Ms: quantile(times, 0.9),
      gflopPerPass: flops / 1e9, gflops: flops / (median * 1e6), imagesPerSec: (b * 1000) / median, chunk,
    };
    if (o.profile && ctx.hasTimestamps) {
      const r = await model.run(x, { profile: true });
      const timings = (await r.timings) ?? [];
      for (const t of r.outputs.values()) t.dispose();
      entry.gpuMs = timings.reduce((s, t) => s + t.ms, 0);
      entry.byOp = groupTimings(timings, opTypeOf);
    }
    if (o.grad) {
      const gradOnce = async (profile = false) => {
        const r = await model.grad(x, { wrt: ['input'], target: { classes: 'argmax' }, profile });
        const g = r.gradients.get('input')!.value;
        await readTensors(ctx, [g]);
        for (const t of [...r.outputs.values(), g]) t.dispose();
        return r;
      };
      for (let i = 0; i < o.warmup; i++) await gradOnce();
      const gt: number[] = [];
      for (let i = 0; i < o.iters; i++) {
        const t0 = performance.now();
        await gradOnce();
        gt.push(performance.now() - t0);
      }
      gt.sort((p, q) => p - q);
      const gm = quantile(gt, 0.5);
      // Backward alone is the extra time over the forward pass measured above.
      entry.grad = { medianMs: gm, p10Ms: quantile(gt, 0.1), p90Ms: quantile(gt, 0.9), backwardOverForward: (gm - median) / median };
      if (o.profile && ctx.hasTimestamps) {
        const r = await gradOnce(true);
        const timings = (await r.timings) ?? [];
        entry.grad.gpuMs = timings.reduce((t, q) => t + q.ms, 0);
        entry.grad.byOp = groupTimings(timings, opTypeOf);
      }
    }
    batches.push(entry);
    log(`batch ${b}: median ${median.toFixed(1)} ms (p10 ${entry.p10Ms.toFixed(1)}, p90 ${entry.p90Ms.toFixed(1)}), ${entry.gflopPerPass.toFixed(2)} GFLOP/pass, ${entry.gflops.toFixed(2)} GFLOP/s, ${entry.imagesPerSec.toFixed(2)} images/s`);
    if (entry.byOp) {
      log(`  GPU time (timestamps, one profiled pass): ${entry.gpuMs!.toFixed(1)} ms`);
      for (const e of entry.byOp.slice(0, 8)) log(`    ${e.opType.padEnd(20)} ${e.ms.toFixed(1).padStart(9)} ms  ${e.gflops.toFixed(2).padStart(7)} GFLOP/s  (${e.launches} launches)`);
    }
    if (entry.grad) {
      log(`  forward+backward to the input: median ${entry.grad.medianMs.toFixed(1)} ms (p10 ${entry.grad.p10Ms.toFixed(1)}, p90 ${entry.grad.p90Ms.toFixed(1)}); backward/forward ${entry.grad.backwardOverForward.toFixed(2)}`);
      for (const e of (entry.grad.byOp ?? []).slice(0, 10)) log(`    ${e.opType.padEnd(24)} ${e.ms.toFixed(1).padStart(9)} ms  ${e.gflops.toFixed(2).padStart(7)} GFLOP/s  (${e.launches} launches)`);
    }
    x.dispose();
  }
  const stats = ctx.pipelines.getStats();
  await model.dispose();
  const adapter = ctx.adapterInfo.description || ctx.adapterInfo.device;
  ctx.destroy();
  return { model: path, adapter, date: new Date().toISOString(), coldFirstResultMs, importMs, pipelines: stats.pipelines, pipelineCompileMs: stats.compileMs, batches };
}

/** GFLOP/s of the matmul core on an n×n×n product (the rate convolutions are compared against). */
export async function runMatmulBench(n: number, o: Pick<BenchOptions, 'iters' | 'warmup' | 'json'>): Promise<{ n: number; medianMs: number; gflops: number; adapter: string }> {
  const ctx = await GpuContext.create();
  const a = Tensor.fromData(ctx, seededInput(n * n), [n, n]);
  const b = Tensor.fromData(ctx, seededInput(n * n).reverse(), [n, n]);
  const c = Tensor.empty(ctx, [n, n]);
  const env = new EagerEnv(ctx, 'matmul');
  const dispatches = env.all(lowerMatMul(env, bound([n, n], a.buffer), bound([n, n], b.buffer), bound([n, n], c.buffer)));
  const once = async () => {
    const rec = new Recorder(ctx);
    for (const d of dispatches) rec.dispatch(d);
    rec.submit();
    await ctx.sync();
  };
  for (let i = 0; i < Math.max(1, o.warmup); i++) await once();
  const times: number[] = [];
  for (let i = 0; i < o.iters; i++) {
    const t0 = performance.now();
    await once();
    times.push(performance.now() - t0);
  }
  times.sort((p, q) => p - q);
  const medianMs = quantile(times, 0.5);
  const gflops = (2 * n ** 3) / (medianMs * 1e6);
  if (!o.json) console.log(`matmul core ${n}x${n}x${n}: median ${medianMs.toFixed(1)} ms, ${gflops.toFixed(2)} GFLOP/s`);
  const adapter = ctx.adapterInfo.description || ctx.adapterInfo.device;
  for (const t of [a, b, c]) t.dispose();
  env.release();
  ctx.destroy();
  return { n, medianMs, gflops, adapter };
}

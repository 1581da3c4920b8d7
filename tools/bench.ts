import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { explain, resolveMethods } from '../src/cam/explain.js';
import { METHOD_BY_NAME } from '../src/cam/methods.js';
import { sweepPasses, type SweepPassKind } from '../src/cam/sweeps.js';
import { formatNpy } from '../src/io/npy.js';
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

export function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** The input every benchmark feeds (tools/bench-peer.mjs, tools/bench-tfjs.ts and tools/bench_pgc.py make the same). */
export function seededInput(n: number): Float32Array {
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

// ---------------------------------------------------------------------------------------------
// camgpu bench --explain: the CAM methods of part 1 against the bare forward+backward pass

/** The methods of part 1 (SPEC §1, the one-forward / one-backward family), timed one by one and together. */
export const EXPLAIN_METHODS: readonly string[] = [
  'gradcam', 'gradcam++', 'xgradcam', 'hirescam', 'gradcamelementwise', 'layercam',
  'eigencam', 'eigengradcam', 'kpcacam', 'fem', 'finercam', 'activationcam',
];

/** The gradient CAMs among them: those that read ∂y/∂A (the target class's backward pass, or Finer-CAM's own). */
export const GRADIENT_CAMS: readonly string[] = EXPLAIN_METHODS.filter((m) => {
  const needs = METHOD_BY_NAME.get(m)?.needs;
  return needs === 'class' || needs === 'finer';
});

export interface ExplainBenchOptions {
  batch: number[];
  iters: number;
  warmup: number;
  /** Target layer (tensor, node or torch module path); default 'auto'. */
  layer?: string;
  /** Methods to time one by one (default EXPLAIN_METHODS); 'all' and 'gradient' entries time them together. */
  methods?: readonly string[];
  /** One profiled explain of all methods per batch: GPU time per method (timestamp queries). */
  profile: boolean;
  /** Write each single method's maps at the first batch size here, as <prefix><method>.npy. */
  mapsOut?: string;
  mapsPrefix?: string;
  json: boolean;
}

export interface Timed {
  medianMs: number;
  p10Ms: number;
  p90Ms: number;
  /** The first call: program build and, for the first program using them, pipeline compilation. */
  firstMs: number;
  timesMs: number[];
}

export interface ExplainEntry {
  /** A method name, 'all' (every method of the entry list in one explain call) or 'gradient' (the gradient CAMs in one call). */
  name: string;
  methods: string[];
  explain: Timed;
  /** The bare forward+backward pass timed alternately with this entry (same iterations). */
  bare: Timed;
  /** explain median / paired bare median. */
  overBare: number;
}

export interface ExplainBatchBench {
  batch: number;
  /** Every bare sample of the batch pooled. */
  bare: Timed;
  entries: ExplainEntry[];
  /** One profiled explain of the 'all' entry: GPU ms of the shared pass and of each method's own launches. */
  profile?: { passGpuMs: number; methods: { method: string; gpuMs: number }[] };
  /** Per image row of the first entry: the class explained (argmax) and its logit. */
  targets: number[];
}

export interface ExplainBench {
  model: string;
  adapter: string;
  date: string;
  layer: { requested: string; tensor: string; shape: number[] };
  input: number[];
  importMs: number;
  bare: string;
  readback: string;
  batches: ExplainBatchBench[];
  goals: { batch: number; camMathShare: number | null; gradientOverGradcam: number | null; allOverGradcam: number | null }[];
}

function timed(times: number[], firstMs: number): Timed {
  const s = [...times].sort((p, q) => p - q);
  return { medianMs: quantile(s, 0.5), p10Ms: quantile(s, 0.1), p90Ms: quantile(s, 0.9), firstMs, timesMs: times };
}

/**
 * Times explain() per method (and all of them in one call) at each batch size, each call
 * including the readback of every map it made, against the bare forward+backward pass to the
 * same layer (Model.grad, ∂ top-class logit / ∂layer, with the readback of that gradient),
 * the two alternating iteration by iteration so that both see the same machine load.
 */
export async function runExplainBench(path: string, o: ExplainBenchOptions): Promise<ExplainBench> {
  resolveMethods([...(o.methods ?? EXPLAIN_METHODS)]); // unknown names fail here, before any GPU work
  const ctx = await GpuContext.create();
  const tImport = performance.now();
  const model = loadModel(ctx, path);
  const importMs = performance.now() - tImport;
  const log = (s: string) => {
    if (!o.json) console.log(s);
  };
  const layer = o.layer ?? 'auto';
  const single = [...(o.methods ?? EXPLAIN_METHODS)];
  const gradient = single.filter((m) => GRADIENT_CAMS.includes(m));
  const plan: { name: string; methods: string[] }[] = [
    ...single.map((m) => ({ name: m, methods: [m] })),
    ...(single.length > 1 ? [{ name: 'all', methods: single }] : []),
    ...(gradient.length > 1 ? [{ name: 'gradient', methods: gradient }] : []),
  ];
  const inShape = model.defaultInputShape(1).slice(1);
  const per = inShape.reduce((a, b) => a * b, 1);
  const adapter = ctx.adapterInfo.description || ctx.adapterInfo.device;
  log(`explain bench: ${path} on ${adapter}, layer ${layer}, input ${inShape.join('x')}`);
  let layerInfo: ExplainBench['layer'] | null = null;
  const batches: ExplainBatchBench[] = [];
  for (const [bi, b] of o.batch.entries()) {
    const x = Tensor.fromData(ctx, seededInput(b * per), [b, ...inShape]);
    const bareOnce = async () => {
      const t0 = performance.now();
      const r = await model.grad(x, { wrt: [layer], target: { classes: 'argmax' } });
      const g = r.gradients.get(layer);
      if (!g) throw new Error(`the top-class logit does not depend on layer '${layer}'`);
      await readTensors(ctx, [g.value]);
      const ms = performance.now() - t0;
      for (const t of [...r.outputs.values(), g.value]) t.dispose();
      return ms;
    };
    const explainOnce = async (methods: readonly string[], keep = false, rows = false) => {
      const t0 = performance.now();
      const r = await explain(model, x, { methods, layers: [layer] });
      const maps = await readTensors(ctx, r.methods.map((m) => m.map));
      const ms = performance.now() - t0;
      // Outside the timed span: the maps kept for the caller, and the classes explained.
      const out = { ms, maps: keep ? r.methods.map((m, i) => ({ method: m.method, shape: [...m.map.shape], data: maps[i] })) : [], layers: r.layers, rows: rows ? await r.rows() : [] };
      r.dispose();
      return out;
    };
    const allBare: number[] = [];
    const entries: ExplainEntry[] = [];
    let targets: number[] = [];
    for (const e of plan) {
      // The first calls build (and compile) both programs; then warm-ups, then timed pairs.
      const bFirst = await bareOnce();
      const first = await explainOnce(e.methods, bi === 0 && e.methods.length === 1 && !!o.mapsOut, !targets.length);
      layerInfo ??= { requested: first.layers[0].requested, tensor: first.layers[0].tensor, shape: first.layers[0].shape.slice(1) };
      if (first.rows.length && !targets.length) targets = first.rows.map((r) => r.target);
      if (first.maps.length && o.mapsOut) {
        mkdirSync(o.mapsOut, { recursive: true });
        for (const m of first.maps) writeFileSync(join(o.mapsOut, `${o.mapsPrefix ?? ''}${m.method}.npy`), formatNpy(m.data, m.shape));
      }
      for (let i = 0; i < o.warmup; i++) {
        await bareOnce();
        await explainOnce(e.methods);
      }
      const bt: number[] = [];
      const et: number[] = [];
      for (let i = 0; i < o.iters; i++) {
        bt.push(await bareOnce());
        et.push((await explainOnce(e.methods)).ms);
      }
      allBare.push(...bt);
      const entry: ExplainEntry = { name: e.name, methods: e.methods, explain: timed(et, first.ms), bare: timed(bt, bFirst), overBare: 0 };
      entry.overBare = entry.explain.medianMs / entry.bare.medianMs;
      entries.push(entry);
      log(`batch ${b} ${e.name.padEnd(18)} ${entry.explain.medianMs.toFixed(1).padStart(8)} ms (p10 ${entry.explain.p10Ms.toFixed(1)}, p90 ${entry.explain.p90Ms.toFixed(1)}); bare fwd+bwd ${entry.bare.medianMs.toFixed(1)} ms; ×${entry.overBare.toFixed(3)}`);
    }
    const batchEntry: ExplainBatchBench = { batch: b, bare: timed(allBare, NaN), entries, targets };
    const allEntry = plan.find((e) => e.name === 'all') ?? plan[0];
    if (o.profile && ctx.hasTimestamps && allEntry) {
      const r = await explain(model, x, { methods: allEntry.methods, layers: [layer], profile: true });
      await readTensors(ctx, r.methods.map((m) => m.map));
      batchEntry.profile = { passGpuMs: r.passGpuMs ?? NaN, methods: r.methods.map((m) => ({ method: m.method, gpuMs: m.gpuMs ?? NaN })) };
      r.dispose();
      log(`  profiled '${allEntry.name}': shared pass ${batchEntry.profile.passGpuMs.toFixed(1)} GPU ms; ${batchEntry.profile.methods.map((m) => `${m.method} ${m.gpuMs.toFixed(1)}`).join(', ')}`);
    }
    batches.push(batchEntry);
    x.dispose();
  }
  await model.dispose();
  ctx.destroy();
  const goals = batches.map((bb) => {
    const g = bb.entries.find((e) => e.name === 'gradcam');
    const grad = bb.entries.find((e) => e.name === 'gradient');
    const all = bb.entries.find((e) => e.name === 'all');
    return {
      batch: bb.batch,
      camMathShare: g ? g.overBare - 1 : null,
      gradientOverGradcam: g && grad ? grad.explain.medianMs / g.explain.medianMs : null,
      allOverGradcam: g && all ? all.explain.medianMs / g.explain.medianMs : null,
    };
  });
  for (const g of goals) {
    log(`batch ${g.batch}: CAM math share (explain(gradcam) / bare − 1) ${g.camMathShare === null ? '–' : `${(100 * g.camMathShare).toFixed(1)} %`} (goal ≤ 10 %); gradient CAMs together / Grad-CAM ${g.gradientOverGradcam?.toFixed(3) ?? '–'}× (goal ≤ 1.3×); all / Grad-CAM ${g.allOverGradcam?.toFixed(3) ?? '–'}×`);
  }
  return {
    model: path, adapter, date: new Date().toISOString(), layer: layerInfo!, input: inShape, importMs,
    bare: `Model.grad(x, { wrt: ['${layer}'], target: { classes: 'argmax' } }) and the readback of ∂(top-class logit)/∂layer`,
    readback: 'every map the call made ([N, H, W] per method), in one readTensors',
    batches, goals,
  };
}

// ---------------------------------------------------------------------------------------
// Sweeps (issue 9): many-pass methods against as many bare batched forward passes

export interface SweepBenchOptions {
  methods: string[];
  layer: string;
  /** RISE's masks. */
  masks: number;
  /** Opti-CAM's iterations. */
  iterations: number;
  /** Images per bare forward pass (the sweeps pick their own chunks from the binding limit). */
  bareBatch: number;
  /** Bare forward passes timed for the throughput (whole batches). */
  bareImages: number;
  /** Most rows per sweep pass (explain's batchSize); default: as many as the binding limit allows. */
  sweepBatch?: number;
  json: boolean;
}

export interface SweepBenchEntry {
  method: string;
  /** Forward passes the method runs for one image (suffix passes for Ablation-/Pixab-CAM; forward+backward for Opti-CAM). */
  passes: number;
  passKind: SweepPassKind;
  wallMs: number;
  passesPerSec: number;
  /** Bare forward passes per second ÷ this method's passes per second (≤ 1.1 is the goal for full forward passes). */
  ratioToBare: number;
}

export interface SweepBench {
  model: string;
  adapter: string;
  date: string;
  layer: { requested: string; tensor: string; shape: number[] };
  bare: { batch: number; images: number; ms: number; passesPerSec: number };
  entries: SweepBenchEntry[];
}

export async function runSweepBench(path: string, o: SweepBenchOptions): Promise<SweepBench> {
  const methods = resolveMethods(o.methods);
  const notSweep = methods.filter((m) => !m.sweep);
  if (notSweep.length) throw new Error(`--sweeps times many-pass methods; ${notSweep.map((m) => m.name).join(', ')} run in one pass (use --explain)`);
  const ctx = await GpuContext.create();
  const model = loadModel(ctx, path);
  const log = (s: string) => {
    if (!o.json) console.log(s);
  };
  try {
    const inShape = model.defaultInputShape(1).slice(1);
    const per = inShape.reduce((a, b) => a * b, 1);
    const [, H, W] = inShape;
    const adapter = ctx.adapterInfo.description || ctx.adapterInfo.device;
    // Bare: whole batches of seeded images through Model.run, one readback at the end.
    const xb = Tensor.fromData(ctx, seededInput(o.bareBatch * per), [o.bareBatch, ...inShape]);
    const bareRound = async (n: number) => {
      const t0 = performance.now();
      let last: Tensor[] = [];
      for (let i = 0; i < n; i++) {
        for (const t of last) t.dispose();
        const r = await model.run(xb);
        last = [...r.outputs.values()];
      }
      await readTensors(ctx, last);
      for (const t of last) t.dispose();
      return performance.now() - t0;
    };
    await bareRound(1);
    const rounds = Math.max(1, Math.round(o.bareImages / o.bareBatch));
    const bareMs = await bareRound(rounds);
    const bare = { batch: o.bareBatch, images: rounds * o.bareBatch, ms: bareMs, passesPerSec: (rounds * o.bareBatch * 1000) / bareMs };
    xb.dispose();
    log(`sweep bench: ${path} on ${adapter}; bare forward: ${bare.passesPerSec.toFixed(1)} images/s (${bare.images} images in batches of ${bare.batch})`);
    const x = Tensor.fromData(ctx, seededInput(per), [1, ...inShape]);
    const entries: SweepBenchEntry[] = [];
    let layerInfo: SweepBench['layer'] | null = null;
    for (const m of methods) {
      const options = { methods: [m.name], layers: [o.layer], masks: o.masks, iterations: o.iterations, batchSize: o.sweepBatch };
      const once = async () => {
        const t0 = performance.now();
        const r = await explain(model, x, options);
        await readTensors(ctx, r.methods.map((mm) => mm.map));
        const ms = performance.now() - t0;
        const info = { layers: r.layers, poly: r.polyLayers };
        r.dispose();
        return { ms, info };
      };
      // One run each (Score-CAM on ResNet-50 is thousands of passes): it includes compiling the
      // sweep's programs, whose kernels the bare passes have mostly compiled already.
      const timed = await once();
      const first = timed;
      const L = first.info.layers[0];
      layerInfo ??= { requested: L.requested, tensor: L.tensor, shape: L.shape.slice(1) };
      const [K, h, w] = L.shape.slice(1);
      const polyChannels = (first.info.poly ?? []).reduce((s, l) => s + l.shape[1], 0);
      const { passes, kind } = sweepPasses(m.sweep!, m.polyVariant, { K, h, w, polyChannels, H, W, masks: o.masks, iterations: o.iterations, patch: 64, stride: 8 });
      const passesPerSec = (passes * 1000) / timed.ms;
      const e: SweepBenchEntry = { method: m.name, passes, passKind: kind, wallMs: timed.ms, passesPerSec, ratioToBare: bare.passesPerSec / passesPerSec };
      entries.push(e);
      log(`  ${m.name}: ${passes} ${kind} passes in ${(timed.ms / 1000).toFixed(2)} s = ${passesPerSec.toFixed(1)}/s; bare forward ÷ this = ${e.ratioToBare.toFixed(3)}`);
    }
    x.dispose();
    return { model: path, adapter, date: new Date().toISOString(), layer: layerInfo!, bare, entries };
  } finally {
    await model.dispose();
    ctx.destroy();
  }
}

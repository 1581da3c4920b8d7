import type { Model } from '../model.js';
import type { Sym } from '../ops/graph.js';
import { Tape } from '../ops/tape.js';
import { explain, type ExplainOptions, resolveMethods } from '../cam/explain.js';
import { maskInput, type MaskSpace } from '../cam/sweeps.js';
import { runRowSweep, targetScore } from '../cam/rows.js';
import { InputError, ShapeError } from '../runtime/errors.js';
import { hostTensor } from '../runtime/host-tensor.js';
import { formatShape } from '../runtime/shape.js';
import { readTensors, Tensor } from '../runtime/tensor.js';
import { CAUSAL_PRESETS, type CausalPresetName, causalPasses, insertionDeletion } from './causal.js';
import { boxMask, compactness, complexity, cosineDistance, deadZone, energyInside, mapStats, pearson, pointingMaxima, sparseness } from './maps.js';
import type { MetricRecord } from './records.js';
import { cascadeLayers, cascadingRandomization } from './randomization.js';
import { ROAD_PERCENTAGES, type RoadResult, roadScores } from './road.js';
import { spearman, ssim } from './similarity.js';

/**
 * The metric layer (SPEC §2): every metric declared once — its name, what it needs, whether
 * higher is better — and computed in groups that share their GPU work (insertion and deletion
 * share one sweep, AD/AI/AG one pass, the map statistics one program). `evaluate` runs the
 * requested metrics on a batch of images, reads everything back once, and returns one record
 * per (image, method, metric).
 */

export type Box = readonly [number, number, number, number];

export interface MetricDef {
  name: string;
  title: string;
  /** What besides the map it needs: forward passes of the model, ground-truth boxes, the method itself (to recompute maps). */
  needs: readonly ('model' | 'boxes' | 'method')[];
  /** Which way is better, for tables ('none' for sanity checks whose reading is not a ranking). */
  better: 'higher' | 'lower' | 'none';
  group: GroupName;
}

type GroupName = 'causal' | 'confidence' | 'drop25' | 'maps' | 'boxes' | 'coherency' | 'sensitivity' | 'randomization' | 'road' | 'arcc';

export const METRICS: readonly MetricDef[] = [
  { name: 'insertion', title: 'Insertion AUC', needs: ['model'], better: 'higher', group: 'causal' },
  { name: 'deletion', title: 'Deletion AUC', needs: ['model'], better: 'lower', group: 'causal' },
  { name: 'ad', title: 'Average Drop %', needs: ['model'], better: 'lower', group: 'confidence' },
  { name: 'ai', title: 'Increase in Confidence %', needs: ['model'], better: 'higher', group: 'confidence' },
  { name: 'ag', title: 'Average Gain %', needs: ['model'], better: 'higher', group: 'confidence' },
  { name: 'drop25', title: 'Confidence change removing the top 25 % (%)', needs: ['model'], better: 'lower', group: 'drop25' },
  { name: 'compactness', title: 'Compactness', needs: [], better: 'lower', group: 'maps' },
  { name: 'complexity', title: 'Complexity', needs: [], better: 'lower', group: 'maps' },
  { name: 'sparseness', title: 'Sparseness (Gini)', needs: [], better: 'higher', group: 'maps' },
  { name: 'deadzone', title: 'Dead-zone ratio', needs: [], better: 'lower', group: 'maps' },
  { name: 'doa', title: 'DOA (cosine distance to Activation-CAM)', needs: ['method'], better: 'none', group: 'maps' },
  { name: 'pointing', title: 'Pointing game', needs: ['boxes'], better: 'higher', group: 'boxes' },
  { name: 'energy', title: 'Energy pointing game', needs: ['boxes'], better: 'higher', group: 'boxes' },
  { name: 'coherency', title: 'Coherency', needs: ['model', 'method'], better: 'higher', group: 'coherency' },
  { name: 'road-morf', title: 'ROAD MoRF (mean score)', needs: ['model'], better: 'lower', group: 'road' },
  { name: 'road-lerf', title: 'ROAD LeRF (mean score)', needs: ['model'], better: 'higher', group: 'road' },
  { name: 'road', title: 'ROAD combined (LeRF − MoRF)/2', needs: ['model'], better: 'higher', group: 'road' },
  { name: 'arcc', title: 'ARCC', needs: ['model', 'method'], better: 'higher', group: 'arcc' },
  { name: 'sensitivity', title: 'Max-sensitivity', needs: ['model', 'method'], better: 'lower', group: 'sensitivity' },
  { name: 'randomization', title: 'Cascading randomization (Spearman)', needs: ['model', 'method'], better: 'lower', group: 'randomization' },
  { name: 'randomization-ssim', title: 'Cascading randomization (SSIM)', needs: ['model', 'method'], better: 'lower', group: 'randomization' },
];

export const METRIC_NAMES: readonly string[] = METRICS.map((m) => m.name);
const BY_NAME = new Map(METRICS.map((m) => [m.name, m]));

export function resolveMetrics(names: readonly string[]): MetricDef[] {
  if (names.length === 1 && names[0] === 'all') return [...METRICS];
  const out: MetricDef[] = [];
  for (const raw of names) {
    const m = BY_NAME.get(raw.trim().toLowerCase());
    if (!m) throw new InputError(`unknown metric '${raw}'; metrics: ${METRIC_NAMES.join(', ')}, or all`);
    if (!out.includes(m)) out.push(m);
  }
  if (out.length === 0) throw new InputError('no metric asked for');
  return out;
}

export interface EvaluateOptions {
  /** Methods whose maps to judge (computed here, sharing their passes), or ['all']. */
  methods?: readonly string[];
  /** Maps computed elsewhere, [N, H, W], judged under the method name `maps`. */
  maps?: Tensor;
  metrics: readonly string[];
  /** The class each map explains and each metric scores: argmax (default), one for all, or one per image. */
  targets?: 'argmax' | number | readonly number[];
  /** Insertion/deletion preset (default 'polycam') and granularity (default 1 pixel). */
  preset?: CausalPresetName;
  granularity?: number;
  /** Ground-truth boxes per image, [x0, y0, x1, y1) in model-input pixels. */
  boxes?: readonly (readonly Box[])[];
  /** Pointing-game tolerance in pixels (default 0; seed 002 uses 15). */
  pointingTolerance?: number;
  /** Dead-zone rows [from, to) (default: the bottom 54/224 of the rows, as the WALLS notebook). */
  deadRows?: readonly [number, number];
  /** Seed of the sensitivity perturbations (and of seeded methods). */
  seed?: number;
  /**
   * Max-sensitivity: perturbations (default 10), L∞ radius (default 0.02, in the model input's
   * units), Φ = the final map (default) or the method's input attribution (gradient
   * baselines), and optionally the perturbations themselves, [samples, N, C, H, W] (parity
   * with another implementation's draws).
   */
  sensitivity?: { samples?: number; radius?: number; of?: 'map' | 'attribution'; perturbations?: Tensor };
  /** Where AD/AI/AG, drop25 and insertion/deletion replace pixels: the model input (default) or the [0, 1] pixels. */
  maskSpace?: 'input' | 'raw';
  /** The model input's normalization, for maskSpace 'raw' (x = (p − mean)/std). */
  pixels?: { mean: readonly number[]; std: readonly number[] };
  /** Image names for the records (default the index plus imageOffset). */
  names?: readonly (string | number)[];
  imageOffset?: number;
  /** ROAD: percentages (default 10…90), noise std (default 0.01), conjugate-gradient iterations and tolerance. */
  road?: { percentages?: readonly number[]; noise?: number; iterations?: number; tolerance?: number };
  /** Cascading randomization: the layers (default every parameterized one) and the seed of the new weights (default `seed`). */
  randomization?: { layers?: readonly string[]; seed?: number };
  /** Options passed to explain for the methods (layers, score, …). */
  explain?: Omit<ExplainOptions, 'methods' | 'targets'>;
  /** Skip (image, method, metric) triples already known (resuming a journal). */
  skip?: (image: string | number, method: string, metric: string) => boolean;
  /** Forward passes finished so far and the total, as the GPU finishes them. */
  onProgress?: (done: number, total: number) => void;
  maxChunk?: number;
}

export interface EvaluateResult {
  records: MetricRecord[];
  /** The class each image was scored for, and its clean softmax score. */
  targets: number[];
  cleanScores: number[];
  wallMs: number;
}

/** The GPU work of one method's maps for one group of metrics: tensors [N] (or curves [N, P]) read back at the end. */
interface Pending {
  metric: string;
  values: Tensor;
  curve?: { tensor: Tensor; x: number[] };
  /** A [N, P] tensor whose row maximum is recorded as extra.residual (ROAD's solver residual). */
  residual?: Tensor;
  /** A curve read as one [N] tensor per point (with a validity flag each); the value is their mean over valid points. */
  parts?: { values: Tensor[]; valid: Tensor[]; x: number[]; labels: string[] };
  extra?: Record<string, Tensor>;
  /** Turns the item's read values into the record's value (null: undefined, with the reason). */
  finish?: (v: number, i: number, extra: Record<string, number>) => { value: number | null; undefined?: string };
}

const tensorOf = (ctx: Model['ctx'], data: Float32Array, shape: number[], label: string) => Tensor.fromData(ctx, data, shape, label);

/** Runs `metrics` on maps of `x` [N, C, H, W]; one readback for the whole call. */
export async function evaluate(model: Model, x: Tensor, options: EvaluateOptions): Promise<EvaluateResult> {
  const started = performance.now();
  x.assertAlive();
  if (x.shape.length !== 4 || x.shape[0] < 1) throw new ShapeError('evaluate input', `expects NCHW images [N, C, H, W], got ${formatShape(x.shape)}`);
  const [N, C, H, W] = x.shape;
  const metrics = resolveMetrics(options.metrics);
  if (!options.methods?.length && !options.maps) throw new InputError('evaluate: give methods or maps');
  if (options.methods?.length && options.maps) throw new InputError('evaluate: give methods or maps, not both');
  if (options.maps) {
    options.maps.assertAlive();
    if (formatShape(options.maps.shape) !== formatShape([N, H, W])) throw new ShapeError('evaluate: maps', `must be [${N}, ${H}, ${W}] (one map per image at the input's size), got ${formatShape(options.maps.shape)}`);
  }
  const methodNames = options.maps ? ['maps'] : resolveMethods(options.methods!).map((m) => m.name);
  const fromFile = !!options.maps;
  for (const m of metrics) {
    if (fromFile && m.needs.includes('method')) {
      if (!(options.metrics.length === 1 && options.metrics[0] === 'all')) throw new InputError(`metric '${m.name}' recomputes maps with their method; maps given as a file have none (use methods)`);
    }
    if (m.needs.includes('boxes') && !options.boxes) {
      if (!(options.metrics.length === 1 && options.metrics[0] === 'all')) throw new InputError(`metric '${m.name}' needs ground-truth boxes (--boxes)`);
    }
  }
  const wanted = metrics.filter((m) => !(fromFile && m.needs.includes('method')) && !(m.needs.includes('boxes') && !options.boxes));
  if (options.boxes) {
    if (options.boxes.length !== N) throw new InputError(`evaluate: boxes for ${options.boxes.length} images, but the batch has ${N}`);
    options.boxes.forEach((list, i) => list.forEach((b, k) => {
      const [x0, y0, x1, y1] = b;
      if (![x0, y0, x1, y1].every(Number.isFinite) || x0 < 0 || y0 < 0 || x1 > W || y1 > H || x1 <= x0 || y1 <= y0) {
        throw new InputError(`evaluate: box ${k} of image ${i} [${b}] is not a box inside the ${W}×${H} image ([x0, y0, x1, y1) with 0 ≤ x0 < x1 ≤ ${W}, 0 ≤ y0 < y1 ≤ ${H})`);
      }
    }));
  }
  const names = options.names ?? Array.from({ length: N }, (_, i) => i + (options.imageOffset ?? 0));
  if (names.length !== N) throw new InputError(`evaluate: ${names.length} image names for ${N} images`);
  const space: MaskSpace = options.maskSpace === 'raw' ? (options.pixels ?? defaultPixels(C)) : null;
  const ctx = model.ctx;
  const owned: Tensor[] = [];
  const own = <T extends Tensor>(t: T): T => (owned.push(t), t);

  try {
    // The clean pass: targets (argmax on the GPU, or given), the one-hot seeds, p = softmax f_c(x).
    const clean = await cleanPass(model, x, options.targets ?? 'argmax');
    owned.push(clean.seed, clean.p, clean.cls);
    const classes = clean.seed.shape[1];

    // Maps per method: one explain call for every method (shared passes), or the given maps.
    const mapsByMethod = new Map<string, Tensor>();
    let activationMaps: Tensor | null = null;
    const needsActivation = wanted.some((m) => m.name === 'doa');
    if (options.maps) mapsByMethod.set('maps', options.maps);
    else {
      const list = [...methodNames];
      if (needsActivation && !list.includes('activationcam')) list.push('activationcam');
      const r = await explain(model, x, { ...options.explain, methods: list, targets: { weights: clean.seed }, seed: options.seed ?? options.explain?.seed, imageOffset: options.imageOffset });
      for (const m of r.methods) {
        owned.push(m.map, m.raw);
        if (m.weights) owned.push(m.weights);
        if (m.attribution) owned.push(m.attribution);
        if (m.lossCurve) owned.push(m.lossCurve);
        for (const l of m.layerMaps ?? []) owned.push(l.map);
        if (m.method === 'activationcam') activationMaps = m.map;
        if (methodNames.includes(m.method)) mapsByMethod.set(m.method, m.map);
      }
      owned.push(r.targetClass, r.targetScore);
    }

    // Progress: the forward passes each model-based group runs.
    const perMethodPasses = wanted.reduce((n, m) => n + passesOf(m, N, H, W, options), 0);
    const total = perMethodPasses * mapsByMethod.size;
    let done = 0;
    const progress = options.onProgress ? (rows: number) => options.onProgress!((done += rows), total) : undefined;

    const pending = new Map<string, Pending[]>();
    const groups = new Set(wanted.map((m) => m.group));
    const want = (name: string) => wanted.some((m) => m.name === name);
    const image = Array.from({ length: N }, (_, i) => i);
    const region = options.boxes ? own(tensorOf(ctx, boxMask(options.boxes, H, W, 0), [N, H, W], 'eval-boxes')) : null;
    const regionTol = options.boxes && (options.pointingTolerance ?? 0) > 0 ? own(tensorOf(ctx, boxMask(options.boxes, H, W, options.pointingTolerance), [N, H, W], 'eval-boxes-tol')) : region;
    const dead = options.deadRows ?? [H - Math.round((54 / 224) * H), H];
    if (!(dead[0] >= 0 && dead[1] <= H && dead[0] < dead[1] && Number.isInteger(dead[0]) && Number.isInteger(dead[1]))) throw new InputError(`evaluate: dead-zone rows [${dead}] must be whole numbers with 0 ≤ from < to ≤ ${H}`);

    for (const [method, maps] of mapsByMethod) {
      const list: Pending[] = [];
      pending.set(method, list);
      const stats = await runMapsProgram(model, maps, { region, regionTol, activation: activationMaps, dead, want: (n: string) => want(n) || (n === 'complexity' && want('arcc')) });
      for (const t of stats.values()) owned.push(t);
      list.push({ metric: '#stats', values: stats.get('sum')!, extra: { min: stats.get('min')!, max: stats.get('max')! } });
      for (const name of ['compactness', 'complexity', 'sparseness', 'deadzone', 'doa', 'energy'] as const) {
        if (want(name)) list.push({ metric: name, values: stats.get(name)! });
      }
      if (want('pointing')) {
        list.push({ metric: 'pointing', values: stats.get('pointInside')!, extra: { overall: stats.get('pointOverall')! }, finish: (v, _i, e) => ({ value: v === e.overall ? 1 : 0 }) });
      }
      if (groups.has('causal')) {
        const games = (['insertion', 'deletion'] as const).filter((g) => want(g));
        const r = await insertionDeletion(model, { x, maps, seed: clean.seed, image }, { preset: options.preset, granularity: options.granularity, games, space, maxChunk: options.maxChunk, progress });
        for (const [game, c] of r.curves) {
          owned.push(c.curve, c.auc);
          list.push({ metric: game, values: c.auc, curve: { tensor: c.curve, x: r.x } });
        }
      }
      if (groups.has('confidence') || groups.has('drop25')) {
        const r = await confidencePasses(model, x, maps, clean.seed, { space, maxChunk: options.maxChunk, progress, product: groups.has('confidence'), drop25: groups.has('drop25') });
        owned.push(r);
        const col = (k: number) => own(columnOf(ctx, r, k));
        const o = groups.has('confidence') ? col(0) : null;
        const o25 = groups.has('drop25') ? col(groups.has('confidence') ? 1 : 0) : null;
        const p = clean.p;
        const pRead = { p };
        if (o && want('ad')) list.push({ metric: 'ad', values: o, extra: pRead, finish: (v, _i, e) => ({ value: (100 * Math.max(0, e.p - v)) / e.p }) });
        if (o && want('ai')) list.push({ metric: 'ai', values: o, extra: pRead, finish: (v, _i, e) => ({ value: v > e.p ? 100 : 0 }) });
        if (o && want('ag')) list.push({ metric: 'ag', values: o, extra: pRead, finish: (v, _i, e) => (e.p >= 1 ? { value: null, undefined: 'clean confidence is 1' } : { value: (100 * Math.max(0, v - e.p)) / (1 - e.p) }) });
        if (o25 && want('drop25')) list.push({ metric: 'drop25', values: o25, extra: pRead, finish: (v, _i, e) => ({ value: (100 * (v - e.p)) / e.p }) });
      }
      if (groups.has('coherency') && method !== 'maps') {
        const again = await remapped(model, x, maps, method, clean.seed, options, space);
        owned.push(again);
        const rho = await pearsonProgram(model, again, maps);
        owned.push(rho);
        list.push({ metric: 'coherency', values: rho, finish: (v) => ({ value: (v + 1) / 2 }) });
      }
      if (groups.has('road') || groups.has('arcc')) {
        const road = async (order: 'morf' | 'lerf', percentages: readonly number[]): Promise<RoadResult> => {
          const r = await roadScores(model, x, maps, clean.seed, { order, percentages, noise: options.road?.noise, seed: options.seed, images: image.map((i) => i + (options.imageOffset ?? 0)), iterations: options.road?.iterations, tolerance: options.road?.tolerance, maxChunk: options.maxChunk });
          owned.push(r.scores, r.clean, r.diff, r.mean, r.residual);
          if (r.keep) owned.push(r.keep);
          return r;
        };
        if (groups.has('road')) {
          const percentages = options.road?.percentages ?? ROAD_PERCENTAGES;
          const morf = await road('morf', percentages);
          const lerf = await road('lerf', percentages);
          const x100 = [...percentages];
          if (want('road-morf')) list.push({ metric: 'road-morf', values: morf.mean, curve: { tensor: morf.scores, x: x100 }, residual: morf.residual });
          if (want('road-lerf')) list.push({ metric: 'road-lerf', values: lerf.mean, curve: { tensor: lerf.scores, x: x100 }, residual: lerf.residual });
          // pytorch-grad-cam's ROADCombined: (mean LeRF difference − mean MoRF difference)/2; the clean score cancels.
          if (want('road')) list.push({ metric: 'road', values: lerf.mean, extra: { morf: morf.mean }, finish: (v, _i, e) => ({ value: (v - e.morf) / 2 }) });
        }
        if (groups.has('arcc') && method !== 'maps') {
          // pytorch-grad-cam's ARCC (metrics/arcc.py): ROAD at 20/40/60/80 %, scaled ×2 and clipped to
          // [0, 1], complexity and coherency, combined by the harmonic mean its code computes (its
          // docstring says geometric).
          const morf = await road('morf', [20, 40, 60, 80]);
          const lerf = await road('lerf', [20, 40, 60, 80]);
          const again = own(await remapped(model, x, maps, method, clean.seed, options, space));
          const rho = own(await pearsonProgram(model, again, maps));
          const cx = stats.get('complexity') ?? stats.get('compactness');
          if (!cx) throw new Error('internal: ARCC needs the complexity of the maps');
          list.push({
            metric: 'arcc', values: lerf.mean, extra: { morf: morf.mean, rho, complexity: cx },
            finish: (v, _i, e) => {
              const roadV = Math.min(1, Math.max(0, v - e.morf));
              const coherency = (e.rho + 1) / 2;
              return { value: 3 / (1 / (coherency + 1e-8) + 1 / (1 - e.complexity + 1e-8) + 1 / (roadV + 1e-8)) };
            },
          });
        }
      }
      if (groups.has('randomization') && method !== 'maps') list.push(...(await randomizationCurves(model, x, maps, method, clean.seed, options, want)));
      if (groups.has('sensitivity') && method !== 'maps') {
        const phi = options.sensitivity?.of === 'attribution' ? own(await mapsOf(model, x, method, clean.seed, options, 'attribution')) : maps;
        const s = await maxSensitivity(model, x, phi, method, clean.seed, options);
        owned.push(s);
        list.push({ metric: 'sensitivity', values: s });
      }
    }

    // One readback for everything.
    const all: Tensor[] = [clean.cls, clean.p];
    for (const list of pending.values()) for (const p of list) {
      all.push(p.values);
      if (p.curve) all.push(p.curve.tensor);
      if (p.parts) all.push(...p.parts.values, ...p.parts.valid);
      if (p.residual) all.push(p.residual);
      if (p.parts) owned.push(...p.parts.values, ...p.parts.valid);
      for (const t of Object.values(p.extra ?? {})) all.push(t);
    }
    const uniq = [...new Set(all)];
    const read = await readTensors(ctx, uniq);
    const host = new Map(uniq.map((t, i) => [t, read[i]]));
    const cls = Array.from(host.get(clean.cls)!, (v) => Math.round(v));
    const pClean = Array.from(host.get(clean.p)!);
    const records: MetricRecord[] = [];
    for (const [method, list] of pending) {
      const st = list.find((p) => p.metric === '#stats')!;
      const sums = host.get(st.values)!;
      const mins = host.get(st.extra!.min)!;
      const maxs = host.get(st.extra!.max)!;
      for (const p of list) {
        if (p.metric === '#stats') continue;
        const v = host.get(p.values)!;
        const curve = p.curve ? host.get(p.curve.tensor)! : null;
        const P = p.curve?.x.length ?? 0;
        const extras = Object.entries(p.extra ?? {}).map(([k, t]) => [k, host.get(t)!] as const);
        for (let i = 0; i < N; i++) {
          if (options.skip?.(names[i], method, p.metric)) continue;
          const rec: MetricRecord = { image: names[i], method, metric: p.metric, target: cls[i], value: null };
          if (!Number.isFinite(sums[i])) rec.undefined = 'NaN or infinity in the map';
          else if (maxs[i] - mins[i] <= 0) rec.undefined = 'constant map';
          else {
            const e = Object.fromEntries(extras.map(([k, a]) => [k, k === 'p' ? pClean[i] : a[i]]));
            const out = p.finish ? p.finish(v[i], i, e) : { value: v[i] };
            rec.value = out.value !== null && Number.isFinite(out.value) ? out.value : null;
            if (rec.value === null) rec.undefined = out.undefined ?? 'undefined for this map (division by zero)';
            if (curve) {
              rec.curve = Array.from(curve.subarray(i * P, (i + 1) * P));
              rec.curveX = p.curve!.x;
            }
            if (p.parts) {
              // One point per cascade step; a step where the pair is undefined (a constant map) is null.
              const pts = p.parts.values.map((t, k) => (host.get(p.parts!.valid[k])![i] > 0 ? host.get(t)![i] : null));
              delete rec.undefined;
              const ok = pts.filter((q): q is number => q !== null);
              rec.value = ok.length ? ok.reduce((a, b) => a + b, 0) / ok.length : null;
              if (rec.value === null) rec.undefined = 'undefined at every step (constant maps)';
              rec.curve = pts.map((q) => q ?? Number.NaN);
              rec.curveX = p.parts.x;
              rec.extra = { layers: p.parts.labels.join(' '), last: pts[pts.length - 1] };
            }
          }
          if (p.metric === 'insertion' || p.metric === 'deletion') rec.extra = { preset: options.preset ?? 'polycam', granularity: options.granularity ?? 1 };
          if (p.residual && rec.value !== null) {
            const res = host.get(p.residual)!;
            const P2 = res.length / N;
            rec.extra = { ...rec.extra, residual: Math.max(...Array.from(res.subarray(i * P2, (i + 1) * P2))) };
          }
          records.push(rec);
        }
      }
    }
    return { records, targets: cls, cleanScores: pClean, wallMs: performance.now() - started };
  } finally {
    for (const t of new Set(owned)) t.dispose();
  }
}

function defaultPixels(C: number): { mean: number[]; std: number[] } {
  if (C === 3) return { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  throw new InputError(`evaluate: mask space 'raw' on ${C}-channel inputs needs the normalization (pixels: mean/std, or a model card)`);
}

function passesOf(m: MetricDef, N: number, H: number, W: number, o: EvaluateOptions): number {
  switch (m.name) {
    case 'insertion': case 'deletion': return N * causalPasses(H, W, { preset: o.preset, granularity: o.granularity, games: [m.name] });
    case 'ad': return N;
    case 'drop25': return N;
    case 'road-morf': case 'road-lerf': return N * (o.road?.percentages ?? ROAD_PERCENTAGES).length;
    case 'arcc': return N * 8;
    default: return 0;
  }
}

/** The clean pass: each image's target class, its one-hot seed [N, classes] and p = softmax f_c(x) [N]. */
export async function cleanPass(model: Model, x: Tensor, targets: 'argmax' | number | readonly number[]): Promise<{ seed: Tensor; p: Tensor; cls: Tensor }> {
  const [N, ...image] = x.shape;
  const probe = model.tape(1, { image });
  const classes = probe.logits.shape.at(-1)!;
  let given: Tensor | null = null;
  if (targets !== 'argmax') {
    const list = typeof targets === 'number' ? new Array<number>(N).fill(targets) : [...targets];
    if (list.length !== N) throw new InputError(`evaluate: ${list.length} target classes for a batch of ${N}; give one per image (batches are never truncated)`);
    const w = new Float32Array(N * classes);
    list.forEach((c, i) => {
      if (!Number.isInteger(c) || c < 0 || c >= classes) throw new InputError(`evaluate: class ${c} of image ${i} is not in [0, ${classes})`);
      w[i * classes + c] = 1;
    });
    given = Tensor.fromData(model.ctx, w, [N, classes], 'eval-targets');
  }
  try {
    const run = await model.runProgram({
      key: `eval-clean|${image}|${given ? 'given' : 'argmax'}`,
      batch: N,
      build: (nb) => {
        const t = new Tape();
        const xin = t.input('x', [nb, ...image]);
        const mt = model.tape(nb, { image, onto: { tape: t, input: xin, prefix: 'clean/' } });
        const seed = given ? t.input('given', [nb, classes]) : t.onehotArgmax(mt.logits);
        const p = targetScore(t, mt.logits, seed, 'softmax');
        const ids = t.constant(hostTensor('float32', [1, classes], Float32Array.from({ length: classes }, (_, c) => c)));
        const cls = t.reshape(t.reduce('sum', t.mul(seed, ids), [1]), [nb]);
        return { graph: t.graph, names: new Map([['seed', seed.name], ['p', p.name], ['cls', cls.name]]), shared: (n: string) => model.isModelConstant(n) };
      },
      feeds: given ? { x: { tensor: x, batchAxis: 0 }, given: { tensor: given, batchAxis: 0 } } : { x: { tensor: x, batchAxis: 0 } },
      results: { seed: { batchAxis: 0 }, p: { batchAxis: 0 }, cls: { batchAxis: 0 } },
      label: 'eval-clean',
    });
    return { seed: run.results.get('seed')!, p: run.results.get('p')!, cls: run.results.get('cls')! };
  } finally {
    given?.dispose();
  }
}

/** The map-only metrics of one method's maps, in one program; [N] each. */
async function runMapsProgram(model: Model, maps: Tensor, o: { region: Tensor | null; regionTol: Tensor | null; activation: Tensor | null; dead: readonly [number, number]; want: (n: string) => boolean }): Promise<Map<string, Tensor>> {
  const [N, H, W] = maps.shape;
  const feeds: Record<string, { tensor: Tensor; batchAxis: 0 }> = { maps: { tensor: maps, batchAxis: 0 } };
  if (o.region) feeds.region = { tensor: o.region, batchAxis: 0 };
  if (o.regionTol && o.regionTol !== o.region) feeds.region_tol = { tensor: o.regionTol, batchAxis: 0 };
  if (o.activation && o.want('doa')) feeds.activation = { tensor: o.activation, batchAxis: 0 };
  const names = ['sum', 'min', 'max'];
  const run = await model.runProgram({
    key: `eval-maps|${H}|${W}|${Object.keys(feeds)}|${o.dead}|${['compactness', 'complexity', 'sparseness', 'deadzone', 'pointing', 'energy', 'doa'].filter(o.want)}`,
    batch: N,
    split: false,
    build: (nb) => {
      const t = new Tape();
      const s = t.input('maps', [nb, H, W]);
      const out = new Map<string, Sym>();
      const st = mapStats(t, s);
      out.set('sum', st.sum).set('min', st.min).set('max', st.max);
      if (o.want('compactness')) out.set('compactness', compactness(t, s));
      if (o.want('complexity')) out.set('complexity', complexity(t, s));
      if (o.want('sparseness')) out.set('sparseness', sparseness(t, s));
      if (o.want('deadzone')) out.set('deadzone', deadZone(t, s, o.dead[0], o.dead[1]));
      if (feeds.activation) out.set('doa', cosineDistance(t, s, t.input('activation', [nb, H, W])));
      if (feeds.region) {
        const region = t.input('region', [nb, H, W]);
        const tol = feeds.region_tol ? t.input('region_tol', [nb, H, W]) : region;
        if (o.want('energy')) out.set('energy', energyInside(t, s, region));
        if (o.want('pointing')) {
          const pm = pointingMaxima(t, s, tol);
          out.set('pointInside', pm.inside).set('pointOverall', pm.overall);
        }
      }
      for (const k of out.keys()) if (!names.includes(k)) names.push(k);
      return { graph: t.graph, names: new Map([...out].map(([k, v]) => [k, v.name])) };
    },
    feeds,
    results: Object.fromEntries(['sum', 'min', 'max', 'compactness', 'complexity', 'sparseness', 'deadzone', 'doa', 'energy', 'pointInside', 'pointOverall']
      .filter((k) => ['sum', 'min', 'max'].includes(k) || (k === 'doa' ? !!feeds.activation : k === 'energy' || k.startsWith('point') ? !!feeds.region && o.want(k.startsWith('point') ? 'pointing' : k) : o.want(k)))
      .map((k) => [k, { batchAxis: 0 as const }])),
    label: 'eval-maps',
  });
  return run.results;
}

/**
 * AD/AI/AG's masked pass o = f_c(x ⊙ S) (softmax) and drop25's pass with the top 25 % of
 * pixels (by rank, ties by index) zeroed: rows (image, kind), [N, kinds] scores.
 */
async function confidencePasses(model: Model, x: Tensor, maps: Tensor, seed: Tensor, o: { space: MaskSpace; maxChunk?: number; progress?: (rows: number) => void; product: boolean; drop25: boolean }): Promise<Tensor> {
  const [N, C, H, W] = x.shape;
  const kinds = [o.product ? 'product' : null, o.drop25 ? 'drop25' : null].filter((k): k is string => !!k);
  const K = kinds.length;
  const rows = N * K;
  const keep = Math.ceil(0.25 * H * W);
  const fields = { image: new Float32Array(rows), top: new Float32Array(rows) };
  for (let r = 0; r < rows; r++) {
    fields.image[r] = Math.floor(r / K);
    fields.top[r] = kinds[r % K] === 'drop25' ? 1 : 0;
  }
  let ranks: Tensor | null = null;
  if (o.drop25) {
    const run = await model.runProgram({
      key: `eval-ranks|${N}|${H}|${W}`,
      batch: 1,
      split: false,
      build: () => {
        const t = new Tape();
        const m = t.reshape(t.input('maps', [N, H, W]), [N, H * W]);
        const order = t.sort(m, { descending: true, output: 'indices' });
        return { graph: t.graph, names: new Map([['ranks', t.sort(order, { descending: false, output: 'indices' }).name]]) };
      },
      feeds: { maps: { tensor: maps, batchAxis: null } },
      results: { ranks: { batchAxis: null } },
      label: 'eval-ranks',
    });
    ranks = run.results.get('ranks')!;
  }
  try {
    const shared: Record<string, Tensor> = { x, maps, seed };
    if (ranks) shared.ranks = ranks;
    const flat = await runRowSweep(model, {
      key: `eval-confidence|${C}|${H}|${W}|${kinds}|${JSON.stringify(o.space)}`,
      label: 'eval-confidence',
      rows,
      fields,
      shared,
      maxChunk: o.maxChunk,
      progress: o.progress,
      build: (t, nb, row, sh) => {
        const s = t.reshape(t.gatherRows(sh.maps, row.image), [nb, 1, H, W]);
        let m = s;
        if (sh.ranks) {
          // drop25 rows: keep = 1 where rank ≥ ⌈H·W/4⌉; product rows: the map itself.
          const rank = t.reshape(t.gatherRows(sh.ranks, row.image), [nb, 1, H, W]);
          const one = t.broadcast(t.scalar(1), rank.shape);
          const zero = t.broadcast(t.scalar(0), rank.shape);
          const kept = t.where(t.activation(t.sub(rank, t.scalar(keep - 0.5)), { kind: 'relu' }), one, zero);
          const top = t.reshape(row.top, [nb, 1, 1, 1]);
          m = t.add(s, t.mul(top, t.sub(kept, s)));
        }
        const input = maskInput(t, t.gatherRows(sh.x, row.image), m, o.space);
        const mt = model.tape(nb, { image: [C, H, W], onto: { tape: t, input, prefix: 'conf/' } });
        return targetScore(t, mt.logits, t.gatherRows(sh.seed, row.image), 'softmax');
      },
    });
    return flat.reshaped([N, K]);
  } finally {
    ranks?.dispose();
  }
}

/** Column k of [N, K] as its own tensor [N]. */
function columnOf(ctx: Model['ctx'], a: Tensor, k: number): Tensor {
  const [N, K] = a.shape;
  const out = Tensor.empty(ctx, [N], 'eval-column');
  const enc = ctx.device.createCommandEncoder({ label: 'eval-column' });
  for (let i = 0; i < N; i++) enc.copyBufferToBuffer(a.buffer, a.byteOffset + (i * K + k) * 4, out.buffer, out.byteOffset + i * 4, 4);
  ctx.device.queue.submit([enc.finish()]);
  return out;
}

/** The method's maps of x ⊙ S (coherency): one explain call on the masked images. */
async function remapped(model: Model, x: Tensor, maps: Tensor, method: string, seed: Tensor, o: EvaluateOptions, space: MaskSpace): Promise<Tensor> {
  const [N, C, H, W] = x.shape;
  const run = await model.runProgram({
    key: `eval-masked|${C}|${H}|${W}|${JSON.stringify(space)}`,
    batch: N,
    split: false,
    build: (nb) => {
      const t = new Tape();
      const masked = maskInput(t, t.input('x', [nb, C, H, W]), t.reshape(t.input('maps', [nb, H, W]), [nb, 1, H, W]), space);
      return { graph: t.graph, names: new Map([['masked', masked.name]]) };
    },
    feeds: { x: { tensor: x, batchAxis: 0 }, maps: { tensor: maps, batchAxis: 0 } },
    results: { masked: { batchAxis: 0 } },
    label: 'eval-masked',
  });
  const masked = run.results.get('masked')!;
  try {
    return await mapsOf(model, masked, method, seed, o);
  } finally {
    masked.dispose();
  }
}

/**
 * Cascading randomization (SPEC §2; Adebayo et al. 2018; Quantus MPRT): the model's layers
 * re-initialized cumulatively from the output backwards, the method's maps recomputed after
 * each step, and their Spearman rank correlation (average ranks for ties, from the GPU sort)
 * and SSIM (Quantus's flattened layout) with the original maps. The value is the mean over
 * the steps (Quantus's return_average_correlation); the curve is per step.
 */
async function randomizationCurves(model: Model, x: Tensor, maps: Tensor, method: string, seed: Tensor, o: EvaluateOptions, want: (n: string) => boolean): Promise<Pending[]> {
  const [N, H, W] = maps.shape;
  const layers = cascadeLayers(model.graph, { layers: o.randomization?.layers });
  if (layers.length === 0) throw new InputError(`randomization: ${model.graph.file} has no parameterized layer (Conv, Gemm, MatMul with constant weights, BatchNormalization) to re-initialize`);
  const sp: { values: Tensor[]; valid: Tensor[] } = { values: [], valid: [] };
  const ss: { values: Tensor[]; valid: Tensor[] } = { values: [], valid: [] };
  const labels: string[] = [];
  for await (const step of cascadingRandomization(model, { seed: o.randomization?.seed ?? o.seed ?? 0, layers: o.randomization?.layers })) {
    labels.push(step.layer.module ?? step.layer.node);
    const again = await mapsOf(step.model, x, method, seed, o);
    try {
      const run = await model.runProgram({
        key: `eval-similarity|${N}|${H}|${W}`,
        batch: N,
        split: false,
        build: (nb) => {
          const t = new Tape();
          const a = t.input('a', [nb, H, W]);
          const b = t.input('b', [nb, H, W]);
          const r = spearman(t, t.reshape(a, [nb, H * W]), t.reshape(b, [nb, H * W]));
          const q = ssim(t, a, b);
          return { graph: t.graph, names: new Map([['sp', r.value.name], ['spv', r.valid.name], ['ss', q.value.name], ['ssv', q.valid.name]]) };
        },
        feeds: { a: { tensor: maps, batchAxis: 0 }, b: { tensor: again, batchAxis: 0 } },
        results: { sp: { batchAxis: 0 }, spv: { batchAxis: 0 }, ss: { batchAxis: 0 }, ssv: { batchAxis: 0 } },
        label: 'eval-randomization',
      });
      sp.values.push(run.results.get('sp')!);
      sp.valid.push(run.results.get('spv')!);
      ss.values.push(run.results.get('ss')!);
      ss.valid.push(run.results.get('ssv')!);
    } finally {
      again.dispose();
    }
  }
  const x01 = labels.map((_, k) => k + 1);
  const out: Pending[] = [];
  const drop = (p: { values: Tensor[]; valid: Tensor[] }) => [...p.values, ...p.valid].forEach((t) => t.dispose());
  if (want('randomization')) out.push({ metric: 'randomization', values: sp.values[0], parts: { ...sp, x: x01, labels } });
  else drop(sp);
  if (want('randomization-ssim')) out.push({ metric: 'randomization-ssim', values: ss.values[0], parts: { ...ss, x: x01, labels } });
  else drop(ss);
  return out;
}

/** One method's final maps (or input attributions) of images x for the given seeds, everything else released. */
async function mapsOf(model: Model, x: Tensor, method: string, seed: Tensor, o: EvaluateOptions, of: 'map' | 'attribution' = 'map'): Promise<Tensor> {
  const r = await explain(model, x, { ...o.explain, methods: [method], targets: { weights: seed }, seed: o.seed ?? o.explain?.seed, imageOffset: o.imageOffset });
  let keep: Tensor | null = null;
  for (const m of r.methods) {
    const wanted: Tensor | null = m.method === method && !keep ? (of === 'map' ? m.map : m.attribution) : null;
    if (of === 'attribution' && m.method === method && !m.attribution) throw new InputError(`sensitivity of the attribution: '${method}' has no input attribution (only the gradient baselines do)`);
    for (const t of [m.map, m.raw, m.weights, m.attribution, m.lossCurve, ...(m.layerMaps ?? []).map((l) => l.map)]) if (t && t !== wanted) t.dispose();
    if (wanted) keep = wanted;
  }
  r.targetClass.dispose();
  r.targetScore.dispose();
  return keep!;
}

async function pearsonProgram(model: Model, a: Tensor, b: Tensor): Promise<Tensor> {
  const [N, H, W] = a.shape;
  const run = await model.runProgram({
    key: `eval-pearson|${H}|${W}`,
    batch: N,
    split: false,
    build: (nb) => {
      const t = new Tape();
      const r = pearson(t, t.input('a', [nb, H, W]), t.input('b', [nb, H, W]));
      return { graph: t.graph, names: new Map([['r', r.name]]) };
    },
    feeds: { a: { tensor: a, batchAxis: 0 }, b: { tensor: b, batchAxis: 0 } },
    results: { r: { batchAxis: 0 } },
    label: 'eval-pearson',
  });
  return run.results.get('r')!;
}

/**
 * Max-sensitivity (SPEC §2; Captum's sensitivity_max): n seeded perturbations δ uniform in the
 * L∞ ball of radius r around each image (the model input's units), the maps of every x + δ
 * recomputed in one explain call, and max_j ‖Φ(x + δ_j) − Φ(x)‖_F / ‖Φ(x)‖_F. [N].
 */
async function maxSensitivity(model: Model, x: Tensor, maps: Tensor, method: string, seed: Tensor, o: EvaluateOptions): Promise<Tensor> {
  const [N, C, H, W] = x.shape;
  const n = o.sensitivity?.samples ?? 10;
  const radius = o.sensitivity?.radius ?? 0.02;
  if (!(Number.isInteger(n) && n >= 1)) throw new InputError(`sensitivity: samples must be a whole number ≥ 1, got ${n}`);
  if (!(radius > 0 && Number.isFinite(radius))) throw new InputError(`sensitivity: radius must be a positive number, got ${radius}`);
  const rows = N * n;
  const ctx = model.ctx;
  const rowImage = Tensor.fromData(ctx, Float32Array.from({ length: rows }, (_, r) => Math.floor(r / n)), [rows], 'sens-image');
  const rowKey = Tensor.fromData(ctx, Float32Array.from({ length: rows }, (_, r) => (o.imageOffset ?? 0) * n + r), [rows], 'sens-key');
  const seedNum = ((o.seed ?? 0) ^ 0x5e75) >>> 0;
  const given = o.sensitivity?.perturbations ?? null;
  if (given && formatShape(given.shape) !== formatShape([n, N, C, H, W])) throw new ShapeError('sensitivity: perturbations', `must be [${n}, ${N}, ${C}, ${H}, ${W}] (samples, images, …), got ${formatShape(given.shape)}`);
  // Row r = i·n + s reads perturbation s of image i, row s·N + i of the given tensor.
  const givenRow = given ? Tensor.fromData(ctx, Float32Array.from({ length: rows }, (_, r) => (r % n) * N + Math.floor(r / n)), [rows], 'sens-given-row') : null;
  try {
    const pert = await model.runProgram({
      key: `eval-perturb|${N}|${C}|${H}|${W}|${n}|${radius}|${seedNum}|${given ? 'given' : 'seeded'}`,
      batch: rows,
      split: false,
      build: (nb) => {
        const t = new Tape();
        const xs = t.input('x', [N, C, H, W]);
        const img = t.input('image', [nb]);
        const key = t.input('key', [nb]);
        const seedAll = t.input('seed', [N, seed.shape[1]]);
        const delta = given ? t.gatherRows(t.input('given', [n * N, C * H * W]), t.input('given_row', [nb])) : t.random(key, [nb, C * H * W], { dist: 'uniform', seed: seedNum, stream: 0, a: -radius, b: radius });
        const xp = t.add(t.gatherRows(xs, img), t.reshape(delta, [nb, C, H, W]));
        return { graph: t.graph, names: new Map([['xp', xp.name], ['seedp', t.gatherRows(seedAll, img).name]]) };
      },
      feeds: {
        x: { tensor: x, batchAxis: null },
        seed: { tensor: seed, batchAxis: null },
        image: { tensor: rowImage, batchAxis: 0 },
        key: { tensor: rowKey, batchAxis: 0 },
        ...(given && givenRow ? { given: { tensor: given.reshaped([n * N, C * H * W]), batchAxis: null }, given_row: { tensor: givenRow, batchAxis: 0 as const } } : {}),
      },
      results: { xp: { batchAxis: 0 }, seedp: { batchAxis: 0 } },
      label: 'eval-perturb',
    });
    const xp = pert.results.get('xp')!;
    const seedp = pert.results.get('seedp')!;
    let again: Tensor;
    try {
      again = await mapsOf(model, xp, method, seedp, { ...o, imageOffset: 0 }, o.sensitivity?.of ?? 'map');
    } finally {
      xp.dispose();
      seedp.dispose();
    }
    try {
      return await sensitivityOf(model, again, maps, rowImage, n);
    } finally {
      again.dispose();
    }
  } finally {
    rowImage.dispose();
    rowKey.dispose();
    givenRow?.dispose();
  }
}

/** max over each image's n perturbed maps of ‖Φ_j − Φ‖ / ‖Φ‖. */
export async function sensitivityOf(model: Model, perturbed: Tensor, maps: Tensor, rowImage: Tensor, n: number): Promise<Tensor> {
  const N = maps.shape[0];
  const per = maps.size / N;
  const [H, W] = [1, per];
  const run = await model.runProgram({
    key: `eval-sensitivity|${N}|${H}|${W}|${n}`,
    batch: 1,
    split: false,
    build: () => {
      const t = new Tape();
      const phi = t.input('maps', [N, H * W]);
      const pj = t.input('perturbed', [N * n, H * W]);
      const img = t.input('image', [N * n]);
      const diff = t.sub(pj, t.gatherRows(phi, img));
      const dn = t.activation(t.reduce('sum', t.mul(diff, diff), [1]), { kind: 'sqrt' });
      const norm = t.activation(t.reduce('sum', t.mul(phi, phi), [1]), { kind: 'sqrt' });
      const rel = t.div(t.reshape(dn, [N, n]), norm);
      return { graph: t.graph, names: new Map([['s', t.reshape(t.reduce('max', rel, [1]), [N]).name]]) };
    },
    feeds: { maps: { tensor: maps.reshaped([N, H * W]), batchAxis: null }, perturbed: { tensor: perturbed.reshaped([N * n, H * W]), batchAxis: null }, image: { tensor: rowImage, batchAxis: null } },
    results: { s: { batchAxis: null } },
    label: 'eval-sensitivity',
  });
  return run.results.get('s')!;
}

export { CAUSAL_PRESETS };

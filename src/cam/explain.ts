import { Model, type ModelTape } from '../model.js';
import type { GraphOp, Sym } from '../ops/graph.js';
import type { Tape } from '../ops/tape.js';
import type { ProgramFeed, ProgramResultSpec } from '../ops/program.js';
import { InputError, ShapeError } from '../runtime/errors.js';
import { hostTensor } from '../runtime/host-tensor.js';
import { formatShape } from '../runtime/shape.js';
import { Tensor } from '../runtime/tensor.js';
import { gradients } from '../ops/autodiff.js';
import { largestActivationBytes } from '../ops/compile.js';
import { finalMap, finerObjective, fuseLayerCam, layerMap } from './math.js';
import { type CamMethod, type LayerInputs, METHOD_BY_NAME, METHODS, type SampleFamily } from './methods.js';
import { uniformSigned } from './random.js';
import { runOptiCam } from './opticam.js';
import { autoPolyLayers, checkPolyLayers, type PolyLayerInfo, runPolyCam } from './polycam.js';
import { runAblationSweep, runOcclusionSweep, runPixabSweep, runRiseSweep, runScoreSweep, SWEEPS, sweepPasses, type SweepResult } from './sweeps.js';

export const METHOD_NAMES: readonly string[] = METHODS.map((m) => m.name);

/**
 * Whose score to explain: 'argmax' (on the GPU), one class for all, one per image, each
 * image's K best classes, or a weight vector per image (a GPU tensor [N, C]: y = Σ_c w_c f_c).
 */
export type TargetSpec = 'argmax' | number | readonly number[] | { topK: number } | { weights: Tensor };

export interface ExplainOptions {
  /** Method names, or ['all']. */
  methods: readonly string[];
  /** Target layers: tensor names, node names, torch module paths, or 'auto' (default). */
  layers?: readonly string[];
  /** Whose score to explain: argmax (default, on the GPU), one class for all, one per image, or each image's top K. */
  targets?: TargetSpec;
  /** y_c is the logit (default) or the softmax probability. */
  score?: 'logit' | 'softmax';
  /** Seed of Random-CAM's weights. */
  seed?: number;
  /**
   * Index of this batch's first image in a larger set explained in several calls, so that
   * seeded values follow the image, not its place in the call (default 0).
   */
  imageOffset?: number;
  /** Most images per pass (the device's binding limits may split further). */
  batchSize?: number;
  /** Per-launch GPU timestamps, attributed to each method (slower: one compute pass per launch). */
  profile?: boolean;
  /**
   * How several layers combine: 'mean' (default, as pytorch-grad-cam does for every method:
   * the mean of the per-layer normalized maps, normalized) or 'layercam' (LayerCAM's own:
   * shallow layers tanh-scaled, fused by max).
   */
  fusion?: 'mean' | 'layercam';
  /** The gradient method Finer-CAM wraps (default 'gradcam'): it runs on Finer-CAM's objective. */
  finerBase?: string;
  /** Score sweeps upsample their activation masks with align_corners = true (pytorch-grad-cam's Score-CAM). */
  alignCorners?: boolean;
  /** Score sweeps subtract y_c(x) from every score before the softmax (torch-cam). */
  scoreBaseline?: boolean;
  /** Score-CAM, IS-CAM and SS-CAM as SPEC §1 says ('spec', default) or as torch-cam's code does ('torchcam', for parity). */
  sweepStyle?: 'spec' | 'torchcam';
  /** RISE's number of masks (default 4000; SPEC's options 6000, 8000). */
  masks?: number;
  /** Occlusion's patch side, stride and fill (defaults 64, 8, 0). */
  occlusion?: { patch?: number; stride?: number; fill?: number };
  /** Opti-CAM: iterations (50), Adam's learning rate (0.1), loss 'plain' (default) or 'norm'. */
  iterations?: number;
  lr?: number;
  optiLoss?: 'plain' | 'norm';
  /**
   * How the model input relates to [0, 1] pixels (x = (p − mean)/std per channel), for
   * methods that mask pixels (Opti-CAM). Default ImageNet's for 3-channel inputs.
   */
  pixels?: { mean: readonly number[]; std: readonly number[] };
  /**
   * Poly-CAM's layers, shallow to deep, or 'auto' (the output before each spatial
   * downsampling, and the last spatial one). Default: `layers` when given, else 'auto'.
   */
  polyLayers?: readonly string[] | 'auto';
  /**
   * Where the masking methods (Score-CAM family, Poly-CAM, RISE, Occlusion) multiply their masks:
   * 'input' (default, SPEC §0: the tensor the model receives) or 'raw' (the [0, 1] pixels, then
   * `pixels`' normalization, as OPTI does). Opti-CAM always masks raw pixels (its SPEC row).
   */
  maskSpace?: 'input' | 'raw';
  /**
   * Progress of the many-pass methods: called with the forward passes finished so far and the
   * total, as the GPU queue finishes them (onSubmittedWorkDone; nothing is read back for it).
   * The score sweeps and Poly-CAM then run their rows in 20 submits; the other sweeps report
   * when each finishes.
   */
  onProgress?: (done: number, total: number) => void;
  /** Poly-CAM's LNorm (default true; false is the paper's ablation). */
  lnorm?: boolean;
  /** Poly-CAM's mask and map normalization: 'minmax' (default, SPEC u()) or POLY's 'percentile'. */
  polyNormalize?: 'minmax' | 'percentile';
}

export interface MethodMaps {
  method: string;
  title: string;
  /** [M, H, W] in [0, 1] at the model's input resolution, one row per (image, target). */
  map: Tensor;
  /** [M, h, w] at the (first) layer's resolution, before relu and normalization. */
  raw: Tensor;
  /** [M, K] channel weights at the (first) layer, where the method has them. */
  weights: Tensor | null;
  /** [M, C, H, W] per-channel input attribution (gradient baselines). */
  attribution: Tensor | null;
  /** Opti-CAM's loss at every iteration, [M, iterations]. */
  lossCurve?: Tensor;
  /** Poly-CAM's map at every layer of its list (P_l finished to [M, H, W]), shallow to deep: a layer slider's frames. */
  layerMaps?: { layer: string; map: Tensor }[];
  /** GPU time of the method's own launches (profile only). */
  gpuMs: number | null;
  /** Wall time of the whole explain call (the methods share one pass). */
  wallMs: number;
}

export interface ExplainRow {
  image: number;
  /** The class explained. */
  target: number;
  /** y_c: its logit, or probability with score 'softmax'. */
  score: number;
}

export interface ExplainResult {
  /** One per map row; read from the GPU on first access (one readback for all of them). */
  rows(): Promise<ExplainRow[]>;
  layers: { requested: string; tensor: string; shape: number[] }[];
  /** Poly-CAM's layer list, when a Poly-CAM variant ran. */
  polyLayers?: { requested: string; tensor: string; shape: number[] }[];
  methods: MethodMaps[];
  /** GPU time of the shared forward/backward pass and everything that is no method's own (profile only). */
  passGpuMs: number | null;
  /** The target class and score tensors ([M] each), for callers that keep everything on the GPU. */
  targetClass: Tensor;
  targetScore: Tensor;
  dispose(): void;
}

/** Other spellings of method names (after lower-casing and dropping separators). */
const METHOD_ALIASES: ReadonlyMap<string, string> = new Map([
  ['polycam±', 'polycam'], ['polycampm', 'polycam'], ['pcam±', 'polycam'], ['pcampm', 'polycam'],
  ['polycamplus', 'polycam+'], ['polycamp', 'polycam+'], ['pcam+', 'polycam+'],
  ['polycamminus', 'polycam-'], ['polycamm', 'polycam-'], ['polycam−', 'polycam-'], ['pcam-', 'polycam-'], ['pcam−', 'polycam-'],
]);

/** A method name as a user may spell it (case, '-', '_' and spaces do not matter; aliases), as its canonical key. */
export function methodNameKey(raw: string): string {
  // A trailing '-' is PCAM−'s minus sign, not a separator.
  const lower = raw.toLowerCase();
  const key = lower.replace(/[-_ ]/g, '') + (lower.endsWith('-') ? '-' : '');
  return METHOD_ALIASES.get(key) ?? key.replace(/plusplus$/, '++');
}

/** Method names as given (case, dashes and underscores do not matter), 'all' expanded. */
export function resolveMethods(names: readonly string[]): CamMethod[] {
  if (names.length === 0) throw new InputError(`no method given; known methods: ${METHOD_NAMES.join(', ')}`);
  const out: CamMethod[] = [];
  for (const raw of names) {
    const key = methodNameKey(raw);
    // 'all': every method of the shared passes (the score sweeps run hundreds to thousands of
    // passes per image and are asked for by name, or together as 'sweeps').
    if (key === 'all' || key === 'sweeps') {
      for (const m of METHODS) if (!out.includes(m) && (key === 'all') === !m.sweep) out.push(m);
      continue;
    }
    const m = METHOD_BY_NAME.get(key);
    if (!m) throw new InputError(`unknown method '${raw}'; known methods: ${METHOD_NAMES.join(', ')}, all, sweeps`);
    if (!out.includes(m)) out.push(m);
  }
  return out;
}

/** The classifier weight matrix behind a GAP → (Flatten) → Gemm/MatMul head fed by `layer`, as [C, K] or [K, C]. */
interface Head {
  weight: string;
  /** true: stored [C, K] (Gemm transB, a Linear layer); false: [K, C]. */
  classMajor: boolean;
}

/** Finds CAM's head on the model tape, or says why there is none. */
function findHead(t: Tape, layer: Sym, layerName: string): Head {
  const ops = t.graph.ops;
  const readers = (name: string) => ops.filter((o) => o.inputs.includes(name));
  const describe = (o: GraphOp | undefined) => (o ? `${o.node.opType} '${o.node.name}'` : 'nothing');
  const fail = (why: string): never => {
    throw new InputError(`CAM needs '${layerName}' to feed GlobalAveragePool → (Flatten) → Gemm/MatMul, the head CAM is defined for; ${why}. Use Grad-CAM (identical for such heads) or another method`);
  };
  const r = readers(layer.name);
  const gap = r.find((o) => o.kind === 'global_pool' && o.pool === 'avg');
  if (!gap) fail(`it feeds ${r.map(describe).join(', ') || 'nothing'}`);
  let cur = gap!.output;
  for (;;) {
    const next = readers(cur);
    if (next.length !== 1) fail(`its pooled value feeds ${next.map(describe).join(', ') || 'nothing'}`);
    const op = next[0];
    if (op.kind === 'alias') {
      cur = op.output;
      continue;
    }
    if (op.kind === 'gemm' && !op.attrs.transA && op.inputs[0] === cur && t.graph.constants.has(op.inputs[1])) {
      return { weight: op.inputs[1], classMajor: op.attrs.transB };
    }
    if (op.kind === 'matmul' && !op.transA && op.inputs[0] === cur && t.graph.constants.has(op.inputs[1])) {
      return { weight: op.inputs[1], classMajor: op.transB === true };
    }
    return fail(`the pooled value feeds ${describe(op)}`);
  }
}

const RANK_FEED = 'camgpu:explain:rank';
/** Most copies of one image per forward pass (bigger groups only lengthen the pass). */
const SAMPLE_GROUP_CAP = 16;
const ROW_FEED = 'camgpu:explain:row';

/**
 * Explains a batch with every requested method from shared passes: the network runs forward
 * once and backward once (for all gradient methods together), the CAM math of every method
 * and layer is recorded on the same tape and compiled into the same plan, and nothing is
 * read back until the caller reads.
 */
export async function explain(model: Model, x: Tensor, options: ExplainOptions): Promise<ExplainResult> {
  const started = performance.now();
  const methods = resolveMethods(options.methods);
  x.assertAlive();
  if (x.shape.length < 2 || x.shape[0] < 1) throw new ShapeError('explain input', `expects [N, …] with N ≥ 1, got ${formatShape(x.shape)}`);
  const batch = x.shape[0];
  const image = x.shape.slice(1);
  const requestedLayers = options.layers && options.layers.length > 0 ? options.layers : ['auto'];
  const needsGrad = methods.some((m) => m.needs === 'class');
  const finerBase = METHOD_BY_NAME.get(options.finerBase ?? 'gradcam');
  if (!finerBase || finerBase.needs !== 'class' || finerBase.inputLevel || finerBase.name.startsWith('smooth')) {
    const usable = METHODS.filter((m) => m.needs === 'class' && !m.inputLevel && !m.name.startsWith('smooth')).map((m) => m.name);
    throw new InputError(`explain: Finer-CAM wraps a gradient CAM at a layer; '${options.finerBase}' is not one (use one of ${usable.join(', ')})`);
  }
  const size: [number, number] = [image[image.length - 2], image[image.length - 1]];
  if (image.length !== 3) throw new ShapeError('explain input', `expects NCHW images, got ${formatShape(x.shape)}`);

  // Rows: one per (image, target). topK repeats each image K times.
  const spec = options.targets ?? 'argmax';
  const weightsTarget = typeof spec === 'object' && 'weights' in spec ? spec.weights : null;
  const topK = typeof spec === 'object' && 'topK' in spec ? spec.topK : 0;
  if (typeof spec === 'object' && 'topK' in spec && (!Number.isInteger(topK) || topK < 1)) throw new InputError(`explain: topK must be a whole number ≥ 1, got ${topK}`);
  const rows = topK > 0 ? batch * topK : batch;

  // Probe a tape at one image: shapes, layers, the class count.
  const polyMethods = methods.filter((m) => m.sweep === 'polycam');
  const givenLayers = options.layers && options.layers.length > 0 && !(options.layers.length === 1 && options.layers[0] === 'auto') ? options.layers : null;
  const polyAsked = options.polyLayers ?? givenLayers ?? 'auto';
  const polyLayers = polyMethods.length === 0 ? [] : polyAsked === 'auto' || (polyAsked.length === 1 && polyAsked[0] === 'auto') ? autoPolyLayers(model, image) : [...polyAsked];
  if (polyMethods.length && polyLayers.length === 0) throw new InputError('explain: Poly-CAM needs at least one layer');
  const probe = model.tape(1, { image, taps: [...requestedLayers, ...polyLayers] });
  const numClasses = probe.logits.shape.at(-1)!;
  const layerInfo = requestedLayers.map((requested) => {
    const sym = probe.taps.get(requested)!;
    const tensor = probe.resolved.taps.get(requested)!.tensor;
    if (sym.shape.length !== 4 || sym.shape[2] * sym.shape[3] < 2) {
      throw new ShapeError(`explain: layer '${requested}' (tensor '${tensor}')`, `has shape ${formatShape(sym.shape)}; CAM layers must be 4-D [N, K, h, w] with h·w > 1. Spatial layers: ${spatialLayers(probe).join(', ')}`);
    }
    return { requested, tensor, shape: [rows, ...sym.shape.slice(1)] };
  });
  const polyInfo: PolyLayerInfo[] = polyLayers.map((requested) => {
    const sym = probe.taps.get(requested)!;
    const tensor = probe.resolved.taps.get(requested)!.tensor;
    if (sym.shape.length !== 4 || sym.shape[2] * sym.shape[3] < 2) {
      throw new ShapeError(`explain: Poly-CAM layer '${requested}' (tensor '${tensor}')`, `has shape ${formatShape(sym.shape)}; layers must be 4-D [N, K, h, w] with h·w > 1. Spatial layers: ${spatialLayers(probe).join(', ')}`);
    }
    const position = probe.tape.graph.ops.findIndex((op) => op.output === sym.name);
    return { requested, tensor, shape: [rows, ...sym.shape.slice(1)], position };
  });
  checkPolyLayers(polyInfo);
  if (topK > numClasses) throw new InputError(`explain: top${topK} asked of a model with ${numClasses} classes`);
  let classes: number[] | null = null;
  if (typeof spec === 'number' || Array.isArray(spec)) {
    classes = typeof spec === 'number' ? new Array<number>(batch).fill(spec) : [...(spec as readonly number[])];
    if (classes.length !== batch) throw new InputError(`explain: ${classes.length} target classes for a batch of ${batch}; give one per image (batches are never truncated)`);
    classes.forEach((c, i) => {
      if (!Number.isInteger(c) || c < 0 || c >= numClasses) throw new InputError(`explain: class ${c} of image ${i} is not in [0, ${numClasses})`);
    });
  }
  if (weightsTarget) {
    weightsTarget.assertAlive();
    if (formatShape(weightsTarget.shape) !== formatShape([batch, numClasses])) {
      throw new ShapeError('explain: target weights', `must be [${batch}, ${numClasses}] (one weight vector per image), got ${formatShape(weightsTarget.shape)}`);
    }
  }
  if (methods.some((m) => m.name === 'cam')) {
    try {
      for (const l of requestedLayers) findHead(probe.tape, probe.taps.get(l)!, l);
    } catch (e) {
      // 'all' means every method that applies; CAM asked for by name must say why it cannot run.
      const byName = options.methods.some((n) => n.toLowerCase() === 'cam');
      if (byName) throw e;
      methods.splice(methods.findIndex((m) => m.name === 'cam'), 1);
    }
  }

  const owned: Tensor[] = [];
  const feeds = new Map<string, ProgramFeed>();
  try {
    let input = x;
    if (topK > 0) {
      input = repeatRows(x, topK);
      owned.push(input);
      const rank = new Float32Array(rows * topK);
      for (let r = 0; r < rows; r++) rank[r * topK + (r % topK)] = 1;
      const t = Tensor.fromData(model.ctx, rank, [rows, topK], 'explain-rank');
      owned.push(t);
      feeds.set(RANK_FEED, { tensor: t, batchAxis: 0 });
    }
    feeds.set(model.inputName, { tensor: input, batchAxis: 0 });
    if (weightsTarget) feeds.set(Model.targetInput, { tensor: weightsTarget, batchAxis: 0 });
    if (classes) {
      const w = new Float32Array(rows * numClasses);
      classes.forEach((c, i) => (w[i * numClasses + c] = 1));
      const t = Tensor.fromData(model.ctx, w, [rows, numClasses], 'explain-target');
      owned.push(t);
      feeds.set(Model.targetInput, { tensor: t, batchAxis: 0 });
    }
    // Per-row image index, for per-image random values that do not depend on the split.
    const offset = options.imageOffset ?? 0;
    const rowIndex = Tensor.fromData(model.ctx, Float32Array.from({ length: rows }, (_, r) => offset + (topK > 0 ? Math.floor(r / topK) : r)), [rows], 'explain-rows');
    owned.push(rowIndex);
    feeds.set(ROW_FEED, { tensor: rowIndex, batchAxis: 0 });

    const results: Record<string, ProgramResultSpec> = { target: { batchAxis: 0 }, score: { batchAxis: 0 } };
    const sweeps = methods.filter((m) => m.sweep);
    if (sweeps.length) {
      results['sweep:a'] = { batchAxis: 0 };
      results['sweep:seed'] = { batchAxis: 0 };
    }
    if (polyMethods.length) {
      polyLayers.forEach((_, i) => (results[`poly:a:${i}`] = { batchAxis: 0 }));
      results['poly:clean'] = { batchAxis: 0 };
    }
    const polyScore = options.score ?? 'softmax';
    for (const m of methods) {
      if (m.sweep) continue;
      results[`${m.name}:map`] = { batchAxis: 0 };
      results[`${m.name}:raw`] = { batchAxis: 0 };
      if (m.hasWeights) results[`${m.name}:weights`] = { batchAxis: 0, optional: true };
      if (m.inputLevel) results[`${m.name}:attribution`] = { batchAxis: 0 };
    }
    const needsInputGrad = methods.some((m) => m.name === 'saliency' || m.name === 'inputxgradient');
    // Copies per group for the sampled methods: as many as fit the binding limit at once.
    let sampleGroup = 1;
    if (methods.some((m) => ['smoothgrad', 'integratedgradients', 'smoothgradcam++'].includes(m.name))) {
      const one = model.tape(1, { image, taps: requestedLayers, wrt: [...requestedLayers, 'input'] });
      sampleGroup = Math.max(1, Math.floor(model.ctx.activationBindingLimit / Math.max(4, largestActivationBytes(one.tape.graph))));
      sampleGroup = Math.min(sampleGroup, SAMPLE_GROUP_CAP);
    }
    const seed = options.seed ?? 0;
    const sweepMs = new Map<string, number>();
    const pixelsOf = () => options.pixels ?? (input.shape[1] === 3 ? { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } : null);
    const space = options.maskSpace === 'raw' ? pixelsOf() : null;
    if (options.maskSpace === 'raw' && !space && sweeps.length) throw new InputError(`explain: masking raw pixels needs the mean/std of this ${input.shape[1]}-channel model's normalization (option pixels, or --mean/--std)`);
    const key = `explain|${image}|${requestedLayers}|${polyLayers}|${methods.map((m) => m.name)}|${options.score ?? 'logit'}|${options.fusion ?? 'mean'}|${classes ? 'classes' : weightsTarget ? 'weights' : topK > 0 ? `top${topK}` : 'argmax'}|${options.finerBase ?? 'gradcam'}|${seed}`;
    const build = (nb: number) => {
      const mt = model.tape(nb, {
        image,
        taps: [...requestedLayers, ...polyLayers],
        wrt: [...(needsGrad ? requestedLayers : []), ...(needsInputGrad ? ['input'] : [])],
        target: { of: options.score ?? 'logit', weights: topK > 0 ? (tp, logits) => topKSeed(tp, logits, nb, topK) : classes || weightsTarget ? 'feed' : 'argmax' },
      });
      const t = mt.tape;
      const names = new Map<string, string>();
      const keep = (name: string, s: Sym) => names.set(name, s.name);
      // The explained score per row: y = Σ_c w_c f(logits)_c, and the class c = Σ_c w_c·c.
      const seedSym = mt.seed!;
      const scored = options.score === 'softmax' ? t.softmax(mt.logits, -1) : mt.logits;
      keep('score', t.reshape(t.reduce('sum', t.mul(seedSym, scored), [1]), [nb]));
      const classIdx = t.constant(hostTensor('float32', [1, numClasses], Float32Array.from({ length: numClasses }, (_, c) => c)));
      keep('target', t.reshape(t.reduce('sum', t.mul(seedSym, classIdx), [1]), [nb]));
      const rowsSym = t.input(ROW_FEED, [nb]);
      // Finer-CAM's objective gets its own backward pass on the same forward.
      let finerGrads: Map<string, Sym> | null = null;
      if (methods.some((m) => m.needs === 'finer')) {
        finerGrads = t.scope('finercam', () => {
          const objective = finerObjective(t, mt.logits, seedSym);
          const layerSyms = requestedLayers.map((l) => mt.taps.get(l)!);
          const grads = gradients(t, new Map([[objective.name, t.broadcast(t.scalar(1), objective.shape)]]), layerSyms.map((s) => s.name));
          return new Map(requestedLayers.map((l, i) => [l, grads.get(layerSyms[i].name) ?? zerosLike(t, layerSyms[i])]));
        });
      }
      const once = <T>(f: () => T): (() => T) => {
        let v: T | undefined;
        return () => (v ??= f());
      };
      const inputGradient = once(() => mt.gradients.get('input') ?? zerosLike(t, mt.input));
      const guidedInputGradient = once(() => t.scope('guided', () => {
        const g = gradients(t, new Map([[mt.score!.name, seedSym]]), [mt.input.name], { guided: true });
        return g.get(mt.input.name) ?? zerosLike(t, mt.input);
      }));
      const gradCamMap = once(() => t.scope('gradcam-for-guided', () => {
        const perLayer = requestedLayers.map((l) => {
          const raw = METHOD_BY_NAME.get('gradcam')!.record(t, layerInputs(l, 0)).raw;
          return layerMap(t, raw, size);
        });
        return finalMap(t, perLayer);
      }));
      // Copies of each image (noisy, or on a path) run forward and backward in this program,
      // in groups that fit the binding limit; their weighted gradient powers are summed here.
      const sampledSums = new Map<string, Map<string, Sym>>();
      const sampledFor = (family: SampleFamily): Map<string, Sym> => {
        let sums = sampledSums.get(family.name);
        if (sums) return sums;
        sums = t.scope(family.name, () => {
          const out = new Map<string, Sym>();
          const wantLayers = family.name === 'smoothgradcampp';
          const rest = mt.input.shape.slice(1);
          for (let s0 = 0; s0 < family.samples; s0 += sampleGroup) {
            const gs = Math.min(sampleGroup, family.samples - s0);
            const copies = Array.from({ length: gs }, (_, j) => t.reshape(family.transform(t, mt.input, s0 + j, rowsSym), [nb, 1, ...rest]));
            const stacked = copies.length === 1 ? copies[0] : t.record({ kind: 'concat', inputs: copies.map((c) => c.name), axis: 1 }, null, { name: 'copies', opType: 'Concat' });
            const xg = t.reshape(stacked, [nb * gs, ...rest]);
            const seedRep = t.reshape(t.broadcast(t.reshape(seedSym, [nb, 1, numClasses]), [nb, gs, numClasses]), [nb * gs, numClasses]);
            const wrt = wantLayers ? [...requestedLayers] : ['input'];
            const ct = model.tape(nb * gs, {
              image,
              taps: wantLayers ? requestedLayers : [],
              wrt,
              target: { of: options.score ?? 'logit', weights: () => seedRep },
              onto: { tape: t, input: xg, prefix: `${family.name}/${s0}/` },
            });
            const weights = t.constant(hostTensor('float32', [1, gs], Float32Array.from({ length: gs }, (_, j) => family.weight(s0 + j))));
            for (const target of wrt) {
              const g = ct.gradients.get(target) ?? zerosLike(t, target === 'input' ? xg : ct.taps.get(target)!);
              const per = g.shape.slice(1);
              const g5 = t.reshape(g, [nb, gs, ...per]);
              const w5 = t.reshape(weights, [1, gs, ...per.map(() => 1)]);
              for (const p of wantLayers ? [1, 2, 3] : [1]) {
                const gp = p === 1 ? g5 : t.activation(g5, { kind: 'pow', p });
                const sum = t.reshape(t.reduce('sum', t.mul(gp, w5), [1]), [nb, ...per]);
                const key = `${target}|${p}`;
                const prev = out.get(key);
                out.set(key, prev ? t.add(prev, sum) : sum);
              }
            }
          }
          return out;
        });
        sampledSums.set(family.name, sums);
        return sums;
      };
      const layerInputs = (l: string, li: number): LayerInputs => {
        const a = mt.taps.get(l)!;
        return {
          a,
          g: mt.gradients.get(l) ?? zerosLike(t, a),
          classifierWeights: () => {
            const head = findHead(t, a, l);
            const w = t.sym(head.weight);
            return head.classMajor ? t.matmul(seedSym, w) : t.matmul(seedSym, w, { transB: true });
          },
          uniformWeights: () => uniformSigned(t, rowsSym, a.shape[1], seed + 7919 * li),
          x: mt.input,
          inputGradient,
          guidedInputGradient,
          gradCamMap,
          sampled: (family, at, powers) => powers.map((p) => sampledFor(family).get(`${at === 'input' ? 'input' : l}|${p}`)!),
        };
      };
      if (sweeps.length) {
        keep('sweep:a', mt.taps.get(requestedLayers[0])!);
        keep('sweep:seed', seedSym);
      }
      if (polyMethods.length) {
        polyLayers.forEach((l, i) => keep(`poly:a:${i}`, mt.taps.get(l)!));
        const polyScored = polyScore === 'softmax' ? t.softmax(mt.logits, -1) : mt.logits;
        keep('poly:clean', t.reshape(t.reduce('sum', t.mul(seedSym, polyScored), [1]), [nb]));
      }
      for (const m of methods) {
        if (m.sweep) continue;
        t.scope(m.name, () => {
          const perLayer: Sym[] = [];
          const raws: Sym[] = [];
          if (m.inputLevel) {
            const r = m.record(t, layerInputs(requestedLayers[0], 0));
            keep(`${m.name}:raw`, r.raw);
            if (r.attribution) keep(`${m.name}:attribution`, r.attribution);
            keep(`${m.name}:map`, m.final!(t, r.raw, size));
            return;
          }
          requestedLayers.forEach((l, li) => {
            const base = layerInputs(l, li);
            const inputs: LayerInputs = { ...base, g: m.needs === 'class' ? base.g : m.needs === 'finer' ? finerGrads!.get(l)! : null };
            const r = m.needs === 'finer' ? finerBase.record(t, inputs) : m.record(t, inputs);
            if (li === 0) {
              keep(`${m.name}:raw`, r.raw);
              if (r.weights) keep(`${m.name}:weights`, r.weights);
            }
            raws.push(r.raw);
            perLayer.push(layerMap(t, r.raw, size));
            if (m.final && li === 0) keep(`${m.name}:map`, m.final(t, r.raw, size));
          });
          if (!m.final) keep(`${m.name}:map`, options.fusion === 'layercam' && raws.length > 1 ? fuseLayerCam(t, raws, size) : finalMap(t, perLayer));
        });
      }
      return { graph: t.graph, names, shared: (n: string) => model.isModelConstant(n) };
    };
    const run = await model.runProgram({
      key,
      build,
      batch: rows,
      feeds,
      results,
      profile: options.profile,
      label: 'explain',
      maxChunk: options.batchSize,
    });
    // Score sweeps: their masked copies run as the rows of programs of their own, fed from this pass.
    const swept = new Map<string, Omit<SweepResult, 'weights' | 'scores'> & { weights: Tensor | null; scores: Tensor | null; layerMaps?: { layer: string; map: Tensor }[] }>();
    if (sweeps.length) {
      const a = run.results.get('sweep:a')!;
      const seedT = run.results.get('sweep:seed')!;
      // Progress in forward passes: each method's count, reported as the queue finishes its work.
      const [, K, h, w] = a.shape;
      const polyChannels = polyInfo.reduce((n, l) => n + l.shape[1], 0);
      const passesOf = (m: CamMethod) => rows * sweepPasses(m.sweep!, m.polyVariant, {
        K, h, w, polyChannels, H: size[0], W: size[1], masks: options.masks ?? 4000, iterations: options.iterations ?? 50,
        patch: options.occlusion?.patch ?? 64, stride: options.occlusion?.stride ?? 8,
      }).passes;
      const total = sweeps.reduce((n, m) => n + passesOf(m), 0);
      let done = 0;
      const onProgress = options.onProgress;
      const progress = onProgress ? (n: number) => onProgress((done = Math.min(total, done + n)), total) : undefined;
      const grouped = (m: CamMethod) => m.sweep === 'polycam' || (m.sweep !== undefined && m.sweep in SWEEPS);
      // A method that does not report per group reports once its work is submitted and done.
      const submitted = (m: CamMethod) => {
        if (!progress || grouped(m)) return;
        const n = passesOf(m);
        void model.ctx.device.queue.onSubmittedWorkDone().then(() => progress(n), () => undefined);
      };
      try {
        for (const m of sweeps) {
          const t0 = performance.now();
          const imageIndex = Array.from({ length: rows }, (_, r) => offset + (topK > 0 ? Math.floor(r / topK) : r));
          const sweepInputs = { x: input, a, seed: seedT, score: run.results.get('score')!, image: imageIndex };
          if (m.sweep === 'polycam') {
            const r = await runPolyCam(model, {
              x: input, seed: seedT, clean: run.results.get('poly:clean')!, image: imageIndex,
              layers: polyLayers.map((layer, i) => ({ layer, a: run.results.get(`poly:a:${i}`)! })),
            }, { variant: m.polyVariant!, lnorm: options.lnorm ?? true, normalize: options.polyNormalize ?? 'minmax', scoreOf: polyScore, maxChunk: options.batchSize, space, progress });
            swept.set(m.name, { map: r.map, raw: r.raw, weights: r.weights, scores: null, layerMaps: r.layerMaps });
            sweepMs.set(m.name, performance.now() - t0);
            continue;
          }
          if (m.sweep === 'opticam') {
            const px = pixelsOf();
            if (!px) throw new InputError(`Opti-CAM masks [0, 1] pixels: give the mean/std of this ${input.shape[1]}-channel model's normalization (option pixels)`);
            const r = await runOptiCam(model, input, seedT, { layer: requestedLayers[0], iterations: options.iterations ?? 50, lr: options.lr ?? 0.1, loss: options.optiLoss ?? 'plain', mean: px.mean, std: px.std, maxChunk: options.batchSize });
            swept.set(m.name, { map: r.map, raw: r.raw, weights: r.weights, scores: r.lossCurve });
            submitted(m);
            continue;
          }
          swept.set(m.name, m.sweep === 'occlusion'
            ? { ...(await runOcclusionSweep(model, sweepInputs, { patch: options.occlusion?.patch ?? 64, stride: options.occlusion?.stride ?? 8, fill: options.occlusion?.fill ?? 0, scoreOf: options.score ?? 'logit', maxChunk: options.batchSize, space })), weights: null }
            : m.sweep === 'rise'
            ? { ...(await runRiseSweep(model, sweepInputs, { masks: options.masks ?? 4000, grid: 8, p1: 0.5, seed, scoreOf: options.score ?? 'softmax', maxChunk: options.batchSize, space })), weights: null }
            : m.sweep === 'pixabcam'
            ? { ...(await runPixabSweep(model, requestedLayers[0], sweepInputs, { scoreOf: options.score ?? 'logit', maxChunk: options.batchSize, image })), weights: null }
            : m.sweep === 'ablationcam'
            ? await runAblationSweep(model, requestedLayers[0], sweepInputs, { scoreOf: options.score ?? 'logit', maxChunk: options.batchSize, image })
            : await runScoreSweep(model, SWEEPS[m.sweep!], sweepInputs, { alignCorners: options.alignCorners ?? false, baseline: options.scoreBaseline ?? false, seed, scoreOf: options.score ?? 'logit', maxChunk: options.batchSize, style: options.sweepStyle ?? 'spec', space, progress }));
          submitted(m);
          sweepMs.set(m.name, performance.now() - t0);
        }
      } catch (e) {
        for (const r of swept.values()) for (const t of [r.map, r.raw, r.weights, r.scores, ...(r.layerMaps ?? []).map((l) => l.map)]) t?.dispose();
        for (const [name, t] of run.results) if (name !== 'sweep:a' && name !== 'sweep:seed') t.dispose();
        throw e;
      } finally {
        a.dispose();
        seedT.dispose();
        for (const [name, t] of run.results) if (name.startsWith('poly:')) t.dispose();
      }
    }
    const timings = run.timings ? await run.timings : null;
    const wallMs = performance.now() - started;
    const methodMaps: MethodMaps[] = methods.map((m) => swept.has(m.name) ? {
      method: m.name,
      title: m.title,
      map: swept.get(m.name)!.map,
      raw: swept.get(m.name)!.raw,
      weights: swept.get(m.name)!.weights,
      attribution: null,
      ...(m.sweep === 'opticam' ? { lossCurve: swept.get(m.name)!.scores! } : {}),
      ...(m.sweep === 'polycam' ? { layerMaps: swept.get(m.name)!.layerMaps } : {}),
      gpuMs: null,
      wallMs,
    } : ({
      method: m.name,
      title: m.title,
      map: run.results.get(`${m.name}:map`)!,
      raw: run.results.get(`${m.name}:raw`)!,
      weights: run.results.get(`${m.name}:weights`) ?? null,
      attribution: run.results.get(`${m.name}:attribution`) ?? null,
      gpuMs: timings ? timings.filter((s) => s.label.startsWith(`${m.name}/`)).reduce((p, s) => p + s.ms, 0) : null,
      wallMs,
    }));
    for (const [name, r] of swept) if (name !== 'opticam') r.scores?.dispose();
    const targetClass = run.results.get('target')!;
    const targetScore = run.results.get('score')!;
    let rowsRead: Promise<ExplainRow[]> | null = null;
    for (const t of owned) t.dispose();
    owned.length = 0;
    return {
      rows: () => {
        rowsRead ??= Promise.all([targetClass.read(), targetScore.read()]).then(([c, s]) =>
          Array.from({ length: rows }, (_, r) => ({ image: topK > 0 ? Math.floor(r / topK) : r, target: Math.round(c[r]), score: s[r] })));
        return rowsRead;
      },
      layers: layerInfo,
      ...(polyMethods.length ? { polyLayers: polyInfo.map(({ requested, tensor, shape }) => ({ requested, tensor, shape })) } : {}),
      methods: methodMaps,
      passGpuMs: timings ? timings.filter((s) => !methods.some((m) => s.label.startsWith(`${m.name}/`))).reduce((p, s) => p + s.ms, 0) : null,
      targetClass,
      targetScore,
      dispose: () => {
        for (const m of methodMaps) {
          m.map.dispose();
          m.raw.dispose();
          m.weights?.dispose();
          m.attribution?.dispose();
          m.lossCurve?.dispose();
          for (const l of m.layerMaps ?? []) l.map.dispose();
        }
        targetClass.dispose();
        targetScore.dispose();
      },
    };
  } finally {
    for (const t of owned) t.dispose();
  }
}

function zerosLike(t: Tape, s: Sym): Sym {
  return t.broadcast(t.scalar(0), s.shape);
}

/**
 * The seed of each row's target for topK: row r explains the (r mod K)-th best class of its
 * image. The K best classes are found on the GPU by repeated argmax with the winners masked
 * out; the fed rank one-hot [nb, K] picks each row's.
 */
function topKSeed(t: Tape, logits: Sym, nb: number, k: number): Sym {
  const rank = t.input(RANK_FEED, [nb, k]);
  let remaining = logits;
  let seed: Sym | null = null;
  for (let i = 0; i < k; i++) {
    const onehot = t.onehotArgmax(remaining);
    const pick = t.mul(onehot, t.reshape(t.record({ kind: 'slice', inputs: [rank.name], axis: 1, start: i }, [nb, 1], { name: 'rank', opType: 'Slice' }), [nb, 1]));
    seed = seed ? t.add(seed, pick) : pick;
    remaining = t.sub(remaining, t.mul(onehot, t.scalar(1e30)));
  }
  return seed!;
}

/** Every 4-D spatial tensor of a model tape's forward pass, by name, for error messages. */
function spatialLayers(mt: ModelTape): string[] {
  const out: string[] = [];
  for (const op of mt.tape.graph.ops) {
    const s = mt.tape.graph.shapes.get(op.output)!;
    if (s.length === 4 && s[2] * s[3] > 1) out.push(`${op.node.name} ${formatShape(s.slice(1))}`);
    if (out.length >= 40) break;
  }
  return out;
}

/** x with each image repeated k times in a row ([N·k, …]). */
function repeatRows(x: Tensor, k: number): Tensor {
  const per = x.byteLength / x.shape[0];
  const out = Tensor.empty(x.ctx, [x.shape[0] * k, ...x.shape.slice(1)], 'explain-repeat');
  const enc = x.ctx.device.createCommandEncoder();
  for (let i = 0; i < x.shape[0]; i++) for (let j = 0; j < k; j++) enc.copyBufferToBuffer(x.buffer, x.byteOffset + i * per, out.buffer, (i * k + j) * per, per);
  x.ctx.device.queue.submit([enc.finish()]);
  return out;
}

import type { Model } from '../model.js';
import type { Sym } from '../ops/graph.js';
import { Tape } from '../ops/tape.js';
import type { MaskSpace } from '../cam/sweeps.js';
import { runRowSweep, targetScore } from '../cam/rows.js';
import { InputError, ShapeError } from '../runtime/errors.js';
import { hostTensor } from '../runtime/host-tensor.js';
import { formatShape } from '../runtime/shape.js';
import type { OpTiming } from '../runtime/recorder.js';
import { Tensor } from '../runtime/tensor.js';
import { substrateOf, type Substrate } from './substrate.js';

/**
 * Insertion and deletion (SPEC §2): pixels ordered by saliency, descending, ties by pixel
 * index; deletion starts from x and puts the substrate in place of the most salient pixels
 * first, insertion starts from the substrate and puts x's pixels back; the target's score
 * after each step makes the curve, and a weighted sum of it the AUC. Every step image is
 * built on the GPU from the map's ranks, x and the substrate, and the step images are the
 * rows of one batched program.
 */
export type CausalPresetName = 'polycam' | 'rise' | 'torchcam';

export interface CausalPreset {
  name: CausalPresetName;
  /** The substrate of each game. */
  substrate: { insertion: Substrate; deletion: Substrate };
  score: 'softmax' | 'logit';
  /** The curve's points for U ranked units: how many units are changed at each point, its x, and the AUC's weight. */
  points(units: number): CurvePoints;
}

export interface CurvePoints {
  counts: number[];
  x: number[];
  weights: number[];
}

const BLUR: Substrate = { kind: 'blur', kernel: 11, sigma: 5, style: 'torchvision' };

/** Trapezoid weights over the points x. */
export function trapezoidWeights(x: readonly number[]): number[] {
  const n = x.length;
  if (n === 1) return [0];
  return x.map((_, i) => ((i < n - 1 ? x[i + 1] - x[i] : 0) + (i > 0 ? x[i] - x[i - 1] : 0)) / 2);
}

export const CAUSAL_PRESETS: Record<CausalPresetName, CausalPreset> = {
  // aenglebert/polycam benchmarks/metrics.py (seed 000 §4.2): 224 steps of ⌈U/224⌉ units, the
  // scores after each step (not before the first), AUC = their mean.
  polycam: {
    name: 'polycam',
    substrate: { insertion: BLUR, deletion: BLUR },
    score: 'softmax',
    points: (U) => {
      const steps = 224;
      const k = Math.ceil(U / steps);
      const counts = Array.from({ length: steps }, (_, i) => Math.min(U, k * (i + 1)));
      return { counts, x: counts.map((c) => c / U), weights: counts.map(() => 1 / steps) };
    },
  },
  // eclique/RISE evaluation.py: steps of ⌈U/224⌉ units (224 px at 224²), n = ⌈U/step⌉ steps,
  // scores at n + 1 points from the start, AUC by the trapezoid on a uniform grid; blurred
  // substrate (RISE's own kernel, zero padding) for insertion, zeros for deletion.
  rise: {
    name: 'rise',
    substrate: { insertion: { kind: 'blur', kernel: 11, sigma: 5, style: 'rise' }, deletion: { kind: 'constant', value: 0 } },
    score: 'softmax',
    points: (U) => {
      const k = Math.ceil(U / 224);
      const n = Math.ceil(U / k);
      const x = Array.from({ length: n + 1 }, (_, i) => i / n);
      return { counts: x.map((_, i) => Math.min(U, k * i)), x, weights: trapezoidWeights(x) };
    },
  },
  // frgfm/torch-cam metrics.py: ⌈U/20⌉ units per step, points at 0, k, 2k, … and U, AUC by the
  // trapezoid over the fractions changed, zeros for both, logits.
  torchcam: {
    name: 'torchcam',
    substrate: { insertion: { kind: 'constant', value: 0 }, deletion: { kind: 'constant', value: 0 } },
    score: 'logit',
    points: (U) => {
      const k = Math.ceil(U / 20);
      const counts: number[] = [];
      for (let c = 0; c < U; c += k) counts.push(c);
      counts.push(U);
      const x = counts.map((c) => c / U);
      return { counts, x, weights: trapezoidWeights(x) };
    },
  },
};

export interface CausalOptions {
  preset?: CausalPresetName;
  /** Rank s × s blocks (their mean saliency) instead of pixels; s must divide H and W. Default 1. */
  granularity?: number;
  /** Override the preset's score. */
  score?: 'softmax' | 'logit';
  /** Override the preset's substrates. */
  substrate?: Partial<{ insertion: Substrate; deletion: Substrate }>;
  /** Where the substrate replaces pixels: the model input (default, SPEC §0) or the [0, 1] pixels. */
  space?: MaskSpace;
  games?: readonly ('insertion' | 'deletion')[];
  maxChunk?: number;
  progress?: (rows: number) => void;
  /** Per-launch GPU times of the step passes (profiling; slower). */
  onTimings?: (timings: Promise<OpTiming[]>) => void;
}

export interface CausalInputs {
  /** The images as the model receives them, [N, C, H, W]. */
  x: Tensor;
  /** The maps to judge, [M, H, W]: item m explains image `image[m]`. */
  maps: Tensor;
  /** Each item's target weights (one-hot) [M, classes]. */
  seed: Tensor;
  /** Each item's image (host numbers, known before anything runs). */
  image: readonly number[];
}

export interface CausalResult {
  /** Per game: the scores at every point [M, P], and the AUC [M]. */
  curves: Map<'insertion' | 'deletion', { curve: Tensor; auc: Tensor }>;
  /** The curve's x (fraction of units changed; RISE's uniform grid). */
  x: number[];
  counts: number[];
  preset: CausalPresetName;
}

/** The number of passes insertion + deletion take per item. */
export function causalPasses(H: number, W: number, o: CausalOptions = {}): number {
  const s = o.granularity ?? 1;
  const games = o.games?.length ?? 2;
  return games * CAUSAL_PRESETS[o.preset ?? 'polycam'].points((H / s) * (W / s)).counts.length;
}

/**
 * The rank of every unit of every map, [M, U]: its place in the descending order, ties by
 * index (the stable sort's order, then that order's own order: the inverse permutation).
 */
export function ranksOf(t: Tape, maps: Sym, granularity: number): Sym {
  const [M, H, W] = maps.shape;
  const s = granularity;
  let units = t.reshape(maps, [M, H * W]);
  if (s > 1) units = t.reshape(t.reduce('mean', t.reshape(maps, [M, H / s, s, W / s, s]), [2, 4]), [M, (H / s) * (W / s)]);
  const order = t.sort(units, { descending: true, output: 'indices' });
  return t.sort(order, { descending: false, output: 'indices' });
}

/** Runs insertion and/or deletion for every item; GPU tensors only, nothing read back. */
export async function insertionDeletion(model: Model, inputs: CausalInputs, o: CausalOptions = {}): Promise<CausalResult> {
  const preset = CAUSAL_PRESETS[o.preset ?? 'polycam'];
  if (!preset) throw new InputError(`insertion/deletion: unknown preset '${o.preset}' (use polycam, rise or torchcam)`);
  const [N, C, H, W] = inputs.x.shape;
  const [M, mh, mw] = inputs.maps.shape;
  if (inputs.maps.shape.length !== 3 || mh !== H || mw !== W) throw new ShapeError('insertion/deletion: maps', `must be [M, ${H}, ${W}] for images ${formatShape(inputs.x.shape)}, got ${formatShape(inputs.maps.shape)}`);
  if (inputs.image.length !== M) throw new ShapeError('insertion/deletion: items', `${inputs.image.length} image indices for ${M} maps`);
  inputs.image.forEach((i, m) => {
    if (!(Number.isInteger(i) && i >= 0 && i < N)) throw new InputError(`insertion/deletion: map ${m} names image ${i}, not in [0, ${N})`);
  });
  const s = o.granularity ?? 1;
  if (!(Number.isInteger(s) && s >= 1 && H % s === 0 && W % s === 0)) throw new InputError(`insertion/deletion: granularity ${s} must be a whole number that divides ${H} and ${W}`);
  const games = o.games ?? ['insertion', 'deletion'];
  const classes = inputs.seed.shape[1];
  const U = (H / s) * (W / s);
  const points = preset.points(U);
  const P = points.counts.length;
  const scoreOf = o.score ?? preset.score;
  const substrates = { ...preset.substrate, ...o.substrate };
  const ctx = model.ctx;

  // One program for the ranks and both substrates, [M, U] and [2N, C, H, W] (row 2i + g: image i, game g).
  const prep = await model.runProgram({
    key: `causal-prep|${N}|${C}|${H}|${W}|${M}|${s}|${JSON.stringify(substrates)}|${JSON.stringify(o.space ?? null)}`,
    batch: 1,
    split: false,
    build: () => {
      const t = new Tape();
      const maps = t.input('maps', [M, H, W]);
      const x = t.input('x', [N, C, H, W]);
      const ranks = ranksOf(t, maps, s);
      // The substrate lives where pixels are replaced: in pixel space it is made from the pixels
      // and carried back to the input's normalization, so that x + m·(sub − x) replaces pixels.
      const toPixels = (v: Sym) => (o.space ? t.add(t.mul(v, perChannel(t, o.space.std, C)), perChannel(t, o.space.mean, C)) : v);
      const fromPixels = (v: Sym) => (o.space ? t.div(t.sub(v, perChannel(t, o.space.mean, C)), perChannel(t, o.space.std, C)) : v);
      const pix = toPixels(x);
      const del = fromPixels(substrateOf(t, pix, substrates.deletion));
      const ins = fromPixels(substrateOf(t, pix, substrates.insertion));
      const both = t.record({ kind: 'concat', inputs: [t.reshape(del, [N, 1, C * H * W]).name, t.reshape(ins, [N, 1, C * H * W]).name], axis: 1 }, [N, 2, C * H * W], { name: 'substrates', opType: 'Concat' });
      return { graph: t.graph, names: new Map([['ranks', ranks.name], ['substrates', t.reshape(both, [2 * N, C, H, W]).name]]) };
    },
    feeds: { maps: { tensor: inputs.maps, batchAxis: null }, x: { tensor: inputs.x, batchAxis: null } },
    results: { ranks: { batchAxis: null }, substrates: { batchAxis: null } },
    label: 'causal-prep',
  });
  const ranks = prep.results.get('ranks')!;
  const subs = prep.results.get('substrates')!;
  try {
    // Row r = (m·G + g)·P + p: item m, game g (0 deletion, 1 insertion), point p.
    const G = games.length;
    const rows = M * G * P;
    const f = { item: new Float32Array(rows), image: new Float32Array(rows), sub: new Float32Array(rows), insertion: new Float32Array(rows), count: new Float32Array(rows) };
    for (let r = 0; r < rows; r++) {
      const p = r % P;
      const g = Math.floor(r / P) % G;
      const m = Math.floor(r / (P * G));
      const ins = games[g] === 'insertion' ? 1 : 0;
      f.item[r] = m;
      f.image[r] = inputs.image[m];
      f.sub[r] = 2 * inputs.image[m] + ins;
      f.insertion[r] = ins;
      f.count[r] = points.counts[p];
    }
    const flat = await runRowSweep(model, {
      key: `causal|${H}|${W}|${C}|${s}|${scoreOf}|${classes}`,
      label: 'insertion-deletion',
      rows,
      fields: f,
      shared: { x: inputs.x, ranks, subs, seed: inputs.seed },
      maxChunk: o.maxChunk,
      progress: o.progress,
      onTimings: o.onTimings,
      build: (t, nb, row, sh) => {
        // One fused pass builds every row's step image from x, its substrate and its map's ranks.
        const col = (v: Sym) => t.reshape(v, [nb, 1]);
        const cols = [row.item, row.image, row.sub, row.count, row.insertion].map(col);
        const info = t.record({ kind: 'concat', inputs: cols.map((c) => c.name), axis: 1 }, [nb, 5], { name: 'step_rows', opType: 'Concat' });
        const img = t.rankedBlend(sh.x, sh.subs, sh.ranks, info, { granularity: s });
        const mt = model.tape(nb, { image: [C, H, W], onto: { tape: t, input: img, prefix: 'causal/' } });
        return targetScore(t, mt.logits, t.gatherRows(sh.seed, row.item), scoreOf);
      },
    });
    try {
      const weights = t1(points.weights);
      const auc = await model.runProgram({
        key: `causal-auc|${M}|${G}|${P}|${preset.name}|${weights.join(',')}`,
        batch: 1,
        split: false,
        build: () => {
          const t = new Tape();
          const curves = t.input('curves', [M * G, P]);
          const w = t.constant(hostTensor('float32', [P, 1], Float32Array.from(weights)));
          return { graph: t.graph, names: new Map([['auc', t.reshape(t.matmul(curves, w), [M, G]).name]]) };
        },
        feeds: { curves: { tensor: flat.reshaped([M * G, P]), batchAxis: null } },
        results: { auc: { batchAxis: null } },
        label: 'insertion-deletion-auc',
      });
      const aucAll = auc.results.get('auc')!;
      const out = new Map<'insertion' | 'deletion', { curve: Tensor; auc: Tensor }>();
      try {
        // Per game: its curves and AUCs as tensors of their own (a strided copy each).
        const enc = ctx.device.createCommandEncoder({ label: 'insertion-deletion-split' });
        games.forEach((game, g) => {
          const curve = Tensor.empty(ctx, [M, P], `${game}-curve`);
          const a = Tensor.empty(ctx, [M], `${game}-auc`);
          for (let m = 0; m < M; m++) {
            enc.copyBufferToBuffer(flat.buffer, flat.byteOffset + ((m * G + g) * P) * 4, curve.buffer, curve.byteOffset + m * P * 4, P * 4);
            enc.copyBufferToBuffer(aucAll.buffer, aucAll.byteOffset + (m * G + g) * 4, a.buffer, a.byteOffset + m * 4, 4);
          }
          out.set(game, { curve, auc: a });
        });
        ctx.device.queue.submit([enc.finish()]);
      } finally {
        aucAll.dispose();
      }
      return { curves: out, x: points.x, counts: points.counts, preset: preset.name };
    } finally {
      flat.dispose();
    }
  } finally {
    ranks.dispose();
    subs.dispose();
  }
}

const t1 = (v: readonly number[]) => Array.from(Float32Array.from(v));

function perChannel(t: Tape, v: readonly number[], C: number): Sym {
  return t.constant(hostTensor('float32', [1, C, 1, 1], Float32Array.from({ length: C }, (_, c) => v[v.length === 1 ? 0 : c])));
}

import type { Model } from '../model.js';
import type { Sym } from '../ops/graph.js';
import { Tape } from '../ops/tape.js';
import { InputError } from '../runtime/errors.js';
import { formatShape } from '../runtime/shape.js';
import type { Tensor } from '../runtime/tensor.js';
import { finalMap, layerMap, relu, upsample, weightedSum } from './math.js';
import { mask01, type MaskSpace, type ScoreSweep, sweepScores } from './sweeps.js';

/**
 * Poly-CAM (Englebert et al., seed 000; POLY polycam/core.py, polycam.py; SPEC §1): a
 * score-weighted map at each of several layers, shallow to deep, multiplied into one
 * high-resolution map from the deepest layer up. Each layer's weights come from a score sweep
 * over its channels (masks u(up(A_l^k)), softmax scores):
 *   PCAM+  w = f_c(x ⊙ m_k)
 *   PCAM−  w = relu(f_c(x) − f_c(x ⊙ (1 − m_k)))
 *   PCAM±  w = relu(f_c(x) + f_c(x ⊙ m_k) − f_c(x ⊙ (1 − m_k)))
 * P_L = relu(Σ w A_L); P_l = relu(LNorm(relu(Σ w A_l)) ⊙ up(P_{l+1})).
 */
export type PolyVariant = 'plus' | 'minus' | 'plusminus';

export interface PolyOptions {
  variant: PolyVariant;
  /** LNorm (default on; off is seed 000 App. B.2's ablation). */
  lnorm: boolean;
  /**
   * 'minmax' (default, SPEC): masks u(up(A)), maps finished like every CAM. 'percentile': POLY's
   * own, (M − p0.1)/max(p99.9, 1e-12) clipped to [0, 1] at layer resolution, then upsampled.
   */
  normalize: 'minmax' | 'percentile';
  scoreOf: 'logit' | 'softmax';
  maxChunk?: number;
  /** Where the masks multiply (default: the model input). */
  space?: MaskSpace;
  /** Rows (forward passes) the GPU has finished, as they finish. */
  progress?: (rows: number) => void;
}

export interface PolyLayerInput {
  /** The layer's name as reported. */
  layer: string;
  /** Its activations, [M, K, h, w]. */
  a: Tensor;
}

export interface PolyResult {
  /** The shallowest layer's map P_1, finished: [M, H, W]. */
  map: Tensor;
  /** P_1 at its layer's resolution, [M, h₁, w₁]. */
  raw: Tensor;
  /** The shallowest layer's channel weights, [M, K₁]. */
  weights: Tensor;
  /** Every P_l finished to the input size ([M, H, W]), in the order of the layer list (the last is P_L alone). */
  layerMaps: { layer: string; map: Tensor }[];
}

/** The lower and upper percentiles of POLY's mask normalization. */
const OUTLIER_PERCENT = 0.1;

/**
 * POLY's normalization of maps [n, h, w]: (M − q(0.1 %)) / max(q(99.9 %), 1e-12), clipped to
 * [0, 1], with q numpy's linear-interpolation percentile of each map. It divides by the upper
 * percentile, not by the range, as POLY does.
 */
export function percentileNormalize(t: Tape, m: Sym): Sym {
  const [n, h, w] = m.shape;
  const len = h * w;
  const flat = t.reshape(m, [n, len]);
  const sorted = t.sort(flat, { output: 'values', descending: false });
  const at = (k: number) => t.record({ kind: 'slice', inputs: [sorted.name], axis: 1, start: k }, [n, 1], { name: 'percentile', opType: 'Slice' });
  const quantile = (percent: number) => {
    const pos = ((len - 1) * percent) / 100;
    const lo = Math.floor(pos);
    const frac = pos - lo;
    const hi = Math.min(lo + 1, len - 1);
    if (frac === 0 || hi === lo) return at(lo);
    const a = at(lo);
    return t.add(a, t.mul(t.sub(at(hi), a), t.scalar(frac)));
  };
  const lo = quantile(OUTLIER_PERCENT);
  const hi = t.activation(quantile(100 - OUTLIER_PERCENT), { kind: 'clip', min: 1e-12, max: Infinity });
  const out = t.activation(t.div(t.sub(flat, lo), hi), { kind: 'clip', min: 0, max: 1 });
  return t.reshape(out, [n, h, w]);
}

/** The masks of one layer's sweep: m (PCAM+), 1 − m (PCAM−), or copy 0 = m, copy 1 = 1 − m (PCAM±). */
function polySweep(o: PolyOptions): ScoreSweep {
  return {
    name: `polycam-${o.variant}-${o.normalize}`,
    copies: o.variant === 'plusminus' ? 2 : 1,
    reduce: 'mean',
    mask: (t, a, row, size) => {
      const [n] = a.shape;
      // In percentile mode the rows of A arrive normalized already (once per channel, not per copy).
      const m = o.normalize === 'percentile'
        ? t.reshape(upsample(t, a, size), [n, 1, size[0], size[1]])
        : mask01(t, a, size, false);
      const one = t.broadcast(t.scalar(1), m.shape);
      if (o.variant === 'plus') return m;
      if (o.variant === 'minus') return t.sub(one, m);
      // m + j·(1 − 2m): m for copy 0, 1 − m for copy 1.
      return t.add(m, t.mul(t.reshape(row.copy, [n, 1, 1, 1]), t.sub(one, t.mul(m, t.scalar(2)))));
    },
  };
}

/** POLY's normalization of every channel map of A [M, K, h, w], as a program of its own (the masks before upsampling). */
async function percentileMasks(model: Model, a: Tensor): Promise<Tensor> {
  const [M, K, h, w] = a.shape;
  const run = await model.runProgram({
    key: `polycam-percentile|${M}|${K}|${h}|${w}`,
    batch: M,
    split: false,
    build: (nb) => {
      const t = new Tape();
      const maps = t.reshape(t.input('a', [nb, K, h, w]), [nb * K, h, w]);
      return { graph: t.graph, names: new Map([['masks', t.reshape(percentileNormalize(t, maps), [nb, K, h, w]).name]]) };
    },
    feeds: { a: { tensor: a, batchAxis: 0 } },
    results: { masks: { batchAxis: 0 } },
    label: 'polycam-percentile',
  });
  return run.results.get('masks')!;
}

/** Finishing a map to the input size: as every CAM by default, POLY's percentile normalization then upsampling in its mode. */
function finish(t: Tape, p: Sym, size: readonly [number, number], o: PolyOptions): Sym {
  return o.normalize === 'percentile' ? upsample(t, percentileNormalize(t, p), size) : finalMap(t, [layerMap(t, p, size)]);
}

/** Runs one Poly-CAM variant: a sweep per layer, then one program for the weights and the multiplication. No readback. */
export async function runPolyCam(
  model: Model,
  inputs: { x: Tensor; seed: Tensor; clean: Tensor; image: readonly number[]; layers: readonly PolyLayerInput[] },
  o: PolyOptions,
): Promise<PolyResult> {
  const [M, ...image] = inputs.x.shape;
  const size: [number, number] = [image[1], image[2]];
  const sweep = polySweep(o);
  const S = sweep.copies;
  const scores: Tensor[] = [];
  try {
    for (const l of inputs.layers) {
      const masks = o.normalize === 'percentile' ? await percentileMasks(model, l.a) : null;
      try {
        scores.push(await sweepScores(model, sweep, { x: inputs.x, a: masks ?? l.a, seed: inputs.seed, image: inputs.image }, { alignCorners: false, baseline: false, seed: 0, scoreOf: o.scoreOf, maxChunk: o.maxChunk, key: l.layer, space: o.space ?? null, progress: o.progress }));
      } finally {
        masks?.dispose();
      }
    }
    const shapes = inputs.layers.map((l) => l.a.shape);
    const L = shapes.length;
    const feeds: Record<string, { tensor: Tensor; batchAxis: 0 }> = { clean: { tensor: inputs.clean, batchAxis: 0 } };
    inputs.layers.forEach((l, i) => {
      feeds[`a${i}`] = { tensor: l.a, batchAxis: 0 };
      feeds[`s${i}`] = { tensor: scores[i].reshaped([M, l.a.shape[1] * S]), batchAxis: 0 };
    });
    const results: Record<string, { batchAxis: 0 }> = { map: { batchAxis: 0 }, raw: { batchAxis: 0 }, weights: { batchAxis: 0 } };
    for (let i = 0; i < L; i++) results[`map${i}`] = { batchAxis: 0 };
    const run = await model.runProgram({
      key: `polycam|${o.variant}|${o.lnorm}|${o.normalize}|${M}|${size}|${shapes.map((s) => s.slice(1).join('x')).join(',')}`,
      batch: M,
      split: false,
      build: (nb) => {
        const t = new Tape();
        const clean = t.reshape(t.input('clean', [nb]), [nb, 1]);
        const weightsOf = (i: number): Sym => {
          const K = shapes[i][1];
          const s = t.input(`s${i}`, [nb, K * S]);
          if (o.variant === 'plus') return s;
          if (o.variant === 'minus') return relu(t, t.sub(clean, s));
          const pair = t.reshape(s, [nb, K, 2]);
          const copy = (j: number) => t.reshape(t.record({ kind: 'slice', inputs: [pair.name], axis: 2, start: j }, [nb, K, 1], { name: 'poly_scores', opType: 'Slice' }), [nb, K]);
          return relu(t, t.sub(t.add(copy(0), clean), copy(1)));
        };
        const names = new Map<string, string>();
        let deeper: Sym | null = null;
        let first: { p: Sym; w: Sym } | null = null;
        for (let i = L - 1; i >= 0; i--) {
          const [, K, h, w] = shapes[i];
          const a = t.input(`a${i}`, [nb, K, h, w]);
          const wts = weightsOf(i);
          let m = relu(t, weightedSum(t, a, wts));
          let p: Sym;
          if (!deeper) {
            p = m;
          } else {
            if (o.lnorm) {
              // LNorm: each region divided by its own mean at the deeper layer's resolution
              // (resized down and back up, bilinear, as POLY; avg pooling for factor 2).
              const local = upsample(t, upsample(t, m, [deeper.shape[1], deeper.shape[2]]), [h, w]);
              m = t.div(m, t.activation(local, { kind: 'clip', min: 1e-12, max: Infinity }));
            }
            p = relu(t, t.mul(m, upsample(t, deeper, [h, w])));
          }
          names.set(`map${i}`, finish(t, p, size, o).name);
          if (i === 0) first = { p, w: wts };
          deeper = p;
        }
        names.set('map', names.get('map0')!);
        names.set('raw', first!.p.name);
        names.set('weights', first!.w.name);
        return { graph: t.graph, names };
      },
      feeds,
      results,
      label: 'polycam',
    });
    const layerMaps = inputs.layers.map((l, i) => ({ layer: l.layer, map: run.results.get(`map${i}`)! }));
    return { map: run.results.get('map')!, raw: run.results.get('raw')!, weights: run.results.get('weights')!, layerMaps };
  } finally {
    for (const s of scores) s.dispose();
  }
}

export interface PolyLayerInfo {
  requested: string;
  tensor: string;
  shape: number[];
  /** Position of the producing op in the forward pass. */
  position: number;
}

/**
 * Poly-CAM's automatic layer list for images of shape `image`: along the tensors that cut the
 * network, the last one before each drop in spatial size to another spatial 4-D tensor, and
 * the last spatial one when a 1×1 map follows it (global pooling); a flatten ends the list
 * (POLY utils.find_layer_list's rule, taken over cut tensors instead of torch modules so that
 * a ResNet's list is its blocks' outputs: relu, layer1 … layer4; VGG-16: features.3/8/15/22/29).
 */
export function autoPolyLayers(model: Model, image: readonly number[]): string[] {
  const cuts = model.cutTensors(image);
  const out: string[] = [];
  for (let i = 1; i < cuts.length; i++) {
    const prev = cuts[i - 1].shape;
    const cur = cuts[i].shape;
    if (formatShape(prev.slice(2)) === formatShape(cur.slice(2))) continue;
    if (prev.length !== cur.length || prev.length !== 4) break;
    if (prev[2] * prev[3] > 1) out.push(cuts[i - 1].tensor);
    if (cur[2] === 1 && cur[3] === 1) break;
  }
  if (out.length === 0) throw new InputError(`${model.graph.file}: Poly-CAM found no spatial downsampling to take layers from; give its layers (option layers / --layer)`);
  return out;
}

/** A Poly-CAM layer list must go from shallow to deep with the spatial size dropping at every step. */
export function checkPolyLayers(layers: readonly PolyLayerInfo[]): void {
  for (let i = 1; i < layers.length; i++) {
    const [a, b] = [layers[i - 1], layers[i]];
    const where = `Poly-CAM layers '${a.requested}' ${formatShape(a.shape.slice(2))} and '${b.requested}' ${formatShape(b.shape.slice(2))}`;
    if (b.position <= a.position) throw new InputError(`${where}: out of order; list them from the input towards the output`);
    if (!(b.shape[2] <= a.shape[2] && b.shape[3] <= a.shape[3] && b.shape[2] * b.shape[3] < a.shape[2] * a.shape[3])) {
      throw new InputError(`${where}: the spatial size must drop from each layer to the next`);
    }
  }
}

import type { Model } from '../model.js';
import { DEFAULT_IMPUTE_TOLERANCE, defaultImputeIterations } from '../ops/impute.js';
import type { Sym } from '../ops/graph.js';
import { Tape } from '../ops/tape.js';
import { InputError, ShapeError } from '../runtime/errors.js';
import { formatShape } from '../runtime/shape.js';
import { Tensor } from '../runtime/tensor.js';

/**
 * ROAD (SPEC §2; Leemann et al. 2022, pytorch-grad-cam's metrics/road.py): pixels are removed
 * by saliency and filled by noisy linear imputation, and the target's softmax score of the
 * filled image is the metric, per percentage p.
 *
 * Selection follows road.py exactly: the threshold is np.percentile(map, p) (linear
 * interpolation between order statistics, from the GPU's sort) and the pixels kept are those
 * with map < threshold; 'morf' (most relevant first) applies that to the map, so p = 10 keeps
 * the 10 % least salient and removes the rest, and 'lerf' applies it to 1 − map. numpy lerps
 * in float64 and torch compares in float32; here the lerp is float32, which can differ only
 * for a pixel within an ulp or two of the threshold (never on maps whose neighbouring order
 * statistics are further apart).
 *
 * Each removed pixel becomes the weighted mean of its 8 neighbours, all of an (image, channel)
 * solved together on the GPU (the `impute` op: conjugate gradients to `tolerance`, its true
 * residual reported per row), plus N(0, noise²). Rows (image, p) are the batch of one program;
 * nothing is read back.
 */
export type RoadOrder = 'morf' | 'lerf';

export const ROAD_PERCENTAGES: readonly number[] = [10, 20, 30, 40, 50, 60, 70, 80, 90];

export interface RoadOptions {
  order: RoadOrder;
  /** Percentages p (each in (0, 100]); default 10, 20, …, 90. */
  percentages?: readonly number[];
  /** Standard deviation of the noise added to the imputed pixels (default 0.01, road.py's). */
  noise?: number;
  /** Seed of the GPU's counter-based noise (default 0). */
  seed?: number;
  /**
   * Standard-normal draws z [M, P, C, H, W] to use instead of the seeded ones: the imputed
   * pixels get + noise·z, as road.py computes noise·randn (parity tests feed its draws).
   */
  noiseTensor?: Tensor;
  /** Each image's index for the seeded noise (default 0 … M − 1): the noise of a row is keyed by (seed, image index, order, p). */
  images?: readonly number[];
  /** Conjugate-gradient iterations recorded (default 2·(H + W) + 100) and CG's relative tolerance (default 1e-6); see src/ops/impute.ts. */
  iterations?: number;
  tolerance?: number;
  /** At most this many rows (image, p) per forward pass. */
  maxChunk?: number;
  /** Also return the keep masks [M, P, H, W] (1 = kept). */
  returnMasks?: boolean;
}

export interface RoadResult {
  /** Softmax f_c of each filled image, [M, P]. */
  scores: Tensor;
  /** Softmax f_c of the clean image, [M]. */
  clean: Tensor;
  /** scores − clean (road.py's return_diff), [M, P]. */
  diff: Tensor;
  /** The mean over the percentages of `scores`, [M] (road.py's AveragerAcrossThresholds). */
  mean: Tensor;
  /** ‖b − A·u‖ / ‖b‖ of each row's imputation (before the noise), over its channels, [M, P]. */
  residual: Tensor;
  /** With `returnMasks`: [M, P, H, W], 1 where a pixel was kept. */
  keep?: Tensor;
}

/** numpy's linear percentile of n sorted values: lo, hi order statistics and the weight of hi. */
function percentileIndex(p: number, n: number): { lo: number; hi: number; gamma: number } {
  const virtual = (n - 1) * (p / 100);
  const lo = Math.min(n - 1, Math.max(0, Math.floor(virtual)));
  const hi = Math.min(n - 1, lo + 1);
  return { lo, hi, gamma: virtual - lo };
}

function validate(x: Tensor, maps: Tensor, seed: Tensor, o: RoadOptions): { percentages: readonly number[] } {
  if (x.shape.length !== 4) throw new ShapeError('ROAD: x', `must be [M, C, H, W], got ${formatShape(x.shape)}`);
  const [M, C, H, W] = x.shape;
  if (M < 1) throw new InputError('ROAD: no images');
  if (maps.shape.length !== 3 || maps.shape[0] !== M || maps.shape[1] !== H || maps.shape[2] !== W) {
    throw new ShapeError('ROAD: maps', `must be [${M}, ${H}, ${W}] for images ${formatShape(x.shape)}, got ${formatShape(maps.shape)}`);
  }
  if (seed.shape.length !== 2 || seed.shape[0] !== M) throw new ShapeError('ROAD: seed', `must be [${M}, classes] (one-hot target rows), got ${formatShape(seed.shape)}`);
  if (o.order !== 'morf' && o.order !== 'lerf') throw new InputError(`ROAD: order must be 'morf' or 'lerf', got '${String(o.order)}'`);
  const percentages = o.percentages ?? ROAD_PERCENTAGES;
  if (percentages.length === 0) throw new InputError('ROAD: no percentages');
  for (const p of percentages) {
    // p = 0 keeps nothing (no value is below the minimum): nothing is left to impute from.
    if (!(Number.isFinite(p) && p > 0 && p <= 100)) throw new InputError(`ROAD: percentage ${p} is not in (0, 100]`);
  }
  const noise = o.noise ?? 0.01;
  if (!(Number.isFinite(noise) && noise >= 0)) throw new InputError(`ROAD: noise must be a finite standard deviation ≥ 0, got ${noise}`);
  if (o.noiseTensor) {
    const want = [M, percentages.length, C, H, W];
    if (formatShape(o.noiseTensor.shape) !== formatShape(want)) throw new ShapeError('ROAD: noiseTensor', `must be ${formatShape(want)}, got ${formatShape(o.noiseTensor.shape)}`);
  }
  if (o.images && o.images.length !== M) throw new InputError(`ROAD: ${o.images.length} image indices for ${M} images`);
  if (o.images?.some((i) => !(Number.isInteger(i) && i >= 0 && i < 2 ** 24))) throw new InputError('ROAD: image indices must be whole numbers in [0, 2²⁴)');
  const seedValue = o.seed ?? 0;
  if (!(Number.isInteger(seedValue) && seedValue >= 0 && seedValue <= 0xffffffff)) throw new InputError(`ROAD: seed must be a 32-bit unsigned integer, got ${seedValue}`);
  return { percentages };
}

/** The target's softmax score of each row: [nb]. */
function targetSoftmax(t: Tape, logits: Sym, seed: Sym): Sym {
  return t.reshape(t.reduce('sum', t.mul(t.softmax(logits, -1), seed), [1]), [logits.shape[0]]);
}

/**
 * ROAD scores of maps [M, H, W] for images x [M, C, H, W] (the model's input tensors) and
 * target rows seed [M, classes] (one-hot), every tensor on the GPU; the caller owns and
 * disposes the results. Three programs: the keep masks and clean scores (per image), the
 * filled rows' scores and residuals (per (image, p), split into passes that fit), and the
 * per-image tables.
 */
export async function roadScores(model: Model, x: Tensor, maps: Tensor, seed: Tensor, o: RoadOptions): Promise<RoadResult> {
  const { percentages } = validate(x, maps, seed, o);
  const [M, C, H, W] = x.shape;
  const L = H * W;
  const P = percentages.length;
  const classes = seed.shape[1];
  const image = [C, H, W];
  const noise = o.noise ?? 0.01;
  const seedValue = (o.seed ?? 0) >>> 0;
  const iterations = o.iterations ?? defaultImputeIterations(H, W);
  const tolerance = o.tolerance ?? DEFAULT_IMPUTE_TOLERANCE;
  const ctx = model.ctx;
  const select = percentages.map((p) => percentileIndex(p, L));

  // 1. Per image: the threshold of each p from the sorted map, the keep masks, the clean score.
  const first = await model.runProgram({
    key: `road-masks|${o.order}|${M}|${image}|${classes}|${percentages}`,
    batch: M,
    maxChunk: o.maxChunk,
    build: (nb) => {
      const t = new Tape();
      const xs = t.input('x', [nb, ...image]);
      const ms = t.input('maps', [nb, H, W]);
      const ss = t.input('seed', [nb, classes]);
      const flat = t.reshape(o.order === 'lerf' ? t.sub(t.scalar(1), ms) : ms, [nb, L]);
      const sorted = t.sort(flat, { descending: false, output: 'values' });
      const column = (k: number) => t.record({ kind: 'slice', inputs: [sorted.name], axis: 1, start: k }, [nb, 1], { name: 'road_order_statistic', opType: 'Slice' });
      const one = t.scalar(1);
      const zero = t.scalar(0);
      const masks = select.map(({ lo, hi, gamma }) => {
        const a = column(lo);
        let threshold = a;
        if (gamma > 0) {
          // numpy's _lerp: a + (b − a)·γ below γ = ½, b − (b − a)·(1 − γ) from there.
          const b = column(hi);
          const span = t.sub(b, a);
          threshold = gamma < 0.5 ? t.add(a, t.mul(span, t.scalar(gamma))) : t.sub(b, t.mul(span, t.scalar(1 - gamma)));
        }
        // Kept where map < threshold: relu(threshold − map) is nonzero exactly there.
        const above = t.activation(t.sub(t.broadcast(threshold, [nb, L]), flat), { kind: 'relu' });
        return t.reshape(t.where(above, one, zero), [nb, 1, L]);
      });
      const keep = masks.length === 1 ? masks[0] : t.record({ kind: 'concat', inputs: masks.map((m) => m.name), axis: 1 }, null, { name: 'road_masks', opType: 'Concat' });
      const mt = model.tape(nb, { image, onto: { tape: t, input: xs, prefix: 'road_clean/' } });
      const clean = targetSoftmax(t, mt.logits, ss);
      return { graph: t.graph, names: new Map([['keep', t.reshape(keep, [nb, P, H, W]).name], ['clean', clean.name]]), shared: (n: string) => model.isModelConstant(n) };
    },
    feeds: { x: { tensor: x, batchAxis: 0 }, maps: { tensor: maps, batchAxis: 0 }, seed: { tensor: seed, batchAxis: 0 } },
    results: { keep: { batchAxis: 0 }, clean: { batchAxis: 0 } },
    label: 'road-masks',
  });
  const keep = first.results.get('keep')!;
  const clean = first.results.get('clean')!;
  const owned: Tensor[] = [];
  try {
    // 2. Per row r = m·P + j: image m with the pixels of keep[m, j] removed, imputed, noised, scored.
    const R = M * P;
    const imageIndex = o.images ?? Array.from({ length: M }, (_, m) => m);
    const rowImage = Float32Array.from({ length: R }, (_, r) => Math.floor(r / P));
    const rowKey = Float32Array.from({ length: R }, (_, r) => imageIndex[Math.floor(r / P)]);
    // The stream names (order, p): a row's noise does not depend on which other percentages run.
    const rowStream = Float32Array.from({ length: R }, (_, r) => (o.order === 'lerf' ? 1 << 20 : 0) + Math.round(percentages[r % P] * 1000));
    const feedRow = (data: Float32Array, name: string) => {
      const tensor = Tensor.fromData(ctx, data, [R], `road-${name}`);
      owned.push(tensor);
      return { tensor, batchAxis: 0 as const };
    };
    const draws: 'none' | 'fed' | 'seeded' = noise === 0 ? 'none' : o.noiseTensor ? 'fed' : 'seeded';
    const second = await model.runProgram({
      key: `road-rows|${o.order}|${M}|${image}|${classes}|${percentages}|${iterations}|${tolerance}|${noise}|${seedValue}|${draws}`,
      batch: R,
      maxChunk: o.maxChunk,
      build: (nb) => {
        const t = new Tape();
        const xAll = t.input('x', [M, ...image]);
        const seedAll = t.input('seed', [M, classes]);
        const img = t.input('row_image', [nb]);
        const keepRows = t.input('keep', [nb, 1, H, W]);
        const filled = t.impute(t.gatherRows(xAll, img), keepRows, { iterations, tolerance });
        const residual = t.imputeResidual(filled, keepRows);
        let noisy = filled;
        if (draws !== 'none') {
          const z = draws === 'fed'
            ? t.input('noise', [nb, ...image])
            : t.random(t.input('row_key', [nb]), [nb, ...image], { dist: 'normal', seed: seedValue, stream: 0, a: 0, b: 1 }, { streams: t.input('row_stream', [nb]), blocks: t.input('row_block', [nb]) });
          // noise·z as road.py computes it, on the removed pixels only.
          noisy = t.add(filled, t.mul(t.mul(z, t.scalar(noise)), t.sub(t.scalar(1), keepRows)));
        }
        const mt = model.tape(nb, { image, onto: { tape: t, input: noisy, prefix: 'road/' } });
        const score = targetSoftmax(t, mt.logits, t.gatherRows(seedAll, img));
        return { graph: t.graph, names: new Map([['score', score.name], ['residual', residual.name]]), shared: (n: string) => model.isModelConstant(n) };
      },
      feeds: {
        x: { tensor: x, batchAxis: null },
        seed: { tensor: seed, batchAxis: null },
        keep: { tensor: keep.reshaped([R, 1, H, W]), batchAxis: 0 },
        row_image: feedRow(rowImage, 'image'),
        ...(draws === 'fed' ? { noise: { tensor: o.noiseTensor!.reshaped([R, ...image]), batchAxis: 0 as const } } : {}),
        ...(draws === 'seeded' ? { row_key: feedRow(rowKey, 'key'), row_stream: feedRow(rowStream, 'stream'), row_block: feedRow(new Float32Array(R), 'block') } : {}),
      },
      results: { score: { batchAxis: 0 }, residual: { batchAxis: 0 } },
      label: 'road',
    });
    const flatScore = second.results.get('score')!;
    const flatResidual = second.results.get('residual')!;
    owned.push(flatScore, flatResidual);
    // 3. Per image: the tables (results the caller owns, shaped [M, P]).
    const third = await model.runProgram({
      key: `road-tables|${M}|${P}`,
      batch: M,
      build: (nb) => {
        const t = new Tape();
        const s = t.input('scores', [nb, P]);
        const res = t.input('residuals', [nb, P]);
        const c = t.input('clean', [nb]);
        const diff = t.sub(s, t.broadcast(t.reshape(c, [nb, 1]), [nb, P]));
        const mean = t.reshape(t.reduce('mean', s, [1]), [nb]);
        return { graph: t.graph, names: new Map([['scores', s.name], ['residual', res.name], ['diff', diff.name], ['mean', mean.name]]) };
      },
      feeds: { scores: { tensor: flatScore.reshaped([M, P]), batchAxis: 0 }, residuals: { tensor: flatResidual.reshaped([M, P]), batchAxis: 0 }, clean: { tensor: clean, batchAxis: 0 } },
      results: { scores: { batchAxis: 0 }, residual: { batchAxis: 0 }, diff: { batchAxis: 0 }, mean: { batchAxis: 0 } },
      label: 'road-tables',
    });
    const r = third.results;
    return { scores: r.get('scores')!, clean, diff: r.get('diff')!, mean: r.get('mean')!, residual: r.get('residual')!, ...(o.returnMasks ? { keep } : {}) };
  } catch (e) {
    clean.dispose();
    keep.dispose();
    throw e;
  } finally {
    if (!o.returnMasks) keep.dispose();
    for (const t of owned) t.dispose();
  }
}

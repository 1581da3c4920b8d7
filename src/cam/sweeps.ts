import type { Model } from '../model.js';
import type { Sym } from '../ops/graph.js';
import { Tape } from '../ops/tape.js';
import { InputError } from '../runtime/errors.js';
import { hostTensor } from '../runtime/host-tensor.js';
import { Tensor } from '../runtime/tensor.js';
import { finalMap, layerMap, normalize01, upsample, weightedSum } from './math.js';
import { gaussian } from './random.js';

/**
 * Score sweeps (Score-CAM and its kin, SPEC §1): every channel k of the target layer becomes a
 * mask M_k = u(up(A_k)) of the input, each masked copy x ⊙ M_k (or several per channel) runs
 * forward, and the target's score of each copy weighs its channel. The copies are the rows of
 * a batched program: row r is (image, channel, sub-copy), its image and mask are gathered on
 * the GPU from the clean pass's input and activations, and the runner splits the rows into
 * passes that fit, recorded into one encoder. Nothing is read back.
 */
export interface ScoreSweep {
  name: string;
  /** Copies per channel (SS-CAM's noise samples, IS-CAM's integration steps; 1 for Score-CAM). */
  copies: number;
  /** The mask of each row's copy ([nb, 1, H, W] in input space) from its gathered activations a [nb, h, w]. */
  mask(t: Tape, a: Sym, row: SweepRow, size: readonly [number, number], o: SweepOptions): Sym;
  /** Sum or mean of the copies' scores per channel. */
  reduce: 'mean' | 'sum';
}

/** What identifies each row of a sweep ([nb] each, whole numbers as f32). */
export interface SweepRow {
  /** j: which copy of its channel. */
  copy: Sym;
  /** A key unique to (image, channel, copy) across calls: image·K·S + k·S + j. */
  key: Sym;
  /** The image's index (with the call's image offset). */
  image: Sym;
  /** k: the channel within its image. */
  channel: Sym;
}

export interface SweepOptions {
  /** Upsample the activation masks with align_corners = true (pytorch-grad-cam's Score-CAM). */
  alignCorners: boolean;
  /** Subtract y_c(x) from every score before the softmax (torch-cam). */
  baseline: boolean;
  seed: number;
  /**
   * 'spec' (default): SPEC §1's rows. 'torchcam': torch-cam's code, for parity — masks up(u(A_k)),
   * IS-CAM's coefficients i(i+1)/(2n) with its step scores averaged, SS-CAM's noise added to the
   * upsampled mask (one N(0, σ²) value per input pixel, torch-cam's draw layout), the baseline
   * subtracted.
   */
  style?: 'spec' | 'torchcam';
  /** Where the masks multiply (default: the model input). */
  space?: MaskSpace;
  /** Called with the number of rows (forward passes) the GPU has just finished; runs the rows in groups, one submit each. */
  progress?: (rows: number) => void;
}

/** How many submits a sweep with progress reporting is split into. */
const PROGRESS_GROUPS = 20;

/**
 * Where masks multiply (SPEC §0 "masking space"): null, the tensor the model receives; else
 * the [0, 1] pixels p = x·std + mean per channel, normalized again after the mask.
 */
export type MaskSpace = { mean: readonly number[]; std: readonly number[] } | null;

/** x ⊙ m in the masking space, then `fill` where `fillWhere` is 1 (Occlusion's patches), as the model input. */
export function maskInput(t: Tape, x: Sym, m: Sym, space: MaskSpace, fill?: { value: number; where: Sym }): Sym {
  const filled = (v: Sym) => (fill ? t.add(v, t.mul(fill.where, t.scalar(fill.value))) : v);
  if (!space) return filled(t.mul(x, m));
  const C = x.shape[1];
  const perChannel = (v: readonly number[]) => t.constant(hostTensor('float32', [1, C, 1, 1], Float32Array.from({ length: C }, (_, c) => v[v.length === 1 ? 0 : c])));
  const mean = perChannel(space.mean);
  const std = perChannel(space.std);
  const pixels = t.add(t.mul(x, std), mean);
  return t.div(t.sub(filled(t.mul(pixels, m)), mean), std);
}

/** torch-cam's masks up(u(A_k)): normalized at the layer's resolution (eps 1e-8), then upsampled, as [n, 1, H, W]. */
const maskTorchcam = (t: Tape, a: Sym, size: readonly [number, number]) => {
  const [n] = a.shape;
  return t.reshape(upsample(t, normalize01(t, a, 1e-8), size), [n, 1, size[0], size[1]]);
};

/** The SS-CAM noise seed (xor the call's seed); tools/gen_cam_fixtures_sweeps.py feeds torch-cam the same. */
const SS_NOISE_SEED = 0x55ca;

/** SPEC's M_k = u(up(A_k)) (as PGC: upsample, then normalize with eps 1e-8), as [n, 1, H, W]. */
export const mask01 = (t: Tape, a: Sym, size: readonly [number, number], alignCorners: boolean) => {
  const [n] = a.shape;
  return t.reshape(normalize01(t, upsample(t, a, size, alignCorners), 1e-8), [n, 1, size[0], size[1]]);
};

export const SWEEPS: Record<string, ScoreSweep> = {
  scorecam: {
    name: 'scorecam',
    copies: 1,
    mask: (t, a, _row, size, o) => (o.style === 'torchcam' ? maskTorchcam(t, a, size) : mask01(t, a, size, o.alignCorners)),
    reduce: 'mean',
  },
  // IS-CAM: s_k = Σ_{i=1..n} y_c(x ⊙ (i/n)·M_k), n = 10 (torch-cam: the mean over i of y_c(x ⊙ (i(i+1)/2n)·M_k)).
  iscam: {
    name: 'iscam',
    copies: 10,
    mask: (t, a, row, size, o) => {
      const n = 10;
      const i = t.add(row.copy, t.scalar(1));
      const coefficient = o.style === 'torchcam' ? t.mul(t.mul(i, t.add(i, t.scalar(1))), t.scalar(1 / (2 * n))) : t.mul(i, t.scalar(1 / n));
      const m = o.style === 'torchcam' ? maskTorchcam(t, a, size) : mask01(t, a, size, o.alignCorners);
      return t.mul(m, t.reshape(coefficient, [a.shape[0], 1, 1, 1]));
    },
    reduce: 'sum',
  },
  // SS-CAM: the mean over n = 35 copies of A_k + N(0, 2²) before the mask is made
  // (torch-cam: up(u(A_k)) + N(0, 2²) per input pixel).
  sscam: {
    name: 'sscam',
    copies: 35,
    mask: (t, a, row, size, o) => {
      if (o.style !== 'torchcam') return mask01(t, t.add(a, gaussian(t, row.key, a.shape, o.seed ^ SS_NOISE_SEED, 0, 0, 2)), size, o.alignCorners);
      const [nb] = a.shape;
      const noise = t.random(row.image, [nb, size[0] * size[1]], { dist: 'normal', seed: (o.seed ^ SS_NOISE_SEED) >>> 0, stream: 0, a: 0, b: 2 }, { streams: row.copy, blocks: row.channel });
      return t.add(maskTorchcam(t, a, size), t.reshape(noise, [nb, 1, size[0], size[1]]));
    },
    reduce: 'mean',
  },
};

/** What a sweep reads from the clean pass. */
export interface SweepInputs {
  /** The images as the model receives them, [M, C, H, W]. */
  x: Tensor;
  /** The target layer's activations, [M, K, h, w]. */
  a: Tensor;
  /** Each row's target weights (one-hot) [M, classes], and its clean score y_c(x) [M]. */
  seed: Tensor;
  score: Tensor;
  /** Each row's image index, on the host (it keys seeded noise; known before anything runs). */
  image: readonly number[];
}

export interface SweepResult {
  map: Tensor;
  raw: Tensor;
  weights: Tensor;
  /** The per-channel scores s_k, [M, K]. */
  scores: Tensor;
}

/**
 * The scores of a sweep's masked copies: row r = ((m·K + k)·S + j) scores image m masked by
 * `sweep.mask` of copy j of channel k, as [M·K·S] (the caller owns it). One program, split
 * into passes that fit, no readback.
 */
export async function sweepScores(model: Model, sweep: ScoreSweep, inputs: Pick<SweepInputs, 'x' | 'a' | 'seed' | 'image'>, o: SweepOptions & { scoreOf: 'logit' | 'softmax'; maxChunk?: number; key?: string }): Promise<Tensor> {
  const [M, K, h, w] = inputs.a.shape;
  const image = inputs.x.shape.slice(1);
  const size: [number, number] = [image[1], image[2]];
  const classes = inputs.seed.shape[1];
  const S = sweep.copies;
  const rows = M * K * S;
  if (rows > 0x7fffffff) throw new InputError(`${sweep.name}: ${rows} masked copies is more than one sweep can index`);
  const ctx = model.ctx;
  // Row r = ((m·K + k)·S + j): its image, its (image, channel) row of A, its copy.
  const rowImage = new Float32Array(rows);
  const rowChannel = new Float32Array(rows);
  const rowCopy = new Float32Array(rows);
  const rowKey = new Float32Array(rows);
  const rowImageIndex = new Float32Array(rows);
  const rowK = new Float32Array(rows);
  const imageIdx = inputs.image;
  for (let r = 0; r < rows; r++) {
    const j = r % S;
    const mk = (r - j) / S;
    rowImage[r] = Math.floor(mk / K);
    rowChannel[r] = mk;
    rowCopy[r] = j;
    rowKey[r] = imageIdx[rowImage[r]] * K * S + (mk % K) * S + j;
    rowImageIndex[r] = imageIdx[rowImage[r]];
    rowK[r] = mk % K;
  }
  const aFlat = inputs.a.reshaped([M * K, h, w]);
  const fields = [rowImage, rowChannel, rowCopy, rowKey, rowImageIndex, rowK];
  // Rows [from, to) as one run: its row feeds, the program (cached per chunk size), one submit.
  const runRows = async (from: number, to: number): Promise<Tensor> => {
    const feedsOwned = fields.map((f, k) => Tensor.fromData(ctx, f.subarray(from, to), [to - from], `sweep-rows-${k}`));
    try {
      const sweepRun = await model.runProgram({
        key: `sweep|${sweep.name}|${o.key ?? ''}|${image}|${M}|${K}|${h}|${w}|${o.alignCorners}|${o.scoreOf}|${o.seed}|${o.style ?? 'spec'}|${JSON.stringify(o.space ?? null)}`,
        batch: to - from,
        maxChunk: o.maxChunk,
        build: (nb) => {
          const t = new Tape();
          const xAll = t.input('x', [M, ...image]);
          const aAll = t.input('a', [M * K, h, w]);
          const seedAll = t.input('seed', [M, classes]);
          const img = t.input('row_image', [nb]);
          const ch = t.input('row_channel', [nb]);
          const row: SweepRow = { copy: t.input('row_copy', [nb]), key: t.input('row_key', [nb]), image: t.input('row_image_index', [nb]), channel: t.input('row_k', [nb]) };
          const mask = sweep.mask(t, t.gatherRows(aAll, ch), row, size, o);
          const masked = maskInput(t, t.gatherRows(xAll, img), mask, o.space ?? null);
          const mt = model.tape(nb, { image, onto: { tape: t, input: masked, prefix: 'sweep/' } });
          const scored = o.scoreOf === 'softmax' ? t.softmax(mt.logits, -1) : mt.logits;
          const score = t.reshape(t.reduce('sum', t.mul(scored, t.gatherRows(seedAll, img)), [1]), [nb]);
          return { graph: t.graph, names: new Map([['score', score.name]]), shared: (n: string) => model.isModelConstant(n) };
        },
        feeds: {
          x: { tensor: inputs.x, batchAxis: null },
          a: { tensor: aFlat, batchAxis: null },
          seed: { tensor: inputs.seed, batchAxis: null },
          row_image: { tensor: feedsOwned[0], batchAxis: 0 },
          row_channel: { tensor: feedsOwned[1], batchAxis: 0 },
          row_copy: { tensor: feedsOwned[2], batchAxis: 0 },
          row_key: { tensor: feedsOwned[3], batchAxis: 0 },
          row_image_index: { tensor: feedsOwned[4], batchAxis: 0 },
          row_k: { tensor: feedsOwned[5], batchAxis: 0 },
        },
        results: { score: { batchAxis: 0 } },
        label: sweep.name,
      });
      return sweepRun.results.get('score')!;
    } finally {
      for (const t of feedsOwned) t.dispose();
    }
  };
  if (!o.progress) return runRows(0, rows);
  // With progress: groups of rows, each its own submit, reported as the queue finishes it
  // (onSubmittedWorkDone), never by reading results; the scores are then copied into one tensor.
  const group = Math.max(1, Math.ceil(rows / PROGRESS_GROUPS));
  const parts: { from: number; t: Tensor }[] = [];
  try {
    for (let from = 0; from < rows; from += group) {
      const to = Math.min(rows, from + group);
      parts.push({ from, t: await runRows(from, to) });
      const report = o.progress;
      void ctx.device.queue.onSubmittedWorkDone().then(() => report(to - from), () => undefined);
    }
    const out = Tensor.empty(ctx, [rows], 'sweep-scores');
    const enc = ctx.device.createCommandEncoder({ label: 'sweep-scores' });
    for (const p of parts) enc.copyBufferToBuffer(p.t.buffer, p.t.byteOffset, out.buffer, out.byteOffset + p.from * 4, p.t.byteLength);
    ctx.device.queue.submit([enc.finish()]);
    return out;
  } finally {
    for (const p of parts) p.t.dispose();
  }
}

/** Runs one score sweep and the weighting after it: two programs, no readback. */
export async function runScoreSweep(model: Model, sweep: ScoreSweep, inputs: SweepInputs, o: SweepOptions & { scoreOf: 'logit' | 'softmax'; maxChunk?: number }): Promise<SweepResult> {
  const [M, K, h, w] = inputs.a.shape;
  const image = inputs.x.shape.slice(1);
  const size: [number, number] = [image[1], image[2]];
  const S = sweep.copies;
  const flat = await sweepScores(model, sweep, inputs, o);
  const scores = flat.reshaped([M, K * S]);
  try {
    // The weighting: per image, scores [K, S] → s_k → softmax over k → Σ w_k A_k → the map.
    const combine = await model.runProgram({
      key: `sweep-weights|${sweep.name}|${M}|${K}|${h}|${w}|${size}|${o.baseline}|${o.style ?? 'spec'}`,
      batch: M,
      split: false,
      build: (nb) => {
        const t = new Tape();
        const s = t.input('scores', [nb, K * S]);
        const a = t.input('a', [nb, K, h, w]);
        const clean = t.input('clean', [nb]);
        const tc = o.style === 'torchcam';
        let sk = t.reshape(t.reduce(tc ? 'mean' : sweep.reduce, t.reshape(s, [nb, K, S]), [2]), [nb, K]);
        if (o.baseline || tc) sk = t.sub(sk, t.reshape(clean, [nb, 1]));
        const weights = t.softmax(sk, -1);
        const raw = weightedSum(t, a, weights);
        const map = finalMap(t, [layerMap(t, raw, size)]);
        return { graph: t.graph, names: new Map([['map', map.name], ['raw', raw.name], ['weights', weights.name], ['scores', sk.name]]) };
      },
      feeds: { scores: { tensor: scores, batchAxis: 0 }, a: { tensor: inputs.a, batchAxis: 0 }, clean: { tensor: inputs.score, batchAxis: 0 } },
      results: { map: { batchAxis: 0 }, raw: { batchAxis: 0 }, weights: { batchAxis: 0 }, scores: { batchAxis: 0 } },
      label: `${sweep.name}-weights`,
    });
    return { map: combine.results.get('map')!, raw: combine.results.get('raw')!, weights: combine.results.get('weights')!, scores: combine.results.get('scores')! };
  } finally {
    flat.dispose();
  }
}

/**
 * Ablation-CAM (PGC ablation_cam.py, SPEC §1): w_k = (y_c − y_c^(k)) / y_c, y_c^(k) the score
 * with channel k of the layer set to 0, the network's suffix re-run from the layer on the
 * ablated activations. Rows are (image, channel), batched and split like the score sweeps.
 */
export async function runAblationSweep(model: Model, layer: string, inputs: Omit<SweepInputs, 'x'>, o: { scoreOf: 'logit' | 'softmax'; maxChunk?: number; image: readonly number[] }): Promise<SweepResult> {
  const [M, K, h, w] = inputs.a.shape;
  const classes = inputs.seed.shape[1];
  const rows = M * K;
  const ctx = model.ctx;
  const rowImage = Tensor.fromData(ctx, Float32Array.from({ length: rows }, (_, r) => Math.floor(r / K)), [rows], 'ablation-image');
  const rowChannel = Tensor.fromData(ctx, Float32Array.from({ length: rows }, (_, r) => r % K), [rows], 'ablation-channel');
  try {
    const run = await model.runProgram({
      key: `ablation|${layer}|${o.image}|${M}|${K}|${o.scoreOf}`,
      batch: rows,
      maxChunk: o.maxChunk ?? 32,
      build: (nb) => {
        const t = new Tape();
        const aAll = t.input('a', [M, K, h, w]);
        const seedAll = t.input('seed', [M, classes]);
        const img = t.input('row_image', [nb]);
        const ch = t.input('row_channel', [nb]);
        const channels = t.constant(hostTensor('float32', [1, K], Float32Array.from({ length: K }, (_, k) => k)));
        // 1 at the row's channel, 0 elsewhere: relu(1 − |k − c|) for whole numbers.
        const onehot = t.activation(t.sub(t.broadcast(t.scalar(1), [nb, K]), t.activation(t.sub(t.reshape(ch, [nb, 1]), channels), { kind: 'abs' })), { kind: 'relu' });
        const keep = t.reshape(t.sub(t.broadcast(t.scalar(1), [nb, K]), onehot), [nb, K, 1, 1]);
        const ablated = t.mul(t.gatherRows(aAll, img), keep);
        const logits = model.suffix(nb, layer, t, ablated, 'ablation/', o.image);
        const scored = o.scoreOf === 'softmax' ? t.softmax(logits, -1) : logits;
        const score = t.reshape(t.reduce('sum', t.mul(scored, t.gatherRows(seedAll, img)), [1]), [nb]);
        return { graph: t.graph, names: new Map([['score', score.name]]), shared: (n: string) => model.isModelConstant(n) };
      },
      feeds: {
        a: { tensor: inputs.a, batchAxis: null },
        seed: { tensor: inputs.seed, batchAxis: null },
        row_image: { tensor: rowImage, batchAxis: 0 },
        row_channel: { tensor: rowChannel, batchAxis: 0 },
      },
      results: { score: { batchAxis: 0 } },
      label: 'ablationcam',
    });
    const flat = run.results.get('score')!;
    try {
      const size: [number, number] = [o.image[1], o.image[2]];
      const combine = await model.runProgram({
        key: `ablation-weights|${M}|${K}|${h}|${w}|${size}`,
        batch: M,
        split: false,
        build: (nb) => {
          const t = new Tape();
          const s = t.input('scores', [nb, K]);
          const a = t.input('a', [nb, K, h, w]);
          const y = t.reshape(t.input('clean', [nb]), [nb, 1]);
          const weights = t.div(t.sub(y, s), y);
          const raw = weightedSum(t, a, weights);
          const map = finalMap(t, [layerMap(t, raw, size)]);
          return { graph: t.graph, names: new Map([['map', map.name], ['raw', raw.name], ['weights', weights.name], ['scores', s.name]]) };
        },
        feeds: { scores: { tensor: flat.reshaped([M, K]), batchAxis: 0 }, a: { tensor: inputs.a, batchAxis: 0 }, clean: { tensor: inputs.score, batchAxis: 0 } },
        results: { map: { batchAxis: 0 }, raw: { batchAxis: 0 }, weights: { batchAxis: 0 }, scores: { batchAxis: 0 } },
        label: 'ablationcam-weights',
      });
      return { map: combine.results.get('map')!, raw: combine.results.get('raw')!, weights: combine.results.get('weights')!, scores: combine.results.get('scores')! };
    } finally {
      flat.dispose();
    }
  } finally {
    rowImage.dispose();
    rowChannel.dispose();
  }
}

export interface RiseOptions {
  space?: MaskSpace;
  masks: number;
  grid: number;
  p1: number;
  seed: number;
  scoreOf: 'logit' | 'softmax';
  maxChunk?: number;
}

/** Masks per group in RISE's weighting program ([group, H·W] at a time). */
const RISE_GROUP = 256;

/**
 * RISE (eclique/RISE explanations.py, SPEC §1): S = Σ_i f_c(x ⊙ M_i)·M_i / (N·p1) over N
 * seeded masks (the same N masks for every image), with the softmax score by default. The
 * masked copies are the rows of one program (mask i generated on the GPU where the copy
 * needs it); the weighting regenerates the masks in groups and sums score × mask as a matmul.
 */
export async function runRiseSweep(model: Model, inputs: Pick<SweepInputs, 'x' | 'seed'>, o: RiseOptions): Promise<Omit<SweepResult, 'weights'>> {
  const [M, ...image] = inputs.x.shape;
  const [H, W] = [image[1], image[2]];
  const classes = inputs.seed.shape[1];
  const N = o.masks;
  if (!(Number.isInteger(N) && N >= 1)) throw new InputError(`RISE: the number of masks must be a whole number ≥ 1, got ${N}`);
  const attrs = { grid: o.grid, p1: o.p1, seed: o.seed >>> 0, size: [H, W] as [number, number] };
  const rows = M * N;
  const ctx = model.ctx;
  const rowImage = Tensor.fromData(ctx, Float32Array.from({ length: rows }, (_, r) => Math.floor(r / N)), [rows], 'rise-image');
  const rowMask = Tensor.fromData(ctx, Float32Array.from({ length: rows }, (_, r) => r % N), [rows], 'rise-mask');
  try {
    const run = await model.runProgram({
      key: `rise|${image}|${M}|${N}|${o.grid}|${o.p1}|${o.seed}|${o.scoreOf}|${JSON.stringify(o.space ?? null)}`,
      batch: rows,
      maxChunk: o.maxChunk,
      build: (nb) => {
        const t = new Tape();
        const xAll = t.input('x', [M, ...image]);
        const seedAll = t.input('seed', [M, classes]);
        const img = t.input('row_image', [nb]);
        const ids = t.input('row_mask', [nb]);
        const mask = t.reshape(t.riseMasks(ids, attrs), [nb, 1, H, W]);
        const mt = model.tape(nb, { image, onto: { tape: t, input: maskInput(t, t.gatherRows(xAll, img), mask, o.space ?? null), prefix: 'rise/' } });
        const scored = o.scoreOf === 'softmax' ? t.softmax(mt.logits, -1) : mt.logits;
        const score = t.reshape(t.reduce('sum', t.mul(scored, t.gatherRows(seedAll, img)), [1]), [nb]);
        return { graph: t.graph, names: new Map([['score', score.name]]), shared: (n: string) => model.isModelConstant(n) };
      },
      feeds: {
        x: { tensor: inputs.x, batchAxis: null },
        seed: { tensor: inputs.seed, batchAxis: null },
        row_image: { tensor: rowImage, batchAxis: 0 },
        row_mask: { tensor: rowMask, batchAxis: 0 },
      },
      results: { score: { batchAxis: 0 } },
      label: 'rise',
    });
    const flat = run.results.get('score')!;
    try {
      const combine = await model.runProgram({
        key: `rise-weights|${M}|${N}|${H}|${W}|${o.grid}|${o.p1}|${o.seed}`,
        batch: M,
        split: false,
        build: (nb) => {
          const t = new Tape();
          const s = t.input('scores', [nb, N]);
          let sum: Sym | null = null;
          for (let i0 = 0; i0 < N; i0 += RISE_GROUP) {
            const g = Math.min(RISE_GROUP, N - i0);
            const ids = t.constant(hostTensor('float32', [g], Float32Array.from({ length: g }, (_, j) => i0 + j)));
            const masks = t.reshape(t.riseMasks(ids, attrs), [g, H * W]);
            const part = g === N ? s : t.record({ kind: 'slice', inputs: [s.name], axis: 1, start: i0 }, [nb, g], { name: 'rise_scores', opType: 'Slice' });
            const term = t.matmul(part, masks);
            sum = sum ? t.add(sum, term) : term;
          }
          const raw = t.reshape(t.mul(sum!, t.scalar(1 / (N * o.p1))), [nb, H, W]);
          return { graph: t.graph, names: new Map([['raw', raw.name], ['map', normalize01(t, raw, 1e-8).name], ['scores', s.name]]) };
        },
        feeds: { scores: { tensor: flat.reshaped([M, N]), batchAxis: 0 } },
        results: { map: { batchAxis: 0 }, raw: { batchAxis: 0 }, scores: { batchAxis: 0 } },
        label: 'rise-weights',
      });
      return { map: combine.results.get('map')!, raw: combine.results.get('raw')!, scores: combine.results.get('scores')! };
    } finally {
      flat.dispose();
    }
  } finally {
    rowImage.dispose();
    rowMask.dispose();
  }
}

export interface OcclusionOptions {
  /** Where the patch is filled: the model input (default) or the [0, 1] pixels (fill in pixel units). */
  space?: MaskSpace;
  /** Side of the square patch (default 64, at most the image's side). */
  patch: number;
  stride: number;
  fill: number;
  scoreOf: 'logit' | 'softmax';
  maxChunk?: number;
}

/** Patch positions along one axis of length n. */
function positions(n: number, patch: number, stride: number): number[] {
  const out: number[] = [];
  for (let p = 0; p + patch <= n; p += stride) out.push(p);
  if (out.length === 0 || out[out.length - 1] + patch < n) out.push(n - patch);
  return out;
}

/**
 * 1 inside the patch of each row, 0 outside: [nb, H, W] from the rows' top-left corners
 * ([nb] each), by comparisons with the pixel coordinates (relu(v) > 0 ⇔ v > 0).
 */
function boxes(t: Tape, y0: Sym, x0: Sym, patch: number, H: number, W: number): Sym {
  const nb = y0.shape[0];
  const coords = (n: number, shape: number[]) => t.constant(hostTensor('float32', shape, Float32Array.from({ length: n }, (_, i) => i)));
  const inside = (c: Sym, start: Sym) => {
    const from = t.activation(t.sub(t.add(c, t.scalar(0.5)), start), { kind: 'relu' });
    const to = t.activation(t.sub(t.add(start, t.scalar(patch - 0.5)), c), { kind: 'relu' });
    const one = t.broadcast(t.scalar(1), from.shape);
    const zero = t.broadcast(t.scalar(0), from.shape);
    return t.where(from, t.where(to, one, zero), zero);
  };
  const iy = inside(t.broadcast(coords(H, [1, H, 1]), [nb, H, 1]), t.broadcast(t.reshape(y0, [nb, 1, 1]), [nb, H, 1]));
  const ix = inside(t.broadcast(coords(W, [1, 1, W]), [nb, 1, W]), t.broadcast(t.reshape(x0, [nb, 1, 1]), [nb, 1, W]));
  return t.mul(iy, ix);
}

/**
 * Occlusion (seed 000 §4.1; Captum's Occlusion): each patch position p is filled with `fill`,
 * d_p = y_c(x) − y_c(x with patch p filled), and a pixel's value is the mean of d over the
 * patches that cover it. Occluded copies are the rows of one program; the weighting
 * rebuilds the patches as a [P, H·W] matrix and averages by matmul.
 */
export async function runOcclusionSweep(model: Model, inputs: Pick<SweepInputs, 'x' | 'seed' | 'score'>, o: OcclusionOptions): Promise<Omit<SweepResult, 'weights'>> {
  const [M, ...image] = inputs.x.shape;
  const [H, W] = [image[1], image[2]];
  const patch = Math.min(o.patch, H, W);
  if (!(Number.isInteger(o.patch) && o.patch >= 1 && Number.isInteger(o.stride) && o.stride >= 1)) {
    throw new InputError(`Occlusion: patch and stride must be whole numbers ≥ 1, got ${o.patch}, ${o.stride}`);
  }
  const ys = positions(H, patch, o.stride);
  const xs = positions(W, patch, o.stride);
  const P = ys.length * xs.length;
  const corners = (k: number) => [ys[Math.floor(k / xs.length)], xs[k % xs.length]];
  const classes = inputs.seed.shape[1];
  const rows = M * P;
  const ctx = model.ctx;
  const rowImage = Tensor.fromData(ctx, Float32Array.from({ length: rows }, (_, r) => Math.floor(r / P)), [rows], 'occlusion-image');
  const rowY = Tensor.fromData(ctx, Float32Array.from({ length: rows }, (_, r) => corners(r % P)[0]), [rows], 'occlusion-y');
  const rowX = Tensor.fromData(ctx, Float32Array.from({ length: rows }, (_, r) => corners(r % P)[1]), [rows], 'occlusion-x');
  try {
    const run = await model.runProgram({
      key: `occlusion|${image}|${M}|${patch}|${o.stride}|${o.fill}|${o.scoreOf}|${JSON.stringify(o.space ?? null)}`,
      batch: rows,
      maxChunk: o.maxChunk,
      build: (nb) => {
        const t = new Tape();
        const xAll = t.input('x', [M, ...image]);
        const seedAll = t.input('seed', [M, classes]);
        const img = t.input('row_image', [nb]);
        const box = t.reshape(boxes(t, t.input('row_y', [nb]), t.input('row_x', [nb]), patch, H, W), [nb, 1, H, W]);
        const keep = t.sub(t.broadcast(t.scalar(1), box.shape), box);
        const occluded = maskInput(t, t.gatherRows(xAll, img), keep, o.space ?? null, { value: o.fill, where: box });
        const mt = model.tape(nb, { image, onto: { tape: t, input: occluded, prefix: 'occlusion/' } });
        const scored = o.scoreOf === 'softmax' ? t.softmax(mt.logits, -1) : mt.logits;
        const score = t.reshape(t.reduce('sum', t.mul(scored, t.gatherRows(seedAll, img)), [1]), [nb]);
        return { graph: t.graph, names: new Map([['score', score.name]]), shared: (n: string) => model.isModelConstant(n) };
      },
      feeds: {
        x: { tensor: inputs.x, batchAxis: null },
        seed: { tensor: inputs.seed, batchAxis: null },
        row_image: { tensor: rowImage, batchAxis: 0 },
        row_y: { tensor: rowY, batchAxis: 0 },
        row_x: { tensor: rowX, batchAxis: 0 },
      },
      results: { score: { batchAxis: 0 } },
      label: 'occlusion',
    });
    const flat = run.results.get('score')!;
    try {
      const combine = await model.runProgram({
        key: `occlusion-weights|${M}|${H}|${W}|${patch}|${o.stride}`,
        batch: M,
        split: false,
        build: (nb) => {
          const t = new Tape();
          const s = t.input('scores', [nb, P]);
          const clean = t.reshape(t.input('clean', [nb]), [nb, 1]);
          const drop = t.sub(clean, s);
          const cy = t.constant(hostTensor('float32', [P], Float32Array.from({ length: P }, (_, k) => corners(k)[0])));
          const cx = t.constant(hostTensor('float32', [P], Float32Array.from({ length: P }, (_, k) => corners(k)[1])));
          const all = t.reshape(boxes(t, cy, cx, patch, H, W), [P, H * W]);
          const count = t.reduce('sum', all, [0]);
          const raw = t.reshape(t.div(t.matmul(drop, all), t.add(count, t.scalar(1e-30))), [nb, H, W]);
          return { graph: t.graph, names: new Map([['raw', raw.name], ['map', normalize01(t, raw, 1e-8).name], ['scores', drop.name]]) };
        },
        feeds: { scores: { tensor: flat.reshaped([M, P]), batchAxis: 0 }, clean: { tensor: inputs.score, batchAxis: 0 } },
        results: { map: { batchAxis: 0 }, raw: { batchAxis: 0 }, scores: { batchAxis: 0 } },
        label: 'occlusion-weights',
      });
      return { map: combine.results.get('map')!, raw: combine.results.get('raw')!, scores: combine.results.get('scores')! };
    } finally {
      flat.dispose();
    }
  } finally {
    for (const t of [rowImage, rowY, rowX]) t.dispose();
  }
}

/** Pixab-CAM's ablation boxes (rows × columns), SPEC §1. */
const PIXAB_BOXES: readonly (readonly [number, number])[] = [[1, 1], [1, 2], [2, 1], [2, 2]];

/** Every box at every top-left position of an h × w map, clipped to it: [y0, y1, x0, x1] each. */
export function pixabBoxes(h: number, w: number): [number, number, number, number][] {
  const out: [number, number, number, number][] = [];
  for (const [bh, bw] of PIXAB_BOXES) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) out.push([i, Math.min(h, i + bh), j, Math.min(w, j + bw)]);
  return out;
}

/** 1 inside [y0, y1) × [x0, x1) of each row, 0 outside: [nb, h, w] from per-row bounds ([nb] each). */
function rectangles(t: Tape, y0: Sym, y1: Sym, x0: Sym, x1: Sym, h: number, w: number): Sym {
  const nb = y0.shape[0];
  const centers = (n: number, shape: number[]) => t.constant(hostTensor('float32', shape, Float32Array.from({ length: n }, (_, i) => i + 0.5)));
  // A pixel center c lies in [start, end) ⇔ relu(c − start) > 0 and relu(end − c) > 0.
  const inside = (c: Sym, start: Sym, end: Sym) => {
    const one = t.broadcast(t.scalar(1), c.shape);
    const zero = t.broadcast(t.scalar(0), c.shape);
    return t.where(t.activation(t.sub(c, start), { kind: 'relu' }), t.where(t.activation(t.sub(end, c), { kind: 'relu' }), one, zero), zero);
  };
  const col = (v: Sym, shape: number[]) => t.broadcast(t.reshape(v, [nb, 1, 1]), shape);
  const iy = inside(t.broadcast(centers(h, [1, h, 1]), [nb, h, 1]), col(y0, [nb, h, 1]), col(y1, [nb, h, 1]));
  const ix = inside(t.broadcast(centers(w, [1, 1, w]), [nb, 1, w]), col(x0, [nb, 1, w]), col(x1, [nb, 1, w]));
  return t.mul(iy, ix);
}

/**
 * Pixab-CAM (seed 002 §4, eq. 7–8; SPEC §1; no public code): at the layer, every ablation box
 * b (1×1, 1×2, 2×1, 2×2 at every position, clipped) is zeroed in all channels (deletion score
 * Y_b) and, separately, everything but it is zeroed (preservation score Ỹ_b); Ỹ zeroes the
 * whole layer. p_b = ((Y − Y_b)/Y)·((Ỹ_b − Ỹ)/Ỹ), a position's p is the mean of p_b over the
 * boxes that cover it, and L = u(relu(p)): the activations weigh nothing. Rows (image, box,
 * perspective) re-run the network's suffix from the layer, batched and split; the weighting
 * averages by a matmul with the [boxes, h·w] cover matrix.
 */
export async function runPixabSweep(model: Model, layer: string, inputs: Omit<SweepInputs, 'x'>, o: { scoreOf: 'logit' | 'softmax'; maxChunk?: number; image: readonly number[] }): Promise<Omit<SweepResult, 'weights'>> {
  const [M, K, h, w] = inputs.a.shape;
  const classes = inputs.seed.shape[1];
  const boxes = pixabBoxes(h, w);
  const B = boxes.length;
  // Per image: row 0 zeroes the whole layer (Ỹ), rows 1…B delete box b, rows B+1…2B keep only box b.
  const per = 1 + 2 * B;
  const rows = M * per;
  // Fields per row: image, y0, y1, x0, x1, and 1 to keep only the box (0 to delete it).
  const fields = Array.from({ length: 6 }, () => new Float32Array(rows));
  for (let r = 0; r < rows; r++) {
    const q = r % per;
    const [y0, y1, x0, x1] = q === 0 ? [0, 0, 0, 0] : boxes[(q - 1) % B];
    [Math.floor(r / per), y0, y1, x0, x1, q === 0 || q > B ? 1 : 0].forEach((v, k) => (fields[k][r] = v));
  }
  const ctx = model.ctx;
  const owned = fields.map((f, k) => Tensor.fromData(ctx, f, [rows], `pixab-${k}`));
  try {
    const run = await model.runProgram({
      key: `pixab|${layer}|${o.image}|${M}|${K}|${h}|${w}|${o.scoreOf}`,
      batch: rows,
      maxChunk: o.maxChunk ?? 64,
      build: (nb) => {
        const t = new Tape();
        const aAll = t.input('a', [M, K, h, w]);
        const seedAll = t.input('seed', [M, classes]);
        const img = t.input('row_image', [nb]);
        const box = rectangles(t, t.input('row_y0', [nb]), t.input('row_y1', [nb]), t.input('row_x0', [nb]), t.input('row_x1', [nb]), h, w);
        // keep = box for preservation rows, 1 − box for deletion rows: 1 − box + k·(2·box − 1).
        const kb = t.reshape(t.input('row_keep', [nb]), [nb, 1, 1]);
        const one = t.broadcast(t.scalar(1), box.shape);
        const keep = t.add(t.sub(one, box), t.mul(kb, t.sub(t.mul(box, t.scalar(2)), one)));
        const ablated = t.mul(t.gatherRows(aAll, img), t.reshape(keep, [nb, 1, h, w]));
        const logits = model.suffix(nb, layer, t, ablated, 'pixab/', o.image);
        const scored = o.scoreOf === 'softmax' ? t.softmax(logits, -1) : logits;
        const score = t.reshape(t.reduce('sum', t.mul(scored, t.gatherRows(seedAll, img)), [1]), [nb]);
        return { graph: t.graph, names: new Map([['score', score.name]]), shared: (n: string) => model.isModelConstant(n) };
      },
      feeds: {
        a: { tensor: inputs.a, batchAxis: null },
        seed: { tensor: inputs.seed, batchAxis: null },
        row_image: { tensor: owned[0], batchAxis: 0 },
        row_y0: { tensor: owned[1], batchAxis: 0 },
        row_y1: { tensor: owned[2], batchAxis: 0 },
        row_x0: { tensor: owned[3], batchAxis: 0 },
        row_x1: { tensor: owned[4], batchAxis: 0 },
        row_keep: { tensor: owned[5], batchAxis: 0 },
      },
      results: { score: { batchAxis: 0 } },
      label: 'pixabcam',
    });
    const flat = run.results.get('score')!;
    try {
      const size: [number, number] = [o.image[1], o.image[2]];
      const cover = new Float32Array(B * h * w);
      boxes.forEach(([y0, y1, x0, x1], b) => {
        for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) cover[b * h * w + y * w + x] = 1;
      });
      const combine = await model.runProgram({
        key: `pixab-weights|${M}|${h}|${w}|${size}`,
        batch: M,
        split: false,
        build: (nb) => {
          const t = new Tape();
          const s = t.input('scores', [nb, per]);
          const part = (start: number, width: number) => t.record({ kind: 'slice', inputs: [s.name], axis: 1, start }, [nb, width], { name: 'pixab_scores', opType: 'Slice' });
          const y = t.reshape(t.input('clean', [nb]), [nb, 1]);
          const yZero = part(0, 1);
          const deletion = t.div(t.sub(y, part(1, B)), y);
          const preservation = t.div(t.sub(part(1 + B, B), yZero), yZero);
          const p = t.mul(deletion, preservation);
          const coverSym = t.constant(hostTensor('float32', [B, h * w], cover));
          const count = t.reduce('sum', coverSym, [0]);
          const raw = t.reshape(t.div(t.matmul(p, coverSym), count), [nb, h, w]);
          const map = finalMap(t, [layerMap(t, raw, size)]);
          return { graph: t.graph, names: new Map([['map', map.name], ['raw', raw.name], ['scores', s.name]]) };
        },
        feeds: { scores: { tensor: flat.reshaped([M, per]), batchAxis: 0 }, clean: { tensor: inputs.score, batchAxis: 0 } },
        results: { map: { batchAxis: 0 }, raw: { batchAxis: 0 }, scores: { batchAxis: 0 } },
        label: 'pixabcam-weights',
      });
      return { map: combine.results.get('map')!, raw: combine.results.get('raw')!, scores: combine.results.get('scores')! };
    } finally {
      flat.dispose();
    }
  } finally {
    for (const t of owned) t.dispose();
  }
}

/** What a sweep method's passes run: the whole network, its suffix from the layer, or a forward+backward step. */
export type SweepPassKind = 'forward' | 'suffix' | 'forward+backward';

/**
 * How many passes a sweep method runs per explained row, at a layer of K channels and h × w
 * (Poly-CAM: its layers' channels summed), for an H × W input.
 */
export function sweepPasses(sweep: string, polyVariant: string | undefined, at: { K: number; h: number; w: number; polyChannels: number; H: number; W: number; masks: number; iterations: number; patch: number; stride: number }): { passes: number; kind: SweepPassKind } {
  switch (sweep) {
    case 'scorecam': case 'iscam': case 'sscam': return { passes: at.K * SWEEPS[sweep].copies, kind: 'forward' };
    case 'polycam': return { passes: at.polyChannels * (polyVariant === 'plusminus' ? 2 : 1), kind: 'forward' };
    case 'ablationcam': return { passes: at.K, kind: 'suffix' };
    case 'pixabcam': return { passes: 1 + 2 * pixabBoxes(at.h, at.w).length, kind: 'suffix' };
    case 'rise': return { passes: at.masks, kind: 'forward' };
    case 'occlusion': {
      const patch = Math.min(at.patch, at.H, at.W);
      return { passes: positions(at.H, patch, at.stride).length * positions(at.W, patch, at.stride).length, kind: 'forward' };
    }
    case 'opticam': return { passes: at.iterations, kind: 'forward+backward' };
    default: throw new Error(`internal: '${sweep}' is not a sweep`);
  }
}

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { randomRef } from '../src/ops/random.js';
import { FIXTURES, npy } from './helpers/fixtures.js';
import { rng } from './helpers/random.js';
import { finishPgc, lowresMap, type Feat, type Maps, type Shape4 } from './reference/cam.js';
import {
  ablationCamWeights,
  ablationScores,
  aggregateSteps,
  channelMask,
  finishTorchcam,
  isCamCoefficients,
  isCamWeights,
  maskedInput,
  normalizeMap,
  scoreCamWeights,
  softmaxRows,
  ssCamWeights,
  sweepScores,
  weightedCam,
} from './reference/sweeps.js';
import { maxAbs, maxAbsDiff } from './helpers/compare.js';

/**
 * The float64 sweep references (test/reference/sweeps.ts, written from SPEC §1) against
 * pytorch-grad-cam's ScoreCAM / AblationCAM and torch-cam's ScoreCAM / ISCAM / SSCAM on the
 * committed fixtures (test/fixtures/cam/<model>/sweeps.json, made by
 * tools/gen_cam_fixtures_sweeps.py): the scores each library recorded in, its weights and
 * maps out; its masks and masked inputs against ours; torch-cam's SS-CAM noise against
 * camgpu's own seeded generator.
 */
const DIR = join(FIXTURES, 'cam');
const REPO = join(import.meta.dirname, '..');
const MODELS = ['resnet18-w8', 'vgg16-w8', 'fashion-vgg', 'fashion-resnet'];
/** Weights, raw maps: max abs difference relative to the library's largest magnitude. */
const REL_TOL = 1e-4;
/** Maps in [0, 1]: max abs difference. */
const MAP_TOL = 1e-4;
/** Masked inputs (values of the normalized input, |x| ≲ 3): max abs difference. */
const INPUT_TOL = 1e-5;

interface Entry {
  library: 'pgc' | 'tc';
  scores: string;
  weights: string;
  raw: string;
  lowres?: string | null;
  final: string | null;
  baseline?: number[];
  originalScores?: number[];
  branch?: string[];
  coefficients?: number[];
  maskedInputs?: { image: number; channels: number[]; file: string; draw?: number } | null;
  noise?: { seed: number; std: number; streams: number[]; check: { file: string; draws: number[]; images: number[]; elements: number } };
  constructor: Record<string, unknown>;
}

interface Sweeps {
  name: string;
  input: string;
  targets: number[];
  targetLogits: number[];
  inputSize: [number, number];
  layer: { shape: Shape4 };
  activations: string;
  logits: string;
  methods: Record<string, Entry>;
  files: Record<string, { shape: number[] }>;
}

const sweeps = (name: string): Sweeps => JSON.parse(readFileSync(join(DIR, name, 'sweeps.json'), 'utf8')) as Sweeps;
const arr = (name: string, file: string) => npy(join(DIR, name, file));

function maps(name: string, file: string): Maps {
  const a = arr(name, file);
  if (a.shape.length !== 3) throw new Error(`${file}: not 3-D`);
  return { data: Float64Array.from(a.data), shape: a.shape as [number, number, number] };
}

const relDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => maxAbsDiff(a, b) / Math.max(maxAbs(b), 1e-30);

/** Rows [i][N·K] of a [n, N, K] array. */
function steps(a: { data: ArrayLike<number>; shape: number[] }): Float64Array[] {
  const [n, N, K] = a.shape;
  return Array.from({ length: n }, (_, i) => Float64Array.from({ length: N * K }, (_, j) => a.data[i * N * K + j]));
}

const report: Record<string, string[]> = {};

describe.each(MODELS)('sweep references vs pytorch-grad-cam / torch-cam: %s', (name) => {
  const m = sweeps(name);
  const a = arr(name, m.activations);
  const A: Feat = { data: a.data, shape: a.shape as Shape4 };
  const [N, K] = A.shape;
  const [H, W] = m.inputSize;
  const xs = npy(join(REPO, m.input));
  const x = xs.data;
  const logits = arr(name, m.logits);
  const classes = logits.shape[1];
  const y = m.targets.map((c, n) => logits.data[n * classes + c]);
  const rec = (s: string) => (report[name] ??= []).push(s);

  /** Our weights → raw (Σ w A), low-res and final maps, against the library's files. */
  function compareMaps(method: string, weights: Float64Array, e: Entry, finish: 'pgc' | 'tc') {
    const libW = arr(name, e.weights).data;
    const ew = relDiff(weights, libW);
    expect(ew, `${name} ${method} weights`).toBeLessThanOrEqual(REL_TOL);
    const { raw } = weightedCam(A, weights);
    const libRaw = maps(name, e.raw);
    const er = relDiff(raw.data, libRaw.data);
    expect(er, `${name} ${method} raw`).toBeLessThanOrEqual(REL_TOL);
    let ef = NaN;
    if (finish === 'pgc') {
      expect(maxAbsDiff(lowresMap(raw).data, maps(name, e.lowres!).data), `${name} ${method} low-res`).toBeLessThanOrEqual(MAP_TOL);
      if (e.final) {
        const fin = maps(name, e.final);
        expect(fin.shape).toEqual([N, H, W]);
        ef = maxAbsDiff(finishPgc(raw, H, W).data, fin.data);
        expect(ef, `${name} ${method} final`).toBeLessThanOrEqual(MAP_TOL);
      }
    } else {
      const fin = maps(name, e.final!);
      expect(fin.shape).toEqual(libRaw.shape);
      ef = maxAbsDiff(finishTorchcam(raw).data, fin.data);
      expect(ef, `${name} ${method} final (low-res)`).toBeLessThanOrEqual(MAP_TOL);
    }
    rec(`${method.padEnd(12)} weights ${ew.toExponential(1)}, raw ${er.toExponential(1)}${Number.isNaN(ef) ? '' : `, final ${ef.toExponential(1)}`}`);
  }

  /** Mask rule vs the masked inputs a library recorded (image, channels). */
  function maskedInputErr(e: Entry, rule: Parameters<typeof channelMask>[5], noiseOf?: (k: number) => ArrayLike<number>): number {
    const mi = e.maskedInputs!;
    const rows = arr(name, mi.file);
    const per = rows.data.length / mi.channels.length;
    let worst = 0;
    mi.channels.forEach((k, j) => {
      const ours = maskedInput(x, xs.shape, mi.image, channelMask(A, mi.image, k, H, W, rule), { noise: noiseOf?.(k) });
      worst = Math.max(worst, maxAbsDiff(ours, Array.from({ length: per }, (_, i) => rows.data[j * per + i])));
    });
    return worst;
  }

  it('fixture is complete and consistent', () => {
    expect(A.shape).toEqual(m.layer.shape);
    expect(xs.shape.slice(2)).toEqual(m.inputSize);
    expect(Object.keys(m.methods).sort()).toEqual(['AblationCAM', 'ScoreCAM', 'TC-ISCAM', 'TC-SSCAM', 'TC-ScoreCAM']);
    for (const [f, d] of Object.entries(m.files)) {
      expect(existsSync(join(DIR, name, f)), f).toBe(true);
      expect(arr(name, f).shape, f).toEqual(d.shape);
    }
    for (let n = 0; n < N; n++) expect(Math.abs(m.targetLogits[n] - y[n])).toBeLessThanOrEqual(1e-6 * Math.abs(y[n]));
  });

  it('PGC Score-CAM: softmax over channels of its scores, Σ w A, its finishing', () => {
    const e = m.methods.ScoreCAM;
    const s = arr(name, e.scores);
    expect(s.shape).toEqual([N, K]);
    compareMaps('ScoreCAM', scoreCamWeights(s.data, N, K), e, 'pgc');
  });

  it('PGC Ablation-CAM: (y − y_k)/y with y the target logit, Σ w A, its finishing', () => {
    const e = m.methods.AblationCAM;
    // PGC's own forward of x gives the committed logits (bit for bit).
    expect(maxAbsDiff(e.originalScores!, y)).toBe(0);
    expect(e.branch!.every((b) => b === 'zero'), 'all images took the set-to-0 branch').toBe(true);
    const s = arr(name, e.scores);
    expect(s.shape).toEqual([N, K]);
    compareMaps('AblationCAM', ablationCamWeights(y, s.data, N, K), e, 'pgc');
  });

  it('TC Score-CAM: softmax of (score − y_c(x)); the baseline cancels in the softmax; u(relu(Σ w A)) at low resolution', () => {
    const e = m.methods['TC-ScoreCAM'];
    const s = arr(name, e.scores).data;
    expect(maxAbsDiff(e.baseline!, y)).toBeLessThanOrEqual(1e-6 * maxAbs(y));
    const withB = scoreCamWeights(s, N, K, e.baseline);
    compareMaps('TC-ScoreCAM', withB, e, 'tc');
    expect(maxAbsDiff(scoreCamWeights(s, N, K), withB)).toBeLessThanOrEqual(1e-12);
  });

  it('TC IS-CAM: mean over the 10 steps of (score − y_c(x)); its coefficients are the running sums of i/n, not i/n', () => {
    const e = m.methods['TC-ISCAM'];
    const st = steps(arr(name, e.scores));
    expect(st.length).toBe(10);
    compareMaps('TC-ISCAM', isCamWeights(st, N, K, { aggregate: 'mean', baseline: e.baseline }), e, 'tc');
    // The coefficients TC multiplied its masked inputs by (measured by the generator).
    expect(maxAbsDiff(e.coefficients!, isCamCoefficients(10, 'torchcam'))).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(e.coefficients!, isCamCoefficients(10, 'spec'))).toBeGreaterThan(1);
    // SPEC's sum (no mean) over the same scores is a different softmax.
    const specAgg = isCamWeights(st, N, K);
    expect(relDiff(specAgg, arr(name, e.weights).data)).toBeGreaterThan(1e-2);
  });

  it('TC SS-CAM: mean over the 35 noisy runs; the noise is camgpu’s generator (seed, stream = draw, row = image)', () => {
    const e = m.methods['TC-SSCAM'];
    const st = steps(arr(name, e.scores));
    expect(st.length).toBe(35);
    compareMaps('TC-SSCAM', ssCamWeights(st, N, K, e.baseline), e, 'tc');
    const nz = e.noise!;
    const chk = arr(name, nz.check.file);
    const per = K * H * W;
    const L = nz.check.elements;
    let worst = 0;
    nz.check.draws.forEach((draw, i) =>
      nz.check.images.forEach((img, j) => {
        const v = randomRef([img], per, { dist: 'normal', seed: nz.seed, stream: nz.streams[draw], a: 0, b: nz.std });
        const want = [...v.subarray(0, L), ...v.subarray(per - L)];
        const got = chk.data.subarray((i * nz.check.images.length + j) * 2 * L, (i * nz.check.images.length + j + 1) * 2 * L);
        worst = Math.max(worst, maxAbsDiff(want, got));
      }),
    );
    expect(worst, 'noise slice vs randomRef').toBeLessThanOrEqual(1e-5);
    // A mean of 35 draws is not one draw: the first draw's scores alone give other weights.
    expect(relDiff(ssCamWeights([st[0]], N, K), arr(name, e.weights).data)).toBeGreaterThan(1e-2);
    rec(`SS-CAM noise slice vs randomRef ${worst.toExponential(1)}`);
  });

  if (m.methods.ScoreCAM.maskedInputs) {
    it('masks: PGC x ⊙ u(up(A_k)) with align_corners = true; torch-cam x ⊙ up(u(A_k)) with align_corners = false', () => {
      const pgc = m.methods.ScoreCAM;
      const tc = m.methods['TC-ScoreCAM'];
      const PGC_RULE = { alignCorners: true, order: 'upsample-first' } as const;
      const TC_RULE = { alignCorners: false, order: 'normalize-first' } as const;
      const SPEC_RULE = { alignCorners: false, order: 'upsample-first' } as const;
      const ep = maskedInputErr(pgc, PGC_RULE);
      const et = maskedInputErr(tc, TC_RULE);
      expect(ep, 'PGC masked inputs').toBeLessThanOrEqual(INPUT_TOL);
      expect(et, 'TC masked inputs').toBeLessThanOrEqual(INPUT_TOL);
      // Each rule is visible: swap them and the masks are off by far more than round-off.
      expect(maskedInputErr(pgc, SPEC_RULE)).toBeGreaterThan(1e-2);
      expect(maskedInputErr(pgc, TC_RULE)).toBeGreaterThan(1e-2);
      expect(maskedInputErr(tc, PGC_RULE)).toBeGreaterThan(1e-2);
      // u(up(·)) reaches 1; up(u(·)) with half-pixel centers peaks below 1 unless the maximum is on the border.
      const k = pgc.maskedInputs!.channels[0];
      expect(Math.max(...channelMask(A, 0, k, H, W, PGC_RULE))).toBeCloseTo(1, 6);
      rec(`masked inputs: PGC ${ep.toExponential(1)}, TC ${et.toExponential(1)}`);
    });

    it('SS-CAM masked input: x ⊙ (up(u(A_k)) + δ), δ = camgpu noise of draw 0', () => {
      const e = m.methods['TC-SSCAM'];
      const nz = e.noise!;
      const mi = e.maskedInputs!;
      const per = K * H * W;
      const row = randomRef([mi.image], per, { dist: 'normal', seed: nz.seed, stream: nz.streams[mi.draw ?? 0], a: 0, b: nz.std });
      const noiseOf = (k: number) => row.subarray(k * H * W, (k + 1) * H * W);
      const err = maskedInputErr(e, { alignCorners: false, order: 'normalize-first' }, noiseOf);
      expect(err).toBeLessThanOrEqual(INPUT_TOL);
      // Another draw's noise does not match.
      const other = randomRef([mi.image], per, { dist: 'normal', seed: nz.seed, stream: 1, a: 0, b: nz.std });
      expect(maskedInputErr(e, { alignCorners: false, order: 'normalize-first' }, (k) => other.subarray(k * H * W, (k + 1) * H * W))).toBeGreaterThan(1e-1);
      rec(`SS-CAM noisy masked input ${err.toExponential(1)}`);
    });
  }

  it('the checks can fail: wrong image’s scores, wrong softmax axis, sign of the ablation weight', () => {
    const s = arr(name, m.methods.ScoreCAM.scores).data;
    const rolled = Float64Array.from({ length: N * K }, (_, i) => s[(i + K) % (N * K)]);
    expect(relDiff(scoreCamWeights(rolled, N, K), arr(name, m.methods.ScoreCAM.weights).data)).toBeGreaterThan(1e-2);
    // softmax over images instead of channels
    const t = Float64Array.from({ length: N * K }, (_, i) => s[(i % N) * K + Math.floor(i / N)]);
    const overImages = softmaxRows(t, K, N);
    const back = Float64Array.from({ length: N * K }, (_, i) => overImages[(i % K) * N + Math.floor(i / K)]);
    expect(relDiff(back, arr(name, m.methods.ScoreCAM.weights).data)).toBeGreaterThan(1e-2);
    const ab = arr(name, m.methods.AblationCAM.scores).data;
    const flipped = ablationCamWeights(y, ab, N, K).map((v) => -v);
    expect(relDiff(flipped, arr(name, m.methods.AblationCAM.weights).data)).toBeGreaterThan(1);
  });

  it('record of the largest differences', () => {
    console.log(`${name}:\n${(report[name] ?? []).map((l) => `  ${l}`).join('\n')}`);
  });
});

describe('sweep references: building blocks', () => {
  const rand = rng(11);
  const shape: Shape4 = [2, 3, 3, 4];
  const A: Feat = { data: Float64Array.from({ length: 2 * 3 * 12 }, () => Math.max(rand() * 2 - 0.4, 0)), shape };
  const xShape = [2, 2, 6, 8];
  const x = Float64Array.from({ length: 2 * 2 * 48 }, () => rand() * 2 - 1);

  it('masks lie in [0, 1]; u(up) reaches 0 and 1; align_corners = true keeps the corner pixels', () => {
    for (const alignCorners of [false, true])
      for (const order of ['upsample-first', 'normalize-first'] as const) {
        const mk = channelMask(A, 1, 2, 6, 8, { alignCorners, order });
        expect(mk.every((v) => v >= 0 && v < 1)).toBe(true);
        if (order === 'upsample-first') {
          expect(Math.min(...mk)).toBe(0);
          expect(Math.max(...mk)).toBeCloseTo(1, 6);
        }
      }
    const ac = channelMask(A, 0, 0, 6, 8, { alignCorners: true, order: 'normalize-first' });
    const u = normalizeMap(Array.from({ length: 12 }, (_, i) => A.data[i]));
    expect(ac[0]).toBeCloseTo(u[0], 12);
    expect(ac[7]).toBeCloseTo(u[3], 12);
    expect(ac[40]).toBeCloseTo(u[8], 12);
    expect(ac[47]).toBeCloseTo(u[11], 12);
    // a constant channel gives an all-zero mask (0 / (0 + eps))
    const c: Feat = { data: new Float64Array(12).fill(3), shape: [1, 1, 3, 4] };
    expect(maxAbs(channelMask(c, 0, 0, 6, 8))).toBe(0);
  });

  it('a linear toy model: Score-CAM scores are ⟨v, x ⊙ M_k⟩, IS-CAM scales them by c_i, the softmax ignores a baseline', () => {
    const v = Float64Array.from({ length: 2 * 48 }, () => rand() - 0.5);
    const score = (_n: number, inp: Float64Array) => inp.reduce((s, q, i) => s + q * v[i], 0);
    const [sc] = sweepScores(A, x, xShape, score);
    for (let n = 0; n < 2; n++)
      for (let k = 0; k < 3; k++) {
        const mk = channelMask(A, n, k, 6, 8);
        let want = 0;
        for (let ch = 0; ch < 2; ch++) for (let p = 0; p < 48; p++) want += v[ch * 48 + p] * x[(n * 2 + ch) * 48 + p] * mk[p];
        expect(sc[n * 3 + k]).toBeCloseTo(want, 12);
      }
    const coeffs = isCamCoefficients(10);
    const is = sweepScores(A, x, xShape, score, { coefficients: coeffs });
    is.forEach((st, i) => st.forEach((q, j) => expect(q).toBeCloseTo(sc[j] * coeffs[i], 12)));
    // linear: Σ_i c_i s = s · Σ c_i = 5.5 s
    const sum = aggregateSteps(is, 2, 3);
    sum.forEach((q, j) => expect(q).toBeCloseTo(5.5 * sc[j], 10));
    expect(maxAbsDiff(scoreCamWeights(sc, 2, 3, [7, -3]), scoreCamWeights(sc, 2, 3))).toBeLessThan(1e-15);
    const w = scoreCamWeights(sc, 2, 3);
    for (let n = 0; n < 2; n++) expect(w[n * 3] + w[n * 3 + 1] + w[n * 3 + 2]).toBeCloseTo(1, 14);
  });

  it('IS-CAM coefficients: SPEC i/n; torch-cam cumulative i(i+1)/(2n)', () => {
    expect(Array.from(isCamCoefficients(4))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(Array.from(isCamCoefficients(10, 'torchcam')).map((c) => +c.toFixed(12))).toEqual([0.1, 0.3, 0.6, 1, 1.5, 2.1, 2.8, 3.6, 4.5, 5.5]);
  });

  it('SS-CAM: zero noise gives Score-CAM; the noise enters the mask before the input is multiplied', () => {
    const v = Float64Array.from({ length: 2 * 48 }, () => rand() - 0.5);
    const score = (_n: number, inp: Float64Array) => inp.reduce((s, q, i) => s + q * v[i], 0);
    const [sc] = sweepScores(A, x, xShape, score);
    const zero = sweepScores(A, x, xShape, score, { steps: 3, noise: () => new Float64Array(48) });
    expect(maxAbsDiff(ssCamWeights(zero, 2, 3), scoreCamWeights(sc, 2, 3))).toBeLessThan(1e-14);
    const d = Float64Array.from({ length: 48 }, () => rand());
    const mi = maskedInput(x, xShape, 1, new Float64Array(48), { noise: d, coefficient: 2 });
    for (let p = 0; p < 48; p++) expect(mi[48 + p]).toBeCloseTo(2 * x[(2 + 1) * 48 + p] * d[p], 14);
  });

  it('Ablation-CAM: a channel whose removal does not change the score has weight 0; a negative y flips the sign', () => {
    const yk = ablationScores(2, 3, (n, k) => (k === 1 ? [4, -2][n] : [4, -2][n] - (k + 1)));
    const w = ablationCamWeights([4, -2], yk, 2, 3);
    expect(w[1]).toBe(0);
    expect(w[4]).toBe(-0);
    expect(w[0]).toBeCloseTo(1 / 4, 15);
    expect(w[3]).toBeCloseTo(-1 / 2, 15); // (−2 − (−3))/(−2)
  });
});

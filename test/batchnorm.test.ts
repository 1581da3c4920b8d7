import { describe, expect, it } from 'vitest';
import { type Activation, NO_ACTIVATION } from '../src/ops/activation.js';
import { gradients } from '../src/ops/autodiff.js';
import { BN_EPS, runningStatsUpdate } from '../src/ops/batchnorm.js';
import { ProgramRunner } from '../src/ops/program.js';
import { type Sym, Tape } from '../src/ops/tape.js';
import type { GpuContext } from '../src/runtime/device.js';
import { Recorder } from '../src/runtime/recorder.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { WeightStore } from '../src/runtime/weights.js';
import { gpu } from './helpers/gpu.js';
import { randomArray, relError, rng } from './helpers/random.js';

/**
 * Training-mode BatchNormalization as tape ops (batchnorm_stats → batchnorm) and its
 * backward from autodiff, against a float64 CPU forward: outputs and statistics directly,
 * gradients against central finite differences of L = Σ r ⊙ y (+ Σ q ⊙ stats when the
 * statistics are read elsewhere too), as in test/vjp.test.ts.
 */

const H = 1e-3;
const SAMPLE = 120;
const size = (s: readonly number[]) => s.reduce((p, q) => p * q, 1);

interface Feed {
  sym: Sym;
  data: Float32Array;
}

/** Runs the tape once through a program runner (one pass, nothing batched) and reads `read` back. */
async function runTape(ctx: GpuContext, tape: Tape, feeds: Feed[], read: Sym[]): Promise<Float32Array[]> {
  const weights = new WeightStore(ctx);
  const runner = new ProgramRunner(ctx, weights);
  const inputs = feeds.map((f) => ({ name: f.sym.name, tensor: Tensor.fromData(ctx, f.data, f.sym.shape) }));
  try {
    const r = await runner.run({
      key: 'bn', build: () => tape.graph, batch: 1, split: false, cache: false,
      feeds: new Map(inputs.map((i) => [i.name, { tensor: i.tensor, batchAxis: null }])),
      results: new Map(read.map((s) => [s.name, { batchAxis: null }])),
    });
    const out = await readTensors(ctx, read.map((s) => r.results.get(s.name)!));
    for (const t of r.results.values()) t.dispose();
    return out;
  } finally {
    for (const i of inputs) i.tensor.dispose();
    await runner.dispose();
    weights.dispose();
  }
}

/** Float64 forward: per channel batch (or given) statistics, normalized, scaled, shifted, activated. */
function bnRef(x: ArrayLike<number>, shape: number[], gamma: ArrayLike<number>, beta: ArrayLike<number>, act: Activation, fixed?: ArrayLike<number>) {
  const [N, C] = shape;
  const HW = size(shape.slice(2));
  const M = N * HW;
  const mean = new Float64Array(C);
  const variance = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    if (fixed) {
      mean[c] = fixed[c];
      variance[c] = fixed[C + c];
      continue;
    }
    let s = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) s += x[(n * C + c) * HW + i];
    mean[c] = s / M;
    let v = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) v += (x[(n * C + c) * HW + i] - mean[c]) ** 2;
    variance[c] = v / M;
  }
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = Math.floor(i / HW) % C;
    const v = ((x[i] - mean[c]) / Math.sqrt(variance[c] + BN_EPS)) * gamma[c] + beta[c];
    y[i] = act.kind === 'relu' ? Math.max(v, 0) : v;
  }
  return { y, mean, variance };
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Central differences of `loss` at a sample of coordinates of `x0`; returns (indices, values). */
function fd(rand: () => number, loss: (x: Float64Array) => number, x0: ArrayLike<number>): [number[], Float64Array] {
  const idx = Array.from({ length: x0.length }, (_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  const pick = idx.slice(0, SAMPLE).sort((a, b) => a - b);
  const x = Float64Array.from(x0);
  const g = Float64Array.from(pick, (i) => {
    const v = x[i];
    x[i] = v + H;
    const lp = loss(x);
    x[i] = v - H;
    const lm = loss(x);
    x[i] = v;
    return (lp - lm) / (2 * H);
  });
  return [pick, g];
}

interface Case {
  shape: number[];
  /** Statistics fed in (evaluation mode) instead of the batch's own. */
  fixed?: boolean;
  /** The statistics are also read by a second consumer (their own VJP then runs). */
  readStats?: boolean;
}

const cases: Case[] = [
  { shape: [4, 3, 5, 6] }, // planes of 30: scalar kernels
  { shape: [3, 4, 4, 4] }, // planes of 16: vec4 kernels
  { shape: [6, 5] }, // BatchNorm1d layout
  { shape: [2, 3, 4, 2], fixed: true },
  { shape: [3, 2, 3, 3], readStats: true },
];

describe('batch normalization (training mode) on a tape', () => {
  it.each(cases)('$shape fixed=$fixed readStats=$readStats: forward, statistics and gradients', async ({ shape, fixed, readStats }) => {
    const ctx = await gpu();
    const rand = rng(size(shape) * 7 + (fixed ? 1 : 0) + (readStats ? 2 : 0));
    const C = shape[1];
    // An offset mean checks that the one-pass variance does not cancel.
    const x = Float32Array.from(randomArray(size(shape), rand, 2), (v) => v + 3);
    const gamma = Float32Array.from(randomArray(C, rand), (v) => 0.5 + v);
    const beta = randomArray(C, rand);
    const r = randomArray(size(shape), rand);
    const q = randomArray(2 * C, rand);
    const running = Float32Array.from({ length: 2 * C }, (_, i) => (i < C ? 3 + (rand() - 0.5) : 0.5 + rand()));
    const tape = new Tape();
    const X = tape.input('x', shape);
    const G = tape.input('gamma', [C]);
    const B = tape.input('beta', [C]);
    const R = tape.input('r', shape);
    const feeds: Feed[] = [{ sym: X, data: x }, { sym: G, data: gamma }, { sym: B, data: beta }, { sym: R, data: r }];
    let stats: Sym;
    if (fixed) {
      stats = tape.input('running', [2, C]);
      feeds.push({ sym: stats, data: running });
    } else {
      stats = tape.record({ kind: 'batchnorm_stats', inputs: [X.name] }, [2, C], { name: 'bn/stats', opType: 'BatchNormStats' });
    }
    const Y = tape.record({ kind: 'batchnorm', inputs: [X.name, stats.name, G.name, B.name], eps: BN_EPS, activation: NO_ACTIVATION }, shape, { name: 'bn', opType: 'BatchNormalization' });
    const seeds = new Map([[Y.name, R]]);
    if (readStats) {
      const Q = tape.input('q', [2, C]);
      feeds.push({ sym: Q, data: q });
      // A second reader of the statistics: Σ q ⊙ stats joins the objective through an identity.
      const S2 = tape.record({ kind: 'unary', inputs: [stats.name], activation: NO_ACTIVATION }, [2, C], { name: 'stats_reader', opType: 'Identity' });
      seeds.set(S2.name, Q);
    }
    const grads = gradients(tape, seeds, [X.name, G.name, B.name]);
    const [gx, gg, gb] = [grads.get(X.name)!, grads.get(G.name)!, grads.get(B.name)!];
    const [y, st, gxv, ggv, gbv] = await runTape(ctx, tape, feeds, [Y, stats, gx, gg, gb]);
    const fixedStats = fixed ? running : undefined;
    const ref = bnRef(x, shape, gamma, beta, NO_ACTIVATION, fixedStats);
    expect(relError(y, ref.y), 'y').toBeLessThan(1e-5);
    if (!fixed) {
      expect(relError(st.subarray(0, C), ref.mean), 'mean').toBeLessThan(1e-6);
      expect(relError(st.subarray(C), ref.variance), 'var').toBeLessThan(1e-5);
    }
    const loss = (xv: ArrayLike<number>, gv: ArrayLike<number>, bv: ArrayLike<number>) => {
      const f = bnRef(xv, shape, gv, bv, NO_ACTIVATION, fixedStats);
      let l = dot(f.y, r);
      if (readStats) l += dot(f.mean, q.subarray(0, C)) + dot(f.variance, q.subarray(C));
      return l;
    };
    const [ix, fx] = fd(rand, (v) => loss(v, gamma, beta), x);
    expect(relError(ix.map((i) => gxv[i]), fx), 'grad x').toBeLessThan(1e-3);
    const [ig, fg] = fd(rand, (v) => loss(x, v, beta), gamma);
    expect(relError(ig.map((i) => ggv[i]), fg), 'grad gamma').toBeLessThan(1e-3);
    const [ib, fb] = fd(rand, (v) => loss(x, gamma, v), beta);
    expect(relError(ib.map((i) => gbv[i]), fb), 'grad beta').toBeLessThan(1e-3);
  });

  it('a fused ReLU: forward and the input gradient through the mask', async () => {
    const ctx = await gpu();
    const rand = rng(91);
    const shape = [4, 3, 4, 4];
    const C = 3;
    const relu: Activation = { kind: 'relu' };
    const x = randomArray(size(shape), rand);
    const gamma = Float32Array.from(randomArray(C, rand), (v) => 1 + 0.5 * v);
    const beta = randomArray(C, rand, 0.3);
    const r = randomArray(size(shape), rand);
    const tape = new Tape();
    const X = tape.input('x', shape);
    const G = tape.input('gamma', [C]);
    const B = tape.input('beta', [C]);
    const R = tape.input('r', shape);
    const stats = tape.record({ kind: 'batchnorm_stats', inputs: [X.name] }, [2, C], { name: 'bn/stats', opType: 'BatchNormStats' });
    const Y = tape.record({ kind: 'batchnorm', inputs: [X.name, stats.name, G.name, B.name], eps: BN_EPS, activation: relu }, shape, { name: 'bn', opType: 'BatchNormalization' });
    const gx = gradients(tape, new Map([[Y.name, R]]), [X.name]).get(X.name)!;
    const [y, g] = await runTape(ctx, tape, [{ sym: X, data: x }, { sym: G, data: gamma }, { sym: B, data: beta }, { sym: R, data: r }], [Y, gx]);
    const ref = bnRef(x, shape, gamma, beta, relu);
    expect(relError(y, ref.y)).toBeLessThan(1e-5);
    // Analytic float64 gradient: the ReLU mask on r, then the training-mode BN backward.
    const HW = 16;
    const M = 4 * HW;
    const want = new Float64Array(x.length);
    for (let c = 0; c < C; c++) {
      const invstd = 1 / Math.sqrt(ref.variance[c] + BN_EPS);
      let sg = 0;
      let sgx = 0;
      const at = (n: number, i: number) => (n * C + c) * HW + i;
      for (let n = 0; n < 4; n++) for (let i = 0; i < HW; i++) {
        const k = at(n, i);
        const gp = ref.y[k] > 0 ? r[k] : 0;
        sg += gp;
        sgx += gp * (x[k] - ref.mean[c]) * invstd;
      }
      for (let n = 0; n < 4; n++) for (let i = 0; i < HW; i++) {
        const k = at(n, i);
        const gp = ref.y[k] > 0 ? r[k] : 0;
        const xhat = (x[k] - ref.mean[c]) * invstd;
        want[k] = gamma[c] * invstd * (gp - (sg + xhat * sgx) / M);
      }
    }
    expect(relError(g, want)).toBeLessThan(1e-5);
  });

  it('running statistics: (1 − m)·running + m·[mean; M/(M−1)·var]', async () => {
    const ctx = await gpu();
    const C = 5;
    const M = 37;
    const stats = Float32Array.from({ length: 2 * C }, (_, i) => (i < C ? i - 2 : 0.5 + i));
    const running = Float32Array.from({ length: 2 * C }, (_, i) => (i < C ? 0 : 1));
    const s = Tensor.fromData(ctx, stats, [2, C]);
    const run = Tensor.fromData(ctx, running, [2, C]);
    const rec = new Recorder(ctx);
    rec.dispatch(runningStatsUpdate('running', s.binding(), run.binding(), C, M, 0.1));
    rec.submit();
    const got = await run.read();
    const want = Array.from(running, (v, i) => 0.9 * v + 0.1 * (i < C ? stats[i] : (stats[i] * M) / (M - 1)));
    expect(relError(got, want)).toBeLessThan(1e-6);
    s.dispose();
    run.dispose();
  });
});

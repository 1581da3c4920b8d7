import { describe, expect, it } from 'vitest';
import { ACTIVATION_KINDS, type Activation, type ActivationKind, type ActivationOf, activateCpu, activationGradientReads } from '../src/ops/activation.js';
import { gatherRowsRef } from '../src/ops/gather.js';
import { sortRef } from '../src/ops/sort.js';
import { rankedBlendRef } from '../src/ops/blend.js';
import { imputeRef, imputeResidualRef } from '../src/ops/impute.js';
import { randomRef } from '../src/ops/random.js';
import { riseMasksRef } from '../src/ops/rise.js';
import { gradients } from '../src/ops/autodiff.js';
import { compilePlan } from '../src/ops/compile.js';
import type { Conv2dAttrs } from '../src/ops/conv-attrs.js';
import type { Sym } from '../src/ops/graph.js';
import type { Pool2dAttrs } from '../src/ops/pool.js';
import { OPS, type OpKind } from '../src/ops/registry.js';
import { Tape } from '../src/ops/tape.js';
import type { GpuContext } from '../src/runtime/device.js';
import { InputError } from '../src/runtime/errors.js';
import { Recorder } from '../src/runtime/recorder.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { WeightStore } from '../src/runtime/weights.js';
import { gpuFamily, KERNEL_FAMILIES } from './helpers/gpu.js';
import { relError, rng } from './helpers/random.js';
import {
  bilinearRef, broadcastRef, concatRef, conv2dRef, gemmRef, globalPoolRef, matmulRef, padRef, pool2dRef, reduceRef, softmaxRef,
} from './reference/cpu.js';

/**
 * Every op kind of the registry, through the path the runtime takes: recorded on a tape
 * (shape from the op's own rule), differentiated by gradients() (the op's VJP rule),
 * compiled by compilePlan (the op's lowering) and run on a batch of 3 images with
 * per-image values, split into passes of at most 2. The forward result must match a
 * float64 reference; the VJP of every differentiable input must match central finite
 * differences of that reference; backward kinds must match the finite-difference
 * gradient of the forward op they belong to. CASES is keyed by OpKind, so a kind added to
 * the registry without a case here fails the type check.
 */

type Arr = Float64Array;
type Values = 'uniform' | 'distinct' | 'positive' | 'index' | 'ties';

interface Feed {
  shape: (n: number) => number[];
  /** Axis 0 is the batch: split between passes (else given whole to every pass). */
  batched: boolean;
  values?: Values;
}

interface Case {
  name: string;
  feeds: Feed[];
  /** Records the op under test (the last op recorded must be of the case's kind) on the fed inputs. */
  record(t: Tape, x: Sym[]): Sym;
  /** Float64 forward reference on the whole batch. */
  ref(x: Arr[], shapes: number[][]): Arr;
  /** Inputs whose gradient is checked (default: all, for kinds with a VJP rule). */
  wrt?: number[];
  /** Run as one pass (ops whose axis 0 is not a batch, e.g. Gemm with transA). */
  whole?: boolean;
  /** The output sums over the batch (a weight gradient): passes' results add up. */
  sumsOverBatch?: boolean;
}

const BATCH = 3;
const CHUNK = 2;
const FWD_TOL = 1e-4;
const GRAD_TOL = 2e-3;

const size = (s: readonly number[]) => s.reduce((p, q) => p * q, 1);

function values(kind: Values, n: number, rand: () => number): Float32Array {
  if (kind === 'index') return Float32Array.from({ length: n }, (_, i) => i);
  // Few distinct values (many ties), both zeros, negatives: what a sort's tie-break must order.
  if (kind === 'ties') return Float32Array.from({ length: n }, () => [-1.5, -0, 0, 0.25, 0.25, 3, -1e30, 7][Math.floor(rand() * 8)]);
  if (kind === 'positive') return Float32Array.from({ length: n }, () => 0.5 + rand());
  if (kind === 'distinct') {
    // Spaced far more than the finite-difference step: no ties for max / min / routing.
    const a = Float32Array.from({ length: n }, (_, i) => (i - n / 2 + 0.5) / 64);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
  return Float32Array.from({ length: n }, () => rand() * 2 - 1);
}

/** ∂/∂x of Σ gy ⊙ f(x) at x0 by central differences of the float64 function f. */
function vjpRef(f: (x: Arr) => Arr, x0: ArrayLike<number>, gy: ArrayLike<number>, h = 1e-4, only?: number[]): Arr {
  const x = Float64Array.from(x0);
  const loss = () => {
    const y = f(x);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += gy[i] * y[i];
    return s;
  };
  const out = new Float64Array(x.length);
  for (const i of only ?? x.keys()) {
    const v = x[i];
    x[i] = v + h;
    const lp = loss();
    x[i] = v - h;
    const lm = loss();
    x[i] = v;
    out[i] = (lp - lm) / (2 * h);
  }
  return out;
}

const conv = (x: Arr, xs: number[], w: Arr, ws: number[], b: Arr | null, a: Conv2dAttrs) => conv2dRef(x, xs, w, ws, b, a).data;
const act = (a: Activation) => (x: Arr) => x.map((v) => activateCpu(a, v));
const NONE: Activation = { kind: 'none' };
const CONV: Conv2dAttrs = { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 0, 1], dilations: [1, 1], groups: 2, activation: NONE };
const CONV_DIL: Conv2dAttrs = { kernel: [3, 2], strides: [1, 1], pads: [2, 1, 2, 1], dilations: [2, 1], groups: 1, activation: NONE };
const MAXPOOL: Pool2dAttrs = { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], ceilMode: false, countIncludePad: false };
const AVGPOOL: Pool2dAttrs = { kernel: [2, 3], strides: [2, 1], pads: [0, 1, 1, 1], dilations: [1, 1], ceilMode: true, countIncludePad: false };
const origin = (name: string) => ({ name, opType: name });

function transposeLast2(x: Arr, s: number[]): Arr {
  const [m, n] = s.slice(-2);
  const out = new Float64Array(x.length);
  for (let b = 0; b < x.length / (m * n); b++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[b * m * n + j * m + i] = x[b * m * n + i * n + j];
  return out;
}

function swapLast2(s: number[]): number[] {
  return [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]];
}

function channelAffineRef(x: Arr, xs: number[], scale: ArrayLike<number>, shift: ArrayLike<number>): Arr {
  const inner = size(xs.slice(2));
  return x.map((v, i) => {
    const c = Math.floor(i / inner) % xs[1];
    return v * scale[c] + shift[c];
  });
}

/** Per-channel mean (row 0) and biased variance (row 1) over N and the spatial axes. */
function batchStatsRef(x: Arr, xs: number[]): Arr {
  const C = xs[1];
  const inner = size(xs.slice(2));
  const m = x.length / C;
  const out = new Float64Array(2 * C);
  x.forEach((v, i) => (out[Math.floor(i / inner) % C] += v / m));
  x.forEach((v, i) => {
    const c = Math.floor(i / inner) % C;
    out[C + c] += (v - out[c]) ** 2 / m;
  });
  return out;
}

function batchNormRef(x: Arr, xs: number[], stats: ArrayLike<number>, gamma: ArrayLike<number>, beta: ArrayLike<number>, eps: number): Arr {
  const C = xs[1];
  const inner = size(xs.slice(2));
  return x.map((v, i) => {
    const c = Math.floor(i / inner) % C;
    return ((v - stats[c]) / Math.sqrt(stats[C + c] + eps)) * gamma[c] + beta[c];
  });
}

const EPS = 1e-5;

/** One or more sample activations of every pointwise row (keyed by kind: a new row needs samples here). */
const SAMPLES: { [K in ActivationKind]: ActivationOf<K>[] } = {
  none: [{ kind: 'none' }],
  relu: [{ kind: 'relu' }],
  clip: [{ kind: 'clip', min: -0.4, max: 0.3 }],
  leaky_relu: [{ kind: 'leaky_relu', alpha: 0.2 }],
  sigmoid: [{ kind: 'sigmoid' }],
  exp: [{ kind: 'exp' }],
  abs: [{ kind: 'abs' }],
  square: [{ kind: 'square' }],
  sqrt: [{ kind: 'sqrt' }],
  tanh: [{ kind: 'tanh' }],
  pow: [{ kind: 'pow', p: 3 }, { kind: 'pow', p: 0.5 }],
};
/** Rows whose samples need positive inputs (fractional powers). */
const POSITIVE_ONLY = new Set<ActivationKind>(['sqrt', 'pow']);
const batched = (s: number[], values?: Values): Feed => ({ shape: (n) => [n, ...s], batched: true, values });
const whole = (s: number[], values?: Values): Feed => ({ shape: () => s, batched: false, values });

const CASES: { [K in OpKind]: Case[] } = {
  conv: [
    {
      name: 'grouped, strided, asymmetric pads, bias',
      feeds: [batched([4, 7, 7]), whole([6, 2, 3, 3]), whole([6])],
      record: (t, [x, w, b]) => t.record({ kind: 'conv', inputs: [x.name, w.name, b.name], attrs: CONV }, null, origin('conv')),
      ref: ([x, w, b], [xs, ws]) => conv(x, xs, w, ws, b, CONV),
    },
    {
      name: 'dilated, rectangular kernel, no bias',
      feeds: [batched([3, 6, 5]), whole([4, 3, 3, 2])],
      record: (t, [x, w]) => t.record({ kind: 'conv', inputs: [x.name, w.name], attrs: CONV_DIL }, null, origin('conv')),
      ref: ([x, w], [xs, ws]) => conv(x, xs, w, ws, null, CONV_DIL),
    },
  ],
  gemm: [
    {
      name: 'Linear layout (transB), bias row, alpha/beta',
      feeds: [batched([5]), whole([4, 5]), whole([4])],
      record: (t, [a, b, c]) => t.gemm(a, b, c, { transB: true, alpha: 0.7, beta: 1.3 }),
      ref: ([a, b, c], [as]) => gemmRef(a, b, c, [4], as[0], 4, 5, false, true, 0.7, 1.3),
    },
    {
      name: 'transA (axis 0 is the reduction), full C',
      feeds: [whole([5, 3]), whole([5, 4]), whole([3, 4])],
      whole: true,
      record: (t, [a, b, c]) => t.gemm(a, b, c, { transA: true, alpha: -0.5, beta: 0.25 }),
      ref: ([a, b, c]) => gemmRef(a, b, c, [3, 4], 3, 4, 5, true, false, -0.5, 0.25),
    },
  ],
  matmul: [
    {
      name: 'batched by a 2-D right operand',
      feeds: [batched([4, 5]), whole([5, 3])],
      record: (t, [a, b]) => t.matmul(a, b),
      ref: ([a, b], [as, bs]) => matmulRef(a, as, b, bs).data,
    },
    {
      name: 'transA and transB',
      feeds: [batched([5, 4]), whole([3, 5])],
      record: (t, [a, b]) => t.matmul(a, b, { transA: true, transB: true }),
      ref: ([a, b], [as, bs]) => matmulRef(transposeLast2(a, as), swapLast2(as), transposeLast2(b, bs), swapLast2(bs)).data,
    },
    {
      name: '1-D left operand against a batch of matrices',
      feeds: [whole([5]), batched([5, 3])],
      record: (t, [a, b]) => t.matmul(a, b),
      ref: ([a, b], [as, bs]) => matmulRef(a, as, b, bs).data,
    },
    {
      name: '1-D right operand',
      feeds: [batched([4, 5]), whole([5])],
      record: (t, [a, b]) => t.matmul(a, b),
      ref: ([a, b], [as, bs]) => matmulRef(a, as, b, bs).data,
    },
  ],
  binary: (['add', 'sub', 'mul', 'div'] as const).map((op): Case => ({
    name: `${op} with broadcasting on both sides`,
    feeds: [batched([4, 1, 5]), whole([4, 3, 1], op === 'div' ? 'positive' : 'uniform')],
    record: (t, [a, b]) => t.binary(op, a, b),
    ref: ([a, b], [as, bs]) => {
      const ys = [as[0], 4, 3, 5];
      const A = broadcastRef(a, as, ys);
      const B = broadcastRef(b, bs, ys);
      const f = { add: (p: number, q: number) => p + q, sub: (p: number, q: number) => p - q, mul: (p: number, q: number) => p * q, div: (p: number, q: number) => p / q }[op];
      return A.map((v, i) => f(v, B[i]));
    },
  })),
  unary: ACTIVATION_KINDS.flatMap((k): Activation[] => SAMPLES[k]).map((a): Case => ({
    name: JSON.stringify(a),
    // Distinct values keep every input more than the step away from kinks (relu, clip, abs).
    feeds: [batched([4, 5], POSITIVE_ONLY.has(a.kind) ? 'positive' : 'distinct')],
    record: (t, [x]) => t.activation(x, a),
    ref: ([x]) => act(a)(x),
  })),
  affine: [{
    name: 'per-channel scale and shift',
    feeds: [batched([4, 3, 2]), whole([4]), whole([4])],
    record: (t, [x, s, b]) => t.record({ kind: 'affine', inputs: [x.name, s.name, b.name], activation: NONE }, null, origin('affine')),
    ref: ([x, s, b], [xs]) => channelAffineRef(x, xs, s, b),
  }],
  pool: [
    {
      name: 'max 3×3 stride 2 pad 1',
      feeds: [batched([3, 7, 6], 'distinct')],
      record: (t, [x]) => t.record({ kind: 'pool', pool: 'max', inputs: [x.name], attrs: MAXPOOL }, null, origin('pool')),
      ref: ([x], [xs]) => pool2dRef('max', x, xs, MAXPOOL).data,
    },
    {
      name: 'avg, ceil mode, pads excluded from the count',
      feeds: [batched([2, 5, 6])],
      record: (t, [x]) => t.record({ kind: 'pool', pool: 'avg', inputs: [x.name], attrs: AVGPOOL }, null, origin('pool')),
      ref: ([x], [xs]) => pool2dRef('avg', x, xs, AVGPOOL).data,
    },
  ],
  global_pool: (['max', 'avg'] as const).map((pool): Case => ({
    name: pool,
    feeds: [batched([3, 4, 5], 'distinct')],
    record: (t, [x]) => t.record({ kind: 'global_pool', pool, inputs: [x.name] }, null, origin('gp')),
    ref: ([x], [xs]) => globalPoolRef(pool, x, xs).data,
  })),
  softmax: [
    {
      name: 'last axis',
      feeds: [batched([4, 5])],
      record: (t, [x]) => t.softmax(x, -1),
      ref: ([x], [xs]) => softmaxRef(x, xs, -1, false, false),
    },
    {
      name: 'log-softmax over the channels of a 4-D tensor',
      feeds: [batched([4, 2, 3])],
      record: (t, [x]) => t.softmax(x, 1, true),
      ref: ([x], [xs]) => softmaxRef(x, xs, 1, false, true),
    },
  ],
  concat: [{
    name: 'axis 1 of three inputs',
    feeds: [batched([2, 3]), batched([1, 3]), batched([3, 3])],
    record: (t, xs) => t.record({ kind: 'concat', inputs: xs.map((x) => x.name), axis: 1 }, null, origin('concat')),
    ref: (xs, shapes) => concatRef(xs, shapes, 1).data,
  }],
  pad: (['constant', 'reflect', 'edge'] as const).map((mode): Case => ({
    name: mode,
    feeds: [batched([2, 4, 5])],
    record: (t, [x]) => t.record({ kind: 'pad', inputs: [x.name], pads: [0, 0, 2, 1, 0, 0, 1, 2], mode, value: 0.5 }, null, origin('pad')),
    ref: ([x], [xs]) => padRef(x, xs, [0, 0, 2, 1, 0, 0, 1, 2], mode, 0.5).data,
  })),
  alias: [{
    name: 'reshape',
    feeds: [batched([2, 3, 4])],
    record: (t, [x]) => t.reshape(x, [x.shape[0], 6, 4]),
    ref: ([x]) => x,
  }],
  reduce: (['sum', 'mean', 'max', 'min'] as const).map((kind): Case => ({
    name: `${kind} over axes 1 and 3`,
    feeds: [batched([4, 3, 5], 'distinct')],
    record: (t, [x]) => t.reduce(kind, x, [1, 3]),
    ref: ([x], [xs]) => reduceRef(kind, x, xs, [1, 3]).data,
  })),
  broadcast: [{
    name: 'expand size-1 axes',
    feeds: [batched([1, 3, 1])],
    record: (t, [x]) => t.broadcast(x, [x.shape[0], 4, 3, 2]),
    ref: ([x], [xs]) => broadcastRef(x, xs, [xs[0], 4, 3, 2]),
  }],
  resize: ([false, true]).map((alignCorners): Case => ({
    name: `bilinear upsampling, alignCorners ${alignCorners}`,
    feeds: [batched([2, 3, 4])],
    record: (t, [x]) => t.resize(x, [7, 9], { alignCorners }),
    ref: ([x], [xs]) => bilinearRef(x, xs, 7, 9, { alignCorners }).data,
  })),
  where: [{
    name: 'a where relu(cond) ≠ 0, else b',
    feeds: [batched([4, 5], 'distinct'), batched([4, 5]), batched([4, 5])],
    record: (t, [c, a, b]) => t.where(t.activation(c, { kind: 'relu' }), a, b),
    ref: ([c, a, b]) => c.map((v, i) => (v > 0 ? a[i] : b[i])),
    wrt: [1, 2],
  }],
  random: (['uniform', 'normal'] as const).map((dist): Case => {
    const attrs = { dist, seed: 1234567, stream: 3, a: dist === 'uniform' ? -1 : 0.5, b: dist === 'uniform' ? 2 : 0.3 };
    return {
      name: `${dist}, keyed by image index (the same values however the batch is split)`,
      feeds: [{ shape: (n) => [n], batched: true, values: 'index' }],
      record: (t, [rows]) => t.random(rows, [rows.shape[0], 4, 5], attrs),
      ref: ([rows]) => randomRef(rows, 20, attrs),
    };
  }).concat((['uniform', 'normal'] as const).map((dist): Case => {
    const attrs = { dist, seed: 99, stream: 0, a: 0, b: 1 };
    // Row r: stream 2r + 1, block r + 3 (its counters start at (r + 3)·20).
    return {
      name: `${dist}, a stream and a counter block per row`,
      feeds: [{ shape: (n) => [n], batched: true, values: 'index' }],
      record: (t, [rows]) => t.random(rows, [rows.shape[0], 4, 5], attrs, { streams: t.add(t.mul(rows, t.scalar(2)), t.scalar(1)), blocks: t.add(rows, t.scalar(3)) }),
      ref: ([rows]) => randomRef(rows, 20, attrs, { streams: Array.from(rows, (r) => 2 * r + 1), blocks: Array.from(rows, (r) => r + 3) }),
    };
  })),
  gather_rows: [{
    name: 'rows of a whole table at per-image indices (one out of range: zeros)',
    feeds: [whole([5, 2, 3]), { shape: (n) => [n], batched: true, values: 'index' }],
    record: (t, [table, idx]) => t.gatherRows(table, t.add(t.mul(idx, t.scalar(2)), t.scalar(-1))),
    ref: ([table, idx]) => gatherRowsRef(table, 5, Array.from(idx, (v) => 2 * v - 1)),
  }, {
    name: 'rows of 8 (the vec4 kernel), one index out of range',
    feeds: [whole([5, 2, 4]), { shape: (n) => [n], batched: true, values: 'index' }],
    record: (t, [table, idx]) => t.gatherRows(table, t.add(t.mul(idx, t.scalar(2)), t.scalar(-1))),
    ref: ([table, idx]) => gatherRowsRef(table, 5, Array.from(idx, (v) => 2 * v - 1)),
  }],
  rise_masks: [{
    name: 'seeded masks keyed by mask id: grid 4, p1 0.5, 13×11, bilinear, shifted',
    feeds: [{ shape: (n) => [n], batched: true, values: 'index' }],
    record: (t, [ids]) => t.riseMasks(ids, { grid: 4, p1: 0.5, seed: 99, size: [13, 11] }),
    ref: ([ids]) => riseMasksRef(ids, { grid: 4, p1: 0.5, seed: 99, size: [13, 11] }),
  }],
  sort: ([['values', false], ['indices', false], ['values', true], ['indices', true]] as const).map(([output, descending]): Case => ({
    name: `${descending ? 'descending' : 'ascending'} ${output}, rows of 37 with ties (stable) padded to 64`,
    feeds: [{ shape: (n) => [n, 3, 37], batched: true, values: 'ties' }],
    record: (t, [x]) => t.sort(x, { output, descending }),
    ref: ([x]) => sortRef(x, 37, { output, descending }),
  })),
  // Row r: item r, image r, substrate r + 1, count 0.1·r − 0.05 against shuffled ranks
  // spread around 0, deletion for r = 0 and insertion after.
  ranked_blend: ([[1, 8], [2, 6]] as const).map(([s, W]): Case => ({
    name: `${s === 1 ? 'pixels (vec4 path), 4×8' : '2×2 blocks (scalar path), 4×6'}, two channels`,
    feeds: [whole([3, 2, 4, W]), whole([5, 2, 4, W]), whole([3, (4 / s) * (W / s)], 'distinct'), { shape: (n) => [n], batched: true, values: 'index' }],
    record: (t, [x, sub, ranks, idx]) => {
      const n = idx.shape[0];
      const col = (v: Sym) => t.reshape(v, [n, 1]);
      const cols = [idx, idx, t.add(idx, t.scalar(1)), t.add(t.mul(idx, t.scalar(0.1)), t.scalar(-0.05)), idx].map(col);
      const info = t.record({ kind: 'concat', inputs: cols.map((c) => c.name), axis: 1 }, [n, 5], { name: 'info', opType: 'Concat' });
      return t.rankedBlend(x, sub, ranks, info, { granularity: s });
    },
    ref: ([x, sub, ranks, idx], [xs]) => rankedBlendRef(x, xs, sub, 5, ranks, 3, Float64Array.from(Array.from(idx).flatMap((r) => [r, r, r + 1, Math.fround(Math.fround(r * 0.1) - 0.05), r])), { granularity: s }),
  })),
  // keep = 1 where the second feed is > 0 (about half the pixels), per image.
  impute: [{
    name: 'two channels of 5×6 with about half the pixels removed, solved by CG against a banded float64 solve',
    feeds: [batched([2, 5, 6]), batched([1, 5, 6])],
    record: (t, [x, k]) => t.impute(x, t.where(t.activation(k, { kind: 'relu' }), t.scalar(1), t.scalar(0)), { iterations: 60, tolerance: 1e-7 }),
    ref: ([x, k], [xs]) => imputeRef(x, xs, k.map((v) => (v > 0 ? 1 : 0))),
    wrt: [],
  }],
  impute_residual: [{
    name: 'residual of an arbitrary fill of 2×5×6 images',
    feeds: [batched([2, 5, 6]), batched([1, 5, 6])],
    record: (t, [f, k]) => t.imputeResidual(f, t.where(t.activation(k, { kind: 'relu' }), t.scalar(1), t.scalar(0))),
    ref: ([f, k], [fs]) => imputeResidualRef(f, fs, k.map((v) => (v > 0 ? 1 : 0))),
  }],
  onehot_argmax: [{
    name: 'one-hot rows',
    feeds: [batched([6], 'distinct')],
    record: (t, [x]) => t.onehotArgmax(x),
    ref: ([x], [xs]) => {
      const out = new Float64Array(x.length);
      for (let r = 0; r < xs[0]; r++) {
        let best = 0;
        for (let c = 1; c < xs[1]; c++) if (x[r * xs[1] + c] > x[r * xs[1] + best]) best = c;
        out[r * xs[1] + best] = 1;
      }
      return out;
    },
  }],
  conv_grad_input: [CONV, CONV_DIL].map((a, k): Case => {
    const [xs, ws] = k === 0 ? [[4, 7, 7], [6, 2, 3, 3]] : [[3, 6, 5], [4, 3, 3, 2]];
    const ys = (n: number) => conv2dRef(new Float64Array(n * size(xs)), [n, ...xs], new Float64Array(size(ws)), ws, null, a).shape;
    return {
      name: k === 0 ? 'strided, grouped' : 'dilated',
      feeds: [{ shape: ys, batched: true }, whole(ws)],
      record: (t, [gy, w]) => t.record({ kind: 'conv_grad_input', inputs: [gy.name, w.name], attrs: a }, [gy.shape[0], ...xs], origin('cgi')),
      ref: ([gy, w], [gys]) => vjpRef((x) => conv(x, [gys[0], ...xs], w, ws, null, a), new Float64Array(gys[0] * size(xs)), gy, 1),
    };
  }),
  conv_grad_weight: [CONV, CONV_DIL].map((a, k): Case => {
    const [xs, ws] = k === 0 ? [[4, 7, 7], [6, 2, 3, 3]] : [[3, 6, 5], [4, 3, 3, 2]];
    const ys = (n: number) => conv2dRef(new Float64Array(n * size(xs)), [n, ...xs], new Float64Array(size(ws)), ws, null, a).shape;
    return {
      name: k === 0 ? 'strided, grouped' : 'dilated',
      feeds: [batched(xs), { shape: ys, batched: true }],
      sumsOverBatch: true,
      record: (t, [x, gy]) => t.record({ kind: 'conv_grad_weight', inputs: [x.name, gy.name], attrs: a }, null, origin('cgw')),
      ref: ([x, gy], [xsn]) => vjpRef((w) => conv(x, xsn, w, ws, null, a), new Float64Array(size(ws)), gy, 1),
    };
  }),
  pool_grad: [MAXPOOL, AVGPOOL].map((a, k): Case => {
    const pool = k === 0 ? 'max' : 'avg';
    const xs = [3, 7, 6];
    const ys = (n: number) => pool2dRef(pool, new Float64Array(n * size(xs)), [n, ...xs], a).shape;
    return {
      name: pool,
      feeds: [batched(xs, 'distinct'), { shape: ys, batched: true }],
      record: (t, [x, gy]) => t.record({ kind: 'pool_grad', pool, inputs: [x.name, gy.name], attrs: a }, null, origin('pg')),
      ref: ([x, gy], [xsn]) => vjpRef((v) => pool2dRef(pool, v, xsn, a).data, x, gy, 1e-3),
    };
  }),
  global_pool_grad: (['max', 'avg'] as const).map((pool): Case => ({
    name: pool,
    feeds: [batched([3, 4, 5], 'distinct'), batched([3, 1, 1])],
    record: (t, [x, gy]) => t.record({ kind: 'global_pool_grad', pool, inputs: [x.name, gy.name] }, null, origin('gpg')),
    ref: ([x, gy], [xs]) => vjpRef((v) => globalPoolRef(pool, v, xs).data, x, gy, 1e-3),
  })),
  reduce_grad: (['sum', 'mean', 'max', 'min'] as const).map((kind): Case => ({
    name: kind,
    feeds: [batched([4, 3, 5], 'distinct'), batched([1, 3, 1])],
    record: (t, [x, gy]) => {
      const y = t.reduce(kind, x, [1, 3]);
      return t.record({ kind: 'reduce_grad', reduce: kind, inputs: [x.name, y.name, gy.name], axes: [1, 3] }, null, origin('rg'));
    },
    ref: ([x, gy], [xs]) => vjpRef((v) => reduceRef(kind, v, xs, [1, 3]).data, x, gy, 1e-3),
    wrt: [],
  })),
  activation_grad: ACTIVATION_KINDS.flatMap((k): Activation[] => SAMPLES[k]).map((a): Case => ({
    name: `${JSON.stringify(a)}, from ${activationGradientReads(a)}`,
    feeds: [batched([4, 5], POSITIVE_ONLY.has(a.kind) ? 'positive' : 'distinct'), batched([4, 5])],
    record: (t, [x, gy]) => {
      // The table says which tensor the derivative reads: the input, or the output.
      const v = activationGradientReads(a) === 'x' ? x : t.activation(x, a);
      return t.record({ kind: 'activation_grad', activation: a, inputs: [v.name, gy.name] }, null, origin('ag'));
    },
    ref: ([x, gy]) => vjpRef(act(a), x, gy, 1e-5),
    wrt: [],
  })),
  softmax_grad: [false, true].map((log): Case => ({
    name: log ? 'log-softmax' : 'softmax',
    feeds: [batched([4, 5]), batched([4, 5])],
    record: (t, [x, gy]) => {
      const y = t.softmax(x, 1, log);
      return t.record({ kind: 'softmax_grad', inputs: [y.name, gy.name], axis: 1, coerce2d: false, log }, null, origin('sg'));
    },
    ref: ([x, gy], [xs]) => vjpRef((v) => softmaxRef(v, xs, 1, false, log), x, gy, 1e-4),
    wrt: [],
  })),
  resize_grad: [false, true].map((alignCorners): Case => ({
    name: `alignCorners ${alignCorners}`,
    feeds: [batched([2, 7, 9])],
    record: (t, [gy]) => t.record({ kind: 'resize_grad', inputs: [gy.name], options: { alignCorners } }, [gy.shape[0], 2, 3, 4], origin('rzg')),
    ref: ([gy], [gys]) => vjpRef((x) => bilinearRef(x, [gys[0], 2, 3, 4], 7, 9, { alignCorners }).data, new Float64Array(gys[0] * 24), gy, 1),
  })),
  slice: [{
    name: 'axis 1 window',
    feeds: [batched([6, 3])],
    record: (t, [x]) => t.record({ kind: 'slice', inputs: [x.name], axis: 1, start: 2 }, [x.shape[0], 3, 3], origin('slice')),
    ref: ([x], [xs]) => Float64Array.from({ length: xs[0] * 9 }, (_, i) => x[Math.floor(i / 9) * 18 + 6 + (i % 9)]),
  }],
  pad_grad: (['constant', 'reflect', 'edge'] as const).map((mode): Case => ({
    name: mode,
    feeds: [batched([2, 7, 8])],
    record: (t, [gy]) => t.record({ kind: 'pad_grad', inputs: [gy.name], pads: [0, 0, 2, 1, 0, 0, 1, 2], mode }, null, origin('padg')),
    ref: ([gy], [gys]) => vjpRef((x) => padRef(x, [gys[0], 2, 4, 5], [0, 0, 2, 1, 0, 0, 1, 2], mode, 0).data, new Float64Array(gys[0] * 40), gy, 1),
  })),
  batchnorm_stats: [{
    name: 'mean and biased variance',
    feeds: [whole([3, 4, 2, 3])],
    whole: true,
    record: (t, [x]) => t.record({ kind: 'batchnorm_stats', inputs: [x.name] }, null, origin('bns')),
    ref: ([x], [xs]) => batchStatsRef(x, xs),
  }],
  batchnorm: [
    {
      name: 'running statistics (evaluation mode)',
      feeds: [batched([4, 2, 3]), { shape: () => [2, 4], batched: false, values: 'positive' }, whole([4]), whole([4])],
      record: (t, [x, s, g, b]) => t.record({ kind: 'batchnorm', inputs: [x.name, s.name, g.name, b.name], eps: EPS, activation: NONE }, null, origin('bn')),
      ref: ([x, s, g, b], [xs]) => batchNormRef(x, xs, s, g, b, EPS),
      wrt: [0, 2, 3],
    },
    {
      name: 'batch statistics (training mode)',
      feeds: [whole([3, 4, 2, 3]), whole([4]), whole([4])],
      whole: true,
      record: (t, [x, g, b]) => {
        const s = t.record({ kind: 'batchnorm_stats', inputs: [x.name] }, null, origin('bns'));
        return t.record({ kind: 'batchnorm', inputs: [x.name, s.name, g.name, b.name], eps: EPS, activation: NONE }, null, origin('bn'));
      },
      ref: ([x, g, b], [xs]) => batchNormRef(x, xs, batchStatsRef(x, xs), g, b, EPS),
    },
  ],
  batchnorm_grad_params: [{
    name: 'Σ g·x̂ and Σ g',
    feeds: [whole([3, 4, 2, 3]), whole([3, 4, 2, 3])],
    whole: true,
    record: (t, [x, g]) => {
      const s = t.record({ kind: 'batchnorm_stats', inputs: [x.name] }, null, origin('bns'));
      return t.record({ kind: 'batchnorm_grad_params', inputs: [x.name, s.name, g.name], eps: EPS }, null, origin('bngp'));
    },
    ref: ([x, g], [xs]) => {
      const st = batchStatsRef(x, xs);
      const C = xs[1];
      const xhat = batchNormRef(x, xs, st, new Float64Array(C).fill(1), new Float64Array(C), EPS);
      const inner = size(xs.slice(2));
      const out = new Float64Array(2 * C);
      x.forEach((_, i) => {
        const c = Math.floor(i / inner) % C;
        out[c] += g[i] * xhat[i];
        out[C + c] += g[i];
      });
      return out;
    },
    wrt: [],
  }],
  batchnorm_grad_input: [
    {
      name: 'running statistics',
      feeds: [batched([4, 2, 3]), { shape: () => [2, 4], batched: false, values: 'positive' }, whole([4]), batched([4, 2, 3])],
      record: (t, [x, s, g, gy]) => t.record({ kind: 'batchnorm_grad_input', inputs: [x.name, s.name, g.name, gy.name], eps: EPS, batchStats: false }, null, origin('bngi')),
      ref: ([x, s, g, gy], [xs]) => vjpRef((v) => batchNormRef(v, xs, s, g, new Float64Array(4), EPS), x, gy, 1e-4),
    },
    {
      name: 'through the batch statistics',
      feeds: [whole([3, 4, 2, 3]), whole([4]), whole([3, 4, 2, 3])],
      whole: true,
      record: (t, [x, g, gy]) => {
        const s = t.record({ kind: 'batchnorm_stats', inputs: [x.name] }, null, origin('bns'));
        const sums = t.record({ kind: 'batchnorm_grad_params', inputs: [x.name, s.name, gy.name], eps: EPS }, null, origin('bngp'));
        return t.record({ kind: 'batchnorm_grad_input', inputs: [x.name, s.name, g.name, gy.name, sums.name], eps: EPS, batchStats: true }, null, origin('bngi'));
      },
      ref: ([x, g, gy], [xs]) => vjpRef((v) => batchNormRef(v, xs, batchStatsRef(v, xs), g, new Float64Array(4), EPS), x, gy, 1e-4),
      wrt: [],
    },
  ],
};

interface Outcome {
  forward: Float32Array;
  /** Gradients of Σ r ⊙ y by input index. */
  grads: Map<number, Float32Array>;
}

/**
 * Runs the case's program over the batch, in passes of `chunk` images recorded into one
 * encoder: batched feeds and results are sliced / concatenated along axis 0, gradients of
 * unbatched inputs are summed over the passes (the objective is a sum over images).
 */
async function runCase(ctx: GpuContext, c: Case, data: Float32Array[], seed: Float32Array, wrt: number[], chunk: number): Promise<Outcome> {
  const passes: { n0: number; nb: number }[] = [];
  for (let n0 = 0; n0 < BATCH; n0 += chunk) passes.push({ n0, nb: Math.min(chunk, BATCH - n0) });
  const rec = new Recorder(ctx);
  const pieces: { n0: number; nb: number; names: string[]; tensors: Tensor[] }[] = [];
  const plans: Awaited<ReturnType<typeof compilePlan>>[] = [];
  const weights = new WeightStore(ctx);
  const uploads: Tensor[] = [];
  let outBatched = false;
  for (const { n0, nb } of passes) {
    const t = new Tape();
    const xs = c.feeds.map((f, k) => t.input(`x${k}`, f.shape(nb)));
    const y = c.record(t, xs);
    const kind = t.graph.ops.at(-1)!.kind;
    outBatched = c.feeds.some((f) => f.batched) && !c.whole && !c.sumsOverBatch;
    const r = t.input('seed', y.shape);
    const grads = wrt.length ? gradients(t, new Map([[y.name, r]]), wrt.map((k) => xs[k].name)) : new Map<string, Sym>();
    for (const k of wrt) if (!grads.has(xs[k].name)) throw new Error(`${kind}: no gradient reached input ${k}`);
    const results = [y.name, ...wrt.map((k) => grads.get(xs[k].name)!.name)];
    t.graph.outputs.push(...results);
    const plan = await compilePlan(ctx, t.graph, weights, new Set(results));
    plans.push(plan);
    const feed = (name: string, src: Float32Array, shape: number[], isBatched: boolean) => {
      const per = isBatched ? size(shape.slice(1)) : 0;
      const slice = isBatched ? src.subarray(n0 * per, (n0 + nb) * per) : src;
      const u = Tensor.fromData(ctx, slice, shape);
      uploads.push(u);
      rec.copy(u.buffer, 0, plan.inputs.get(name)!.buffer, 0, u.byteLength);
    };
    c.feeds.forEach((f, k) => feed(`x${k}`, data[k], f.shape(nb), f.batched && !c.whole));
    feed('seed', seed, [...y.shape], outBatched);
    plan.encode(rec);
    const tensors = results.map((name) => {
      const slot = plan.results.get(name)!;
      const out = Tensor.empty(ctx, slot.shape);
      rec.copy(slot.buffer, 0, out.buffer, 0, slot.bytes);
      return out;
    });
    pieces.push({ n0, nb, names: results, tensors });
  }
  rec.submit();
  const read = await Promise.all(pieces.map((p) => readTensors(ctx, p.tensors)));
  for (const p of pieces) for (const t of p.tensors) t.dispose();
  for (const u of uploads) u.dispose();
  for (const p of plans) p.dispose();
  weights.dispose();
  const join = (j: number, isBatched: boolean): Float32Array => {
    if (isBatched) return Float32Array.from(read.flatMap((r) => [...r[j]]));
    const sum = new Float32Array(read[0][j].length);
    for (const r of read) r[j].forEach((v, i) => (sum[i] += v));
    return sum;
  };
  const forward = join(0, outBatched);
  const grads = new Map(wrt.map((k, j) => [k, join(j + 1, c.feeds[k].batched && !c.whole)]));
  return { forward, grads };
}

describe.each(KERNEL_FAMILIES)('op registry: every kind through tape, autodiff, compiler and split batches (%s kernels)', (family) => {
  const kinds = Object.keys(CASES) as OpKind[];
  it('has a case for every registered kind', () => {
    expect(kinds.sort()).toEqual((Object.keys(OPS) as OpKind[]).sort());
  });

  it.each(kinds)('%s', async (kind) => {
    const ctx = await gpuFamily(family);
    const rand = rng(kinds.indexOf(kind) + 101);
    for (const c of CASES[kind]) {
      const rule = OPS[kind].vjp;
      const shapes = c.feeds.map((f) => f.shape(BATCH));
      const data = c.feeds.map((f, k) => values(f.values ?? 'uniform', size(shapes[k]), rand));
      const x64 = data.map((d) => Float64Array.from(d));
      const want = c.ref(x64, shapes);
      const wrt = typeof rule === 'function' ? c.wrt ?? c.feeds.map((_, k) => k) : [];
      const seed = values('uniform', want.length, rand);
      const got = await runCase(ctx, c, data, seed, wrt, c.whole ? BATCH : CHUNK);
      const label = `${kind} (${c.name})`;
      expect(got.forward.length, label).toBe(want.length);
      expect(relError(got.forward, want), `${label}: forward`).toBeLessThan(FWD_TOL);
      for (const k of wrt) {
        const fd = vjpRef((v) => c.ref(x64.map((x, j) => (j === k ? v : x)), shapes), x64[k], seed, 1e-4);
        expect(relError(got.grads.get(k)!, fd), `${label}: gradient of input ${k}`).toBeLessThan(GRAD_TOL);
      }
    }
  });
});

describe('op registry: VJP rules that are not functions', () => {
  it("'zero' kinds pass no gradient and 'none' kinds refuse to be differentiated", () => {
    const t = new Tape();
    const x = t.input('x', [2, 5]);
    const onehot = t.onehotArgmax(x);
    expect(gradients(t, new Map([[onehot.name, t.input('r', [2, 5])]]), [x.name]).has(x.name)).toBe(false);
    const t2 = new Tape();
    const x2 = t2.input('x', [2, 4, 3]);
    const gy = t2.input('gy', [2, 1, 3]);
    const y = t2.reduce('sum', x2, [1]);
    const g = t2.record({ kind: 'reduce_grad', reduce: 'sum', inputs: [x2.name, y.name, gy.name], axes: [1] }, null, origin('rg'));
    expect(() => gradients(t2, new Map([[g.name, t2.input('r', [2, 4, 3])]]), [gy.name])).toThrow(InputError);
  });

  it('Tape.record computes shapes by the rule and rejects a wrong declared shape', () => {
    const t = new Tape();
    const x = t.input('x', [2, 3, 8, 8]);
    const w = t.input('w', [4, 3, 3, 3]);
    const dilated: Conv2dAttrs = { kernel: [3, 3], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [2, 2], groups: 1, activation: NONE };
    expect(t.record({ kind: 'conv', inputs: [x.name, w.name], attrs: dilated }, null, origin('c')).shape).toEqual([2, 4, 4, 4]);
    // The shape a hand computation that ignores dilation would claim.
    expect(() => t.record({ kind: 'conv', inputs: [x.name, w.name], attrs: dilated }, [2, 4, 6, 6], origin('c'))).toThrow(/rule gives \[2, 4, 4, 4\]/);
    expect(() => t.record({ kind: 'alias', inputs: [x.name] }, null, origin('a'))).toThrow(/declared/);
  });
});

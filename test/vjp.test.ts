import { describe, expect, it } from 'vitest';
import { type Activation, activateCpu } from '../src/ops/activation.js';
import { convOutputShape } from '../src/ops/conv.js';
import type { Conv2dAttrs } from '../src/ops/conv-attrs.js';
import { chooseConvPath, type ConvPath } from '../src/ops/conv-sg8.js';
import { EagerEnv } from '../src/ops/env.js';
import { lowerActivationGrad, lowerSoftmaxGrad } from '../src/ops/grad-elementwise.js';
import { gradInputPads, lowerConvGradInput, lowerConvGradWeight } from '../src/ops/grad-conv.js';
import { lowerGlobalPoolGrad, lowerPoolGrad } from '../src/ops/grad-pool.js';
import { lowerPadGrad, lowerSlice, padOutputShape } from '../src/ops/layout.js';
import { type Pool2dAttrs, poolOutputShape } from '../src/ops/pool.js';
import { lowerBroadcast, lowerReduce, lowerReduceGrad, type ReduceKind, reduceShape } from '../src/ops/reduce.js';
import { lowerBilinearGrad } from '../src/ops/resample.js';
import { bound, type BoundTensor, type Lowered } from '../src/ops/types.js';
import type { GpuContext } from '../src/runtime/device.js';
import { InputError } from '../src/runtime/errors.js';
import { Recorder } from '../src/runtime/recorder.js';
import { Tensor } from '../src/runtime/tensor.js';
import type { PadMode } from '../src/shaders/layout.js';
import { gpuFamily, KERNEL_FAMILIES } from './helpers/gpu.js';
import { randInt, randomArray, relError, rng } from './helpers/random.js';
import {
  bilinearRef, broadcastRef, concatRef, conv2dAtRef, conv2dRef, globalPoolRef, padRef, pool2dRef, reduceRef, softmaxRef,
} from './reference/cpu.js';

/**
 * Vector-Jacobian products against central finite differences of the float64 CPU forward
 * references: for L = Σ r ⊙ f(x) with a random r, the GPU's gradient (fed gy = r) must match
 * (L(x + h·e_i) − L(x − h·e_i)) / 2h to ‖a − b‖ / ‖b‖ ≤ 1e-3. Large tensors are checked on a
 * random sample of coordinates. Inputs of max / relu / clip stay away from ties and kinks
 * by more than 2h.
 */

const TOL = 1e-3;
const H = 1e-3;
/** Coordinates checked per gradient when a tensor is larger. */
const SAMPLE = 160;

interface In {
  data: Float32Array;
  shape: number[];
}

const size = (s: readonly number[]) => s.reduce((p, q) => p * q, 1);

/** Runs one lowering on fresh buffers (outputs pre-filled with NaN, so unwritten elements fail) and reads its outputs. */
async function run(ctx: GpuContext, inputs: In[], outShapes: number[][], lower: (env: EagerEnv, ins: BoundTensor[], outs: BoundTensor[]) => Lowered): Promise<Float32Array[]> {
  const ins = inputs.map((t) => Tensor.fromData(ctx, t.data, t.shape));
  const outs = outShapes.map((s) => Tensor.fromData(ctx, new Float32Array(size(s)).fill(NaN), s));
  const env = new EagerEnv(ctx, 'vjp');
  const rec = new Recorder(ctx);
  for (const d of env.all(lower(env, ins.map((t) => bound(t.shape, t.buffer)), outs.map((t) => bound(t.shape, t.buffer))))) rec.dispatch(d);
  rec.submit();
  const got = await Promise.all(outs.map((t) => t.read()));
  env.release();
  for (const t of [...ins, ...outs]) t.dispose();
  return got;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function sample(rand: () => number, n: number, k = SAMPLE): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  if (n <= k) return all;
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rand() * (n - i));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, k).sort((p, q) => p - q);
}

/** Central differences of `loss` at the coordinates `idx` of x. */
function fd(loss: (x: Float64Array) => number, x0: ArrayLike<number>, idx: number[], h = H): Float64Array {
  const x = Float64Array.from(x0);
  return Float64Array.from(idx, (i) => {
    const v = x[i];
    x[i] = v + h;
    const lp = loss(x);
    x[i] = v - h;
    const lm = loss(x);
    x[i] = v;
    return (lp - lm) / (2 * h);
  });
}

/** Relative error of the GPU gradient `got` against finite differences of `loss`, on a sample of coordinates. */
function check(what: string, rand: () => number, loss: (x: Float64Array) => number, x: ArrayLike<number>, got: Float32Array): number {
  const idx = sample(rand, x.length);
  return track(what, relError(idx.map((i) => got[i]), fd(loss, x, idx)));
}

/** Values spaced 2^-7 apart (far more than 2h) in random order: no ties for max / min. */
function distinct(n: number, rand: () => number): Float32Array {
  const a = Float32Array.from({ length: n }, (_, i) => (i - n / 2) / 128);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Worst relative error per gradient, reported at the end. */
const worst = new Map<string, number>();

function track(what: string, err: number): number {
  worst.set(what, Math.max(worst.get(what) ?? 0, err));
  return err;
}

/** Max pooling's gradient with PyTorch's routing: each window's gy to its first maximum in scan order (kh-major). */
function poolMaxRouteRef(x: Float32Array, xs: number[], a: Pool2dAttrs, gy: Float32Array): Float64Array {
  const [n, c, h, w] = xs;
  const [, , oh, ow] = poolOutputShape('route', xs, a);
  const gx = new Float64Array(x.length);
  for (let p = 0; p < n * c; p++)
    for (let y = 0; y < oh; y++)
      for (let q = 0; q < ow; q++) {
        let best = -1;
        for (let i = 0; i < a.kernel[0]; i++)
          for (let j = 0; j < a.kernel[1]; j++) {
            const iy = y * a.strides[0] - a.pads[0] + i * a.dilations[0];
            const ix = q * a.strides[1] - a.pads[1] + j * a.dilations[1];
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
            const at = (p * h + iy) * w + ix;
            if (best < 0 || x[at] > x[best]) best = at;
          }
        if (best >= 0) gx[best] += gy[(p * oh + y) * ow + q];
      }
  return gx;
}

/** A max / min reduction's gradient routed to the first extremum of each output's elements in row-major order. */
function reduceRouteRef(kind: ReduceKind, x: Float32Array, xs: number[], axes: number[], gy: Float32Array): Float64Array {
  const ys = reduceShape(xs, axes);
  const best = new Int32Array(size(ys)).fill(-1);
  const outOf = (i: number) => {
    let rem = i;
    let o = 0;
    let mul = 1;
    for (let d = xs.length - 1; d >= 0; d--) {
      const c = rem % xs[d];
      rem = Math.floor(rem / xs[d]);
      o += (ys[d] === 1 ? 0 : c) * mul;
      mul *= ys[d];
    }
    return o;
  };
  for (let i = 0; i < x.length; i++) {
    const o = outOf(i);
    if (best[o] < 0 || (kind === 'max' ? x[i] > x[best[o]] : x[i] < x[best[o]])) best[o] = i;
  }
  const gx = new Float64Array(x.length);
  best.forEach((i, o) => (gx[i] = gy[o]));
  return gx;
}

// ---------- convolution ----------

/** ∂L/∂x at the sampled coordinates, re-evaluating only the outputs a perturbed input can reach. */
function convInputFd(x: Float32Array, xs: number[], w: Float32Array, ws: number[], a: Conv2dAttrs, r: Float32Array, ys: number[], idx: number[]): Float64Array {
  const [, c, h, wd] = xs;
  const [cout, cig, kh, kw] = ws;
  const [, , oh, ow] = ys;
  const coutG = cout / a.groups;
  const xx = Float64Array.from(x);
  return Float64Array.from(idx, (i) => {
    const ix = i % wd;
    const iy = Math.floor(i / wd) % h;
    const ch = Math.floor(i / (wd * h)) % c;
    const n = Math.floor(i / (wd * h * c));
    const g = Math.floor(ch / cig);
    const ylo = Math.max(0, Math.floor((iy + a.pads[0] - (kh - 1) * a.dilations[0]) / a.strides[0]));
    const yhi = Math.min(oh - 1, Math.floor((iy + a.pads[0]) / a.strides[0]));
    const xlo = Math.max(0, Math.floor((ix + a.pads[1] - (kw - 1) * a.dilations[1]) / a.strides[1]));
    const xhi = Math.min(ow - 1, Math.floor((ix + a.pads[1]) / a.strides[1]));
    const local = () => {
      let s = 0;
      for (let co = g * coutG; co < (g + 1) * coutG; co++)
        for (let y = ylo; y <= yhi; y++)
          for (let q = xlo; q <= xhi; q++) s += r[((n * cout + co) * oh + y) * ow + q] * conv2dAtRef(xx, xs, w, ws, a, n, co, y, q);
      return s;
    };
    const v = xx[i];
    xx[i] = v + H;
    const lp = local();
    xx[i] = v - H;
    const lm = local();
    xx[i] = v;
    return (lp - lm) / (2 * H);
  });
}

/** ∂L/∂w at the sampled coordinates (a weight reaches one output channel). */
function convWeightFd(x: Float32Array, xs: number[], w: Float32Array, ws: number[], a: Conv2dAttrs, r: Float32Array, ys: number[], idx: number[]): Float64Array {
  const [n, cout, oh, ow] = ys;
  const per = ws[1] * ws[2] * ws[3];
  const ww = Float64Array.from(w);
  return Float64Array.from(idx, (j) => {
    const co = Math.floor(j / per);
    const local = () => {
      let s = 0;
      for (let b = 0; b < n; b++)
        for (let y = 0; y < oh; y++)
          for (let q = 0; q < ow; q++) s += r[((b * cout + co) * oh + y) * ow + q] * conv2dAtRef(x, xs, ww, ws, a, b, co, y, q);
      return s;
    };
    const v = ww[j];
    ww[j] = v + H;
    const lp = local();
    ww[j] = v - H;
    const lm = local();
    ww[j] = v;
    return (lp - lm) / (2 * H);
  });
}

interface ConvCase {
  xs: number[];
  ws: number[];
  a: Conv2dAttrs;
}

async function checkConv(ctx: GpuContext, rand: () => number, c: ConvCase, label: string, withBias: boolean): Promise<void> {
  const ys = convOutputShape(label, c.xs, c.ws, c.a);
  const x = randomArray(size(c.xs), rand);
  const w = randomArray(size(c.ws), rand);
  const r = randomArray(size(ys), rand);
  const bs = reduceShape(ys, [0, 2, 3]);
  const [gx, gw, gb] = await run(ctx, [{ data: x, shape: c.xs }, { data: w, shape: c.ws }, { data: r, shape: ys }], [c.xs, c.ws, bs], (env, [X, W, R], [GX, GW, GB]) => [
    ...lowerConvGradInput(env, R, W, GX, c.a),
    ...lowerConvGradWeight(env, X, R, GW, c.a),
    ...(withBias ? lowerReduce(env, 'sum', R, GB, [0, 2, 3]) : []),
  ]);
  const ix = sample(rand, gx.length);
  const ex = relError(ix.map((i) => gx[i]), convInputFd(x, c.xs, w, c.ws, c.a, r, ys, ix));
  const iw = sample(rand, gw.length);
  const ew = relError(iw.map((i) => gw[i]), convWeightFd(x, c.xs, w, c.ws, c.a, r, ys, iw));
  const path = gradInputPath(ctx.kernelFamily, c);
  track(`conv grad_input (${path})`, ex);
  track('conv grad_weight', ew);
  expect(ex, `grad_input ${label}`).toBeLessThan(TOL);
  expect(ew, `grad_weight ${label}`).toBeLessThan(TOL);
  if (withBias) {
    const y0 = conv2dRef(x, c.xs, w, c.ws, null, c.a).data;
    const cout = c.ws[0];
    const plane = ys[2] * ys[3];
    const loss = (b: Float64Array) => {
      let s = 0;
      for (let i = 0; i < y0.length; i++) s += r[i] * (y0[i] + b[Math.floor(i / plane) % cout]);
      return s;
    };
    expect(check('conv grad_bias (reduce sum)', rand, loss, randomArray(cout, rand), gb), `grad_bias ${label}`).toBeLessThan(TOL);
  }
}

function convAttrs(k: [number, number], s: number, pads: [number, number, number, number], d: number, groups: number): Conv2dAttrs {
  return { kernel: k, strides: [s, s], pads, dilations: [d, d], groups, activation: { kind: 'none' } };
}

/** The path lowerConvGradInput takes: a lowerConv path on the transposed problem, or the gather kernel. */
function gradInputPath(family: string, c: ConvCase): ConvPath | 'gather' | 'generic' {
  const pads = gradInputPads(c.a);
  if (!pads) return 'gather';
  if (family !== 'sg8') return 'generic';
  const ys = convOutputShape('path', c.xs, c.ws, c.a);
  const g = c.a.groups;
  return chooseConvPath(ys, [c.xs[1], c.ws[0] / g, c.ws[2], c.ws[3]], c.xs, { ...c.a, strides: [1, 1], pads });
}

describe.each(KERNEL_FAMILIES)('vector-Jacobian products (%s kernels)', (family) => {
  it('conv grad_input / grad_weight / bias on random kernels, strides, pads, dilations and groups', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(101);
    const paths = new Set<string>();
    for (let trial = 0; trial < 14; trial++) {
      const k = randInt(rand, 1, 5);
      const kw = rand() < 0.3 ? randInt(rand, 1, 5) : k;
      const groups = randInt(rand, 1, 3);
      const cin = groups * randInt(rand, 1, 4);
      const cout = groups * randInt(rand, 1, 5);
      const s = trial % 3 === 0 ? 1 : randInt(rand, 1, 3);
      const d = randInt(rand, 1, 2);
      const pads: [number, number, number, number] = [randInt(rand, 0, 3), randInt(rand, 0, 3), randInt(rand, 0, 3), randInt(rand, 0, 3)];
      const n = randInt(rand, 1, 3);
      const h = randInt(rand, (k - 1) * d + 1, (k - 1) * d + 9);
      const w = randInt(rand, (kw - 1) * d + 1, (kw - 1) * d + 9);
      const c: ConvCase = { xs: [n, cin, h, w], ws: [cout, cin / groups, k, kw], a: convAttrs([k, kw], s, pads, d, groups) };
      paths.add(gradInputPath(family, c));
      await checkConv(ctx, rand, c, `trial ${trial} ${JSON.stringify(c)}`, true);
    }
    expect(paths.has('gather')).toBe(true);
  });

  it('conv grad_input through every lowerConv path and the gather kernel', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(102);
    const cases: (ConvCase & { path: ConvPath | 'gather' })[] = [
      { xs: [2, 8, 12, 12], ws: [16, 8, 1, 1], a: convAttrs([1, 1], 1, [0, 0, 0, 0], 1, 1), path: 'matmul' },
      { xs: [1, 48, 24, 24], ws: [48, 48, 3, 3], a: convAttrs([3, 3], 1, [1, 1, 1, 1], 1, 1), path: 'winograd4' },
      { xs: [1, 48, 26, 26], ws: [40, 48, 3, 3], a: convAttrs([3, 3], 1, [0, 0, 0, 0], 1, 1), path: 'winograd4' },
      { xs: [1, 120, 10, 10], ws: [100, 120, 3, 3], a: convAttrs([3, 3], 1, [1, 1, 1, 1], 1, 1), path: 'winograd2' },
      { xs: [2, 6, 11, 13], ws: [8, 3, 5, 5], a: convAttrs([5, 5], 1, [2, 1, 3, 4], 2, 2), path: 'direct' },
      { xs: [3, 6, 7, 6], ws: [6, 1, 3, 3], a: convAttrs([3, 3], 1, [1, 1, 1, 1], 1, 6), path: 'direct' },
      { xs: [2, 6, 15, 15], ws: [10, 6, 3, 3], a: convAttrs([3, 3], 2, [1, 1, 1, 1], 1, 1), path: 'gather' },
      { xs: [2, 8, 14, 14], ws: [16, 8, 1, 1], a: convAttrs([1, 1], 2, [0, 0, 0, 0], 1, 1), path: 'gather' },
      { xs: [1, 4, 9, 9], ws: [5, 4, 3, 3], a: convAttrs([3, 3], 1, [3, 0, 0, 2], 1, 1), path: 'gather' },
      { xs: [1, 3, 33, 35], ws: [20, 3, 7, 7], a: convAttrs([7, 7], 2, [3, 3, 3, 3], 1, 1), path: 'gather' },
      // Few weight-gradient tiles over a long reduction: split into uneven row slices.
      { xs: [2, 3, 40, 40], ws: [8, 3, 3, 3], a: convAttrs([3, 3], 1, [1, 1, 1, 1], 1, 1), path: 'direct' },
      { xs: [1, 4, 32, 31], ws: [4, 1, 3, 3], a: convAttrs([3, 3], 2, [1, 1, 1, 1], 1, 4), path: 'gather' },
    ];
    for (const c of cases) {
      const path = gradInputPath(family, c);
      if (family === 'sg8' || c.path === 'gather') expect(path, JSON.stringify(c)).toBe(c.path);
      await checkConv(ctx, rand, c, `${c.path} ${JSON.stringify(c)}`, false);
    }
  });

  // ---------- pooling ----------

  it.each(['max', 'avg'] as const)('%s pooling gradient for random kernels, strides, pads, dilations, ceil_mode, count_include_pad', async (kind) => {
    const ctx = await gpuFamily(family);
    const rand = rng(kind === 'max' ? 111 : 112);
    for (let trial = 0; trial < 30; trial++) {
      const kernel: [number, number] = [randInt(rand, 1, 4), randInt(rand, 1, 4)];
      const strides: [number, number] = [randInt(rand, 1, 3), randInt(rand, 1, 3)];
      const dilations: [number, number] = [rand() < 0.7 ? 1 : 2, rand() < 0.7 ? 1 : 2];
      const span = [0, 1].map((i) => (kernel[i] - 1) * dilations[i]);
      const pad = (i: number) => (rand() < 0.4 ? 0 : randInt(rand, 0, Math.min(span[i], 2)));
      const a: Pool2dAttrs = { kernel, strides, pads: [pad(0), pad(1), pad(0), pad(1)], dilations, ceilMode: rand() < 0.5, countIncludePad: rand() < 0.5 };
      const xs = [randInt(rand, 1, 3), randInt(rand, 1, 3), randInt(rand, span[0] + 1, span[0] + 9), randInt(rand, span[1] + 1, span[1] + 9)];
      const label = `trial ${trial}: ${JSON.stringify({ xs, ...a })}`;
      const ys = poolOutputShape(label, xs, a);
      const x = kind === 'max' ? distinct(size(xs), rand) : randomArray(size(xs), rand);
      const r = randomArray(size(ys), rand);
      const [gx] = await run(ctx, [{ data: x, shape: xs }, { data: r, shape: ys }], [xs], (env, [X, R], [GX]) => lowerPoolGrad(env, kind, X, R, GX, a));
      expect(check(`${kind} pool`, rand, (v) => dot(r, pool2dRef(kind, v, xs, a).data), x, gx), label).toBeLessThan(TOL);
    }
  });

  it('max pooling, global max pooling and max / min reductions route ties to the first extremum', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(191);
    const ties = (n: number) => Float32Array.from({ length: n }, () => randInt(rand, 0, 2));
    for (let trial = 0; trial < 8; trial++) {
      const a: Pool2dAttrs = {
        kernel: [randInt(rand, 2, 3), randInt(rand, 2, 3)], strides: [randInt(rand, 1, 2), randInt(rand, 1, 2)], pads: [1, 1, 1, 0],
        dilations: [1, randInt(rand, 1, 2)], ceilMode: trial % 2 === 0, countIncludePad: false,
      };
      const xs = [randInt(rand, 1, 2), randInt(rand, 1, 3), randInt(rand, 5, 9), randInt(rand, 5, 9)];
      const ys = poolOutputShape('ties', xs, a);
      const x = ties(size(xs));
      const r = randomArray(size(ys), rand);
      const [gx] = await run(ctx, [{ data: x, shape: xs }, { data: r, shape: ys }], [xs], (env, [X, R], [GX]) => lowerPoolGrad(env, 'max', X, R, GX, a));
      expect(relError(gx, poolMaxRouteRef(x, xs, a, r)), JSON.stringify({ xs, ...a })).toBeLessThan(1e-6);
    }
    // Windows that tile the input exactly take the one-pass kernel (VGG's 2×2/2 pools).
    for (const k of [[2, 2], [3, 2], [1, 3]] as [number, number][]) {
      const a: Pool2dAttrs = { kernel: k, strides: k, pads: [0, 0, 0, 0], dilations: [1, 1], ceilMode: false, countIncludePad: false };
      const xs = [2, 3, k[0] * randInt(rand, 1, 4), k[1] * randInt(rand, 1, 4)];
      const ys = poolOutputShape('tiled', xs, a);
      const x = ties(size(xs));
      const r = randomArray(size(ys), rand);
      const [gx] = await run(ctx, [{ data: x, shape: xs }, { data: r, shape: ys }], [xs], (env, [X, R], [GX]) => lowerPoolGrad(env, 'max', X, R, GX, a));
      expect(relError(gx, poolMaxRouteRef(x, xs, a, r)), `tiled ${JSON.stringify({ xs, k })}`).toBeLessThan(1e-6);
    }
    const cases: [ReduceKind, number[], number[]][] = [['max', [2, 3, 4, 5], [1, 3]], ['min', [3, 4, 5], [0, 2]], ['max', [2, 3, 5, 5], [2, 3]], ['min', [6, 7], [0, 1]]];
    for (const [kind, xs, axes] of cases) {
      const ys = reduceShape(xs, axes);
      const x = ties(size(xs));
      const r = randomArray(size(ys), rand);
      const global = kind === 'max' && axes.join() === '2,3';
      const [gx] = await run(ctx, [{ data: x, shape: xs }, { data: r, shape: ys }], [xs], (env, [X, R], [GX]) =>
        (global ? lowerGlobalPoolGrad(env, 'max', X, R, GX) : lowerReduceGrad(env, kind, X, R, R, GX, axes)));
      expect(relError(gx, reduceRouteRef(kind, x, xs, axes, r)), `${kind} ${xs} ${axes}`).toBeLessThan(1e-6);
    }
  });

  it('global average / max pooling gradients', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(121);
    for (const xs of [[2, 3, 5, 7], [1, 4, 1, 1], [3, 2, 9], [2, 5, 13, 11]]) {
      for (const kind of ['avg', 'max'] as const) {
        const ys = [xs[0], xs[1], ...xs.slice(2).map(() => 1)];
        const x = kind === 'max' ? distinct(size(xs), rand) : randomArray(size(xs), rand);
        const r = randomArray(size(ys), rand);
        const [gx] = await run(ctx, [{ data: x, shape: xs }, { data: r, shape: ys }], [xs], (env, [X, R], [GX]) => lowerGlobalPoolGrad(env, kind, X, R, GX));
        expect(check(`global ${kind} pool`, rand, (v) => dot(r, globalPoolRef(kind, v, xs).data), x, gx), `${kind} ${xs}`).toBeLessThan(TOL);
      }
    }
  });

  // ---------- reductions and broadcasting ----------

  it('reductions (forward and gradient) over random axes, and split long reductions', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(131);
    const kinds: ReduceKind[] = ['sum', 'mean', 'max', 'min'];
    const fixed: [number[], number[]][] = [[[2, 3000], [1]], [[5000], [0]], [[3, 700, 4], [0, 2]], [[2, 3, 4, 5, 6], [0, 2, 4]], [[4, 1, 3], [1]], [[6, 2, 5], []]];
    for (let trial = 0; trial < 24 + fixed.length; trial++) {
      let xs: number[];
      let axes: number[];
      if (trial < fixed.length) [xs, axes] = fixed[trial];
      else {
        xs = Array.from({ length: randInt(rand, 1, 5) }, () => randInt(rand, 1, 5));
        axes = xs.map((_, i) => i).filter(() => rand() < 0.5).map((i) => (rand() < 0.3 ? i - xs.length : i));
        if (axes.length === 0) axes = [randInt(rand, 0, xs.length - 1)];
      }
      const kind = kinds[trial % 4];
      const label = `trial ${trial}: ${kind} ${JSON.stringify({ xs, axes })}`;
      const ys = reduceShape(xs, axes);
      const x = kind === 'max' || kind === 'min' ? distinct(size(xs), rand) : randomArray(size(xs), rand);
      const r = randomArray(size(ys), rand);
      const ref = reduceRef(kind, x, xs, axes);
      expect(ys, label).toEqual(ref.shape);
      const [y, gx] = await run(ctx, [{ data: x, shape: xs }, { data: r, shape: ys }], [ys, xs], (env, [X, R], [Y, GX]) => [
        ...lowerReduce(env, kind, X, Y, axes),
        ...lowerReduceGrad(env, kind, X, Y, R, GX, axes),
      ]);
      expect(relError(y, ref.data), `forward ${label}`).toBeLessThan(1e-5);
      expect(check(`reduce ${kind}`, rand, (v) => dot(r, reduceRef(kind, v, xs, axes).data), x, gx), label).toBeLessThan(TOL);
    }
  });

  it('broadcast (forward) and its gradient, reduce-sum over the broadcast axes', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(141);
    for (let trial = 0; trial < 16; trial++) {
      const ys = Array.from({ length: randInt(rand, 1, 5) }, () => randInt(rand, 1, 5));
      const xs = ys.slice(randInt(rand, 0, ys.length - 1)).map((d) => (rand() < 0.4 ? 1 : d));
      const off = ys.length - xs.length;
      const axes = ys.map((_, i) => i).filter((i) => i < off || (xs[i - off] === 1 && ys[i] !== 1));
      const label = `trial ${trial}: ${JSON.stringify({ xs, ys })}`;
      const x = randomArray(size(xs), rand);
      const r = randomArray(size(ys), rand);
      const [y, gx] = await run(ctx, [{ data: x, shape: xs }, { data: r, shape: ys }], [ys, reduceShape(ys, axes)], (env, [X, R], [Y, GX]) => [
        ...lowerBroadcast(env, X, Y),
        ...lowerReduce(env, 'sum', R, GX, axes),
      ]);
      expect(relError(y, broadcastRef(x, xs, ys)), `forward ${label}`).toBeLessThan(1e-7);
      expect(check('broadcast', rand, (v) => dot(r, broadcastRef(v, xs, ys)), x, gx), label).toBeLessThan(TOL);
    }
  });

  // ---------- point-wise ----------

  it('activation gradients from the activation output', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(151);
    const acts: Activation[] = [
      { kind: 'none' }, { kind: 'relu' }, { kind: 'clip', min: -0.4, max: 0.6 }, { kind: 'clip', min: 0, max: 6 },
      { kind: 'leaky_relu', alpha: 0.1 }, { kind: 'sigmoid' },
    ];
    for (const act of acts) {
      const xs = [randInt(rand, 1, 3), randInt(rand, 1, 5), randInt(rand, 1, 7), randInt(rand, 1, 9)];
      const kinks = act.kind === 'clip' ? [act.min, act.max] : [0];
      const x = Float32Array.from({ length: size(xs) }, () => {
        let v: number;
        do v = (rand() * 2 - 1) * 1.5; while (kinks.some((k) => Math.abs(v - k) < 0.01));
        return v;
      });
      const y = Float32Array.from(x, (v) => activateCpu(act, v));
      const r = randomArray(size(xs), rand);
      const [gx] = await run(ctx, [{ data: y, shape: xs }, { data: r, shape: xs }], [xs], (env, [Y, R], [GX]) => lowerActivationGrad(env, act, Y, R, GX));
      expect(check(`activation ${act.kind}`, rand, (v) => dot(r, v.map((u) => activateCpu(act, u))), x, gx), JSON.stringify(act)).toBeLessThan(TOL);
    }
    const env = new EagerEnv(ctx, 'leaky');
    const t = bound([4], ctx.pool.acquire(16));
    expect(() => lowerActivationGrad(env, { kind: 'leaky_relu', alpha: -0.5 }, t, t, t)).toThrow(InputError);
    ctx.pool.release(t.binding.buffer);
  });

  it('softmax / log-softmax gradients over random axes, with and without coerce2d', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(161);
    for (let trial = 0; trial < 16; trial++) {
      const xs = Array.from({ length: randInt(rand, 1, 4) }, () => randInt(rand, 1, 6));
      const ax = randInt(rand, 0, xs.length - 1);
      const axis = rand() < 0.3 ? ax - xs.length : ax;
      const coerce2d = rand() < 0.4;
      const log = trial % 2 === 1;
      const label = `trial ${trial}: ${JSON.stringify({ xs, axis, coerce2d, log })}`;
      const x = randomArray(size(xs), rand, 2);
      const y = Float32Array.from(softmaxRef(x, xs, axis, coerce2d, log));
      const r = randomArray(size(xs), rand);
      const [gx] = await run(ctx, [{ data: y, shape: xs }, { data: r, shape: xs }], [xs], (env, [Y, R], [GX]) => lowerSoftmaxGrad(env, Y, R, GX, axis, coerce2d, log));
      expect(check(log ? 'log-softmax' : 'softmax', rand, (v) => dot(r, softmaxRef(v, xs, axis, coerce2d, log)), x, gx), label).toBeLessThan(TOL);
    }
  });

  // ---------- resampling and layout ----------

  it('bilinear gradient: both align_corners modes, up/down-scaling, scaled windows and output offsets', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(171);
    const fixed = [
      { xs: [1, 2, 7, 7], out: [224, 224], scaled: undefined, offset: undefined },
      { xs: [2, 1, 30, 17], out: [5, 4], scaled: undefined, offset: undefined },
      { xs: [1, 3, 9, 12], out: [16, 16], scaled: [20, 22] as [number, number], offset: [2, 3] as [number, number] },
    ];
    for (let trial = 0; trial < 20; trial++) {
      const f = fixed[trial % 10] as (typeof fixed)[number] | undefined;
      const xs = f ? f.xs : [randInt(rand, 1, 2), randInt(rand, 1, 3), randInt(rand, 1, 9), randInt(rand, 1, 9)];
      const [oh, ow] = f ? f.out : [randInt(rand, 1, 20), randInt(rand, 1, 20)];
      const windowed = f ? f.scaled !== undefined : rand() < 0.5;
      const scaled: [number, number] | undefined = f ? f.scaled : windowed ? [oh + randInt(rand, 0, 6), ow + randInt(rand, 0, 6)] : undefined;
      const offset: [number, number] | undefined = f ? f.offset : scaled ? [randInt(rand, 0, scaled[0] - oh), randInt(rand, 0, scaled[1] - ow)] : undefined;
      const alignCorners = trial % 2 === 1;
      const outOffset = trial % 3 === 2 ? randInt(rand, 1, 40) : 0;
      const o = { alignCorners, scaled, offset };
      const label = `trial ${trial}: ${JSON.stringify({ xs, oh, ow, ...o, outOffset })}`;
      const ys = [...xs.slice(0, 2), oh, ow];
      const x = randomArray(size(xs), rand);
      const r = randomArray(size(ys), rand);
      // The window's gradient sits at outOffset inside a larger buffer, as the forward wrote it.
      const buf = new Float32Array(outOffset + r.length).fill(1e6);
      buf.set(r, outOffset);
      const [gx] = await run(ctx, [{ data: buf, shape: [buf.length] }], [xs], (env, [G], [GX]) => lowerBilinearGrad(env, { shape: ys, binding: G.binding }, GX, { ...o, outOffset }));
      expect(check(`bilinear ${alignCorners ? 'align_corners' : 'half_pixel'}`, rand, (v) => dot(r, bilinearRef(v, xs, oh, ow, o).data), x, gx), label).toBeLessThan(TOL);
    }
  });

  it('slice (Concat gradient) and pad gradient in every mode, negative pads included', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(181);
    for (let trial = 0; trial < 10; trial++) {
      const base = Array.from({ length: randInt(rand, 1, 4) }, () => randInt(rand, 1, 5));
      const axis = randInt(rand, 0, base.length - 1);
      const parts = Array.from({ length: randInt(rand, 1, 3) }, () => base.map((d, i) => (i === axis ? randInt(rand, 1, 4) : d)));
      const xsData = parts.map((s) => randomArray(size(s), rand));
      const ys = concatRef(xsData, parts, axis).shape;
      const r = randomArray(size(ys), rand);
      let start = 0;
      for (let k = 0; k < parts.length; k++) {
        const st = start;
        const [gx] = await run(ctx, [{ data: r, shape: ys }], [parts[k]], (env, [R], [GX]) => lowerSlice(env, R, GX, rand() < 0.3 ? axis - base.length : axis, st));
        const loss = (v: Float64Array) => dot(r, concatRef(xsData.map((d, j) => (j === k ? v : d)), parts, axis).data);
        expect(check('slice', rand, loss, xsData[k], gx), `concat part ${k} of ${JSON.stringify(parts)} on ${axis}`).toBeLessThan(TOL);
        start += parts[k][axis];
      }
    }
    const modes: PadMode[] = ['constant', 'edge', 'reflect', 'wrap'];
    for (let trial = 0; trial < 24; trial++) {
      const mode = modes[trial % 4];
      const xs = Array.from({ length: randInt(rand, 1, 4) }, () => randInt(rand, 1, 5));
      const r0 = xs.length;
      const pads = [...xs, ...xs].map((_, i) => {
        const d = xs[i % r0];
        // Pads up to twice the axis length (reflect and wrap go round more than once); crops leave at least one element.
        return rand() < 0.25 ? 0 : rand() < 0.25 ? -randInt(rand, 0, Math.floor((d - 1) / 2)) : randInt(rand, 0, 2 * d);
      });
      const label = `trial ${trial}: ${mode} ${JSON.stringify({ xs, pads })}`;
      const ys = padOutputShape(label, xs, pads);
      const x = randomArray(size(xs), rand);
      const r = randomArray(size(ys), rand);
      const [gx] = await run(ctx, [{ data: r, shape: ys }], [xs], (env, [R], [GX]) => lowerPadGrad(env, R, GX, pads, mode));
      expect(check(`pad ${mode}`, rand, (v) => dot(r, padRef(v, xs, pads, mode, 0.5).data), x, gx), label).toBeLessThan(TOL);
    }
  });

  it('reports the worst relative errors', () => {
    const lines = [...worst].sort(([p], [q]) => p.localeCompare(q)).map(([k, v]) => `  ${k}: ${v.toExponential(2)}`);
    console.log(`[${family}] worst relative error against finite differences:\n${lines.join('\n')}`);
    for (const v of worst.values()) expect(v).toBeLessThan(TOL);
    worst.clear();
  });
});

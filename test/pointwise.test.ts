import { describe, expect, it } from 'vitest';
import {
  ACTIVATION_KINDS, type Activation, type ActivationKind, activateCpu, activationDerivativeCpu, activationGradientReads,
  activationGradientUnsupported, POINTWISE,
} from '../src/ops/activation.js';
import { lowerConv } from '../src/ops/conv.js';
import { lowerBinary, lowerUnary, lowerWhere, whereCpu } from '../src/ops/elementwise.js';
import { EagerEnv } from '../src/ops/env.js';
import { lowerActivationGrad } from '../src/ops/grad-elementwise.js';
import type { OpGraph } from '../src/ops/graph.js';
import { fuseActivations } from '../src/ops/passes.js';
import { bound, type BoundTensor, type Lowered } from '../src/ops/types.js';
import type { GpuContext } from '../src/runtime/device.js';
import { InputError, ShapeError } from '../src/runtime/errors.js';
import { Recorder } from '../src/runtime/recorder.js';
import { Tensor } from '../src/runtime/tensor.js';
import { gpu, gpuFamily, KERNEL_FAMILIES } from './helpers/gpu.js';
import { randomArray, rng } from './helpers/random.js';

/**
 * Every row of the POINTWISE table, iterated from the table itself: forward kernels against
 * the float64 reference, gradient kernels against the row's derivative and against central
 * differences of the reference, fused epilogues against the unfused ops, and edge values
 * (zeros, large |x|, negative bases of integer powers).
 */

interface Case {
  act: Activation;
  /** A random input from the domain the row is tested on. */
  sample: (rand: () => number) => number;
  /** Points where the function or its derivative jumps: inputs for finite differences keep away from them. */
  kinks?: number[];
  /** The domain is x ≥ 0: fused tests feed the producing conv non-negative operands. */
  nonNegative?: true;
}

const uniform = (lo: number, hi: number) => (rand: () => number) => lo + (hi - lo) * rand();
/** Half the draws in [−small, small] (a row's near-zero branch), half in [−wide, wide]. */
const nearZeroOrWide = (small: number, wide: number) => (rand: () => number) => (rand() < 0.5 ? small : wide) * (2 * rand() - 1);
/** |x| in [lo, hi] with a random sign (integer powers of negative bases, away from the pole at 0). */
const signedMagnitude = (lo: number, hi: number) => (rand: () => number) => (rand() < 0.5 ? -1 : 1) * (lo + (hi - lo) * rand());

/** Test cases per kind: a Record over the kinds, so a row added to the table without cases fails tsc. */
const CASES: { [K in ActivationKind]: Case[] } = {
  none: [{ act: { kind: 'none' }, sample: uniform(-3, 3) }],
  relu: [{ act: { kind: 'relu' }, sample: uniform(-3, 3), kinks: [0] }],
  clip: [
    { act: { kind: 'clip', min: -0.4, max: 0.6 }, sample: uniform(-1.5, 1.5), kinks: [-0.4, 0.6] },
    { act: { kind: 'clip', min: -Infinity, max: 1 }, sample: uniform(-3, 3), kinks: [1] },
  ],
  leaky_relu: [
    { act: { kind: 'leaky_relu', alpha: 0.1 }, sample: uniform(-3, 3), kinks: [0] },
    { act: { kind: 'leaky_relu', alpha: 2.5 }, sample: uniform(-3, 3), kinks: [0] },
    // No gradient from y (checked below), but a forward and a fused epilogue like any other.
    { act: { kind: 'leaky_relu', alpha: -0.5 }, sample: uniform(-3, 3), kinks: [0] },
  ],
  sigmoid: [{ act: { kind: 'sigmoid' }, sample: uniform(-9, 9) }],
  exp: [{ act: { kind: 'exp' }, sample: uniform(-12, 12) }],
  abs: [{ act: { kind: 'abs' }, sample: uniform(-3, 3), kinks: [0] }],
  square: [{ act: { kind: 'square' }, sample: uniform(-3, 3) }],
  sqrt: [{ act: { kind: 'sqrt' }, sample: uniform(0.02, 9), nonNegative: true }],
  // Beyond |x| ≈ 4 the f32 y left for the gradient holds too few digits of 1 − y² for a 1e-3 check.
  tanh: [{ act: { kind: 'tanh' }, sample: nearZeroOrWide(0.7, 4) }],
  pow: [
    ...[2, 3, 7, 1, 0].map((p) => ({ act: { kind: 'pow', p } as Activation, sample: uniform(-2, 2) })),
    ...[-1, -2, -3].map((p) => ({ act: { kind: 'pow', p } as Activation, sample: signedMagnitude(0.25, 2) })),
    ...[0.5, 1.5, 2.5, -0.5].map((p) => ({ act: { kind: 'pow', p } as Activation, sample: uniform(0.05, 3) })),
  ],
};

/**
 * Relative error allowed in forward values on the random domains (lavapipe measures ≤ 1e-6:
 * exp 1.0e-6 on [−12, 12], sigmoid 6.8e-7, pow 8.3e-7, tanh 3.0e-7). At the edge values,
 * exp and pow go through 2^(x·log2 e) or 2^(p·log2 x) with products up to ~130, and one f32
 * rounding of that product costs ~|product|·6e-8 relative.
 */
const RTOL = 1.5e-6;
const EDGE_RTOL: Partial<Record<ActivationKind, number>> = { exp: 2e-5, pow: 2e-5 };
const ATOL = 1e-7;

const size = (s: readonly number[]) => s.reduce((p, q) => p * q, 1);
const label = (act: Activation) => JSON.stringify(act).replace('null', '-Infinity');

interface In {
  data: Float32Array;
  shape: number[];
}

/** Runs lowerings on fresh buffers (outputs pre-filled with NaN, so unwritten elements fail) and reads the outputs. */
async function run(ctx: GpuContext, inputs: In[], outShapes: number[][], lower: (env: EagerEnv, ins: BoundTensor[], outs: BoundTensor[]) => Lowered): Promise<{ outs: Float32Array[]; keys: string[] }> {
  const ins = inputs.map((t) => Tensor.fromData(ctx, t.data, t.shape));
  const outs = outShapes.map((s) => Tensor.fromData(ctx, new Float32Array(size(s)).fill(NaN), s));
  const env = new EagerEnv(ctx, 'pointwise');
  const rec = new Recorder(ctx);
  const launches = env.all(lower(env, ins.map((t) => bound(t.shape, t.buffer)), outs.map((t) => bound(t.shape, t.buffer))));
  for (const d of launches) rec.dispatch(d);
  rec.submit();
  const got = await Promise.all(outs.map((t) => t.read()));
  env.release();
  for (const t of [...ins, ...outs]) t.dispose();
  return { outs: got, keys: launches.map((d) => d.kernel.key) };
}

/** Same value: both NaN, the same infinity, or within atol + rtol·|want|. */
function agrees(got: number, want: number, rtol: number, atol: number): boolean {
  if (Number.isNaN(want)) return Number.isNaN(got);
  if (!Number.isFinite(want)) return got === want;
  return Number.isFinite(got) && Math.abs(got - want) <= atol + rtol * Math.abs(want);
}

/** The first disagreement, described with its input, or null. */
function firstMismatch(got: ArrayLike<number>, want: ArrayLike<number>, inputs: ArrayLike<number>, rtol: number, atol: number): string | null {
  for (let i = 0; i < want.length; i++) {
    if (!agrees(got[i], want[i], rtol, atol)) return `element ${i}: x = ${inputs[i]}, got ${got[i]}, want ${want[i]}`;
  }
  return null;
}

function sampleAwayFromKinks(c: Case, rand: () => number, margin: number): number {
  for (;;) {
    const v = Math.fround(c.sample(rand));
    if (!(c.kinks ?? []).some((k) => Math.abs(v - k) < margin)) return v;
  }
}

const allCases = (): Case[] => ACTIVATION_KINDS.flatMap((k) => CASES[k]);

describe('the POINTWISE table', () => {
  it('has test cases for every row, and every row that fuses takes its derivative from y', () => {
    for (const kind of ACTIVATION_KINDS) {
      expect(CASES[kind].length, kind).toBeGreaterThan(0);
      for (const c of CASES[kind]) expect(c.act.kind).toBe(kind);
      if (POINTWISE[kind].fuses) expect(POINTWISE[kind].derivative.from, kind).toBe('y');
    }
  });

  it('reads x or y for each gradient as specified, and keeps the four fused activations of ONNX models fusable', () => {
    const reads = Object.fromEntries(allCases().map((c) => [c.act.kind, activationGradientReads(c.act)]));
    expect(reads).toEqual({
      none: 'y', relu: 'y', clip: 'y', leaky_relu: 'y', sigmoid: 'y', exp: 'y', tanh: 'y', sqrt: 'y',
      abs: 'x', square: 'x', pow: 'x',
    });
    const fusable = ACTIVATION_KINDS.filter((k) => POINTWISE[k].fuses);
    expect(fusable).toEqual(['none', 'relu', 'clip', 'leaky_relu', 'sigmoid', 'exp', 'sqrt', 'tanh']);
  });

  it('the fusion pass folds exactly the rows that fuse into their producer', () => {
    for (const c of allCases()) {
      const graph: OpGraph = {
        ops: [
          { kind: 'binary', node: { name: 'add', opType: 'Add' }, op: 'add', inputs: ['a', 'b'], output: 's', activation: { kind: 'none' } },
          { kind: 'unary', node: { name: 'act', opType: 'Act' }, inputs: ['s'], output: 'y', activation: c.act },
        ],
        shapes: new Map([['a', [4]], ['b', [4]], ['s', [4]], ['y', [4]]]),
        constants: new Map(),
        inputs: ['a', 'b'],
        outputs: ['y'],
      };
      const fused = fuseActivations(graph, new Set());
      if (POINTWISE[c.act.kind].fuses) {
        expect(fused.ops, label(c.act)).toHaveLength(1);
        expect(fused.ops[0], label(c.act)).toMatchObject({ kind: 'binary', output: 'y', activation: c.act });
      } else {
        expect(fused.ops, label(c.act)).toEqual(graph.ops);
      }
    }
  });

  it('CPU derivatives match central differences of the CPU references (float64)', () => {
    const rand = rng(301);
    for (const c of allCases()) {
      if (activationGradientUnsupported(c.act) !== undefined) continue;
      const row = POINTWISE[c.act.kind];
      for (let t = 0; t < 200; t++) {
        const x = sampleAwayFromKinks(c, rand, 1e-3);
        const h = 1e-5 * Math.max(1, Math.abs(x));
        const fd = (activateCpu(c.act, x + h) - activateCpu(c.act, x - h)) / (2 * h);
        const v = row.derivative.from === 'x' ? x : activateCpu(c.act, x);
        const d = activationDerivativeCpu(c.act, v);
        expect(Math.abs(d - fd), `${label(c.act)} at x = ${x}: f' = ${d}, differences ${fd}`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(fd)));
      }
    }
  });
});

describe('point-wise forward kernels', () => {
  it('match the float64 reference for every row on random inputs', async () => {
    const ctx = await gpu();
    const rand = rng(311);
    for (const c of allCases()) {
      for (const n of [1000, 37]) {
        const x = Float32Array.from({ length: n }, () => c.sample(rand));
        const { outs: [y] } = await run(ctx, [{ data: x, shape: [n] }], [[n]], (env, [X], [Y]) => lowerUnary(env, X, Y, c.act));
        const want = Float64Array.from(x, (v) => Math.fround(activateCpu(c.act, v)));
        expect(firstMismatch(y, want, x, RTOL, ATOL), `${label(c.act)} n = ${n}`).toBeNull();
      }
    }
  });

  it('agree with the reference at zero, at large |x| and on integer powers of negative bases', async () => {
    const ctx = await gpu();
    const large = [20, 50, 87, 88.5, 89, 100, 1000, 3e38].flatMap((v) => [v, -v]);
    const edge = [0, -0, 1e-30, -1e-30, 1e-6, -1e-6, 0.4999, 0.5, 0.5001, -0.5, ...large];
    for (const c of allCases()) {
      const x = Float32Array.from(edge);
      const { outs: [y] } = await run(ctx, [{ data: x, shape: [x.length] }], [[x.length]], (env, [X], [Y]) => lowerUnary(env, X, Y, c.act));
      const want = Float64Array.from(x, (v) => Math.fround(activateCpu(c.act, v)));
      for (let i = 0; i < x.length; i++) {
        // f32 exp/pow near overflow round differently; elsewhere every value must match, NaN only where the reference has one.
        const nearOverflow = Math.abs(want[i]) > 1e37 && Number.isFinite(want[i]);
        if (nearOverflow) continue;
        // Fractional powers of negative bases are NaN in both, which is what `agrees` checks.
        expect(agrees(y[i], want[i], EDGE_RTOL[c.act.kind] ?? RTOL, 1e-30), `${label(c.act)} at x = ${x[i]}: got ${y[i]}, want ${want[i]}`).toBe(true);
      }
    }
    // Integer powers: exact products, signs kept for odd powers of negative bases.
    const bases = Float32Array.from([-3, -2, -1.5, -1, -0.5, 0, 0.5, 1, 2, 3]);
    for (const p of [2, 3, 4, 5, 7, -1, -3]) {
      const { outs: [y] } = await run(ctx, [{ data: bases, shape: [bases.length] }], [[bases.length]], (env, [X], [Y]) => lowerUnary(env, X, Y, { kind: 'pow', p }));
      expect(Array.from(y), `pow p = ${p}`).toEqual(Array.from(bases, (b) => Math.fround(b ** p)));
    }
    const squares = await run(ctx, [{ data: bases, shape: [bases.length] }], [[bases.length]], (env, [X], [Y]) => lowerUnary(env, X, Y, { kind: 'square' }));
    expect(Array.from(squares.outs[0])).toEqual(Array.from(bases, (b) => b * b));
  });
});

describe('point-wise gradient kernels', () => {
  it('match the row derivative and central differences, vec4 and scalar variants', async () => {
    const ctx = await gpu();
    const rand = rng(321);
    for (const c of allCases()) {
      if (activationGradientUnsupported(c.act) !== undefined) continue;
      const row = POINTWISE[c.act.kind];
      // 4·63: the vec4 kernel; 61: the scalar one.
      for (const n of [252, 61]) {
        const H = 1e-3;
        const x = Float32Array.from({ length: n }, () => sampleAwayFromKinks(c, rand, 3 * H));
        const v = row.derivative.from === 'x' ? x : Float32Array.from(x, (u) => activateCpu(c.act, u));
        const g = randomArray(n, rand);
        const { outs: [gx], keys } = await run(ctx, [{ data: v, shape: [n] }, { data: g, shape: [n] }], [[n]], (env, [V, G], [GX]) => lowerActivationGrad(env, c.act, V, G, GX));
        expect(keys, label(c.act)).toEqual([`activation_grad/${c.act.kind}${n % 4 === 0 ? '/v4' : ''}`]);
        // Against the row's derivative at the very v the kernel read.
        const want = Float64Array.from(x, (_, i) => g[i] * activationDerivativeCpu(c.act, v[i]));
        expect(firstMismatch(gx, want, x, 2e-6, 1e-7), `${label(c.act)} n = ${n} vs derivative`).toBeNull();
        // Against central differences of the float64 reference (y read back in f32 costs sigmoid/tanh some digits near saturation).
        const fd = Float64Array.from(x, (u, i) => g[i] * (activateCpu(c.act, u + H * Math.max(1, Math.abs(u))) - activateCpu(c.act, u - H * Math.max(1, Math.abs(u)))) / (2 * H * Math.max(1, Math.abs(u))));
        expect(firstMismatch(gx, fd, x, 1e-3, 1e-5), `${label(c.act)} n = ${n} vs differences`).toBeNull();
      }
    }
  });

  it('at x = 0 equal the row derivative (infinite for sqrt, NaN where g = 0 meets it)', async () => {
    const ctx = await gpu();
    for (const c of allCases()) {
      if (activationGradientUnsupported(c.act) !== undefined) continue;
      const row = POINTWISE[c.act.kind];
      const g = Float32Array.from([1, -2, 0, 0.5, 3]);
      const vAtZero = row.derivative.from === 'x' ? 0 : activateCpu(c.act, 0);
      const v = new Float32Array(g.length).fill(vAtZero);
      const { outs: [gx] } = await run(ctx, [{ data: v, shape: [g.length] }, { data: g, shape: [g.length] }], [[g.length]], (env, [V, G], [GX]) => lowerActivationGrad(env, c.act, V, G, GX));
      const want = Float64Array.from(g, (gi) => gi * activationDerivativeCpu(c.act, vAtZero));
      expect(firstMismatch(gx, want, v, 2e-6, 0), label(c.act)).toBeNull();
    }
  });

  it('at large |x| stay finite for sigmoid, tanh and exp where the reference is', async () => {
    const ctx = await gpu();
    const x = Float32Array.from([20, -20, 50, -50, 80, -80, 87, -100, -1000]);
    const g = Float32Array.from(x, (_, i) => 1 + i / 8);
    for (const act of [{ kind: 'sigmoid' }, { kind: 'tanh' }, { kind: 'exp' }] as Activation[]) {
      const y = Float32Array.from(x, (u) => activateCpu(act, u));
      const { outs: [gx] } = await run(ctx, [{ data: y, shape: [x.length] }, { data: g, shape: [x.length] }], [[x.length]], (env, [V, G], [GX]) => lowerActivationGrad(env, act, V, G, GX));
      const want = Float64Array.from(y, (v, i) => g[i] * activationDerivativeCpu(act, v));
      expect(want.every(Number.isFinite)).toBe(true);
      expect(firstMismatch(gx, want, x, 2e-6, 1e-30), label(act)).toBeNull();
    }
  });

  it('refuse leaky_relu with alpha <= 0, whose sign of y no longer tells the side of 0', async () => {
    const ctx = await gpu();
    const env = new EagerEnv(ctx, 'leaky');
    const t = bound([4], ctx.pool.acquire(16));
    for (const alpha of [0, -0.5]) expect(() => lowerActivationGrad(env, { kind: 'leaky_relu', alpha }, t, t, t)).toThrow(InputError);
    ctx.pool.release(t.binding.buffer);
  });
});

describe.each(KERNEL_FAMILIES)('fused point-wise epilogues (%s kernels)', (family) => {
  // Bit for bit: the epilogue applies the same `activate` to the same f32 the unfused op stores.
  it('give the numbers of the unfused ops for every row that fuses: broadcast add, same-shape add, conv', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(331);
    for (const c of allCases().filter((k) => POINTWISE[k.act.kind].fuses)) {
      // Operands that each take half a domain value, so their sum stays in the domain.
      const half = (n: number) => Float32Array.from({ length: n }, () => c.sample(rand) / 2);
      for (const [as, bs] of [[[2, 3, 8], [2, 3, 8]], [[2, 3, 7], [3, 1]]]) {
        const ys = as;
        const a = half(size(as));
        const b = half(size(bs));
        const fused = await run(ctx, [{ data: a, shape: as }, { data: b, shape: bs }], [ys], (env, [A, B], [Y]) => lowerBinary(env, 'add', A, B, Y, c.act));
        expect(fused.keys, label(c.act)).toHaveLength(1);
        expect(fused.keys[0], label(c.act)).toMatch(new RegExp(`/add/${c.act.kind}$`));
        const unfused = await run(ctx, [{ data: a, shape: as }, { data: b, shape: bs }], [ys, ys], (env, [A, B], [S, Y]) => [
          ...lowerBinary(env, 'add', A, B, S),
          ...lowerUnary(env, S, Y, c.act),
        ]);
        expect(firstMismatch(fused.outs[0], unfused.outs[1], a, 0, 0), `${label(c.act)} add ${JSON.stringify([as, bs])}`).toBeNull();
      }
      // Positive operands where the domain is positive (sqrt), so the conv's outputs are in it.
      const data = (n: number, scale: number) => Float32Array.from(randomArray(n, rand, scale), (u) => (c.nonNegative ? Math.abs(u) : u));
      const xs = [1, 4, 7, 7];
      const ws = [8, 4, 3, 3];
      const ys = [1, 8, 7, 7];
      const x = data(size(xs), 1);
      const w = data(size(ws), 0.3);
      const bias = data(8, 0.5);
      const attrs = { kernel: [3, 3] as [number, number], strides: [1, 1] as [number, number], pads: [1, 1, 1, 1] as [number, number, number, number], dilations: [1, 1] as [number, number], groups: 1 };
      const inputs = [{ data: x, shape: xs }, { data: w, shape: ws }, { data: bias, shape: [8] }];
      const fused = await run(ctx, inputs, [ys], (env, [X, W, B], [Y]) => lowerConv(env, X, W, B, Y, { ...attrs, activation: c.act }));
      const unfused = await run(ctx, inputs, [ys, ys], (env, [X, W, B], [S, Y]) => [
        ...lowerConv(env, X, W, B, S, { ...attrs, activation: { kind: 'none' } }),
        ...lowerUnary(env, S, Y, c.act),
      ]);
      expect(unfused.outs[1].some(Number.isNaN), `${label(c.act)} conv outputs left the domain`).toBe(false);
      expect(firstMismatch(fused.outs[0], unfused.outs[1], unfused.outs[0], 0, 0), `${label(c.act)} conv`).toBeNull();
    }
  });
});

describe('where', () => {
  it('selects a where cond != 0 (NaN and denormals included, ±0 not) and b elsewhere, vec4 and scalar variants', async () => {
    const ctx = await gpu();
    // 1e-40 is an f32 denormal: a GPU that flushes denormals must still count it as non-zero.
    const cond = Float32Array.from([1, 0, -0, NaN, 2, -3, 0, 1e-40]);
    const a = Float32Array.from([10, 11, 12, 13, 14, 15, 16, 17]);
    const b = Float32Array.from([20, 21, 22, 23, 24, 25, 26, 27]);
    expect(Array.from(whereCpu(cond, a, b))).toEqual([10, 21, 22, 13, 14, 15, 26, 17]);
    const rand = rng(341);
    for (const shape of [[8], [2, 3, 4], [3, 5, 7], [1]]) {
      const n = size(shape);
      const c = n === 8 ? cond : Float32Array.from({ length: n }, () => (rand() < 0.5 ? 0 : rand() - 0.5));
      const x = n === 8 ? a : randomArray(n, rand);
      const y = n === 8 ? b : randomArray(n, rand);
      const { outs: [out], keys } = await run(ctx, [{ data: c, shape }, { data: x, shape }, { data: y, shape }], [shape], (env, [C, A, B], [Y]) => lowerWhere(env, C, A, B, Y));
      expect(keys).toEqual([n % 4 === 0 ? 'where/v4' : 'where']);
      expect(Array.from(out), JSON.stringify(shape)).toEqual(Array.from(whereCpu(c, x, y)));
    }
  });

  it('rejects operands of different shapes', async () => {
    const ctx = await gpu();
    const env = new EagerEnv(ctx, 'where');
    const buf = ctx.pool.acquire(64);
    const t = (shape: number[]) => bound(shape, buf);
    expect(() => lowerWhere(env, t([2, 2]), t([4]), t([2, 2]), t([2, 2]))).toThrow(ShapeError);
    expect(() => lowerWhere(env, t([2, 2]), t([2, 2]), t([2, 2]), t([2, 1]))).toThrow(ShapeError);
    ctx.pool.release(buf);
  });
});

import { describe, expect, it } from 'vitest';
import { type GemmAttrs, gemmOutputShape, lowerGemm, lowerGemmSplitK, lowerMatMul, matmulOutputShape } from '../src/ops/gemm.js';
import { lowerPool, type Pool2dAttrs, poolOutputShape } from '../src/ops/pool.js';
import { bound, type Lowered } from '../src/ops/types.js';
import { EagerEnv } from '../src/ops/env.js';
import { Recorder } from '../src/runtime/recorder.js';
import { Tensor } from '../src/runtime/tensor.js';
import { gpu, gpuFamily, KERNEL_FAMILIES } from './helpers/gpu.js';
import { maxAbsDiff, randInt, randomArray, relError, rng } from './helpers/random.js';
import { gemmRef, matmulRef, pool2dRef } from './reference/cpu.js';

/**
 * Random attributes against the float64 references in test/reference/cpu.ts, through the
 * lowering functions directly (no ONNX graph): every trial prints its parameters on failure.
 */

async function execute(env: EagerEnv, launches: Lowered, y: Tensor): Promise<Float32Array> {
  const rec = new Recorder(env.ctx);
  for (const d of env.all(launches)) rec.dispatch(d);
  rec.submit();
  const out = await y.read();
  env.release();
  return out;
}

function pick<T>(rand: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rand() * xs.length)];
}

describe('MaxPool / AveragePool', () => {
  it.each(['max', 'avg'] as const)('%s pooling matches the reference for random kernels, strides, pads, dilations, ceil_mode, count_include_pad', async (kind) => {
    const ctx = await gpu();
    const rand = rng(kind === 'max' ? 11 : 12);
    for (let trial = 0; trial < 80; trial++) {
      const oneD = rand() < 0.15;
      const kernel: [number, number] = [oneD ? 1 : randInt(rand, 1, 5), randInt(rand, 1, 5)];
      const strides: [number, number] = [randInt(rand, 1, 3), randInt(rand, 1, 3)];
      const dilations: [number, number] = [rand() < 0.7 ? 1 : randInt(rand, 2, 3), rand() < 0.7 ? 1 : randInt(rand, 2, 3)];
      const span = [0, 1].map((i) => (kernel[i] - 1) * dilations[i]);
      // Pads up to the dilated kernel's span keep at least one input tap in every window.
      const pad = (i: number) => (rand() < 0.4 ? 0 : randInt(rand, 0, Math.min(span[i], 3)));
      const pads: [number, number, number, number] = [pad(0), pad(1), pad(0), pad(1)];
      const attrs: Pool2dAttrs = { kernel, strides, pads, dilations, ceilMode: rand() < 0.5, countIncludePad: rand() < 0.5 };
      const n = randInt(rand, 1, 2);
      const c = randInt(rand, 1, 3);
      const h = oneD ? 1 : randInt(rand, span[0] + 1, span[0] + 12);
      const w = randInt(rand, span[1] + 1, span[1] + 12);
      const xs = [n, c, h, w];
      const x = randomArray(n * c * h * w, rand);
      const ref = pool2dRef(kind, x, xs, attrs);
      const label = `trial ${trial}: ${JSON.stringify({ xs, ...attrs })}`;
      const ys = poolOutputShape(label, xs, attrs);
      expect(ys, label).toEqual(ref.shape);
      const X = Tensor.fromData(ctx, x, xs);
      const Y = Tensor.empty(ctx, ys);
      const poolEnv = new EagerEnv(ctx, 'pool');
      const got = await execute(poolEnv, lowerPool(poolEnv, kind, bound(xs, X.buffer), bound(ys, Y.buffer), attrs), Y);
      expect(maxAbsDiff(got, ref.data), label).toBeLessThan(1e-6);
      X.dispose();
      Y.dispose();
    }
  });
});

describe.each(KERNEL_FAMILIES)('Gemm (%s kernels)', (family) => {
  it('matches the reference for random transA / transB / alpha / beta and every C broadcast shape', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(21);
    // Linear layers at small batch (the GEMV kernel: one row, several, a K tail after blocks of 32) and just past it.
    const linear = [[1, 70, 64], [1, 5, 36], [3, 33, 100], [16, 9, 36], [17, 40, 32]];
    for (let trial = 0; trial < 80 + linear.length; trial++) {
      const fixed = trial >= 80 ? linear[trial - 80] : null;
      const M = fixed ? fixed[0] : randInt(rand, 1, 40);
      const N = fixed ? fixed[1] : randInt(rand, 1, 40);
      const K = fixed ? fixed[2] : randInt(rand, 1, 40);
      const transA = fixed ? false : rand() < 0.5;
      const transB = fixed ? true : rand() < 0.5;
      const attrs: GemmAttrs = {
        transA, transB,
        alpha: pick(rand, [1, 1, -0.5, 2.25]),
        beta: pick(rand, [1, 1, 0, 0.75]),
        activation: { kind: 'none' },
      };
      const cShape = pick(rand, [null, [], [1], [N], [1, N], [M, 1], [M, N], [1, 1]]);
      const as = transA ? [K, M] : [M, K];
      const bs = transB ? [N, K] : [K, N];
      const a = randomArray(M * K, rand);
      const b = randomArray(K * N, rand);
      const c = cShape ? randomArray(cShape.reduce((p, q) => p * q, 1), rand) : null;
      // Bᵀ split by rows over two bindings, as a weight larger than one binding is.
      const split = transB && N > 1 && rand() < 0.4 ? randInt(rand, 1, N - 1) : 0;
      const label = `trial ${trial}: ${JSON.stringify({ M, N, K, cShape, split, ...attrs })}`;
      expect(gemmOutputShape(label, as, bs, cShape, attrs), label).toEqual([M, N]);
      const ref = gemmRef(a, b, c, cShape ?? [], M, N, K, transA, transB, attrs.alpha, attrs.beta);
      const A = Tensor.fromData(ctx, a, as);
      const C = c && cShape ? Tensor.fromData(ctx, c, cShape) : null;
      const Y = Tensor.empty(ctx, [M, N]);
      const env = new EagerEnv(ctx, 'gemm');
      const cb = C ? bound(cShape!, C.buffer) : null;
      const owned = [A, Y, ...(C ? [C] : [])];
      let launches: Lowered;
      if (split) {
        launches = [];
        for (const [n0, count] of [[0, split], [split, N - split]]) {
          const part = Tensor.fromData(ctx, b.subarray(n0 * K, (n0 + count) * K), [count, K]);
          owned.push(part);
          launches.push(...lowerGemm(env, bound(as, A.buffer), bound([count, K], part.buffer), cb, bound([M, N], Y.buffer), attrs, { nOffset: n0, nCount: count }));
        }
      } else {
        const B = Tensor.fromData(ctx, b, bs);
        owned.push(B);
        launches = lowerGemm(env, bound(as, A.buffer), bound(bs, B.buffer), cb, bound([M, N], Y.buffer), attrs);
      }
      const got = await execute(env, launches, Y);
      expect(relError(got, ref), label).toBeLessThan(1e-5);
      for (const t of owned) t.dispose();
    }
  });
});

describe.each(KERNEL_FAMILIES)('MatMul (%s kernels)', (family) => {
  it('matches the reference for batched, broadcast and 1-D operands', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(31);
    const random = () => {
      const M = randInt(rand, 1, 20);
      const N = randInt(rand, 1, 20);
      const K = randInt(rand, 1, 20);
      const batch = Array.from({ length: randInt(rand, 0, 3) }, () => randInt(rand, 1, 4));
      // Each operand: a suffix of the output batch, any axis of it possibly broadcast (1).
      const own = () => batch.slice(randInt(rand, 0, batch.length)).map((d) => (rand() < 0.3 ? 1 : d));
      return [rand() < 0.15 ? [K] : [...own(), M, K], rand() < 0.15 ? [K] : [...own(), K, N]];
    };
    const fixed = [
      [[5], [5]], [[3, 5], [5]], [[5], [2, 5, 3]], [[1, 4, 4, 5, 8], [8, 17]],
      // Broadcast that mixes across three batch axes: more than the kernel's two levels.
      [[2, 1, 3, 4, 5], [1, 4, 3, 5, 6]], [[2, 3, 1, 2, 3], [3, 4, 3, 2]],
    ];
    for (let trial = 0; trial < 80 + fixed.length; trial++) {
      const [as, bs] = trial < fixed.length ? fixed[trial] : random();
      const a = randomArray(as.reduce((p, q) => p * q, 1), rand);
      const b = randomArray(bs.reduce((p, q) => p * q, 1), rand);
      const ref = matmulRef(a, as, b, bs);
      const label = `trial ${trial}: A ${JSON.stringify(as)} · B ${JSON.stringify(bs)}`;
      const ys = matmulOutputShape(label, as, bs);
      expect(ys, label).toEqual(ref.shape);
      const A = Tensor.fromData(ctx, a, as);
      const B = Tensor.fromData(ctx, b, bs);
      const Y = Tensor.empty(ctx, ys);
      const mmEnv = new EagerEnv(ctx, 'matmul');
      const got = await execute(mmEnv, lowerMatMul(mmEnv, bound(as, A.buffer), bound(bs, B.buffer), bound(ys, Y.buffer)), Y);
      expect(relError(got, ref.data), label).toBeLessThan(1e-5);
      for (const t of [A, B, Y]) t.dispose();
    }
  });
});

describe.each(KERNEL_FAMILIES)('Gemm with B split by rows over bindings (%s kernels)', (family) => {
  it('sums the chunks of the reduction, with C, alpha, beta and activation', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(31);
    for (let trial = 0; trial < 12; trial++) {
      const M = randInt(rand, 1, 9);
      const N = randInt(rand, 1, 30);
      const K = randInt(rand, 3, 40);
      const transA = rand() < 0.5;
      const attrs: GemmAttrs = { transA, transB: false, alpha: pick(rand, [1, 0.5]), beta: pick(rand, [1, 2]), activation: pick(rand, [{ kind: 'none' }, { kind: 'relu' }] as const) };
      const cShape = pick(rand, [null, [N], [M, N]]);
      const a = randomArray(M * K, rand);
      const b = randomArray(K * N, rand);
      const c = cShape ? randomArray(cShape.reduce((p, q) => p * q, 1), rand) : null;
      const ref = gemmRef(a, b, c, cShape ?? [], M, N, K, transA, false, attrs.alpha, attrs.beta).map((v) => (attrs.activation.kind === 'relu' ? Math.max(v, 0) : v));
      const cuts = [0, randInt(rand, 1, K - 2), K].sort((p, q) => p - q);
      if (rand() < 0.5) cuts.splice(2, 0, randInt(rand, cuts[1] + 1, K - 1));
      const A = Tensor.fromData(ctx, a, transA ? [K, M] : [M, K]);
      const C = c && cShape ? Tensor.fromData(ctx, c, cShape) : null;
      const Y = Tensor.empty(ctx, [M, N]);
      const parts = cuts.slice(0, -1).map((k0, i) => ({ k0, count: cuts[i + 1] - k0 })).filter((p) => p.count > 0);
      const bs = parts.map((p) => Tensor.fromData(ctx, b.subarray(p.k0 * N, (p.k0 + p.count) * N), [p.count, N]));
      const env = new EagerEnv(ctx, 'gemm-split-k');
      const launches = lowerGemmSplitK(env, bound(A.shape, A.buffer), parts.map((p, i) => ({ b: bound([p.count, N], bs[i].buffer), kOffset: p.k0, kCount: p.count })), C ? bound(cShape!, C.buffer) : null, bound([M, N], Y.buffer), attrs);
      const got = await execute(env, launches, Y);
      expect(relError(got, ref), `trial ${trial}: ${JSON.stringify({ M, N, K, transA, cuts, cShape })}`).toBeLessThan(1e-5);
      for (const t of [A, Y, ...bs, ...(C ? [C] : [])]) t.dispose();
    }
  });
});

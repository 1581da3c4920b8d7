import { describe, expect, it } from 'vitest';
import { type Activation, activateCpu } from '../src/ops/activation.js';
import { lowerConv } from '../src/ops/conv.js';
import { chooseConvPath, type ConvPath } from '../src/ops/conv-sg8.js';
import { bound } from '../src/ops/types.js';
import { ShapeError } from '../src/runtime/errors.js';
import { Recorder } from '../src/runtime/recorder.js';
import { Tensor } from '../src/runtime/tensor.js';
import { gpuFamily, KERNEL_FAMILIES } from './helpers/gpu.js';
import { EagerEnv } from '../src/ops/env.js';
import { randInt, randomArray, relError, rng } from './helpers/random.js';
import { conv2dRef } from './reference/cpu.js';

describe.each(KERNEL_FAMILIES)('conv2d (%s kernels)', (family) => {
  it('matches the float64 reference on random shapes', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(1);
    for (let trial = 0; trial < 12; trial++) {
      const k = randInt(rand, 1, 7);
      const groups = [1, 1, 2, 3][randInt(rand, 0, 3)];
      const cin = groups * randInt(rand, 1, 5);
      const cout = groups * randInt(rand, 1, 9);
      const s = randInt(rand, 1, 3);
      const d = randInt(rand, 1, 2);
      const pads: [number, number, number, number] = [randInt(rand, 0, 3), randInt(rand, 0, 3), randInt(rand, 0, 3), randInt(rand, 0, 3)];
      const n = randInt(rand, 1, 3);
      const h = randInt(rand, (k - 1) * d + 1, 17);
      const w = randInt(rand, (k - 1) * d + 1, 17);
      const xs = [n, cin, h, w];
      const ws = [cout, cin / groups, k, k];
      const x = randomArray(n * cin * h * w, rand);
      const wt = randomArray(ws.reduce((a, b) => a * b), rand);
      const b = randomArray(cout, rand);
      const attrs = { strides: [s, s] as [number, number], pads, dilations: [d, d] as [number, number], groups };
      const ref = conv2dRef(x, xs, wt, ws, b, attrs);
      const X = Tensor.fromData(ctx, x, xs);
      const W = Tensor.fromData(ctx, wt, ws);
      const B = Tensor.fromData(ctx, b, [cout]);
      const Y = Tensor.empty(ctx, ref.shape);
      const rec = new Recorder(ctx);
      const env = new EagerEnv(ctx, 'conv');
      for (const d0 of env.all(lowerConv(env, bound(xs, X.buffer), bound(ws, W.buffer), bound([cout], B.buffer), bound(ref.shape, Y.buffer), {
        kernel: [k, k], ...attrs, activation: { kind: 'none' },
      }))) rec.dispatch(d0);
      rec.submit();
      const got = await Y.read();
      env.release();
      expect(relError(got, ref.data), `trial ${trial} ${JSON.stringify({ xs, ws, s, d, pads, groups })}`).toBeLessThan(1e-5);
      for (const t of [X, W, B, Y]) t.dispose();
    }
  });

  it('covers every kernel path (1×1 matmul, Winograd F4/F2, direct) with fused bias and activation', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(2);
    const cases: { xs: number[]; cout: number; k: number; s: number; p: number; path: ConvPath; act: Activation }[] = [
      { xs: [2, 16, 12, 12], cout: 24, k: 1, s: 1, p: 0, path: 'matmul', act: { kind: 'relu' } },
      { xs: [1, 32, 30, 30], cout: 48, k: 3, s: 1, p: 1, path: 'winograd4', act: { kind: 'clip', min: -0.5, max: 0.5 } },
      { xs: [1, 130, 10, 10], cout: 90, k: 3, s: 1, p: 1, path: 'winograd2', act: { kind: 'none' } },
      { xs: [1, 3, 33, 35], cout: 20, k: 7, s: 2, p: 3, path: 'direct', act: { kind: 'leaky_relu', alpha: 0.1 } },
      { xs: [2, 6, 9, 9], cout: 10, k: 1, s: 2, p: 0, path: 'direct', act: { kind: 'sigmoid' } },
    ];
    for (const c of cases) {
      const [n, cin, h, w] = c.xs;
      const ws = [c.cout, cin, c.k, c.k];
      const x = randomArray(n * cin * h * w, rand);
      const wt = randomArray(ws.reduce((p, q) => p * q, 1), rand, 0.2);
      const b = randomArray(c.cout, rand);
      const attrs = { strides: [c.s, c.s] as [number, number], pads: [c.p, c.p, c.p, c.p] as [number, number, number, number], dilations: [1, 1] as [number, number], groups: 1 };
      const ref = conv2dRef(x, c.xs, wt, ws, b, attrs);
      const act = c.act;
      const want = Array.from(ref.data, (v) => activateCpu(act, v));
      expect(chooseConvPath(c.xs, ws, ref.shape, { kernel: [c.k, c.k], ...attrs, activation: act }), JSON.stringify(c)).toBe(c.path);
      const X = Tensor.fromData(ctx, x, c.xs);
      const W = Tensor.fromData(ctx, wt, ws);
      const B = Tensor.fromData(ctx, b, [c.cout]);
      const Y = Tensor.empty(ctx, ref.shape);
      const rec = new Recorder(ctx);
      const env = new EagerEnv(ctx, 'conv');
      for (const d of env.all(lowerConv(env, bound(c.xs, X.buffer), bound(ws, W.buffer), bound([c.cout], B.buffer), bound(ref.shape, Y.buffer), { kernel: [c.k, c.k], ...attrs, activation: act }))) rec.dispatch(d);
      rec.submit();
      const got = await Y.read();
      env.release();
      // Winograd F(4×4) trades a little accuracy (measured ≤ 1.1e-5 relative) for 2–4× fewer multiplications.
      expect(relError(got, want), `${family} ${c.path} ${JSON.stringify(c)}`).toBeLessThan(c.path === 'winograd4' ? 3e-5 : 1e-5);
      for (const t of [X, W, B, Y]) t.dispose();
    }
  });

  // n·groups workgroups along z exceed the per-dimension limit (65535 on lavapipe): lowerConv
  // splits the batch into chunks of images whose byte offsets keep the binding alignment.
  // (Before, it produced one dispatch of 70 000 workgroups along z: a GPU validation error.)
  it('splits the batch when images × groups exceed the workgroup limit', async () => {
    const ctx = await gpuFamily(family);
    const rand = rng(3);
    // Depthwise over 1000 groups, a few images more than fit (71 on lavapipe). Images of
    // 100 000 (x) and 36 000 (y) bytes keep a 256-byte binding alignment every 8 images, so on
    // lavapipe the chunks are 64 + 7 images; x and y are bound 256 bytes into their buffers.
    const limit = ctx.limits.maxComputeWorkgroupsPerDimension;
    const cases = [{ n: Math.floor(limit / 1000) + 6, c: 1000, hw: 5, k: 3, p: 1, s: 2, prefix: 64, act: { kind: 'relu' } as Activation }];
    for (const c of cases) {
      const xs = [c.n, c.c, c.hw, c.hw];
      const ws = [c.c, 1, c.k, c.k];
      const x = randomArray(xs.reduce((a, b) => a * b), rand);
      const wt = randomArray(ws.reduce((a, b) => a * b), rand);
      const b = randomArray(c.c, rand);
      const attrs = { strides: [c.s, c.s] as [number, number], pads: [c.p, c.p, c.p, c.p] as [number, number, number, number], dilations: [1, 1] as [number, number], groups: c.c };
      const ref = conv2dRef(x, xs, wt, ws, b, attrs);
      const want = ref.data.map((v) => activateCpu(c.act, v));
      const X = Tensor.fromData(ctx, new Float32Array([...new Float32Array(c.prefix), ...x]), [c.prefix + x.length]);
      const W = Tensor.fromData(ctx, wt, ws);
      const B = Tensor.fromData(ctx, b, [c.c]);
      const yLen = want.length;
      const Y = Tensor.empty(ctx, [c.prefix + yLen]);
      const env = new EagerEnv(ctx, 'conv');
      const launches = lowerConv(env, bound(xs, X.buffer, c.prefix * 4), bound(ws, W.buffer), bound([c.c], B.buffer), bound(ref.shape, Y.buffer, c.prefix * 4), {
        kernel: [c.k, c.k], ...attrs, activation: c.act,
      });
      for (const d of launches) expect(d.workgroups.every((v) => v <= limit), `${family} ${JSON.stringify(d.workgroups)}`).toBe(true);
      // One launch per chunk; sg8 packs the weights once for all of them.
      expect(launches.length).toBeGreaterThan(1);
      expect(env.prelude.length).toBe(family === 'sg8' ? 1 : 0);
      const rec = new Recorder(ctx);
      for (const d of env.all(launches)) rec.dispatch(d);
      rec.submit();
      const got = (await Y.read()).subarray(c.prefix);
      env.release();
      const img = yLen / c.n;
      for (let i = 0; i < c.n; i++) {
        expect(relError(got.subarray(i * img, (i + 1) * img), want.subarray(i * img, (i + 1) * img)), `${family} image ${i} of ${JSON.stringify(c)}`).toBeLessThan(1e-5);
      }
      expect(relError(got, want), `${family} ${JSON.stringify(c)}`).toBeLessThan(1e-5);
      for (const t of [X, W, B, Y]) t.dispose();
    }
  });

  it('refuses, with a ShapeError, a split it cannot bind', async () => {
    const ctx = await gpuFamily(family);
    const limit = ctx.limits.maxComputeWorkgroupsPerDimension;
    /** The error lowering an n-image depthwise 1×1 conv over c channels throws. */
    const lowerError = (n: number, c: number): unknown => {
      const [X, W, Y] = [[n, c, 1, 1], [c, 1, 1, 1], [n, c, 1, 1]].map((s) => Tensor.empty(ctx, s));
      const env = new EagerEnv(ctx, 'conv');
      try {
        lowerConv(env, bound(X.shape, X.buffer), bound(W.shape, W.buffer), null, bound(Y.shape, Y.buffer), {
          kernel: [1, 1], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], groups: c, activation: { kind: 'none' },
        });
        return null;
      } catch (e) {
        return e;
      } finally {
        env.release();
        for (const t of [X, W, Y]) t.dispose();
      }
    };
    // More groups than workgroups per dimension, even for one image.
    const tooManyGroups = lowerError(1, limit + 1);
    expect(tooManyGroups).toBeInstanceOf(ShapeError);
    expect(String(tooManyGroups)).toMatch(/group/);
    // Images of 4·8193 bytes keep the alignment (≥ 32 bytes) only every align/4 ≥ 8 images,
    // but only 7 images of 8193 groups fit 65535 workgroups.
    const g = 8193;
    const unaligned = lowerError(Math.floor(limit / g) + 1, g);
    if (Math.floor(limit / g) < ctx.limits.minStorageBufferOffsetAlignment / 4) {
      expect(unaligned).toBeInstanceOf(ShapeError);
      expect(String(unaligned)).toMatch(/align/);
    } else {
      expect(unaligned).toBeNull();
    }
  });
});

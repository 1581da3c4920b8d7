import { describe, expect, it } from 'vitest';
import { lowerConv } from '../src/ops/conv.js';
import { bound } from '../src/ops/types.js';
import { Recorder } from '../src/runtime/recorder.js';
import { Tensor } from '../src/runtime/tensor.js';
import { gpu } from './helpers/gpu.js';
import { randInt, randomArray, relError, rng } from './helpers/random.js';
import { conv2dRef } from './reference/cpu.js';

describe('conv2d implicit GEMM', () => {
  it('matches the float64 reference on random shapes', async () => {
    const ctx = await gpu();
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
      for (const d0 of lowerConv({ ctx, label: 'conv' }, bound(xs, X.buffer), bound(ws, W.buffer), bound([cout], B.buffer), bound(ref.shape, Y.buffer), {
        kernel: [k, k], ...attrs, activation: { kind: 'none' },
      })) rec.dispatch(d0);
      rec.submit();
      const got = await Y.read();
      expect(relError(got, ref.data), `trial ${trial} ${JSON.stringify({ xs, ws, s, d, pads, groups })}`).toBeLessThan(1e-5);
      for (const t of [X, W, B, Y]) t.dispose();
    }
  });
});

import { describe, expect, it } from 'vitest';
import { type OptimizerOptions, Optimizer, ParameterStore } from '../src/ops/optim.js';
import { Recorder } from '../src/runtime/recorder.js';
import { Tensor, writeFloats } from '../src/runtime/tensor.js';
import { gpu } from './helpers/gpu.js';
import { randomArray, relError, rng } from './helpers/random.js';

/**
 * The optimizer kernels against float64 CPU references of PyTorch's update rules
 * (torch.optim.SGD with dampening 0, torch.optim.Adam / AdamW), three consecutive steps
 * with different gradients and learning rates, so the state buffers and Adam's
 * step-count uniform are exercised too.
 */

interface RefState {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

function refStep(o: OptimizerOptions, s: RefState, g: Float32Array, lr: number, t: number, decay: boolean): void {
  const wd = decay ? o.weightDecay : 0;
  for (let i = 0; i < s.p.length; i++) {
    if (o.kind === 'sgd') {
      const gi = g[i] + wd * s.p[i];
      s.v[i] = o.momentum * s.v[i] + gi;
      s.p[i] -= lr * (o.nesterov ? gi + o.momentum * s.v[i] : s.v[i]);
    } else {
      let p = s.p[i];
      let gi = g[i];
      if (o.decoupled) p *= 1 - lr * wd;
      else gi += wd * p;
      s.m[i] = o.beta1 * s.m[i] + (1 - o.beta1) * gi;
      s.v[i] = o.beta2 * s.v[i] + (1 - o.beta2) * gi * gi;
      const mhat = s.m[i] / (1 - o.beta1 ** t);
      const vhat = s.v[i] / (1 - o.beta2 ** t);
      s.p[i] = p - (lr * mhat) / (Math.sqrt(vhat) + o.eps);
    }
  }
}

const configs: [string, OptimizerOptions][] = [
  ['sgd momentum', { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 0, nesterov: false }],
  ['sgd nesterov + weight decay', { kind: 'sgd', lr: 0.05, momentum: 0.8, weightDecay: 1e-2, nesterov: true }],
  ['adam', { kind: 'adam', lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false }],
  ['adam + L2', { kind: 'adam', lr: 3e-3, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 5e-2, decoupled: false }],
  ['adamw', { kind: 'adam', lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-1, decoupled: true }],
];

describe('optimizers (GPU kernels) against float64 references', () => {
  it.each(configs)('%s: three steps', async (_name, options) => {
    const ctx = await gpu();
    const rand = rng(options.lr * 1e6);
    const shapes: [string, number[], boolean][] = [['w', [7, 3, 3, 3], true], ['b', [7], false], ['fc', [10, 33], true]];
    const store = new ParameterStore(ctx);
    const grads = new Map<string, Tensor>();
    const ref = new Map<string, RefState>();
    for (const [name, shape, decay] of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const init = randomArray(n, rand);
      store.add(name, shape, init, { decay });
      grads.set(name, Tensor.empty(ctx, shape));
      ref.set(name, { p: Float64Array.from(init), m: new Float64Array(n), v: new Float64Array(n) });
    }
    const opt = await Optimizer.create(store, options, new Map([...grads].map(([n, t]) => [n, t.binding()])));
    const rates = [options.lr, options.lr * 0.5, options.lr * 2];
    for (let t = 1; t <= 3; t++) {
      for (const [name, , decay] of shapes) {
        const g = randomArray(grads.get(name)!.size, rand, 0.5 * t);
        writeFloats(ctx.device.queue, grads.get(name)!.buffer, 0, g);
        refStep(options, ref.get(name)!, g, rates[t - 1], t, decay);
      }
      const rec = new Recorder(ctx);
      opt.encode(rec, rates[t - 1]);
      rec.submit();
      const got = await store.read();
      for (const [name] of shapes) expect(relError(got.get(name)!, ref.get(name)!.p), `${name} after step ${t}`).toBeLessThan(2e-6);
    }
    expect(opt.stepCount).toBe(3);
    opt.dispose();
    for (const g of grads.values()) g.dispose();
    store.dispose();
  });

  it('refuses a parameter without a gradient', async () => {
    const ctx = await gpu();
    const store = new ParameterStore(ctx);
    store.add('w', [2, 2], new Float32Array(4));
    await expect(Optimizer.create(store, { kind: 'sgd', lr: 0.1, momentum: 0, weightDecay: 0, nesterov: false }, new Map())).rejects.toThrow(/no gradient for parameter 'w'/);
    store.dispose();
  });
});

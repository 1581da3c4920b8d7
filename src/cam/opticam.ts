import type { Model } from '../model.js';
import { gradients } from '../ops/autodiff.js';
import type { Sym } from '../ops/graph.js';
import { Tape } from '../ops/tape.js';
import { InputError } from '../runtime/errors.js';
import { hostTensor } from '../runtime/host-tensor.js';
import type { Tensor } from '../runtime/tensor.js';
import { perItemAxes, relu, upsample, weightedSum } from './math.js';

export interface OptiCamOptions {
  layer: string;
  iterations: number;
  lr: number;
  /** 'plain': loss = y_c(x) − y_c(x'); 'norm': |y_c(x) − y_c(x')| (OPTI's Basic_OptCAM default). */
  loss: 'plain' | 'norm';
  /** How the model's input relates to [0, 1] pixels: x = (p − mean)/std per channel. Masks multiply p (OPTI). */
  mean: readonly number[];
  std: readonly number[];
  maxChunk?: number;
}

export interface OptiCamResult {
  map: Tensor;
  /** S(u) at the layer's resolution before normalization, [M, h, w]. */
  raw: Tensor;
  /** softmax(u) at the end, [M, K]. */
  weights: Tensor;
  /** The loss at every iteration (before its update; constant once an image stops), [M, iterations]. */
  lossCurve: Tensor;
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const ADAM_EPS = 1e-8;

/**
 * Opti-CAM (seed 003; OPTI generate_opticam.py / util.py Basic_OptCAM): u ∈ R^K from 0.5,
 * S(u) = Σ_k softmax(u)_k relu(A_k), the mask m = u(up(S)) (bilinear, half-pixel; min-max
 * without epsilon, as OPTI), x' = the [0, 1] pixels times m, normalized again for the model,
 * loss y_c(x) − y_c(x'), Adam (torch's defaults, lr) on u. All iterations are unrolled into
 * one program: each records the masked forward pass, its backward pass into u and the Adam
 * step, and the early stop — every iterations/10 steps an image whose loss went up since the
 * last check freezes its u (OPTI returns the map of that step's u) — is a select on the GPU,
 * so no iteration reads anything back.
 */
export async function runOptiCam(model: Model, x: Tensor, seed: Tensor, o: OptiCamOptions): Promise<OptiCamResult> {
  const [M, ...image] = x.shape;
  const [C, H, W] = image;
  if (!(Number.isInteger(o.iterations) && o.iterations >= 1)) throw new InputError(`Opti-CAM: iterations must be a whole number ≥ 1, got ${o.iterations}`);
  if (!(o.lr > 0 && Number.isFinite(o.lr))) throw new InputError(`Opti-CAM: the learning rate must be a positive number, got ${o.lr}`);
  if (o.mean.length !== C || o.std.length !== C || o.std.some((s) => !(s > 0))) {
    throw new InputError(`Opti-CAM masks [0, 1] pixels: give ${C} means and ${C} positive standard deviations (the model card's, or --mean/--std), got ${o.mean.length} and ${o.std.length}`);
  }
  const classes = seed.shape[1];
  const checkEvery = Math.max(1, Math.floor(o.iterations / 10));
  const run = await model.runProgram({
    key: `opticam|${image}|${o.layer}|${o.iterations}|${o.lr}|${o.loss}|${o.mean}|${o.std}`,
    batch: M,
    maxChunk: o.maxChunk,
    build: (nb) => {
      const mt = model.tape(nb, { image, taps: [o.layer] });
      const t = mt.tape;
      const w = t.input('seed', [nb, classes]);
      const a = relu(t, mt.taps.get(o.layer)!);
      const [, K] = a.shape;
      const clean = t.reduce('sum', t.mul(mt.logits, w), [1]);
      const mean = t.constant(hostTensor('float32', [1, C, 1, 1], Float32Array.from(o.mean)));
      const std = t.constant(hostTensor('float32', [1, C, 1, 1], Float32Array.from(o.std)));
      const pixels = t.add(t.mul(mt.input, std), mean);
      const minMax = (m: Sym) => {
        const lo = t.reduce('min', m, perItemAxes(m));
        return t.div(t.sub(m, lo), t.sub(t.reduce('max', m, perItemAxes(m)), lo));
      };
      const mapOf = (u: Sym) => {
        const weights = t.softmax(u, -1);
        const s = weightedSum(t, a, weights);
        return { weights, s, mask: minMax(upsample(t, s, [H, W])) };
      };
      let u = t.broadcast(t.scalar(0.5), [nb, K]);
      let m1 = t.broadcast(t.scalar(0), [nb, K]);
      let v1 = t.broadcast(t.scalar(0), [nb, K]);
      let active = t.broadcast(t.scalar(1), [nb, 1]);
      let prev = t.broadcast(t.scalar(1e10), [nb, 1]);
      const losses: Sym[] = [];
      for (let step = 0; step < o.iterations; step++) {
        t.scope(`opticam/${step}`, () => {
          const { mask } = mapOf(u);
          const masked = t.div(t.sub(t.mul(pixels, t.reshape(mask, [nb, 1, H, W])), mean), std);
          const it = model.tape(nb, { image, onto: { tape: t, input: masked, prefix: `opticam/${step}/` } });
          const diff = t.sub(clean, t.reduce('sum', t.mul(it.logits, w), [1]));
          const loss = o.loss === 'norm' ? t.activation(diff, { kind: 'abs' }) : diff;
          losses.push(loss);
          const g = gradients(t, new Map([[loss.name, t.broadcast(t.scalar(1), loss.shape)]]), [u.name]).get(u.name) ?? t.broadcast(t.scalar(0), u.shape);
          m1 = t.add(t.mul(m1, t.scalar(BETA1)), t.mul(g, t.scalar(1 - BETA1)));
          v1 = t.add(t.mul(v1, t.scalar(BETA2)), t.mul(t.mul(g, g), t.scalar(1 - BETA2)));
          const mhat = t.mul(m1, t.scalar(1 / (1 - BETA1 ** (step + 1))));
          const vhat = t.mul(v1, t.scalar(1 / (1 - BETA2 ** (step + 1))));
          const next = t.sub(u, t.mul(t.div(mhat, t.add(t.activation(vhat, { kind: 'sqrt' }), t.scalar(ADAM_EPS))), t.scalar(o.lr)));
          if (step % checkEvery === 0) {
            // Still going where the loss did not go up since the last check (OPTI's rule, per image).
            const rose = t.activation(t.sub(loss, prev), { kind: 'relu' });
            const keepGoing = t.where(rose, t.broadcast(t.scalar(0), active.shape), active);
            prev = t.where(keepGoing, loss, prev);
            active = keepGoing;
          }
          u = t.where(t.broadcast(active, u.shape), next, u);
        });
      }
      const final = mapOf(u);
      const curve = t.record({ kind: 'concat', inputs: losses.map((l) => l.name), axis: 1 }, null, { name: 'opticam_losses', opType: 'Concat' });
      const names = new Map([
        ['map', t.reshape(final.mask, [nb, H, W]).name],
        ['raw', final.s.name],
        ['weights', final.weights.name],
        ['loss', curve.name],
      ]);
      return { graph: t.graph, names, shared: (n: string) => model.isModelConstant(n) };
    },
    feeds: { [model.inputName]: { tensor: x, batchAxis: 0 }, seed: { tensor: seed, batchAxis: 0 } },
    results: { map: { batchAxis: 0 }, raw: { batchAxis: 0 }, weights: { batchAxis: 0 }, loss: { batchAxis: 0 } },
    label: 'opticam',
  });
  return { map: run.results.get('map')!, raw: run.results.get('raw')!, weights: run.results.get('weights')!, lossCurve: run.results.get('loss')! };
}

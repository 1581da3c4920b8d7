import type { Sym } from '../ops/graph.js';
import type { Tape } from '../ops/tape.js';
import { hostTensor } from '../runtime/host-tensor.js';

/**
 * Metrics of a map alone, or of a map against boxes or another map (SPEC §2), as tape ops
 * over maps [M, H, W]; each returns [M]. Maps are the final maps in [0, 1].
 */

const flat = (t: Tape, s: Sym) => t.reshape(s, [s.shape[0], s.shape[1] * s.shape[2]]);
const sum = (t: Tape, s: Sym) => t.reshape(t.reduce('sum', flat(t, s), [1]), [s.shape[0]]);

/** Σ S / (H·W) (seed 002 Table 3). */
export function compactness(t: Tape, s: Sym): Sym {
  return t.mul(sum(t, s), t.scalar(1 / (s.shape[1] * s.shape[2])));
}

/** ‖S‖₁ / (H·W) (pytorch-grad-cam metrics/arcc.py Complexity). */
export function complexity(t: Tape, s: Sym): Sym {
  return t.mul(sum(t, t.activation(s, { kind: 'abs' })), t.scalar(1 / (s.shape[1] * s.shape[2])));
}

/**
 * The Gini index of the flattened map, as Quantus's Sparseness computes it: a + 1e-7, sorted
 * ascending, Σ_i (2i − n − 1)·a_(i) / (n·Σ a), i = 1…n. (Quantus first divides by max |a|; the
 * index is invariant to that scale.)
 */
export function sparseness(t: Tape, s: Sym): Sym {
  const [M, H, W] = s.shape;
  const n = H * W;
  const a = t.add(flat(t, s), t.scalar(1e-7));
  const sorted = t.sort(a, { descending: false, output: 'values' });
  const coef = t.constant(hostTensor('float32', [1, n], Float32Array.from({ length: n }, (_, i) => 2 * (i + 1) - n - 1)));
  const num = t.reshape(t.reduce('sum', t.mul(sorted, coef), [1]), [M]);
  const den = t.mul(t.reshape(t.reduce('sum', a, [1]), [M]), t.scalar(n));
  return t.div(num, den);
}

/**
 * Pointing game (seed 002 §2.3, Quantus PointingGame): 1 when a maximum of S lies in the
 * (dilated) ground-truth region, else 0. Returns [max over the region, max overall]; the hit is
 * their equality, decided on the host from the two maxima (exact: both are values of S).
 */
export function pointingMaxima(t: Tape, s: Sym, region: Sym): { inside: Sym; overall: Sym } {
  const M = s.shape[0];
  const inside = t.where(region, s, t.broadcast(t.scalar(-1), s.shape));
  return { inside: t.reshape(t.reduce('max', flat(t, inside), [1]), [M]), overall: t.reshape(t.reduce('max', flat(t, s), [1]), [M]) };
}

/** Energy pointing game / OL proportion: Σ S inside the region / Σ S. */
export function energyInside(t: Tape, s: Sym, region: Sym): Sym {
  return t.div(sum(t, t.mul(s, region)), sum(t, s));
}

/** Dead-zone ratio (seed 001 eq. 7): ‖S[rows from…to−1, :]‖₂ / ‖S‖₂. */
export function deadZone(t: Tape, s: Sym, from: number, to: number): Sym {
  const [, H, W] = s.shape;
  const band = t.constant(hostTensor('float32', [1, H, W], Float32Array.from({ length: H * W }, (_, i) => (Math.floor(i / W) >= from && Math.floor(i / W) < to ? 1 : 0))));
  const sq = t.mul(s, s);
  return t.activation(t.div(sum(t, t.mul(sq, band)), sum(t, sq)), { kind: 'sqrt' });
}

/** DOA (seed 002 §3.2): the cosine distance 1 − ⟨S, A⟩ / (‖S‖·‖A‖) between a map and Activation-CAM's. */
export function cosineDistance(t: Tape, s: Sym, a: Sym): Sym {
  const dot = sum(t, t.mul(s, a));
  const norms = t.activation(t.mul(sum(t, t.mul(s, s)), sum(t, t.mul(a, a))), { kind: 'sqrt' });
  return t.sub(t.scalar(1), t.div(dot, norms));
}

/** Pearson correlation per row with pytorch-grad-cam's batch_pearson_coherency (sample statistics, eps 1e-8 on the std product). */
export function pearson(t: Tape, a: Sym, b: Sym): Sym {
  const M = a.shape[0];
  const n = a.shape.slice(1).reduce((p, q) => p * q, 1);
  const fa = t.reshape(a, [M, n]);
  const fb = t.reshape(b, [M, n]);
  const ca = t.sub(fa, t.reduce('mean', fa, [1]));
  const cb = t.sub(fb, t.reduce('mean', fb, [1]));
  const rs = (v: Sym) => t.reshape(t.reduce('sum', v, [1]), [M]);
  const cov = t.mul(rs(t.mul(ca, cb)), t.scalar(1 / (n - 1)));
  const sa = t.activation(t.mul(rs(t.mul(ca, ca)), t.scalar(1 / (n - 1))), { kind: 'sqrt' });
  const sb = t.activation(t.mul(rs(t.mul(cb, cb)), t.scalar(1 / (n - 1))), { kind: 'sqrt' });
  return t.div(cov, t.add(t.mul(sa, sb), t.scalar(1e-8)));
}

/** Each map's sum, min and max [M] each: what decides that a map is constant or has NaN. */
export function mapStats(t: Tape, s: Sym): { sum: Sym; min: Sym; max: Sym } {
  const M = s.shape[0];
  const f = flat(t, s);
  return { sum: sum(t, s), min: t.reshape(t.reduce('min', f, [1]), [M]), max: t.reshape(t.reduce('max', f, [1]), [M]) };
}

/**
 * The union of boxes [x0, y0, x1, y1) (pixels, end exclusive) per item as a mask [M, H, W];
 * with a tolerance, every pixel within that Euclidean distance of a box counts too (the
 * pointing game's 15 px tolerance, as TorchRay dilates the box with a disc).
 */
export function boxMask(boxes: readonly (readonly (readonly [number, number, number, number])[])[], H: number, W: number, tolerance = 0): Float32Array {
  const out = new Float32Array(boxes.length * H * W);
  boxes.forEach((list, m) => {
    for (const [x0, y0, x1, y1] of list) {
      for (let y = Math.max(0, Math.floor(y0 - tolerance)); y < Math.min(H, Math.ceil(y1 + tolerance)); y++) {
        const dy = Math.max(y0 - y, 0, y - (y1 - 1));
        for (let x = Math.max(0, Math.floor(x0 - tolerance)); x < Math.min(W, Math.ceil(x1 + tolerance)); x++) {
          const dx = Math.max(x0 - x, 0, x - (x1 - 1));
          if (dx * dx + dy * dy <= tolerance * tolerance) out[(m * H + y) * W + x] = 1;
        }
      }
    }
  });
  return out;
}

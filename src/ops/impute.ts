import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import type { Dispatch } from '../runtime/recorder.js';
import { formatShape } from '../runtime/shape.js';
import {
  IMPUTE_CHUNK, IMPUTE_PARAMS, IMPUTE_WG, imputeApplyKernel, imputeDirectionKernel, imputeInitKernel, imputeResidualFinalKernel,
  imputeResidualPartsKernel, imputeScalarKernel, imputeUpdateKernel,
} from '../shaders/impute.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

/**
 * Noisy linear imputation's linear part (ROAD; pytorch-grad-cam's NoisyLinearImputer without
 * the noise): every removed pixel becomes the weighted mean of its in-image 8 neighbours
 * (1/6 straight, 1/12 diagonal, missing neighbours' weights dropped from the normalizer), all
 * removed pixels of an (image, channel) solved together by conjugate gradients on the GPU.
 *
 * Convergence, measured on lavapipe (2 shared cores, 2026-12-02; a throwaway script running
 * impute + impute_residual with tolerance 1e-6 at several iteration counts, not a test). One
 * 224×224 channel with 90 % of its pixels removed as one region (45,158 unknowns):
 * - a smooth saliency blob (the kept 10 % at the far corners): true relative residual
 *   ‖b − A·u‖/‖b‖ 1.4e-4 after 300 iterations, 7.4e-6 after 400, float32's floor 4.5e-6 from
 *   about 450; CG's recursive residual reaches 1e-6 (the system stops) by about 600;
 * - the hardest case tried, a left-to-right ramp (known pixels only in the 22 leftmost
 *   columns): 9.6e-5 after 300, its floor 2.5e-5 from about 400;
 * - 90 % removed at random (small holes): 1.2e-6 within 200 (1e-5 in under 40).
 * At 56×56 (Fashion, 2,822 unknowns) 6e-5 after 100 and the floor, 3–5e-6, from 150–200.
 * The floor is float32's: u is stored to ~6e-8 relative, and ‖u‖ is 40× ‖b‖ there.
 * Cost: about 1 ms per iteration for that 224² system, and 0.25 ms per recorded iteration once
 * it has converged (five launches that return at once); the default 2·(H + W) + 100 = 996
 * recorded iterations took 0.5–0.75 s. Iterating inside one kernel per system (barriers
 * between the steps) would save those launches but keep one workgroup per system busy for
 * the whole solve; not built.
 */
export interface ImputeAttrs {
  /** Conjugate-gradient iterations recorded (an upper bound: a converged system skips the rest). */
  iterations: number;
  /** A system stops once its recursive residual ‖r‖ ≤ tolerance·‖b‖ (its true residual then sits at float32's floor, see above). */
  tolerance: number;
}

/** Iterations to record when the caller does not say: CG on an n-pixel-wide removed region needs O(n) of them (measured above). */
export function defaultImputeIterations(h: number, w: number): number {
  return 2 * (h + w) + 100;
}

export const DEFAULT_IMPUTE_TOLERANCE = 1e-6;

/** x [N, C, H, W] and keep [N, 1, H, W] or [N, H, W] (a pixel is known where keep > 0.5). */
function checkImputeOperands(where: string, x: readonly number[], keep: readonly number[]): void {
  if (x.length !== 4) throw new ShapeError(where, `imputation needs x as [N, C, H, W], got ${formatShape(x)}`);
  const [n, , h, w] = x;
  const ok = (keep.length === 4 && keep[0] === n && keep[1] === 1 && keep[2] === h && keep[3] === w) || (keep.length === 3 && keep[0] === n && keep[1] === h && keep[2] === w);
  if (!ok) throw new ShapeError(where, `the keep mask must be [${n}, 1, ${h}, ${w}] or [${n}, ${h}, ${w}] for x ${formatShape(x)}, got ${formatShape(keep)}`);
}

export function imputeShape(where: string, x: readonly number[], keep: readonly number[], a: ImputeAttrs): number[] {
  checkImputeOperands(where, x, keep);
  if (!(Number.isInteger(a.iterations) && a.iterations >= 0 && a.iterations <= 100000)) {
    throw new ShapeError(where, `imputation iterations must be a whole number in [0, 100000], got ${a.iterations}`);
  }
  if (!(a.tolerance >= 0 && a.tolerance < 1)) throw new ShapeError(where, `imputation tolerance must be in [0, 1), got ${a.tolerance}`);
  return [...x];
}

/** The relative residual per image: [N] for a filled image [N, C, H, W] and its keep mask. */
export function imputeResidualShape(where: string, filled: readonly number[], keep: readonly number[]): number[] {
  checkImputeOperands(where, filled, keep);
  return [filled[0]];
}

function layout(shape: readonly number[], tolerance: number) {
  const [n, c, h, w] = shape;
  const systems = n * c;
  const blocks = cdiv(h * w, IMPUTE_CHUNK);
  const threads = systems * blocks;
  const params = IMPUTE_PARAMS.pack({ systems, channels: c, h, w, threads, blocks, chunk: IMPUTE_CHUNK, tol2: tolerance * tolerance });
  return { systems, blocks, threads, params, plane: h * w };
}

/**
 * The filled image y: x on known pixels, the solution on removed ones (no noise: callers add
 * it). Launches: one start, then per iteration A·p, α, the update, β and the new direction
 * (five launches; the last direction is skipped). With no known pixel in an image the system
 * is singular (its null space holds the constants) and b = 0: the removed pixels get 0, the
 * minimum-norm solution, which is what CG started from 0 returns.
 */
export function lowerImpute(env: LowerEnv, x: BoundTensor, keep: BoundTensor, y: BoundTensor, a: ImputeAttrs): Lowered {
  const { systems, blocks, threads, params, plane } = layout(y.shape, a.tolerance);
  if (systems === 0 || plane === 0) return [];
  const field = () => env.scratch(systems * plane * 4, [systems * plane]).binding;
  const [r, p, q] = [field(), field(), field()];
  const part = env.scratch(threads * 4, [threads]).binding;
  const sys = env.scratch(systems * 16, [systems * 4]).binding;
  const chunked = grid1d(cdiv(threads, IMPUTE_WG));
  const perSystem = grid1d(systems);
  const launch = (kernel: Dispatch['kernel'], buffers: GPUBufferBinding[], workgroups: readonly [number, number, number]): Dispatch => ({ kernel, params, buffers, workgroups, label: env.label, flops: 0 });
  const out: Dispatch[] = [
    launch(imputeInitKernel(), [x.binding, keep.binding, y.binding, r, p, q, part], chunked),
    launch(imputeScalarKernel('start'), [part, sys], perSystem),
  ];
  for (let k = 0; k < a.iterations; k++) {
    out.push(
      launch(imputeApplyKernel(), [keep.binding, p, q, part, sys], chunked),
      launch(imputeScalarKernel('alpha'), [part, sys], perSystem),
      launch(imputeUpdateKernel(), [y.binding, r, p, q, part, sys], chunked),
    );
    if (k === a.iterations - 1) break;
    out.push(
      launch(imputeScalarKernel('beta'), [part, sys], perSystem),
      launch(imputeDirectionKernel(), [r, p, sys], chunked),
    );
  }
  return out;
}

/** ‖b − A·u‖ / ‖b‖ per image from the filled image itself (‖b − A·u‖ when b = 0), recomputed from scratch. */
export function lowerImputeResidual(env: LowerEnv, filled: BoundTensor, keep: BoundTensor, y: BoundTensor): Lowered {
  const { systems, threads, params, plane } = layout(filled.shape, 0);
  const images = filled.shape[0];
  if (images === 0) return [];
  if (systems === 0 || plane === 0) {
    // Nothing was removed or known: a zero residual still has to be written (no chunk to fold).
    const none = IMPUTE_PARAMS.pack({ systems: images, channels: 1, h: 0, w: 0, threads: 0, blocks: 0, chunk: IMPUTE_CHUNK, tol2: 0 });
    const empty = env.scratch(16, [4]).binding;
    return [{ kernel: imputeResidualFinalKernel(), params: none, buffers: [empty, y.binding], workgroups: grid1d(cdiv(images, IMPUTE_WG)), label: env.label, flops: 0 }];
  }
  const part = env.scratch(threads * 8, [threads * 2]).binding;
  return [
    { kernel: imputeResidualPartsKernel(), params, buffers: [filled.binding, keep.binding, part], workgroups: grid1d(cdiv(threads, IMPUTE_WG)), label: env.label, flops: 0 },
    { kernel: imputeResidualFinalKernel(), params, buffers: [part, y.binding], workgroups: grid1d(cdiv(images, IMPUTE_WG)), label: env.label, flops: 0 },
  ];
}

const STRAIGHT = 1 / 6;
const DIAGONAL = 1 / 12;
const OFFSETS: readonly (readonly [number, number, number])[] = [
  [-1, 0, STRAIGHT], [1, 0, STRAIGHT], [0, -1, STRAIGHT], [0, 1, STRAIGHT],
  [-1, -1, DIAGONAL], [-1, 1, DIAGONAL], [1, -1, DIAGONAL], [1, 1, DIAGONAL],
];

/**
 * Float64 reference of the imputation (no noise): per (image, channel) the removed pixels'
 * system assembled from the definition and solved directly, by banded Gaussian elimination
 * (unknowns in raster order couple only within W + 1 of each other; the matrix is symmetric
 * positive definite, so no pivoting). An image with no known pixel gets 0 on removed pixels.
 * keep: [N, H, W] (known where > 0.5). Returns [N, C, H, W].
 */
export function imputeRef(x: ArrayLike<number>, shape: readonly number[], keep: ArrayLike<number>): Float64Array {
  const [N, C, H, W] = shape;
  const L = H * W;
  const out = Float64Array.from(x);
  for (let n = 0; n < N; n++) {
    const known = (p: number) => keep[n * L + p] > 0.5;
    const removed: number[] = [];
    for (let p = 0; p < L; p++) if (!known(p)) removed.push(p);
    const m = removed.length;
    if (m === 0) continue;
    if (m === L) {
      for (let c = 0; c < C; c++) for (let p = 0; p < L; p++) out[(n * C + c) * L + p] = 0;
      continue;
    }
    const index = new Int32Array(L).fill(-1);
    removed.forEach((p, k) => (index[p] = k));
    // Band half-width: the largest distance in unknown numbering between coupled pixels.
    let bw = 0;
    const couplings: [number, number, number][][] = removed.map(() => []);
    const diagonal = new Float64Array(m);
    removed.forEach((p, k) => {
      const py = Math.floor(p / W);
      const px = p % W;
      for (const [dy, dx, wgt] of OFFSETS) {
        const qy = py + dy;
        const qx = px + dx;
        if (qy < 0 || qy >= H || qx < 0 || qx >= W) continue;
        diagonal[k] += wgt;
        const q = qy * W + qx;
        if (index[q] >= 0) {
          couplings[k].push([index[q], -wgt, q]);
          bw = Math.max(bw, Math.abs(index[q] - k));
        }
      }
    });
    const width = 2 * bw + 1;
    for (let c = 0; c < C; c++) {
      const plane = (n * C + c) * L;
      const band = new Float64Array(m * width);
      const b = new Float64Array(m);
      const at = (i: number, j: number) => i * width + (j - i + bw);
      removed.forEach((p, k) => {
        band[at(k, k)] = diagonal[k];
        for (const [j, v] of couplings[k]) band[at(k, j)] = v;
        const py = Math.floor(p / W);
        const px = p % W;
        for (const [dy, dx, wgt] of OFFSETS) {
          const qy = py + dy;
          const qx = px + dx;
          if (qy < 0 || qy >= H || qx < 0 || qx >= W) continue;
          const q = qy * W + qx;
          if (index[q] < 0) b[k] += wgt * x[plane + q];
        }
      });
      for (let k = 0; k < m; k++) {
        const pivot = band[at(k, k)];
        const last = Math.min(m - 1, k + bw);
        for (let i = k + 1; i <= last; i++) {
          const f = band[at(i, k)] / pivot;
          if (f === 0) continue;
          for (let j = k; j <= last; j++) band[at(i, j)] -= f * band[at(k, j)];
          b[i] -= f * b[k];
        }
      }
      const u = new Float64Array(m);
      for (let k = m - 1; k >= 0; k--) {
        let s = b[k];
        const last = Math.min(m - 1, k + bw);
        for (let j = k + 1; j <= last; j++) s -= band[at(k, j)] * u[j];
        u[k] = s / band[at(k, k)];
      }
      removed.forEach((p, k) => (out[plane + p] = u[k]));
    }
  }
  return out;
}

/** Float64 ‖b − A·u‖ / ‖b‖ per image of a filled image (‖b − A·u‖ when b = 0), from the definition. */
export function imputeResidualRef(filled: ArrayLike<number>, shape: readonly number[], keep: ArrayLike<number>): Float64Array {
  const [N, C, H, W] = shape;
  const L = H * W;
  const out = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let rr = 0;
    let bb = 0;
    for (let c = 0; c < C; c++) {
      const plane = (n * C + c) * L;
      for (let p = 0; p < L; p++) {
        if (keep[n * L + p] > 0.5) continue;
        const py = Math.floor(p / W);
        const px = p % W;
        let r = 0;
        let b = 0;
        for (const [dy, dx, wgt] of OFFSETS) {
          const qy = py + dy;
          const qx = px + dx;
          if (qy < 0 || qy >= H || qx < 0 || qx >= W) continue;
          const q = qy * W + qx;
          r += wgt * (filled[plane + q] - filled[plane + p]);
          if (keep[n * L + q] > 0.5) b += wgt * filled[plane + q];
        }
        rr += r * r;
        bb += b * b;
      }
    }
    out[n] = bb > 0 ? Math.sqrt(rr) / Math.sqrt(bb) : Math.sqrt(rr);
  }
  return out;
}

import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { formatShape, sizeOf } from '../runtime/shape.js';
import { RANDOM_PARAMS, RANDOM_WG, randomKernel } from '../shaders/random.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export interface RandomAttrs {
  dist: 'uniform' | 'normal';
  seed: number;
  /** Independent streams of one seed (e.g. one per noise sample or per layer). */
  stream: number;
  /** uniform: [a, b); normal: mean a, standard deviation b. */
  a: number;
  b: number;
}

export function randomShapeCheck(where: string, rows: readonly number[], y: readonly number[]): void {
  if (rows.length !== 1 || y.length < 1 || y[0] !== rows[0]) {
    throw new ShapeError(where, `random values need one image index per row: rows ${formatShape(rows)}, output ${formatShape(y)}`);
  }
}

/** y [N, …] of counter-based random values, row r keyed by the image index rows[r]. */
export function lowerRandom(env: LowerEnv, rows: BoundTensor, y: BoundTensor, a: RandomAttrs): Lowered {
  const n = sizeOf(y.shape);
  if (n === 0) return [];
  const u32 = (v: number, what: string) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new ShapeError(env.label, `random ${what} must be a 32-bit unsigned integer, got ${v}`);
    return v;
  };
  return [{
    kernel: randomKernel(a.dist),
    params: RANDOM_PARAMS.pack({ n, per_row: n / y.shape[0], seed: u32(a.seed, 'seed'), stream: u32(a.stream, 'stream'), a: a.a, b: a.b }),
    buffers: [rows.binding, y.binding],
    workgroups: grid1d(cdiv(n, RANDOM_WG)),
    label: env.label,
    flops: 0,
  }];
}

/** The same values in float64 (the hash is integer-exact; only Box–Muller's log/cos round differently). */
export function randomRef(rows: ArrayLike<number>, perRow: number, a: RandomAttrs): Float64Array {
  const hash = (v: number) => {
    const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
    const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
    return ((w >>> 22) ^ w) >>> 0;
  };
  const unit = (h: number) => ((h >>> 8) + 0.5) / 16777216;
  const out = new Float64Array(rows.length * perRow);
  for (let r = 0; r < rows.length; r++) {
    const key = hash((hash((a.seed ^ hash(a.stream)) >>> 0) ^ rows[r]) >>> 0);
    for (let e = 0; e < perRow; e++) {
      out[r * perRow + e] = a.dist === 'uniform'
        ? a.a + (a.b - a.a) * unit(hash((key ^ e) >>> 0))
        : a.a + a.b * Math.sqrt(-2 * Math.log(unit(hash((key ^ (2 * e)) >>> 0)))) * Math.cos(2 * Math.PI * unit(hash((key ^ (2 * e + 1)) >>> 0)));
    }
  }
  return out;
}

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

/**
 * y [N, …] of counter-based random values, row r keyed by the image index rows[r]. With
 * `perRow`, row r takes stream streams[r] instead of the attribute's and its counters start at
 * blocks[r]·per_row: row r holds elements [blocks[r]·per_row, (blocks[r] + 1)·per_row) of a
 * longer row of values (torch-cam's SS-CAM noise of one channel among an image's K).
 */
export function lowerRandom(env: LowerEnv, rows: BoundTensor, y: BoundTensor, a: RandomAttrs, perRow: { streams: BoundTensor; blocks: BoundTensor } | null = null): Lowered {
  const n = sizeOf(y.shape);
  if (n === 0) return [];
  const u32 = (v: number, what: string) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new ShapeError(env.label, `random ${what} must be a 32-bit unsigned integer, got ${v}`);
    return v;
  };
  return [{
    kernel: randomKernel(a.dist, perRow !== null),
    params: RANDOM_PARAMS.pack({ n, per_row: n / y.shape[0], seed: u32(a.seed, 'seed'), stream: u32(a.stream, 'stream'), a: a.a, b: a.b }),
    buffers: perRow ? [rows.binding, perRow.streams.binding, perRow.blocks.binding, y.binding] : [rows.binding, y.binding],
    workgroups: grid1d(cdiv(n, RANDOM_WG)),
    label: env.label,
    flops: 0,
  }];
}

/** The same values in float64 (the hash is integer-exact; only Box–Muller's log/cos round differently). */
export function randomRef(rows: ArrayLike<number>, perRow: number, a: RandomAttrs, each?: { streams: ArrayLike<number>; blocks: ArrayLike<number> }): Float64Array {
  const hash = (v: number) => {
    const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
    const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
    return ((w >>> 22) ^ w) >>> 0;
  };
  const unit = (h: number) => ((h >>> 8) + 0.5) / 16777216;
  const out = new Float64Array(rows.length * perRow);
  for (let r = 0; r < rows.length; r++) {
    const key = hash((hash((a.seed ^ hash(each ? each.streams[r] : a.stream)) >>> 0) ^ rows[r]) >>> 0);
    const start = each ? each.blocks[r] * perRow : 0;
    for (let c = 0; c < perRow; c++) {
      const e = (start + c) >>> 0;
      out[r * perRow + c] = a.dist === 'uniform'
        ? a.a + (a.b - a.a) * unit(hash((key ^ e) >>> 0))
        : a.a + a.b * Math.sqrt(-2 * Math.log(unit(hash((key ^ (2 * e)) >>> 0)))) * Math.cos(2 * Math.PI * unit(hash((key ^ (2 * e + 1)) >>> 0)));
    }
  }
  return out;
}

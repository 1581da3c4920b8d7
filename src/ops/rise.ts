import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { formatShape, sizeOf } from '../runtime/shape.js';
import { RISE_PARAMS, RISE_WG, riseMaskKernel } from '../shaders/rise.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export interface RiseAttrs {
  /** Cells per side (RISE's s). */
  grid: number;
  /** Probability that a cell is kept. */
  p1: number;
  seed: number;
  /** Mask size [h, w]. */
  size: [number, number];
}

/** RISE's cell size ⌈H/s⌉ × ⌈W/s⌉. */
export function riseCell(a: RiseAttrs): [number, number] {
  return [Math.ceil(a.size[0] / a.grid), Math.ceil(a.size[1] / a.grid)];
}

export function riseShape(where: string, ids: readonly number[], a: RiseAttrs): number[] {
  if (ids.length !== 1) throw new ShapeError(where, `RISE masks take mask ids [N], got ${formatShape(ids)}`);
  if (!(Number.isInteger(a.grid) && a.grid >= 1) || !(a.p1 > 0 && a.p1 <= 1) || a.size.some((d) => !(Number.isInteger(d) && d >= 1))) {
    throw new ShapeError(where, `RISE needs a whole grid ≥ 1, p1 in (0, 1] and a positive size, got grid ${a.grid}, p1 ${a.p1}, size ${formatShape(a.size)}`);
  }
  return [ids[0], a.size[0], a.size[1]];
}

export function lowerRiseMasks(env: LowerEnv, ids: BoundTensor, y: BoundTensor, a: RiseAttrs): Lowered {
  const n = sizeOf(y.shape);
  if (n === 0) return [];
  const [ch, cw] = riseCell(a);
  return [{
    kernel: riseMaskKernel(),
    params: RISE_PARAMS.pack({ n, h: a.size[0], w: a.size[1], grid: a.grid, cell_h: ch, cell_w: cw, seed: a.seed >>> 0, p1: a.p1 }),
    buffers: [ids.binding, y.binding],
    workgroups: grid1d(cdiv(n, RISE_WG)),
    label: env.label,
    flops: 8 * n,
  }];
}

/** Float64 reference of the same masks (the hash is integer-exact, so cells and shifts agree bit for bit). */
export function riseMasksRef(ids: ArrayLike<number>, a: RiseAttrs): Float64Array {
  const hash = (v: number) => {
    const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
    const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
    return ((w >>> 22) ^ w) >>> 0;
  };
  const unit = (h: number) => ((h >>> 8) + 0.5) / 16777216;
  const [H, W] = a.size;
  const [ch, cw] = riseCell(a);
  const g = a.grid;
  const out = new Float64Array(ids.length * H * W);
  for (let r = 0; r < ids.length; r++) {
    const key = hash((a.seed ^ hash(ids[r])) >>> 0);
    const cellAt = (cy: number, cx: number) => {
      const y = Math.min(Math.max(cy, 0), g - 1);
      const x = Math.min(Math.max(cx, 0), g - 1);
      return unit(hash((key ^ (2 + y * g + x)) >>> 0)) < Math.fround(a.p1) ? 1 : 0;
    };
    const dy = hash((key ^ 0) >>> 0) % ch;
    const dx = hash((key ^ 1) >>> 0) % cw;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const sy = (y + dy + 0.5) / ch - 0.5;
        const sx = (x + dx + 0.5) / cw - 0.5;
        const y0 = Math.floor(sy);
        const x0 = Math.floor(sx);
        const fy = sy - y0;
        const fx = sx - x0;
        const top = cellAt(y0, x0) * (1 - fx) + cellAt(y0, x0 + 1) * fx;
        const bottom = cellAt(y0 + 1, x0) * (1 - fx) + cellAt(y0 + 1, x0 + 1) * fx;
        out[(r * H + y) * W + x] = top * (1 - fy) + bottom * fy;
      }
  }
  return out;
}

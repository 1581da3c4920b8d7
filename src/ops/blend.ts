import { ShapeError } from '../runtime/errors.js';
import { formatShape, sizeOf } from '../runtime/shape.js';
import { BLEND_WG, RANKED_BLEND_PARAMS, rankedBlendKernel } from '../shaders/blend.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export interface RankedBlendAttrs {
  /** Block side s: ranks are per s × s block ((H/s)·(W/s) per row); 1 for pixels. */
  granularity: number;
}

/**
 * ranked_blend(x [N, C, H, W], sub [R, C, H, W], ranks [M, U], info [nb, 5]) → [nb, C, H, W]:
 * row r is image info[r,1] with the pixels whose unit of item info[r,0] ranks below
 * info[r,3] taken from substrate info[r,2] (the other pixels when info[r,4] = 1, insertion).
 */
export function rankedBlendShape(where: string, x: readonly number[], sub: readonly number[], ranks: readonly number[], info: readonly number[], a: RankedBlendAttrs): number[] {
  const s = a.granularity;
  if (x.length !== 4 || sub.length !== 4 || formatShape(sub.slice(1)) !== formatShape(x.slice(1))) {
    throw new ShapeError(where, `ranked_blend needs images [N, C, H, W] and substrates [R, C, H, W] of the same image shape, got ${formatShape(x)}, ${formatShape(sub)}`);
  }
  const [, C, H, W] = x;
  if (!(Number.isInteger(s) && s >= 1 && H % s === 0 && W % s === 0)) throw new ShapeError(where, `ranked_blend: block side ${s} must divide ${H}×${W}`);
  if (ranks.length !== 2 || ranks[1] !== (H / s) * (W / s)) throw new ShapeError(where, `ranked_blend: ranks must be [M, ${(H / s) * (W / s)}], got ${formatShape(ranks)}`);
  if (info.length !== 2 || info[1] !== 5) throw new ShapeError(where, `ranked_blend: row info must be [nb, 5] (item, image, substrate, count, insertion), got ${formatShape(info)}`);
  return [info[0], C, H, W];
}

export function lowerRankedBlend(env: LowerEnv, x: BoundTensor, sub: BoundTensor, ranks: BoundTensor, info: BoundTensor, y: BoundTensor, a: RankedBlendAttrs): Lowered {
  if (sizeOf(y.shape) === 0) return [];
  const [nb, C, H, W] = y.shape;
  const s = a.granularity;
  const hw = H * W;
  // vec4 loads of 4 pixels need planes of whole quads (W % 4 = 0 also keeps a quad in one
  // image row; each pixel's unit is looked up on its own).
  const useVec4 = W % 4 === 0;
  return [{
    kernel: rankedBlendKernel(useVec4),
    params: RANKED_BLEND_PARAMS.pack({ hw, w: W, channels: C, units: ranks.shape[1], s, units_w: W / s, rows_x: x.shape[0], rows_sub: sub.shape[0], rows_rank: ranks.shape[0] }),
    buffers: [x.binding, sub.binding, ranks.binding, info.binding, y.binding],
    workgroups: [cdiv(useVec4 ? hw / 4 : hw, BLEND_WG), C, nb],
    label: env.label,
    flops: 0,
  }];
}

/** Float64 reference. */
export function rankedBlendRef(x: ArrayLike<number>, xs: readonly number[], sub: ArrayLike<number>, subRows: number, ranks: ArrayLike<number>, rankRows: number, info: ArrayLike<number>, a: RankedBlendAttrs): Float64Array {
  const [N, C, H, W] = xs;
  const s = a.granularity;
  const U = (H / s) * (W / s);
  const nb = info.length / 5;
  const out = new Float64Array(nb * C * H * W);
  for (let r = 0; r < nb; r++) {
    const [item, image, sb, count, ins] = Array.from({ length: 5 }, (_, k) => info[r * 5 + k]);
    if (!(image < N && sb < subRows && item < rankRows)) continue;
    for (let c = 0; c < C; c++) for (let p = 0; p < H * W; p++) {
      const unit = Math.floor(Math.floor(p / W) / s) * (W / s) + Math.floor((p % W) / s);
      const changed = ranks[item * U + unit] < count;
      const toSub = ins > 0.5 ? !changed : changed;
      out[((r * C + c) * H * W) + p] = toSub ? sub[(sb * C + c) * H * W + p] : x[(image * C + c) * H * W + p];
    }
  }
  return out;
}

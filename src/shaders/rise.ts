import { elementwiseMain, type KernelDef, ParamLayout } from '../runtime/kernel.js';
import { PCG_HASH_WGSL } from './random.js';

export const RISE_WG = 64;

export const RISE_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['h', 'u32'],
  ['w', 'u32'],
  ['grid', 'u32'],
  ['cell_h', 'u32'],
  ['cell_w', 'u32'],
  ['seed', 'u32'],
  ['p1', 'f32'],
]);

/**
 * RISE's masks (Petsiuk et al.; eclique/RISE generate_masks), fused into one kernel: mask i
 * is a grid × grid field of Bernoulli(p1) cells, upsampled bilinearly (half-pixel centers,
 * edges clamped) to (grid + 1) cells of cell_h × cell_w pixels, then cropped to h × w at a
 * random shift (dy, dx) ∈ [0, cell_h) × [0, cell_w). Cells and shifts come from the PCG
 * hash of (seed, mask id, cell), so mask i is the same in every pass, image and program.
 * IDS holds each row's mask id (as f32).
 */
export function riseMaskKernel(): KernelDef {
  return {
    key: 'rise_masks',
    params: RISE_PARAMS,
    storage: [
      { name: 'IDS', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${PCG_HASH_WGSL}
fn unit(h: u32) -> f32 { return (f32(h >> 8u) + 0.5) * (1.0 / 16777216.0); }
fn cell(key: u32, cy: i32, cx: i32) -> f32 {
  let g = i32(params.grid);
  let y = clamp(cy, 0, g - 1);
  let x = clamp(cx, 0, g - 1);
  return select(0.0, 1.0, unit(pcg_hash(key ^ u32(2 + y * g + x))) < params.p1);
}
${elementwiseMain(RISE_WG, 'params.n', `  let plane = params.h * params.w;
  let row = i / plane;
  let p = i % plane;
  let key = pcg_hash(params.seed ^ pcg_hash(u32(IDS[row])));
  let dy = pcg_hash(key ^ 0u) % params.cell_h;
  let dx = pcg_hash(key ^ 1u) % params.cell_w;
  // Source position in cells of the upsampled pixel (y + dy, x + dx): half-pixel centers.
  let sy = (f32(p / params.w + dy) + 0.5) / f32(params.cell_h) - 0.5;
  let sx = (f32(p % params.w + dx) + 0.5) / f32(params.cell_w) - 0.5;
  let y0 = i32(floor(sy));
  let x0 = i32(floor(sx));
  let fy = sy - f32(y0);
  let fx = sx - f32(x0);
  let top = mix(cell(key, y0, x0), cell(key, y0, x0 + 1), fx);
  let bottom = mix(cell(key, y0 + 1, x0), cell(key, y0 + 1, x0 + 1), fx);
  Y[i] = mix(top, bottom, fy);`)}`,
  };
}

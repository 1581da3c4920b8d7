import { type KernelDef, ParamLayout } from '../runtime/kernel.js';

export const BLEND_WG = 64;

export const RANKED_BLEND_PARAMS = new ParamLayout([
  ['hw', 'u32'],
  ['w', 'u32'],
  ['channels', 'u32'],
  /** Units per row of the rank table ((H/s)·(W/s)) and the block side s. */
  ['units', 'u32'],
  ['s', 'u32'],
  ['units_w', 'u32'],
  ['rows_x', 'u32'],
  ['rows_sub', 'u32'],
  ['rows_rank', 'u32'],
]);

/**
 * The step images of insertion/deletion in one pass: Y[r, c, p] is X[image_r, c, p] or
 * SUB[sub_r, c, p], chosen by whether pixel p's unit ranks below the row's count (and
 * flipped for insertion rows). INFO [nb, 5] holds each row's (item, image, substrate,
 * count, insertion) as f32. One invocation per 4 pixels of one (row, channel) plane, the
 * plane from the grid's y and z: no division per element, vec4 loads where the rows allow
 * (`vec4` variant: H·W and the block side's rows are multiples of 4). A select, not a
 * blend: the kept values are exact. Row indices outside their tables read zeros.
 */
export function rankedBlendKernel(vec4: boolean): KernelDef {
  const el = vec4 ? 'vec4<f32>' : 'f32';
  const load = (arr: string, base: string) => (vec4 ? `${arr}[(${base} + p) / 4u]` : `${arr}[${base} + p]`);
  return {
    key: `ranked_blend/${vec4 ? 'vec4' : 'scalar'}`,
    params: RANKED_BLEND_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: el },
      { name: 'SUB', access: 'read', element: el },
      { name: 'RANK', access: 'read', element: 'f32' },
      { name: 'INFO', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: el },
    ],
    body: `
fn unit_of(p: u32) -> u32 {
  if (params.s == 1u) { return p; }
  return ((p / params.w) / params.s) * params.units_w + (p % params.w) / params.s;
}
fn changed(rank_base: u32, p: u32, count: f32) -> bool { return RANK[rank_base + unit_of(p)] < count; }
@compute @workgroup_size(${BLEND_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let p = (wid.x * ${BLEND_WG}u + li) * ${vec4 ? 4 : 1}u;
  if (p >= params.hw) { return; }
  let c = wid.y;
  let r = wid.z;
  let item = u32(INFO[r * 5u]);
  let image = u32(INFO[r * 5u + 1u]);
  let sub = u32(INFO[r * 5u + 2u]);
  let count = INFO[r * 5u + 3u];
  let insertion = INFO[r * 5u + 4u] > 0.5;
  let out_base = (r * params.channels + c) * params.hw;
  let ok = image < params.rows_x && sub < params.rows_sub && item < params.rows_rank;
  if (!ok) { Y[${vec4 ? '(out_base + p) / 4u' : 'out_base + p'}] = ${el}(0.0); return; }
  let xv = ${load('X', '(image * params.channels + c) * params.hw')};
  let sv = ${load('SUB', '(sub * params.channels + c) * params.hw')};
  let rb = item * params.units;
${vec4
    ? `  let m = vec4<bool>(changed(rb, p, count), changed(rb, p + 1u, count), changed(rb, p + 2u, count), changed(rb, p + 3u, count));
  let to_sub = select(m, !m, insertion);
  Y[(out_base + p) / 4u] = select(xv, sv, to_sub);`
    : `  let m = changed(rb, p, count);
  Y[out_base + p] = select(xv, sv, m != insertion);`}
}
`,
  };
}

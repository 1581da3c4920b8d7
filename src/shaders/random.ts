import { type KernelDef, ParamLayout, elementwiseMain } from '../runtime/kernel.js';

export const RANDOM_WG = 64;

export const RANDOM_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['per_row', 'u32'],
  ['seed', 'u32'],
  ['stream', 'u32'],
  ['a', 'f32'],
  ['b', 'f32'],
]);

/**
 * PCG's output permutation as a 32-bit hash (Jarzynski & Olano, "Hash Functions for GPU
 * Rendering", 2020). Integer-only, so CPU and GPU (and every adapter) agree bit for bit.
 */
export const PCG_HASH_WGSL = `fn pcg_hash(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
`;

/**
 * Counter-based random values: element e of row r (a row is one image; ROWS holds each row's
 * image index) gets hash(key(seed, stream, image) ^ counter), so the values depend on the
 * image and not on how a batch is split into passes. 'uniform': a + (b − a)·u with u in (0, 1);
 * 'normal': a + b·z with z from Box–Muller on two such u.
 */
export function randomKernel(dist: 'uniform' | 'normal', perRow = false): KernelDef {
  const value = dist === 'uniform'
    ? 'params.a + (params.b - params.a) * unit(pcg_hash(key ^ e))'
    : `params.a + params.b * sqrt(-2.0 * log(unit(pcg_hash(key ^ (2u * e))))) * cos(6.283185307179586 * unit(pcg_hash(key ^ (2u * e + 1u))))`;
  return {
    key: `random/${dist}${perRow ? '/per-row' : ''}`,
    params: RANDOM_PARAMS,
    storage: [
      { name: 'ROWS', access: 'read', element: 'f32' },
      ...(perRow ? [{ name: 'STREAMS', access: 'read' as const, element: 'f32' }, { name: 'BLOCKS', access: 'read' as const, element: 'f32' }] : []),
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${PCG_HASH_WGSL}
fn unit(h: u32) -> f32 { return (f32(h >> 8u) + 0.5) * (1.0 / 16777216.0); }
${elementwiseMain(RANDOM_WG, 'params.n', `  let row = i / params.per_row;
${perRow ? `  let e = u32(BLOCKS[row]) * params.per_row + i % params.per_row;
  let key = pcg_hash(pcg_hash(params.seed ^ pcg_hash(u32(STREAMS[row]))) ^ u32(ROWS[row]));` : `  let e = i % params.per_row;
  let key = pcg_hash(pcg_hash(params.seed ^ pcg_hash(params.stream)) ^ u32(ROWS[row]));`}
  Y[i] = ${value};`)}`,
  };
}

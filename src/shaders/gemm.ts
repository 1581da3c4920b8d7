import { ACTIVATION_PARAMS, type Activation, activationWgsl } from './pointwise.js';
import { type KernelDef, ParamLayout } from '../runtime/kernel.js';

/**
 * The matmul core: C = act(alpha · A·B + beta · bias), register-tiled, every invocation
 * computing a TM×TN block of C with all its accumulators in registers (unrolled scalars),
 * no workgroup memory and no barriers (barriers are costly on CPU adapters, whose caches do
 * the tiling). Two operand-B sources share the loop:
 *  - 'strided': B is a strided matrix (Gemm, MatMul, 1×1 convolution);
 *  - 'conv': B is the implicit im2col matrix of an NCHW input, gathered on the fly
 *    (convolution as implicit GEMM, no materialized im2col).
 * Out-of-range rows and columns read a clamped, valid address and are not stored.
 */
export interface GemmTiling {
  tileM: number;
  tileN: number;
  wgX: number;
  wgY: number;
}

export const DEFAULT_TILING: GemmTiling = { tileM: 8, tileN: 4, wgX: 8, wgY: 8 };

export interface GemmKernelOptions {
  source: 'strided' | 'conv';
  activation: Activation['kind'];
  bias: boolean;
  tiling: GemmTiling;
}

const COMMON_PARAMS = [
  ['M', 'u32'],
  ['N', 'u32'],
  ['K', 'u32'],
  ['alpha', 'f32'],
  ['beta', 'f32'],
  ...ACTIVATION_PARAMS,
] as const;

export const STRIDED_GEMM_PARAMS = new ParamLayout([
  ...COMMON_PARAMS,
  ['B2', 'u32'],
  ['a_off', 'u32'],
  ['a_sb1', 'u32'],
  ['a_sb2', 'u32'],
  ['a_sm', 'u32'],
  ['a_sk', 'u32'],
  ['b_off', 'u32'],
  ['b_sb1', 'u32'],
  ['b_sb2', 'u32'],
  ['b_sk', 'u32'],
  ['b_sn', 'u32'],
  ['c_off', 'u32'],
  ['c_sb1', 'u32'],
  ['c_sb2', 'u32'],
  ['c_sm', 'u32'],
  ['c_sn', 'u32'],
  ['bias_off', 'u32'],
  ['bias_sm', 'u32'],
  ['bias_sn', 'u32'],
]);

export const CONV_GEMM_PARAMS = new ParamLayout([
  ...COMMON_PARAMS,
  ['groups', 'u32'],
  ['cin_g', 'u32'],
  ['H', 'u32'],
  ['W', 'u32'],
  ['KH', 'u32'],
  ['KW', 'u32'],
  ['stride_h', 'u32'],
  ['stride_w', 'u32'],
  ['pad_h', 'u32'],
  ['pad_w', 'u32'],
  ['dil_h', 'u32'],
  ['dil_w', 'u32'],
  ['OW', 'u32'],
]);

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

export function gemmKernel(o: GemmKernelOptions): KernelDef {
  const { tileM: TM, tileN: TN, wgX, wgY } = o.tiling;
  const conv = o.source === 'conv';
  const key = `gemm/${o.source}/${o.activation}/${o.bias ? 'bias' : 'nobias'}/${TM}x${TN}/${wgX}x${wgY}`;
  const acc = (i: number, j: number) => `acc_${i}_${j}`;
  const lines: string[] = [];
  lines.push(activationWgsl(o.activation));
  lines.push(`@compute @workgroup_size(${wgX}, ${wgY}, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let n0 = (wid.x * ${wgX}u + lid.x) * ${TN}u;
  let m0 = (wid.y * ${wgY}u + lid.y) * ${TM}u;
  if (m0 >= M || n0 >= N) { return; }
  let z = wid.z;`);
  for (const i of range(TM)) lines.push(`  let m_${i} = min(m0 + ${i}u, M - 1u);`);
  for (const j of range(TN)) lines.push(`  let n_${j} = min(n0 + ${j}u, N - 1u);`);
  for (const i of range(TM)) lines.push(`  var ${range(TN).map((j) => `${acc(i, j)} = 0.0`).join(`;\n  var `)};`);
  if (!conv) {
    lines.push(`  let b1 = z / params.B2;
  let b2 = z % params.B2;
  let a_base = params.a_off + b1 * params.a_sb1 + b2 * params.a_sb2;
  let b_base = params.b_off + b1 * params.b_sb1 + b2 * params.b_sb2;`);
    for (const i of range(TM)) lines.push(`  let a_row_${i} = a_base + m_${i} * params.a_sm;`);
    for (const j of range(TN)) lines.push(`  let b_col_${j} = b_base + n_${j} * params.b_sn;`);
    lines.push(`  for (var k = 0u; k < K; k++) {
    let a_k = k * params.a_sk;
    let b_k = k * params.b_sk;`);
    for (const j of range(TN)) lines.push(`    let b_${j} = B[b_col_${j} + b_k];`);
    for (const i of range(TM)) {
      lines.push(`    { let a = A[a_row_${i} + a_k]; ${range(TN).map((j) => `${acc(i, j)} = fma(a, b_${j}, ${acc(i, j)});`).join(' ')} }`);
    }
    lines.push('  }');
  } else {
    // z = image * groups + group; A rows are the group's output channels, K = cin_g*KH*KW.
    lines.push(`  let g = z % params.groups;
  let img = z / params.groups;
  let HW = params.H * params.W;
  let x_base = (img * params.groups + g) * params.cin_g * HW;
  let w_base = g * M * K;`);
    for (const i of range(TM)) lines.push(`  let w_row_${i} = w_base + m_${i} * K;`);
    for (const j of range(TN)) {
      lines.push(`  let ih0_${j} = i32((n_${j} / params.OW) * params.stride_h) - i32(params.pad_h);`);
      lines.push(`  let iw0_${j} = i32((n_${j} % params.OW) * params.stride_w) - i32(params.pad_w);`);
    }
    lines.push(`  let Hi = i32(params.H);
  let Wi = i32(params.W);
  var k = 0u;
  for (var ci = 0u; ci < params.cin_g; ci++) {
    let x_c = x_base + ci * HW;
    for (var kh = 0u; kh < params.KH; kh++) {
      let dh = i32(kh * params.dil_h);`);
    for (const j of range(TN)) {
      lines.push(`      let ih_${j} = ih0_${j} + dh;`);
      lines.push(`      let row_ok_${j} = ih_${j} >= 0 && ih_${j} < Hi;`);
      lines.push(`      let x_row_${j} = i32(x_c) + ih_${j} * Wi;`);
    }
    lines.push(`      for (var kw = 0u; kw < params.KW; kw++) {
        let dw = i32(kw * params.dil_w);`);
    for (const j of range(TN)) {
      lines.push(`        let iw_${j} = iw0_${j} + dw;`);
      lines.push(`        let ok_${j} = row_ok_${j} && iw_${j} >= 0 && iw_${j} < Wi;`);
      lines.push(`        let b_${j} = select(0.0, B[select(0u, u32(x_row_${j} + iw_${j}), ok_${j})], ok_${j});`);
    }
    for (const i of range(TM)) {
      lines.push(`        { let a = A[w_row_${i} + k]; ${range(TN).map((j) => `${acc(i, j)} = fma(a, b_${j}, ${acc(i, j)});`).join(' ')} }`);
    }
    lines.push(`        k++;
      }
    }
  }`);
  }
  // Epilogue: alpha, bias, activation, guarded stores.
  if (!conv) {
    lines.push(`  let c_base = params.c_off + b1 * params.c_sb1 + b2 * params.c_sb2;`);
  } else {
    lines.push(`  let c_base = (img * params.groups + g) * M * N;`);
  }
  for (const i of range(TM)) {
    for (const j of range(TN)) {
      const m = `m0 + ${i}u`;
      const n = `n0 + ${j}u`;
      let v = `params.alpha * ${acc(i, j)}`;
      if (o.bias) {
        v += conv
          ? ` + params.beta * Bias[g * M + m_${i}]`
          : ` + params.beta * Bias[params.bias_off + m_${i} * params.bias_sm + n_${j} * params.bias_sn]`;
      }
      const addr = conv ? `c_base + (${m}) * N + ${n}` : `c_base + (${m}) * params.c_sm + (${n}) * params.c_sn`;
      lines.push(`  if (${m} < M && ${n} < N) { C[${addr}] = activate(${v}); }`);
    }
  }
  lines.push('}\n');
  const storage = [
    { name: 'A', access: 'read' as const, element: 'f32' },
    { name: 'B', access: 'read' as const, element: 'f32' },
    ...(o.bias ? [{ name: 'Bias', access: 'read' as const, element: 'f32' }] : []),
    { name: 'C', access: 'read_write' as const, element: 'f32' },
  ];
  return { key, params: conv ? CONV_GEMM_PARAMS : STRIDED_GEMM_PARAMS, storage, body: lines.join('\n') };
}

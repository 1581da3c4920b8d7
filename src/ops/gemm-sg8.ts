import { GEMV_KN_PARAMS, GEMV_PARAMS, gemvKernel, gemvKnKernel, gemvRows, SG, SG_MATMUL_PARAMS, SG_ROWS, SG_WG, sgMatmulKernel, subgroupColumns } from '../shaders/sg8.js';
import { type Activation, activationParams } from './activation.js';
import { type BoundTensor, cdiv, type Lowered } from './types.js';

/** One matrix product C[z] = act(alpha · A[z]·op(B)[z] + beta · bias) in element offsets and strides. */
export interface Sg8Product {
  M: number;
  N: number;
  K: number;
  batch: number;
  bLayout: 'kn' | 'nk';
  a: BoundTensor;
  b: BoundTensor;
  c: BoundTensor;
  bias: BoundTensor | null;
  aOff: number;
  /** Row stride of A (default K): a slice of A's columns when the reduction is split. */
  lda?: number;
  bOff: number;
  cOff: number;
  ldc: number;
  sa: number;
  sb: number;
  sc: number;
  biasOff: number;
  biasSm: number;
  biasSn: number;
  alpha: number;
  beta: number;
  activation: Activation;
  label: string;
}

/**
 * Lowers a product on sg8 adapters: a GEMV-style kernel for few rows against an [N, K]
 * weight matrix (a Linear layer at small batch, where 32-row tiles would run mostly
 * empty), otherwise the subgroup-broadcast matmul, with vec4 loads when the sizes allow.
 */
export function lowerSg8Product(p: Sg8Product): Lowered {
  const flops = 2 * p.M * p.N * p.K * p.batch;
  const act = p.activation;
  if (p.bLayout === 'nk' && p.batch === 1 && p.M <= 16 && p.K % 4 === 0 && p.aOff % 4 === 0 && p.bOff === 0 && p.biasSm === 0 && p.biasSn <= 1) {
    return [{
      kernel: gemvKernel(act.kind, p.bias !== null, gemvRows(p.M)),
      params: GEMV_PARAMS.pack({ M: p.M, N: p.N, K: p.K, a_off4: p.aOff / 4, c_off: p.cOff, ldc: p.ldc, bias_off: p.biasOff, bias_sn: p.biasSn, alpha: p.alpha, beta: p.beta, ...activationParams(act) }),
      buffers: [p.a.binding, p.b.binding, ...(p.bias ? [p.bias.binding] : []), p.c.binding],
      workgroups: [cdiv(p.N, 64), cdiv(p.M, gemvRows(p.M)), 1],
      label: p.label,
      flops,
    }];
  }
  if (p.bLayout === 'kn' && p.batch === 1 && p.M <= 16 && p.N % 4 === 0 && p.bOff === 0 && p.biasSm === 0 && p.biasSn <= 1) {
    return [{
      kernel: gemvKnKernel(act.kind, p.bias !== null, gemvRows(p.M)),
      params: GEMV_KN_PARAMS.pack({
        M: p.M, N: p.N, K: p.K, a_off: p.aOff, lda: p.lda ?? p.K, c_off: p.cOff, ldc: p.ldc, bias_off: p.biasOff, bias_sn: p.biasSn,
        alpha: p.alpha, beta: p.beta, ...activationParams(act),
      }),
      buffers: [p.a.binding, p.b.binding, ...(p.bias ? [p.bias.binding] : []), p.c.binding],
      workgroups: [cdiv(p.N / 4, 64), cdiv(p.M, gemvRows(p.M)), 1],
      label: p.label,
      flops,
    }];
  }
  if (p.lda !== undefined && p.lda !== p.K) throw new Error('internal: the sg8 matmul reads A with row stride K');
  const offsets = [p.aOff, p.bOff, p.sa, p.sb];
  let aligned = p.K % 4 === 0 && offsets.every((o) => o % 4 === 0);
  if (p.bLayout === 'kn') aligned &&= p.N % 4 === 0 && p.ldc % 4 === 0 && p.cOff % 4 === 0 && p.sc % 4 === 0;
  const sgc = subgroupColumns(SG * 4, p.N);
  return [{
    kernel: sgMatmulKernel({ aligned, bLayout: p.bLayout, activation: act.kind, bias: p.bias !== null }),
    params: SG_MATMUL_PARAMS.pack({
      M: p.M, N: p.N, K: p.K, sgc, a_off: p.aOff, b_off: p.bOff, c_off: p.cOff, ldc: p.ldc, sa: p.sa, sb: p.sb, sc: p.sc,
      bias_off: p.biasOff, bias_sm: p.biasSm, bias_sn: p.biasSn, bias_sb: 0, alpha: p.alpha, beta: p.beta, ...activationParams(act),
    }),
    buffers: [p.a.binding, p.b.binding, ...(p.bias ? [p.bias.binding] : []), p.c.binding],
    workgroups: [cdiv(p.N, SG * 4 * sgc), cdiv(p.M, SG_ROWS * ((SG_WG / SG) / sgc)), p.batch],
    label: p.label,
    flops,
  }];
}

import { ShapeError } from '../runtime/errors.js';
import { broadcastShapes, formatShape, type Shape, sizeOf, stridesOf } from '../runtime/shape.js';
import { DEFAULT_TILING, gemmKernel, STRIDED_GEMM_PARAMS } from '../shaders/gemm.js';
import { type Activation, activationParams, NO_ACTIVATION } from './activation.js';
import { lowerBinary, lowerUnary } from './elementwise.js';
import { lowerSg8Product } from './gemm-sg8.js';
import type { HostTensor } from '../runtime/host-tensor.js';
import type { WeightChunk } from '../runtime/weights.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export interface GemmAttrs {
  transA: boolean;
  transB: boolean;
  alpha: number;
  beta: number;
  activation: Activation;
}

export function gemmOutputShape(where: string, a: Shape, b: Shape, c: Shape | null, attrs: GemmAttrs): number[] {
  if (a.length !== 2 || b.length !== 2) throw new ShapeError(where, `Gemm needs 2-D A and B, got ${formatShape(a)} and ${formatShape(b)}`);
  const [M, K] = attrs.transA ? [a[1], a[0]] : [a[0], a[1]];
  const [K2, N] = attrs.transB ? [b[1], b[0]] : [b[0], b[1]];
  if (K !== K2) throw new ShapeError(where, `Gemm inner dimensions differ: A ${formatShape(a)}${attrs.transA ? 'ᵀ' : ''} · B ${formatShape(b)}${attrs.transB ? 'ᵀ' : ''}`);
  if (c) {
    const ok = c.length <= 2 && c.every((d, i) => d === 1 || d === [M, N][i + 2 - c.length]);
    if (!ok) throw new ShapeError(where, `Gemm C ${formatShape(c)} does not broadcast to [${M}, ${N}]`);
  }
  return [M, N];
}

/** The columns [nOffset, nOffset + nCount) of op(B) held by one binding (weights split over bindings). */
export interface ColumnSlice {
  nOffset: number;
  nCount: number;
}

/**
 * Gemm through the matmul core. `b` may hold only a slice of op(B)'s columns (a weight
 * matrix larger than one storage binding is split by the caller); the slice is then
 * written into its columns of Y.
 */
export function lowerGemm(env: LowerEnv, a: BoundTensor, b: BoundTensor, c: BoundTensor | null, y: BoundTensor, attrs: GemmAttrs, slice?: ColumnSlice): Lowered {
  const [M, N] = y.shape;
  const K = attrs.transA ? a.shape[0] : a.shape[1];
  const n0 = slice?.nOffset ?? 0;
  const nCount = slice?.nCount ?? N;
  const tiling = DEFAULT_TILING;
  let biasSm = 0;
  let biasSn = 0;
  if (c) {
    const cs = c.shape;
    const cm = cs.length === 2 ? cs[0] : 1;
    const cn = cs.length >= 1 ? cs[cs.length - 1] : 1;
    biasSm = cm === 1 ? 0 : cn;
    biasSn = cn === 1 ? 0 : 1;
  }
  const act = attrs.activation;
  if (env.ctx.kernelFamily === 'sg8' && !attrs.transA) {
    return lowerSg8Product({
      M, N: nCount, K, batch: 1, bLayout: attrs.transB ? 'nk' : 'kn', a, b, c: y, bias: c,
      aOff: 0, bOff: 0, cOff: n0, ldc: N, sa: 0, sb: 0, sc: 0,
      biasOff: n0 * biasSn, biasSm, biasSn, alpha: attrs.alpha, beta: c ? attrs.beta : 0, activation: act, label: env.label,
    });
  }
  return [{
    kernel: gemmKernel({ source: 'strided', activation: act.kind, bias: c !== null, tiling }),
    params: STRIDED_GEMM_PARAMS.pack({
      M, N: nCount, K, alpha: attrs.alpha, beta: c ? attrs.beta : 0, ...activationParams(act), B2: 1,
      a_off: 0, a_sb1: 0, a_sb2: 0, a_sm: attrs.transA ? 1 : K, a_sk: attrs.transA ? M : 1,
      // The slice's own matrix: nCount columns of op(B).
      b_off: 0, b_sb1: 0, b_sb2: 0, b_sk: attrs.transB ? 1 : nCount, b_sn: attrs.transB ? K : 1,
      c_off: n0, c_sb1: 0, c_sb2: 0, c_sm: N, c_sn: 1,
      bias_off: n0 * biasSn, bias_sm: biasSm, bias_sn: biasSn,
    }),
    buffers: c ? [a.binding, b.binding, c.binding, y.binding] : [a.binding, b.binding, y.binding],
    workgroups: [cdiv(nCount, tiling.tileN * tiling.wgX), cdiv(M, tiling.tileM * tiling.wgY), 1],
    label: env.label,
    flops: 2 * M * nCount * K,
  }];
}

/** A constant B too large for one storage binding, uploaded as row chunks of its leading axis. */
export interface ChunkedOperand {
  value: HostTensor;
  chunks: readonly WeightChunk[];
}

/**
 * Lowers a Gemm node. B may be bound whole, or (dense weights over one binding, such as
 * VGG16's 411 MB fc1) given as row chunks: with transB the rows of Bᵀ are columns of the
 * output, so each chunk writes its own columns; without, the rows are a slice of the
 * reduction, summed by lowerGemmSplitK.
 */
export function lowerGemmOp(env: LowerEnv, a: BoundTensor, b: BoundTensor | ChunkedOperand, c: BoundTensor | null, y: BoundTensor, attrs: GemmAttrs): Lowered {
  if (!('chunks' in b)) return lowerGemm(env, a, b, c, y, attrs);
  const cols = b.value.dims[1];
  const bound = (ch: WeightChunk): BoundTensor => ({ shape: [ch.rows, cols], binding: { buffer: ch.buffer, offset: 0, size: ch.bytes } });
  if (attrs.transB) return b.chunks.flatMap((ch) => lowerGemm(env, a, bound(ch), c, y, attrs, { nOffset: ch.rowOffset, nCount: ch.rows }));
  return lowerGemmSplitK(env, a, b.chunks.map((ch) => ({ b: bound(ch), kOffset: ch.rowOffset, kCount: ch.rows })), c, y, attrs);
}

/** A binding-sized piece of B = [K, N]: its rows [kOffset, kOffset + kCount). */
export interface RowChunk {
  b: BoundTensor;
  kOffset: number;
  kCount: number;
}

/**
 * Gemm with B [K, N] (not transposed) split by rows over several bindings: a chunk of
 * the reduction each. Every chunk's partial product goes to its own scratch buffer (C
 * and beta ride on the first), and a chain of additions sums them into Y with the
 * activation; a binding cannot be read and written by one launch, so Y is written once.
 */
export function lowerGemmSplitK(env: LowerEnv, a: BoundTensor, chunks: readonly RowChunk[], c: BoundTensor | null, y: BoundTensor, attrs: GemmAttrs): Lowered {
  if (attrs.transB) throw new ShapeError(env.label, 'lowerGemmSplitK takes B as [K, N]');
  const [M, N] = y.shape;
  const K = attrs.transA ? a.shape[0] : a.shape[1];
  const tiling = DEFAULT_TILING;
  const launches: Lowered = [];
  const partials: BoundTensor[] = [];
  const gemv = env.ctx.kernelFamily === 'sg8' && !attrs.transA && M <= 16 && N % 4 === 0;
  chunks.forEach((ch, i) => {
    const p = env.scratch(M * N * 4, [M, N]);
    const bias = i === 0 && c !== null;
    if (gemv) {
      const cs = c?.shape ?? [];
      const biasSn = bias && cs.length >= 1 && cs[cs.length - 1] !== 1 ? 1 : 0;
      if (!bias || cs.length < 2 || cs[0] === 1) {
        launches.push(...lowerSg8Product({
          M, N, K: ch.kCount, batch: 1, bLayout: 'kn', a, b: ch.b, c: p, bias: bias ? c : null,
          aOff: ch.kOffset, lda: K, bOff: 0, cOff: 0, ldc: N, sa: 0, sb: 0, sc: 0,
          biasOff: 0, biasSm: 0, biasSn, alpha: attrs.alpha, beta: bias ? attrs.beta : 0, activation: NO_ACTIVATION, label: env.label,
        }));
        partials.push(p);
        return;
      }
    }
    let biasSm = 0;
    let biasSn = 0;
    if (bias && c) {
      const cm = c.shape.length === 2 ? c.shape[0] : 1;
      const cn = c.shape.length >= 1 ? c.shape[c.shape.length - 1] : 1;
      biasSm = cm === 1 ? 0 : cn;
      biasSn = cn === 1 ? 0 : 1;
    }
    launches.push({
      kernel: gemmKernel({ source: 'strided', activation: 'none', bias, tiling }),
      params: STRIDED_GEMM_PARAMS.pack({
        M, N, K: ch.kCount, alpha: attrs.alpha, beta: bias ? attrs.beta : 0, act_a: 0, act_b: 0, B2: 1,
        a_off: attrs.transA ? ch.kOffset * M : ch.kOffset, a_sb1: 0, a_sb2: 0, a_sm: attrs.transA ? 1 : K, a_sk: attrs.transA ? M : 1,
        b_off: 0, b_sb1: 0, b_sb2: 0, b_sk: N, b_sn: 1,
        c_off: 0, c_sb1: 0, c_sb2: 0, c_sm: N, c_sn: 1,
        bias_off: 0, bias_sm: biasSm, bias_sn: biasSn,
      }),
      buffers: bias && c ? [a.binding, ch.b.binding, c.binding, p.binding] : [a.binding, ch.b.binding, p.binding],
      workgroups: [cdiv(N, tiling.tileN * tiling.wgX), cdiv(M, tiling.tileM * tiling.wgY), 1],
      label: env.label,
      flops: 2 * M * N * ch.kCount,
    });
    partials.push(p);
  });
  const act = attrs.activation;
  if (partials.length === 1) {
    launches.push(...lowerUnary(env, partials[0], y, act));
    return launches;
  }
  let acc = partials[0];
  for (let i = 1; i < partials.length; i++) {
    const last = i === partials.length - 1;
    const out = last ? y : env.scratch(M * N * 4, [M, N]);
    launches.push(...lowerBinary(env, 'add', acc, partials[i], out, last ? act : NO_ACTIVATION));
    acc = out;
  }
  return launches;
}

/** NumPy matmul shape rule (1-D operands promoted and the promoted axis dropped). */
export function matmulOutputShape(where: string, a: Shape, b: Shape): number[] {
  if (a.length === 0 || b.length === 0) throw new ShapeError(where, 'MatMul operands must have rank >= 1');
  const a2 = a.length === 1 ? [1, a[0]] : [...a];
  const b2 = b.length === 1 ? [b[0], 1] : [...b];
  const K = a2[a2.length - 1];
  if (K !== b2[b2.length - 2]) throw new ShapeError(where, `MatMul inner dimensions differ: ${formatShape(a)} · ${formatShape(b)}`);
  const ba = a2.slice(0, -2);
  const bb = b2.slice(0, -2);
  const r = Math.max(ba.length, bb.length);
  const batch: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = ba[ba.length - r + i] ?? 1;
    const db = bb[bb.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new ShapeError(where, `MatMul batch dimensions ${formatShape(a)} and ${formatShape(b)} do not broadcast`);
    batch.push(Math.max(da, db));
  }
  const out = [...batch, a2[a2.length - 2], b2[b2.length - 1]];
  if (a.length === 1) out.splice(out.length - 2, 1);
  if (b.length === 1) out.splice(out.length - 1, 1);
  return out;
}

/** Batch strides of an operand of batch shape `own` (right-aligned) against the output batch. */
function batchStrides(own: number[], matrixSize: number, outBatch: number[]): number[] {
  const s = stridesOf(own).map((x) => x * matrixSize);
  return outBatch.map((d, i) => {
    const j = i - (outBatch.length - own.length);
    return j < 0 || own[j] === 1 ? 0 : s[j];
  });
}

/** Operands stored transposed in their last two axes (gradients read them so). */
export interface MatMulTranspose {
  transA?: boolean;
  transB?: boolean;
}

export function lowerMatMul(env: LowerEnv, a: BoundTensor, b: BoundTensor, y: BoundTensor, act: Activation = NO_ACTIVATION, trans: MatMulTranspose = {}): Lowered {
  const swap = (s: number[], on?: boolean) => (on ? [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]] : s);
  // a2, b2: the operands as the product sees them (after promotion and transposition).
  const a2 = a.shape.length === 1 ? [1, a.shape[0]] : swap([...a.shape], trans.transA);
  const b2 = b.shape.length === 1 ? [b.shape[0], 1] : swap([...b.shape], trans.transB);
  const M = a2[a2.length - 2];
  const K = a2[a2.length - 1];
  const N = b2[b2.length - 1];
  const tA = a.shape.length > 1 && trans.transA === true;
  const tB = b.shape.length > 1 && trans.transB === true;
  matmulOutputShape(env.label, a2, b2);
  const fullBatch = broadcastShapes(a2.slice(0, -2), b2.slice(0, -2)) ?? [];
  const sa = batchStrides(a2.slice(0, -2), M * K, fullBatch);
  const sb = batchStrides(b2.slice(0, -2), K * N, fullBatch);
  const sc = stridesOf(fullBatch).map((x) => x * M * N);
  // Size-1 axes index nothing, and adjacent axes whose strides stay affine in all three
  // operands are one axis: what remains is usually one or two batch axes.
  const axes: { d: number; s: number[] }[] = [];
  fullBatch.forEach((d, i) => {
    if (d === 1) return;
    const s = [sa[i], sb[i], sc[i]];
    const last = axes[axes.length - 1];
    if (last && last.s.every((x, k) => x === s[k] * d)) {
      last.d *= d;
      last.s = s;
    } else {
      axes.push({ d, s });
    }
  });
  // The kernel walks two batch levels; axes before those get one launch per index.
  const [inner2, inner1] = [axes.pop() ?? { d: 1, s: [0, 0, 0] }, axes.pop() ?? { d: 1, s: [0, 0, 0] }];
  const B1 = inner1.d;
  const B2 = inner2.d;
  const tiling = DEFAULT_TILING;
  if (B1 * B2 > 65535) throw new ShapeError(env.label, `MatMul batch ${B1 * B2} exceeds 65535`);
  const kernel = gemmKernel({ source: 'strided', activation: act.kind, bias: false, tiling });
  const launches: Lowered = [];
  if (env.ctx.kernelFamily === 'sg8' && !tA) {
    // One batch level per launch: the outer axes and the second level become launches.
    const outer = [...axes, inner1];
    for (let o = 0; o < sizeOf(outer.map((x) => x.d)); o++) {
      const off = [0, 0, 0];
      let rem = o;
      for (let i = outer.length - 1; i >= 0; i--) {
        const c = rem % outer[i].d;
        rem = Math.floor(rem / outer[i].d);
        for (let k = 0; k < 3; k++) off[k] += c * outer[i].s[k];
      }
      launches.push(...lowerSg8Product({
        M, N, K, batch: B2, bLayout: tB ? 'nk' : 'kn', a, b, c: y, bias: null,
        aOff: off[0], bOff: off[1], cOff: off[2], ldc: N, sa: inner2.s[0], sb: inner2.s[1], sc: inner2.s[2],
        biasOff: 0, biasSm: 0, biasSn: 0, alpha: 1, beta: 0, activation: act, label: env.label,
      }));
    }
    return launches;
  }
  for (let outer = 0; outer < sizeOf(axes.map((x) => x.d)); outer++) {
    const off = [0, 0, 0];
    let rem = outer;
    for (let i = axes.length - 1; i >= 0; i--) {
      const c = rem % axes[i].d;
      rem = Math.floor(rem / axes[i].d);
      for (let k = 0; k < 3; k++) off[k] += c * axes[i].s[k];
    }
    launches.push({
      kernel,
      params: STRIDED_GEMM_PARAMS.pack({
        M, N, K, alpha: 1, beta: 0, ...activationParams(act), B2,
        a_off: off[0], a_sb1: inner1.s[0], a_sb2: inner2.s[0], a_sm: tA ? 1 : K, a_sk: tA ? M : 1,
        b_off: off[1], b_sb1: inner1.s[1], b_sb2: inner2.s[1], b_sk: tB ? 1 : N, b_sn: tB ? K : 1,
        c_off: off[2], c_sb1: inner1.s[2], c_sb2: inner2.s[2], c_sm: N, c_sn: 1,
        bias_off: 0, bias_sm: 0, bias_sn: 0,
      }),
      buffers: [a.binding, b.binding, y.binding],
      workgroups: [cdiv(N, tiling.tileN * tiling.wgX), cdiv(M, tiling.tileM * tiling.wgY), B1 * B2],
      label: env.label,
      flops: 2 * M * N * K * B1 * B2,
    });
  }
  return launches;
}

import { InputError, ShapeError } from '../runtime/errors.js';
import type { HostTensor } from '../runtime/host-tensor.js';
import { formatShape, normalizeAxis, shapeEquals, sizeOf } from '../runtime/shape.js';
import type { WeightChunk } from '../runtime/weights.js';
import { type Activation, NO_ACTIVATION } from './activation.js';
import { lowerOnehotArgmax } from './argmax.js';
import { lowerBatchNorm, lowerBatchNormGradInput, lowerBatchNormGradParams, lowerBatchNormStats } from './batchnorm.js';
import { convFlops, convOutputShape, lowerConv } from './conv.js';
import { binaryOutputShape, lowerBinary, lowerChannelAffine, lowerUnary, lowerWhere } from './elementwise.js';
import { gemmOutputShape, lowerGemmOp, lowerMatMul, matmulOutputShape } from './gemm.js';
import { lowerConvGradInput, lowerConvGradWeight } from './grad-conv.js';
import { activationGradientReads, lowerActivationGrad, lowerSoftmaxGrad } from './grad-elementwise.js';
import { lowerGlobalPoolGrad, lowerPoolGrad } from './grad-pool.js';
import type { GraphOp, OpOrigin, Sym, TapeOps } from './graph.js';
import { concatOutputShape, lowerConcat, lowerPad, lowerPadGrad, lowerSlice, padOutputShape } from './layout.js';
import { lowerSoftmax } from './softmax.js';
import { globalPoolOutputShape, lowerGlobalPool, lowerPool, poolOutputShape } from './pool.js';
import { lowerBroadcast, lowerReduce, lowerReduceGrad, reduceShape } from './reduce.js';
import { gatherRowsShape, lowerGatherRows } from './gather.js';
import { lowerRandom, randomShapeCheck } from './random.js';
import { lowerRiseMasks, riseShape } from './rise.js';
import { lowerSort, sortShape } from './sort.js';
import { lowerRankedBlend, rankedBlendShape } from './blend.js';
import { imputeResidualShape, imputeShape, lowerImpute, lowerImputeResidual } from './impute.js';
import { lowerBilinear, lowerBilinearGrad } from './resample.js';
import type { BoundTensor, LowerEnv, Lowered } from './types.js';

export type OpKind = GraphOp['kind'];
export type OpOf<K extends OpKind> = Extract<GraphOp, { kind: K }>;

/** What a lowering reads: the op, the device, and its tensors bound to buffers. */
export interface LowerContext<K extends OpKind> {
  readonly op: OpOf<K>;
  readonly env: LowerEnv;
  /** Graph shape of input k. */
  shapeOf(k: number): number[];
  readonly outShape: number[];
  /** Input k bound with its graph shape, or viewed as `shape` (same elements). */
  input(k: number, shape?: readonly number[]): BoundTensor;
  /** Input k viewed as 4-D ([N, C, W] reads as [N, C, 1, W]). */
  input4d(k: number): BoundTensor;
  output(shape?: readonly number[]): BoundTensor;
  output4d(): BoundTensor;
  /** Input k when it is a constant too large for one storage binding: its uploaded row chunks; else null. */
  oversizedConstant(k: number): { value: HostTensor; chunks: WeightChunk[] } | null;
}

/** What a vector-Jacobian product reads and where it sends its results. */
export interface VjpContext<K extends OpKind> {
  readonly op: OpOf<K>;
  readonly tape: TapeOps;
  /** The gradient of the op's output. */
  readonly gy: Sym;
  /** The op's output. */
  readonly y: Sym;
  x(k: number): Sym;
  /** Whether input k needs a gradient (it depends on a wrt tensor and feeds a seed). */
  need(k: number): boolean;
  /** Adds g to the gradient of input k. */
  give(k: number, g: Sym): void;
  /** An origin for a backward op of this op, suffixed with `what`. */
  origin(what: string): OpOrigin;
  /** gy taken back through a fused activation (computed from the output, which is all fusion keeps). */
  preActivation(act: Activation): Sym;
}

/**
 * Everything the runtime knows about one op kind. `vjp`: the backward rule; 'zero' for
 * piecewise-constant ops (no gradient flows); 'none' for ops that cannot be differentiated
 * (backward ops themselves: no second order).
 */
export interface OpDef<K extends OpKind> {
  /**
   * Output shape from the input shapes. `declared` is the shape a caller expects: checked
   * against the rule, and required by the kinds whose inputs leave the output's shape open
   * (reshape, broadcast, resize, slice, strided input gradients).
   */
  shape(op: OpOf<K>, inputs: readonly (readonly number[])[], declared: readonly number[] | null, where: string): number[];
  lower(c: LowerContext<K>): Lowered;
  vjp: ((c: VjpContext<K>) => void) | 'zero' | 'none';
  /** The output is the input's elements under another shape: no kernel, it shares the input's buffer. */
  view?: true;
  /** Multiply-adds × 2, the usual way to count a CNN's FLOPs: convolutions and dense layers only, 0 for the rest. */
  modelFlops(op: OpOf<K>, shapeOf: (name: string) => readonly number[]): number;
}

export type OpRegistry = { [K in OpKind]: OpDef<K> };

function needDeclared(declared: readonly number[] | null, where: string, kind: string): number[] {
  if (!declared) throw new ShapeError(where, `a '${kind}' op needs its output shape declared`);
  return [...declared];
}

/** The output has the shape of input 0. */
const same = (_op: unknown, inputs: readonly (readonly number[])[]) => [...inputs[0]];
const noFlops = () => 0;

const gemmLikeFlops = (y: readonly number[], k: number) => 2 * sizeOf(y) * k;

export const OPS: OpRegistry = {
  conv: {
    shape: (op, [x, w], _d, where) => convOutputShape(where, x, w, op.attrs),
    lower: (c) => lowerConv(c.env, c.input4d(0), c.input4d(1), c.op.inputs[2] !== undefined ? c.input(2) : null, c.output4d(), c.op.attrs),
    vjp: (c) => {
      const gp = c.preActivation(c.op.attrs.activation);
      const attrs = { ...c.op.attrs, activation: NO_ACTIVATION };
      const [x, w] = [c.x(0), c.x(1)];
      if (c.need(0)) c.give(0, c.tape.record({ kind: 'conv_grad_input', inputs: [gp.name, w.name], attrs }, x.shape, c.origin('input')));
      if (c.need(1)) c.give(1, c.tape.record({ kind: 'conv_grad_weight', inputs: [x.name, gp.name], attrs }, w.shape, c.origin('weight')));
      if (c.op.inputs[2] !== undefined && c.need(2)) {
        c.give(2, c.tape.reshape(c.tape.reduce('sum', gp, [0, ...gp.shape.slice(2).map((_, i) => i + 2)]), [gp.shape[1]]));
      }
    },
    modelFlops: (op, s) => convFlops(s(op.output), s(op.inputs[1])),
  },
  gemm: {
    shape: (op, [a, b, bias], _d, where) => gemmOutputShape(where, a, b, bias ?? null, op.attrs),
    lower: (c) => lowerGemmOp(c.env, c.input(0), c.oversizedConstant(1) ?? c.input(1), c.op.inputs[2] !== undefined ? c.input(2) : null, c.output(), c.op.attrs),
    vjp: (c) => {
      const gp = c.preActivation(c.op.attrs.activation);
      const { transA, transB, alpha, beta } = c.op.attrs;
      const [a, b] = [c.x(0), c.x(1)];
      const t = c.tape;
      if (c.need(0)) c.give(0, transA ? t.gemm(b, gp, null, { transA: transB, transB: true, alpha }) : t.gemm(gp, b, null, { transA: false, transB: !transB, alpha }));
      if (c.need(1)) c.give(1, transB ? t.gemm(gp, a, null, { transA: true, transB: transA, alpha }) : t.gemm(a, gp, null, { transA: !transA, transB: false, alpha }));
      if (c.op.inputs[2] !== undefined && c.need(2)) {
        const r = t.reduceTo(gp, c.x(2).shape);
        c.give(2, beta === 1 ? r : t.mul(r, t.scalar(beta)));
      }
    },
    modelFlops: (op, s) => gemmLikeFlops(s(op.output), op.attrs.transA ? s(op.inputs[0])[0] : s(op.inputs[0]).at(-1)!),
  },
  matmul: {
    shape: (op, [a, b], _d, where) => {
      const t = (x: readonly number[], on?: boolean) => (on && x.length >= 2 ? [...x.slice(0, -2), x[x.length - 1], x[x.length - 2]] : x);
      return matmulOutputShape(where, t(a, op.transA), t(b, op.transB));
    },
    lower: (c) => lowerMatMul(c.env, c.input(0), c.input(1), c.output(), c.op.activation, { transA: c.op.transA, transB: c.op.transB }),
    vjp: (c) => {
      const { op, tape: t } = c;
      const gp = c.preActivation(op.activation);
      const [a, b] = [c.x(0), c.x(1)];
      // 1-D operands are promoted to matrices, as the forward op does, and demoted after.
      const a2 = a.shape.length === 1 ? t.reshape(a, [1, a.shape[0]]) : a;
      const b2 = b.shape.length === 1 ? t.reshape(b, [b.shape[0], 1]) : b;
      const m = a2.shape[a2.shape.length - (op.transA ? 1 : 2)];
      const n = b2.shape[b2.shape.length - (op.transB ? 2 : 1)];
      const yShape = [...gp.shape.slice(0, gp.shape.length - (a.shape.length === 1 ? 0 : 1) - (b.shape.length === 1 ? 0 : 1)), m, n];
      const g2 = t.reshape(gp, yShape.length < 2 ? [m, n] : yShape);
      if (c.need(0)) {
        // gA = gY·op(B)ᵀ, transposed back when A was used transposed.
        const ga = op.transA ? t.matmul(b2, g2, { transA: op.transB, transB: true }) : t.matmul(g2, b2, { transB: !op.transB });
        c.give(0, t.reshape(t.reduceTo(ga, a2.shape), a.shape));
      }
      if (c.need(1)) {
        const gb = op.transB ? t.matmul(g2, a2, { transA: true, transB: op.transA }) : t.matmul(a2, g2, { transA: !op.transA });
        c.give(1, t.reshape(t.reduceTo(gb, b2.shape), b.shape));
      }
    },
    modelFlops: (op, s) => {
      const a = s(op.inputs[0]);
      return gemmLikeFlops(s(op.output), op.transA && a.length >= 2 ? a[a.length - 2] : a[a.length - 1]);
    },
  },
  binary: {
    shape: (_op, [a, b], _d, where) => binaryOutputShape(where, a, b),
    lower: (c) => lowerBinary(c.env, c.op.op, c.input(0), c.input(1), c.output(), c.op.activation),
    vjp: (c) => {
      const gp = c.preActivation(c.op.activation);
      const t = c.tape;
      const [a, b] = [c.x(0), c.x(1)];
      const to = (k: number, g: Sym) => c.give(k, t.reduceTo(g, c.x(k).shape));
      switch (c.op.op) {
        case 'add':
          if (c.need(0)) to(0, gp);
          if (c.need(1)) to(1, gp);
          return;
        case 'sub':
          if (c.need(0)) to(0, gp);
          if (c.need(1)) to(1, t.mul(gp, t.scalar(-1)));
          return;
        case 'mul':
          if (c.need(0)) to(0, t.mul(gp, b));
          if (c.need(1)) to(1, t.mul(gp, a));
          return;
        case 'div':
          if (c.need(0)) to(0, t.div(gp, b));
          if (c.need(1)) to(1, t.mul(t.div(t.mul(gp, a), t.mul(b, b)), t.scalar(-1)));
          return;
      }
    },
    modelFlops: noFlops,
  },
  unary: {
    shape: same,
    lower: (c) => lowerUnary(c.env, c.input(0), c.output(), c.op.activation),
    vjp: (c) => {
      const act = c.op.activation;
      // The pointwise table says whether f' is computed from the input or the output.
      if (activationGradientReads(act) === 'y') return c.give(0, c.preActivation(act));
      c.give(0, c.tape.record({ kind: 'activation_grad', activation: act, inputs: [c.op.inputs[0], c.gy.name] }, c.x(0).shape, c.origin('act')));
    },
    modelFlops: noFlops,
  },
  affine: {
    shape: same,
    lower: (c) => lowerChannelAffine(c.env, c.input(0), c.input(1), c.input(2), c.output(), c.op.activation),
    vjp: (c) => {
      const gp = c.preActivation(c.op.activation);
      const t = c.tape;
      const [x, scale] = [c.x(0), c.x(1)];
      const perChannel = (v: Sym) => t.reshape(v, [v.shape[0], ...x.shape.slice(2).map(() => 1)]);
      const channelAxes = [0, ...x.shape.slice(2).map((_, i) => i + 2)];
      if (c.need(0)) c.give(0, t.mul(gp, perChannel(scale)));
      if (c.need(1)) c.give(1, t.reshape(t.reduce('sum', t.mul(gp, x), channelAxes), scale.shape));
      if (c.need(2)) c.give(2, t.reshape(t.reduce('sum', gp, channelAxes), c.x(2).shape));
    },
    modelFlops: noFlops,
  },
  pool: {
    shape: (op, [x], _d, where) => poolOutputShape(where, x, op.attrs),
    lower: (c) => lowerPool(c.env, c.op.pool, c.input4d(0), c.output4d(), c.op.attrs),
    vjp: (c) => c.give(0, c.tape.record({ kind: 'pool_grad', pool: c.op.pool, inputs: [c.op.inputs[0], c.gy.name], attrs: c.op.attrs }, c.x(0).shape, c.origin(''))),
    modelFlops: noFlops,
  },
  global_pool: {
    shape: (_op, [x], _d, where) => globalPoolOutputShape(where, x),
    lower: (c) => lowerGlobalPool(c.env, c.op.pool, c.input(0), c.output()),
    vjp: (c) => c.give(0, c.tape.record({ kind: 'global_pool_grad', pool: c.op.pool, inputs: [c.op.inputs[0], c.gy.name] }, c.x(0).shape, c.origin(''))),
    modelFlops: noFlops,
  },
  softmax: {
    shape: same,
    lower: (c) => lowerSoftmax(c.env, c.input(0), c.output(), c.op.axis, c.op.coerce2d, c.op.log),
    vjp: (c) => {
      const { op } = c;
      c.give(0, c.tape.record({ kind: 'softmax_grad', inputs: [c.y.name, c.gy.name], axis: op.axis, coerce2d: op.coerce2d, log: op.log }, c.y.shape, c.origin('')));
    },
    modelFlops: noFlops,
  },
  concat: {
    shape: (op, inputs, _d, where) => concatOutputShape(where, inputs.map((s) => [...s]), op.axis),
    lower: (c) => lowerConcat(c.env, c.op.inputs.map((_, k) => c.input(k)), c.output(), c.op.axis),
    vjp: (c) => {
      let start = 0;
      c.op.inputs.forEach((_, k) => {
        const x = c.x(k);
        const axis = normalizeAxis(c.op.axis, x.shape.length);
        if (c.need(k)) c.give(k, c.tape.record({ kind: 'slice', inputs: [c.gy.name], axis, start }, x.shape, c.origin(String(k))));
        start += x.shape[axis];
      });
    },
    modelFlops: noFlops,
  },
  pad: {
    shape: (op, [x], _d, where) => padOutputShape(where, x, op.pads),
    lower: (c) => lowerPad(c.env, c.input(0), c.output(), c.op.pads, c.op.mode, c.op.value),
    vjp: (c) => c.give(0, c.tape.record({ kind: 'pad_grad', inputs: [c.gy.name], pads: c.op.pads, mode: c.op.mode }, c.x(0).shape, c.origin(''))),
    modelFlops: noFlops,
  },
  alias: {
    shape: (_op, [x], declared, where) => {
      const y = needDeclared(declared, where, 'alias');
      if (sizeOf(y) !== sizeOf(x)) throw new ShapeError(where, `cannot view ${formatShape(x)} as ${formatShape(y)}`);
      return y;
    },
    lower: () => [],
    view: true,
    vjp: (c) => c.give(0, c.tape.reshape(c.gy, c.x(0).shape)),
    modelFlops: noFlops,
  },
  reduce: {
    shape: (op, [x]) => reduceShape(x, op.axes),
    lower: (c) => lowerReduce(c.env, c.op.reduce, c.input(0), c.output(), c.op.axes),
    vjp: (c) => c.give(0, c.tape.record({ kind: 'reduce_grad', reduce: c.op.reduce, inputs: [c.op.inputs[0], c.y.name, c.gy.name], axes: c.op.axes }, c.x(0).shape, c.origin(''))),
    modelFlops: noFlops,
  },
  broadcast: {
    shape: (_op, [x], declared, where) => {
      const y = needDeclared(declared, where, 'broadcast');
      if (!shapeEquals(binaryOutputShape(where, x, y), y)) throw new ShapeError(where, `${formatShape(x)} does not broadcast to ${formatShape(y)}`);
      return y;
    },
    lower: (c) => lowerBroadcast(c.env, c.input(0), c.output()),
    vjp: (c) => c.give(0, c.tape.reduceTo(c.gy, c.x(0).shape)),
    modelFlops: noFlops,
  },
  resize: {
    shape: (_op, [x], declared, where) => {
      const y = needDeclared(declared, where, 'resize');
      if (x.length < 2 || y.length !== x.length || !shapeEquals(x.slice(0, -2), y.slice(0, -2))) {
        throw new ShapeError(where, `a bilinear resize keeps every axis but the last two: ${formatShape(x)} → ${formatShape(y)}`);
      }
      return y;
    },
    lower: (c) => lowerBilinear(c.env, c.input(0), c.output(), c.outShape, c.op.options),
    vjp: (c) => c.give(0, c.tape.record({ kind: 'resize_grad', inputs: [c.gy.name], options: c.op.options }, c.x(0).shape, c.origin(''))),
    modelFlops: noFlops,
  },
  where: {
    shape: (_op, [cond, a, b], _d, where) => {
      if (!shapeEquals(cond, a) || !shapeEquals(a, b)) throw new ShapeError(where, `where needs one shape for cond, a and b: ${[cond, a, b].map(formatShape).join(', ')}`);
      return [...a];
    },
    lower: (c) => lowerWhere(c.env, c.input(0), c.input(1), c.input(2), c.output()),
    vjp: (c) => {
      // The condition is piecewise constant: no gradient. a and b get g where they were chosen.
      const t = c.tape;
      const zero = t.broadcast(t.scalar(0), c.gy.shape);
      const cond = c.x(0);
      if (c.need(1)) c.give(1, t.record({ kind: 'where', inputs: [cond.name, c.gy.name, zero.name] }, null, c.origin('a')));
      if (c.need(2)) c.give(2, t.record({ kind: 'where', inputs: [cond.name, zero.name, c.gy.name] }, null, c.origin('b')));
    },
    modelFlops: noFlops,
  },
  random: {
    shape: (_op, [rows, streams, blocks], declared, where) => {
      const y = needDeclared(declared, where, 'random');
      randomShapeCheck(where, rows, y);
      if (streams) randomShapeCheck(where, streams, y);
      if (blocks) randomShapeCheck(where, blocks, y);
      return y;
    },
    lower: (c) => lowerRandom(c.env, c.input(0), c.output(), c.op.attrs, c.op.inputs.length === 3 ? { streams: c.input(1), blocks: c.input(2) } : null),
    vjp: 'zero',
    modelFlops: noFlops,
  },
  gather_rows: {
    shape: (_op, [x, idx], _d, where) => gatherRowsShape(where, x, idx),
    lower: (c) => lowerGatherRows(c.env, c.input(0), c.input(1), c.output()),
    // Sweeps gather inputs they do not differentiate; a scatter-add VJP can come when a method needs it.
    vjp: 'none',
    modelFlops: noFlops,
  },
  rise_masks: {
    shape: (op, [ids], _d, where) => riseShape(where, ids, op.attrs),
    lower: (c) => lowerRiseMasks(c.env, c.input(0), c.output(), c.op.attrs),
    vjp: 'zero',
    modelFlops: noFlops,
  },
  ranked_blend: {
    shape: (op, [x, sub, ranks, info], _d, where) => rankedBlendShape(where, x, sub, ranks, info, op.attrs),
    lower: (c) => lowerRankedBlend(c.env, c.input(0), c.input(1), c.input(2), c.input(3), c.output(), c.op.attrs),
    // Step images are made from data no metric differentiates.
    vjp: 'none',
    modelFlops: noFlops,
  },
  sort: {
    shape: (_op, [x], _d, where) => sortShape(where, x),
    lower: (c) => lowerSort(c.env, c.input(0), c.output(), c.op.attrs),
    // Percentiles and orderings read sorted values as data; no method differentiates through them.
    vjp: 'none',
    modelFlops: noFlops,
  },
  impute: {
    shape: (op, [x, keep], _d, where) => imputeShape(where, x, keep, op.attrs),
    lower: (c) => lowerImpute(c.env, c.input(0), c.input(1), c.output(), c.op.attrs),
    // An iterative solve's VJP would be another solve with Aᵀ = A; ROAD only scores the filled images.
    vjp: (c) => {
      throw new InputError(`no gradient for impute ('${c.op.node.name}'): noisy linear imputation is not differentiable in camgpu (ROAD scores its output, nothing differentiates through it)`);
    },
    modelFlops: noFlops,
  },
  impute_residual: {
    shape: (_op, [filled, keep], _d, where) => imputeResidualShape(where, filled, keep),
    lower: (c) => lowerImputeResidual(c.env, c.input(0), c.input(1), c.output()),
    vjp: 'zero',
    modelFlops: noFlops,
  },
  onehot_argmax: {
    shape: (_op, [x], _d, where) => {
      if (x.length !== 2) throw new ShapeError(where, `onehot_argmax needs [N, C], got ${formatShape(x)}`);
      return [...x];
    },
    lower: (c) => lowerOnehotArgmax(c.env, c.input(0), c.output()),
    vjp: 'zero',
    modelFlops: noFlops,
  },
  conv_grad_input: {
    shape: (op, [gy, w], declared, where) => {
      const x = needDeclared(declared, where, 'conv_grad_input');
      const y = convOutputShape(where, x, w, op.attrs);
      if (!shapeEquals(y, gy)) throw new ShapeError(where, `a conv of ${formatShape(x)} gives ${formatShape(y)}, not the gradient's ${formatShape(gy)}`);
      return x;
    },
    lower: (c) => lowerConvGradInput(c.env, c.input4d(0), c.input4d(1), c.output4d(), c.op.attrs),
    vjp: 'none',
    modelFlops: noFlops,
  },
  conv_grad_weight: {
    shape: (op, [x, gy], _d, where) => {
      if (x.length !== 4 || gy.length !== 4) throw new ShapeError(where, `conv weight gradient needs 4-D x and gy, got ${formatShape(x)}, ${formatShape(gy)}`);
      return [gy[1], x[1] / op.attrs.groups, ...op.attrs.kernel];
    },
    lower: (c) => lowerConvGradWeight(c.env, c.input4d(0), c.input4d(1), c.output4d(), c.op.attrs),
    vjp: 'none',
    modelFlops: noFlops,
  },
  pool_grad: {
    shape: same,
    lower: (c) => lowerPoolGrad(c.env, c.op.pool, c.input4d(0), c.input4d(1), c.output4d(), c.op.attrs),
    vjp: 'none',
    modelFlops: noFlops,
  },
  global_pool_grad: {
    shape: same,
    lower: (c) => lowerGlobalPoolGrad(c.env, c.op.pool, c.input(0), c.input(1), c.output()),
    vjp: 'none',
    modelFlops: noFlops,
  },
  reduce_grad: {
    shape: same,
    lower: (c) => lowerReduceGrad(c.env, c.op.reduce, c.input(0), c.input(1), c.input(2), c.output(), c.op.axes),
    vjp: 'none',
    modelFlops: noFlops,
  },
  activation_grad: {
    shape: (_op, [v, gy], _d, where) => {
      if (!shapeEquals(v, gy)) throw new ShapeError(where, `activation gradient operands differ: ${formatShape(v)}, ${formatShape(gy)}`);
      return [...v];
    },
    lower: (c) => lowerActivationGrad(c.env, c.op.activation, c.input(0), c.input(1), c.output()),
    vjp: 'none',
    modelFlops: noFlops,
  },
  softmax_grad: {
    shape: same,
    lower: (c) => lowerSoftmaxGrad(c.env, c.input(0), c.input(1), c.output(), c.op.axis, c.op.coerce2d, c.op.log),
    vjp: 'none',
    modelFlops: noFlops,
  },
  resize_grad: {
    shape: (_op, [gy], declared, where) => {
      const x = needDeclared(declared, where, 'resize_grad');
      if (x.length !== gy.length || !shapeEquals(x.slice(0, -2), gy.slice(0, -2))) throw new ShapeError(where, `resize gradient ${formatShape(gy)} cannot flow to ${formatShape(x)}`);
      return x;
    },
    lower: (c) => lowerBilinearGrad(c.env, c.input(0), c.output(), c.op.options),
    vjp: 'none',
    modelFlops: noFlops,
  },
  slice: {
    shape: (op, [x], declared, where) => {
      const y = needDeclared(declared, where, 'slice');
      const ax = normalizeAxis(op.axis, x.length);
      const ok = ax >= 0 && ax < x.length && y.length === x.length && y.every((d, i) => i === ax || d === x[i]) && op.start >= 0 && op.start + y[ax] <= x[ax];
      if (!ok) throw new ShapeError(where, `cannot slice ${formatShape(y)} from ${formatShape(x)} at ${op.start} on axis ${op.axis}`);
      return y;
    },
    lower: (c) => lowerSlice(c.env, c.input(0), c.output(), c.op.axis, c.op.start),
    vjp: 'none',
    modelFlops: noFlops,
  },
  pad_grad: {
    shape: (op, [gy], _d, where) => {
      const r = gy.length;
      if (op.pads.length !== 2 * r) throw new ShapeError(where, `Pad gradient needs ${2 * r} pad values, got ${op.pads.length}`);
      return gy.map((d, i) => d - op.pads[i] - op.pads[i + r]);
    },
    lower: (c) => lowerPadGrad(c.env, c.input(0), c.output(), c.op.pads, c.op.mode),
    vjp: 'none',
    modelFlops: noFlops,
  },
  batchnorm_stats: {
    shape: (_op, [x], _d, where) => {
      if (x.length < 2) throw new ShapeError(where, `batch statistics need N×C×…, got ${formatShape(x)}`);
      return [2, x[1]];
    },
    lower: (c) => lowerBatchNormStats(c.env, c.input(0), c.output()),
    vjp: (c) => {
      // Reached only for statistics read by something other than a batchnorm of the same
      // tensor (that one's rule already accounts for them): mean' = g_m/M, var' = 2·g_v·(x − mean)/M.
      const t = c.tape;
      const x = c.x(0);
      const C = x.shape[1];
      const M = sizeOf(x.shape) / Math.max(C, 1);
      const perChannel = [1, C, ...x.shape.slice(2).map(() => 1)];
      const row = (v: Sym, r: number) => t.reshape(t.record({ kind: 'slice', inputs: [v.name], axis: 0, start: r }, [1, C], c.origin(`row${r}`)), perChannel);
      const centered = t.sub(x, row(c.y, 0));
      const fromVar = t.mul(centered, t.mul(row(c.gy, 1), t.scalar(2 / M)));
      c.give(0, t.add(fromVar, t.mul(row(c.gy, 0), t.scalar(1 / M))));
    },
    modelFlops: noFlops,
  },
  batchnorm: {
    shape: same,
    lower: (c) => lowerBatchNorm(c.env, c.input(0), c.input(1), c.input(2), c.input(3), c.output(), c.op.eps, c.op.activation),
    vjp: (c) => batchNormBackward(c),
    modelFlops: noFlops,
  },
  batchnorm_grad_params: {
    shape: (_op, [x], _d, where) => {
      if (x.length < 2) throw new ShapeError(where, `batchnorm gradient needs N×C×…, got ${formatShape(x)}`);
      return [2, x[1]];
    },
    lower: (c) => lowerBatchNormGradParams(c.env, c.input(0), c.input(1), c.input(2), c.output(), c.op.eps),
    vjp: 'none',
    modelFlops: noFlops,
  },
  batchnorm_grad_input: {
    shape: same,
    lower: (c) => lowerBatchNormGradInput(c.env, c.input(0), c.input(1), c.input(2), c.input(3), c.op.inputs[4] !== undefined ? c.input(4) : null, c.output(), c.op.eps),
    vjp: 'none',
    modelFlops: noFlops,
  },
};

/** The definition of an op's kind (the registry is keyed by kind; this recovers the link TypeScript loses). */
export function opDef<K extends OpKind>(op: OpOf<K>): OpDef<K> {
  return OPS[op.kind as K] as OpDef<K>;
}

/** Output shape of `op` by its kind's rule (see OpDef.shape). */
export function inferShape(op: GraphOp, inputs: readonly (readonly number[])[], declared: readonly number[] | null): number[] {
  const where = `${op.node.name} (${op.node.opType})`;
  const rule = opDef(op).shape as (o: GraphOp, i: readonly (readonly number[])[], d: readonly number[] | null, w: string) => number[];
  const shape = rule(op, inputs, declared, where);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new ShapeError(where, `computes the invalid shape ${formatShape(shape)}`);
  if (declared && !shapeEquals(shape, declared)) throw new ShapeError(where, `its rule gives ${formatShape(shape)}, the caller declared ${formatShape(declared)}`);
  return shape;
}

/** Model FLOPs of a graph per image (OpDef.modelFlops summed, divided by the first input's batch). */
export function graphFlops(g: { ops: readonly GraphOp[]; shapes: ReadonlyMap<string, number[]>; inputs: readonly string[] }): number {
  const shapeOf = (n: string) => g.shapes.get(n) ?? [];
  let f = 0;
  for (const op of g.ops) f += (opDef(op).modelFlops as (o: GraphOp, s: typeof shapeOf) => number)(op, shapeOf);
  const batch = g.shapes.get(g.inputs[0])?.[0] ?? 1;
  return f / batch;
}

/**
 * Batch normalization's rule. When the statistics are the batch's own (batchnorm_stats of
 * the same x: training mode), the input gradient includes the path through them, fused:
 * gamma·invstd·(g − (Σg + x̂·Σg·x̂)/M); the statistics then receive nothing (their own rule
 * serves other readers). With statistics fed in (running statistics: evaluation mode) the
 * input gradient is gamma·invstd·g. gamma and beta get the per-channel sums Σ g·x̂ and Σ g.
 */
function batchNormBackward(c: VjpContext<'batchnorm'>): void {
  const { op, tape: t } = c;
  const gp = c.preActivation(op.activation);
  const [x, stats, gamma, beta] = [0, 1, 2, 3].map((k) => c.x(k));
  const C = x.shape[1];
  const producer = t.graph.ops.find((o) => o.output === stats.name);
  const batchStats = producer?.kind === 'batchnorm_stats' && producer.inputs[0] === x.name;
  if (c.need(1) && !batchStats) {
    throw new InputError(`no gradient for the statistics of batchnorm '${op.node.name}': they are neither constant nor the batch statistics of its input`);
  }
  let sums: Sym | null = null;
  if (c.need(2) || c.need(3) || (c.need(0) && batchStats)) {
    sums = t.record({ kind: 'batchnorm_grad_params', inputs: [x.name, stats.name, gp.name], eps: op.eps }, [2, C], c.origin('params'));
  }
  const row = (r: number, like: Sym) => t.reshape(t.record({ kind: 'slice', inputs: [sums!.name], axis: 0, start: r }, [1, C], c.origin(r === 0 ? 'scale' : 'bias')), like.shape);
  if (c.need(2)) c.give(2, row(0, gamma));
  if (c.need(3)) c.give(3, row(1, beta));
  if (c.need(0)) {
    const inputs: [string, string, string, string] | [string, string, string, string, string] = batchStats
      ? [x.name, stats.name, gamma.name, gp.name, sums!.name]
      : [x.name, stats.name, gamma.name, gp.name];
    c.give(0, t.record({ kind: 'batchnorm_grad_input', inputs, eps: op.eps, batchStats }, x.shape, c.origin('input')));
  }
}

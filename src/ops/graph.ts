import type { HostTensor } from '../runtime/host-tensor.js';
import type { Activation } from './activation.js';
import type { Conv2dAttrs } from './conv-attrs.js';
import type { GemmAttrs } from './gemm.js';
import type { Pool2dAttrs } from './pool.js';
import type { RandomAttrs } from './random.js';
import type { RiseAttrs } from './rise.js';
import type { SortAttrs } from './sort.js';
import type { RankedBlendAttrs } from './blend.js';
import type { ImputeAttrs } from './impute.js';
import type { ReduceKind } from './reduce.js';
import type { BilinearOptions } from './resample.js';
import type { BinaryOpKind } from '../shaders/elementwise.js';
import type { PadMode } from '../shaders/layout.js';

/** Where an op came from (an ONNX node, or an op a tape recorded), for labels and errors. */
export interface OpOrigin {
  name: string;
  opType: string;
}

/**
 * A GPU-level op: an ONNX node after its attributes are parsed and its constant inputs
 * read, or an op recorded by a tape (CAM math, gradients). Inputs and outputs are tensor
 * names; passes rewrite these.
 */
export type GraphOp =
  | { kind: 'conv'; node: OpOrigin; inputs: [string, string] | [string, string, string]; output: string; attrs: Conv2dAttrs }
  | { kind: 'gemm'; node: OpOrigin; inputs: [string, string] | [string, string, string]; output: string; attrs: GemmAttrs }
  /** NumPy matmul; transA / transB transpose the last two axes of an operand (gradients use them). */
  | { kind: 'matmul'; node: OpOrigin; inputs: [string, string]; output: string; activation: Activation; transA?: boolean; transB?: boolean }
  | { kind: 'binary'; node: OpOrigin; op: BinaryOpKind; inputs: [string, string]; output: string; activation: Activation }
  | { kind: 'unary'; node: OpOrigin; inputs: [string]; output: string; activation: Activation }
  | { kind: 'affine'; node: OpOrigin; inputs: [string, string, string]; output: string; activation: Activation }
  | { kind: 'pool'; node: OpOrigin; pool: 'max' | 'avg'; inputs: [string]; output: string; attrs: Pool2dAttrs }
  | { kind: 'global_pool'; node: OpOrigin; pool: 'max' | 'avg'; inputs: [string]; output: string }
  | { kind: 'softmax'; node: OpOrigin; inputs: [string]; output: string; axis: number; coerce2d: boolean; log: boolean }
  | { kind: 'concat'; node: OpOrigin; inputs: string[]; output: string; axis: number }
  | { kind: 'pad'; node: OpOrigin; inputs: [string]; output: string; pads: number[]; mode: PadMode; value: number }
  /** Same elements, new shape (Reshape, Flatten, Squeeze, Unsqueeze, Identity): no kernel. */
  | { kind: 'alias'; node: OpOrigin; inputs: [string]; output: string }
  // Ops that tapes record (CAM math, objectives) beside the ONNX ones.
  | { kind: 'reduce'; node: OpOrigin; reduce: ReduceKind; inputs: [string]; output: string; axes: number[] }
  /** NumPy broadcast of the input to the output's shape. */
  | { kind: 'broadcast'; node: OpOrigin; inputs: [string]; output: string }
  | { kind: 'resize'; node: OpOrigin; inputs: [string]; output: string; options: BilinearOptions }
  /** y = cond ≠ 0 ? a : b, all of one shape (CAM masks, thresholds). */
  | { kind: 'where'; node: OpOrigin; inputs: [string, string, string]; output: string }
  /**
   * Counter-based random values [N, …], row r keyed by the image index in input [N]; with inputs
   * 1 and 2 ([N] each), row r also takes its own stream and starts its counter at block·per_row
   * (src/ops/random.ts).
   */
  | { kind: 'random'; node: OpOrigin; inputs: [string] | [string, string, string]; output: string; attrs: RandomAttrs }
  /** Rows of x [R0, …] at the row numbers in input 1 ([N], f32): [N, …] (masks and images of a sweep). */
  | { kind: 'gather_rows'; node: OpOrigin; inputs: [string, string]; output: string }
  /** RISE's random masks [N, h, w] for the mask ids in input [N] (src/ops/rise.ts). */
  | { kind: 'rise_masks'; node: OpOrigin; inputs: [string]; output: string; attrs: RiseAttrs }
  /** Each row of the last axis sorted (stable; values or source indices as f32) (src/ops/sort.ts). */
  | { kind: 'sort'; node: OpOrigin; inputs: [string]; output: string; attrs: SortAttrs }
  /** Insertion/deletion step images: x or the substrate per pixel, by its unit's rank against the row's count. */
  | { kind: 'ranked_blend'; node: OpOrigin; inputs: [string, string, string, string]; output: string; attrs: RankedBlendAttrs }
  /**
   * Noisy linear imputation without the noise (ROAD): x [N, C, H, W] with the pixels where
   * keep ([N, 1, H, W] or [N, H, W]) is ≤ 0.5 filled by the weighted mean of their 8
   * neighbours, all of an image solved together by conjugate gradients (src/ops/impute.ts).
   */
  | { kind: 'impute'; node: OpOrigin; inputs: [string, string]; output: string; attrs: ImputeAttrs }
  /** ‖b − A·u‖ / ‖b‖ per image [N] of an imputed image (inputs: filled, keep), recomputed from scratch. */
  | { kind: 'impute_residual'; node: OpOrigin; inputs: [string, string]; output: string }
  /** One-hot rows at the argmax of each row of a [N, C] tensor; has no gradient. */
  | { kind: 'onehot_argmax'; node: OpOrigin; inputs: [string]; output: string }
  // Vector-Jacobian products, appended by autodiff.
  | { kind: 'conv_grad_input'; node: OpOrigin; inputs: [string, string]; output: string; attrs: Conv2dAttrs }
  | { kind: 'conv_grad_weight'; node: OpOrigin; inputs: [string, string]; output: string; attrs: Conv2dAttrs }
  | { kind: 'pool_grad'; node: OpOrigin; pool: 'max' | 'avg'; inputs: [string, string]; output: string; attrs: Pool2dAttrs }
  | { kind: 'global_pool_grad'; node: OpOrigin; pool: 'max' | 'avg'; inputs: [string, string]; output: string }
  | { kind: 'reduce_grad'; node: OpOrigin; reduce: ReduceKind; inputs: [string, string, string]; output: string; axes: number[] }
  | { kind: 'activation_grad'; node: OpOrigin; activation: Activation; inputs: [string, string]; output: string }
  | { kind: 'softmax_grad'; node: OpOrigin; inputs: [string, string]; output: string; axis: number; coerce2d: boolean; log: boolean }
  | { kind: 'resize_grad'; node: OpOrigin; inputs: [string]; output: string; options: BilinearOptions }
  | { kind: 'slice'; node: OpOrigin; inputs: [string]; output: string; axis: number; start: number }
  | { kind: 'pad_grad'; node: OpOrigin; inputs: [string]; output: string; pads: number[]; mode: PadMode }
  // Training-mode batch normalization (src/ops/batchnorm.ts).
  /** [2, C]: per channel of an N×C×… tensor, the mean (row 0) and biased variance (row 1) over N and the spatial axes. */
  | { kind: 'batchnorm_stats'; node: OpOrigin; inputs: [string]; output: string }
  /**
   * y = act((x − mean[c]) / √(var[c] + eps) · gamma[c] + beta[c]) with (mean, var) the rows of
   * `stats` [2, C]: the batch's own (from batchnorm_stats of x: training mode) or running
   * statistics fed as an input (evaluation mode).
   */
  | { kind: 'batchnorm'; node: OpOrigin; inputs: [string, string, string, string]; output: string; eps: number; activation: Activation }
  /** [2, C]: Σ g·x̂ (gamma's gradient, row 0) and Σ g (beta's, row 1) per channel, x̂ = (x − mean)/√(var + eps). Inputs [x, stats, g]. */
  | { kind: 'batchnorm_grad_params'; node: OpOrigin; inputs: [string, string, string]; output: string; eps: number }
  /**
   * The input gradient of batchnorm. `batchStats`: stats are x's own, so the gradient flows
   * through them too: gamma·invstd·(g − (Σg + x̂·Σg·x̂)/M), inputs [x, stats, gamma, g, params]
   * with params from batchnorm_grad_params; otherwise gamma·invstd·g, inputs [x, stats, gamma, g].
   */
  | { kind: 'batchnorm_grad_input'; node: OpOrigin; inputs: [string, string, string, string] | [string, string, string, string, string]; output: string; eps: number; batchStats: boolean };

/** Ops whose epilogue can absorb a following activation. */
export function acceptsActivation(op: GraphOp): boolean {
  switch (op.kind) {
    case 'conv':
    case 'gemm':
      return op.attrs.activation.kind === 'none';
    case 'matmul':
    case 'binary':
    case 'affine':
    case 'batchnorm':
      return op.activation.kind === 'none';
    default:
      return false;
  }
}

export function withActivation(op: GraphOp, act: Activation, output: string): GraphOp {
  switch (op.kind) {
    case 'conv':
      return { ...op, attrs: { ...op.attrs, activation: act }, output };
    case 'gemm':
      return { ...op, attrs: { ...op.attrs, activation: act }, output };
    case 'matmul':
    case 'binary':
    case 'affine':
    case 'batchnorm':
      return { ...op, activation: act, output };
    default:
      throw new Error(`cannot fuse an activation into ${op.kind}`);
  }
}

/** A value recorded on a tape: the name of a tensor of its graph and its static shape. */
export interface Sym {
  readonly name: string;
  readonly shape: readonly number[];
}

/** A GraphOp as a tape records it: the tape names its output and keeps its origin. */
export type OpWithoutOutput = GraphOp extends infer T ? (T extends GraphOp ? Omit<T, 'output' | 'node'> : never) : never;

/**
 * What a vector-Jacobian product may record (the Tape implements it). Declared here, not
 * imported from tape.ts, so the op registry and the tape do not import each other.
 */
export interface TapeOps {
  readonly graph: OpGraph;
  sym(name: string): Sym;
  scalar(v: number): Sym;
  /** `shape`: the output shape the caller expects (checked against the op's rule), or null to let the rule compute it. */
  record(op: OpWithoutOutput, shape: readonly number[] | null, origin: OpOrigin, name?: string): Sym;
  add(a: Sym, b: Sym): Sym;
  sub(a: Sym, b: Sym): Sym;
  mul(a: Sym, b: Sym): Sym;
  div(a: Sym, b: Sym): Sym;
  reshape(x: Sym, shape: readonly number[]): Sym;
  broadcast(x: Sym, shape: readonly number[]): Sym;
  reduce(kind: ReduceKind, x: Sym, axes: readonly number[]): Sym;
  reduceTo(x: Sym, target: readonly number[]): Sym;
  gemm(a: Sym, b: Sym, c: Sym | null, attrs: Partial<GemmAttrs>): Sym;
  matmul(a: Sym, b: Sym, trans?: { transA?: boolean; transB?: boolean }): Sym;
}

/**
 * A graph of GPU-level ops with static shapes: what the ONNX analysis produces, what a tape
 * records, and what compilePlan turns into an execution plan.
 */
export interface OpGraph {
  ops: GraphOp[];
  shapes: Map<string, number[]>;
  /** Constants read by ops (weights, biases, folded parameters). */
  constants: Map<string, HostTensor>;
  inputs: string[];
  outputs: string[];
}

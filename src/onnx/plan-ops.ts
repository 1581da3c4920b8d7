import type { Activation } from '../ops/activation.js';
import type { Conv2dAttrs } from '../ops/conv.js';
import type { GemmAttrs } from '../ops/gemm.js';
import type { Pool2dAttrs } from '../ops/pool.js';
import type { BinaryOpKind } from '../shaders/elementwise.js';
import type { PadMode } from '../shaders/layout.js';
import type { IrNode } from './ir.js';

/**
 * The GPU-level op a node lowers to, after its attributes are parsed and its constant
 * inputs are read. Inputs and outputs are tensor names; fusion passes rewrite these.
 */
export type PlanOp =
  | { kind: 'conv'; node: IrNode; inputs: [string, string] | [string, string, string]; output: string; attrs: Conv2dAttrs }
  | { kind: 'gemm'; node: IrNode; inputs: [string, string] | [string, string, string]; output: string; attrs: GemmAttrs }
  | { kind: 'matmul'; node: IrNode; inputs: [string, string]; output: string; activation: Activation }
  | { kind: 'binary'; node: IrNode; op: BinaryOpKind; inputs: [string, string]; output: string; activation: Activation }
  | { kind: 'unary'; node: IrNode; inputs: [string]; output: string; activation: Activation }
  | { kind: 'affine'; node: IrNode; inputs: [string, string, string]; output: string; activation: Activation }
  | { kind: 'pool'; node: IrNode; pool: 'max' | 'avg'; inputs: [string]; output: string; attrs: Pool2dAttrs }
  | { kind: 'global_pool'; node: IrNode; pool: 'max' | 'avg'; inputs: [string]; output: string }
  | { kind: 'softmax'; node: IrNode; inputs: [string]; output: string; axis: number; coerce2d: boolean; log: boolean }
  | { kind: 'concat'; node: IrNode; inputs: string[]; output: string; axis: number }
  | { kind: 'pad'; node: IrNode; inputs: [string]; output: string; pads: number[]; mode: PadMode; value: number }
  /** Same elements, new shape (Reshape, Flatten, Squeeze, Unsqueeze, Identity): no kernel. */
  | { kind: 'alias'; node: IrNode; inputs: [string]; output: string };

/** Ops whose epilogue can absorb a following activation. */
export function acceptsActivation(op: PlanOp): boolean {
  switch (op.kind) {
    case 'conv':
    case 'gemm':
      return op.attrs.activation.kind === 'none';
    case 'matmul':
    case 'binary':
    case 'affine':
      return op.activation.kind === 'none';
    default:
      return false;
  }
}

export function withActivation(op: PlanOp, act: Activation, output: string): PlanOp {
  switch (op.kind) {
    case 'conv':
      return { ...op, attrs: { ...op.attrs, activation: act }, output };
    case 'gemm':
      return { ...op, attrs: { ...op.attrs, activation: act }, output };
    case 'matmul':
    case 'binary':
    case 'affine':
      return { ...op, activation: act, output };
    default:
      throw new Error(`cannot fuse an activation into ${op.kind}`);
  }
}

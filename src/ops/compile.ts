import { lowerOnehotArgmax } from './argmax.js';
import { lowerBatchNorm, lowerBatchNormGradInput, lowerBatchNormGradParams, lowerBatchNormStats } from './batchnorm.js';
import { lowerConv } from './conv.js';
import { lowerConvGradInput, lowerConvGradWeight } from './grad-conv.js';
import { lowerActivationGrad, lowerSoftmaxGrad } from './grad-elementwise.js';
import { lowerGlobalPoolGrad, lowerPoolGrad } from './grad-pool.js';
import { lowerBroadcast, lowerReduce, lowerReduceGrad } from './reduce.js';
import { lowerBilinear, lowerBilinearGrad } from './resample.js';
import { lowerBinary, lowerChannelAffine, lowerUnary } from './elementwise.js';
import { lowerGemm, lowerGemmSplitK, lowerMatMul } from './gemm.js';
import { lowerConcat, lowerPad, lowerPadGrad, lowerSlice, lowerSoftmax } from './layout.js';
import { lowerGlobalPool, lowerPool } from './pool.js';
import type { BoundTensor, LowerEnv } from './types.js';
import { sizeClass } from '../runtime/buffer-pool.js';
import type { GpuContext } from '../runtime/device.js';
import { LimitError } from '../runtime/errors.js';
import { ExecutionPlan, type PlanSlot } from '../runtime/plan.js';
import type { Dispatch } from '../runtime/recorder.js';
import { sizeOf } from '../runtime/shape.js';
import type { OpGraph } from './graph.js';
import type { GraphOp } from './graph.js';
import type { WeightStore } from '../runtime/weights.js';

/** Where a value's elements live during the pass. */
interface Storage {
  root: string;
  bytes: number;
  def: number;
  lastUse: number;
  buffer?: GPUBuffer;
}

function as4d(s: readonly number[]): number[] {
  return s.length === 3 ? [s[0], s[1], 1, s[2]] : [...s];
}

/** Largest per-binding tensor of an analysis, to choose how many images fit one pass. */
export function largestActivationBytes(a: OpGraph): number {
  let m = 0;
  for (const op of a.ops) m = Math.max(m, sizeOf(a.shapes.get(op.output) ?? []) * 4);
  for (const i of a.inputs) m = Math.max(m, sizeOf(a.shapes.get(i) ?? []) * 4);
  return m;
}

/**
 * Materializes an op graph on the GPU: storage for every value (aliases share their
 * source's buffer; buffers are reused once their last reader has run), constants from
 * the weight store, then every op lowered to prepared launches.
 */
export async function compilePlan(ctx: GpuContext, a: OpGraph, weights: WeightStore, keep: ReadonlySet<string>, bound: ReadonlyMap<string, GPUBuffer> = new Map()): Promise<ExecutionPlan> {
  const limit = ctx.activationBindingLimit;
  const storage = new Map<string, Storage>();
  const rootOf = (name: string) => storage.get(name)?.root ?? name;
  for (const i of a.inputs) storage.set(i, { root: i, bytes: sizeOf(a.shapes.get(i)!) * 4, def: -1, lastUse: -1 });
  a.ops.forEach((op, idx) => {
    for (const inp of op.inputs) {
      const s = storage.get(rootOf(inp));
      if (s) s.lastUse = Math.max(s.lastUse, idx);
    }
    if (op.kind === 'alias' && storage.has(rootOf(op.inputs[0]))) {
      const root = rootOf(op.inputs[0]);
      storage.set(op.output, storage.get(root)!);
      return;
    }
    if (op.kind === 'alias' && a.constants.has(op.inputs[0])) return;
    const bytes = sizeOf(a.shapes.get(op.output)!) * 4;
    storage.set(op.output, { root: op.output, bytes, def: idx, lastUse: idx });
  });
  for (const k of [...keep, ...a.outputs]) {
    const s = storage.get(k);
    if (s) s.lastUse = Infinity;
  }
  // Allocate: inputs first, then every op's output before freeing what it was the last to read.
  const owned: GPUBuffer[] = [];
  const free = new Map<number, GPUBuffer[]>();
  let arenaBytes = 0;
  const take = (bytes: number, label: string) => {
    if (bytes > limit) {
      throw new LimitError(`${label}: a ${bytes}-byte tensor exceeds the device's storage binding limit ${limit} (use a smaller batch)`);
    }
    const cls = sizeClass(bytes);
    const reuse = free.get(cls)?.pop();
    if (reuse) return reuse;
    const b = ctx.pool.acquire(bytes, undefined, label);
    owned.push(b);
    arenaBytes += cls;
    return b;
  };
  const release = (buffer: GPUBuffer, bytes: number) => {
    const cls = sizeClass(bytes);
    free.set(cls, [...(free.get(cls) ?? []), buffer]);
  };
  const roots = new Map<string, Storage>();
  for (const s of storage.values()) roots.set(s.root, s);
  // Bound inputs (a trainer's parameters) are read in place; the others get a buffer to be copied into.
  for (const i of a.inputs) roots.get(i)!.buffer = bound.get(i) ?? take(roots.get(i)!.bytes, `input '${i}'`);
  const byDef = new Map<number, Storage[]>();
  const byLastUse = new Map<number, Storage[]>();
  for (const s of roots.values()) {
    if (s.def >= 0) byDef.set(s.def, [...(byDef.get(s.def) ?? []), s]);
    if (Number.isFinite(s.lastUse) && s.lastUse >= 0) byLastUse.set(s.lastUse, [...(byLastUse.get(s.lastUse) ?? []), s]);
  }
  /** Buffers of constants, so derived buffers know whether they can be computed once. */
  const constantOf = new Map<GPUBuffer, string>();
  const bind = (name: string, op: GraphOp, shape?: number[]): BoundTensor => {
    const sh = shape ?? a.shapes.get(name)!;
    const s = storage.get(name);
    if (s?.buffer) return { shape: sh, binding: { buffer: s.buffer, offset: 0, size: Math.max(4, sizeOf(sh) * 4) } };
    const c = a.constants.get(name);
    if (!c) throw new Error(`internal: no storage for '${name}' at node '${op.node.name}'`);
    const w = weights.whole(name, c, `node '${op.node.name}' (${op.node.opType})`);
    constantOf.set(w.buffer, name);
    return { shape: sh, binding: { buffer: w.buffer, offset: 0, size: w.bytes } };
  };
  const dispatches: Dispatch[] = [];
  for (const [idx, op] of a.ops.entries()) {
    for (const st of byDef.get(idx) ?? []) st.buffer = take(st.bytes, `node '${op.node.name}'`);
    const transient: [GPUBuffer, number][] = [];
    const env: LowerEnv = {
      ctx,
      label: op.node.name,
      scratch: (bytes, shape) => {
        const buffer = take(bytes, `node '${op.node.name}' (scratch)`);
        transient.push([buffer, bytes]);
        return { shape, binding: { buffer, offset: 0, size: Math.max(4, bytes) } };
      },
      derive: (key, source, bytes, shape, make) => {
        const constName = constantOf.get(source.binding.buffer);
        if (constName !== undefined) {
          const derivedName = `${constName}|${key}`;
          const buffer = weights.derived(derivedName, bytes, (dst) => make({ shape, binding: { buffer: dst, offset: 0, size: Math.max(4, bytes) } }));
          // Derived from a constant is constant: what is derived from it in turn is computed once too.
          constantOf.set(buffer, derivedName);
          return { shape, binding: { buffer, offset: 0, size: Math.max(4, bytes) } };
        }
        const dst = env.scratch(bytes, shape);
        dispatches.push(...make(dst));
        return dst;
      },
    };
    const y = () => bind(op.output, op);
    const bind4d = (name: string, o: GraphOp) => bind(name, o, as4d(a.shapes.get(name)!));
    switch (op.kind) {
      case 'alias':
        break;
      case 'conv': {
        const x = bind(op.inputs[0], op, as4d(a.shapes.get(op.inputs[0])!));
        const w = bind(op.inputs[1], op, as4d(a.shapes.get(op.inputs[1])!));
        const b = op.inputs[2] ? bind(op.inputs[2], op) : null;
        dispatches.push(...lowerConv(env, x, w, b, bind(op.output, op, as4d(a.shapes.get(op.output)!)), op.attrs));
        break;
      }
      case 'gemm': {
        const bName = op.inputs[1];
        const c = op.inputs[2] ? bind(op.inputs[2], op) : null;
        const A = bind(op.inputs[0], op);
        const Y = y();
        const bConst = a.constants.get(bName);
        if (bConst && op.attrs.transB && sizeOf(bConst.dims) * 4 > limit) {
          // Rows of Bᵀ are columns of the output: each binding-sized chunk writes its own columns.
          for (const chunk of weights.chunked(bName, bConst, `node '${op.node.name}' (Gemm)`)) {
            const Bc: BoundTensor = { shape: [chunk.rows, bConst.dims[1]], binding: { buffer: chunk.buffer, offset: 0, size: chunk.bytes } };
            dispatches.push(...lowerGemm(env, A, Bc, c, Y, op.attrs, { nOffset: chunk.rowOffset, nCount: chunk.rows }));
          }
        } else if (bConst && sizeOf(bConst.dims) * 4 > limit) {
          // Rows of B are a slice of the reduction: partial products, then their sum.
          const chunks = weights.chunked(bName, bConst, `node '${op.node.name}' (Gemm)`).map((ch) => ({
            b: { shape: [ch.rows, bConst.dims[1]], binding: { buffer: ch.buffer, offset: 0, size: ch.bytes } },
            kOffset: ch.rowOffset,
            kCount: ch.rows,
          }));
          dispatches.push(...lowerGemmSplitK(env, A, chunks, c, Y, op.attrs));
        } else {
          dispatches.push(...lowerGemm(env, A, bind(bName, op), c, Y, op.attrs));
        }
        break;
      }
      case 'matmul':
        dispatches.push(...lowerMatMul(env, bind(op.inputs[0], op), bind(op.inputs[1], op), y(), op.activation, { transA: op.transA, transB: op.transB }));
        break;
      case 'binary':
        dispatches.push(...lowerBinary(env, op.op, bind(op.inputs[0], op), bind(op.inputs[1], op), y(), op.activation));
        break;
      case 'unary':
        dispatches.push(...lowerUnary(env, bind(op.inputs[0], op), y(), op.activation));
        break;
      case 'affine':
        dispatches.push(...lowerChannelAffine(env, bind(op.inputs[0], op), bind(op.inputs[1], op), bind(op.inputs[2], op), y(), op.activation));
        break;
      case 'pool':
        dispatches.push(...lowerPool(env, op.pool, bind(op.inputs[0], op, as4d(a.shapes.get(op.inputs[0])!)), bind(op.output, op, as4d(a.shapes.get(op.output)!)), op.attrs));
        break;
      case 'global_pool':
        dispatches.push(...lowerGlobalPool(env, op.pool, bind(op.inputs[0], op), y()));
        break;
      case 'softmax':
        dispatches.push(...lowerSoftmax(env, bind(op.inputs[0], op), y(), op.axis, op.coerce2d, op.log));
        break;
      case 'concat':
        dispatches.push(...lowerConcat(env, op.inputs.map((i) => bind(i, op)), y(), op.axis));
        break;
      case 'pad':
        dispatches.push(...lowerPad(env, bind(op.inputs[0], op), y(), op.pads, op.mode, op.value));
        break;
      case 'reduce':
        dispatches.push(...lowerReduce(env, op.reduce, bind(op.inputs[0], op), y(), op.axes));
        break;
      case 'broadcast':
        dispatches.push(...lowerBroadcast(env, bind(op.inputs[0], op), y()));
        break;
      case 'resize':
        dispatches.push(...lowerBilinear(env, bind(op.inputs[0], op), y(), a.shapes.get(op.output)!, op.options));
        break;
      case 'onehot_argmax':
        dispatches.push(...lowerOnehotArgmax(env, bind(op.inputs[0], op), y()));
        break;
      case 'conv_grad_input':
        dispatches.push(...lowerConvGradInput(env, bind4d(op.inputs[0], op), bind4d(op.inputs[1], op), bind4d(op.output, op), op.attrs));
        break;
      case 'conv_grad_weight':
        dispatches.push(...lowerConvGradWeight(env, bind4d(op.inputs[0], op), bind4d(op.inputs[1], op), bind4d(op.output, op), op.attrs));
        break;
      case 'pool_grad':
        dispatches.push(...lowerPoolGrad(env, op.pool, bind4d(op.inputs[0], op), bind4d(op.inputs[1], op), bind4d(op.output, op), op.attrs));
        break;
      case 'global_pool_grad':
        dispatches.push(...lowerGlobalPoolGrad(env, op.pool, bind(op.inputs[0], op), bind(op.inputs[1], op), y()));
        break;
      case 'reduce_grad':
        dispatches.push(...lowerReduceGrad(env, op.reduce, bind(op.inputs[0], op), bind(op.inputs[1], op), bind(op.inputs[2], op), y(), op.axes));
        break;
      case 'activation_grad':
        dispatches.push(...lowerActivationGrad(env, op.activation, bind(op.inputs[0], op), bind(op.inputs[1], op), y()));
        break;
      case 'softmax_grad':
        dispatches.push(...lowerSoftmaxGrad(env, bind(op.inputs[0], op), bind(op.inputs[1], op), y(), op.axis, op.coerce2d, op.log));
        break;
      case 'resize_grad':
        dispatches.push(...lowerBilinearGrad(env, bind(op.inputs[0], op), y(), op.options));
        break;
      case 'slice':
        dispatches.push(...lowerSlice(env, bind(op.inputs[0], op), y(), op.axis, op.start));
        break;
      case 'pad_grad':
        dispatches.push(...lowerPadGrad(env, bind(op.inputs[0], op), y(), op.pads, op.mode));
        break;
      case 'batchnorm_stats':
        dispatches.push(...lowerBatchNormStats(env, bind(op.inputs[0], op), y()));
        break;
      case 'batchnorm':
        dispatches.push(...lowerBatchNorm(env, bind(op.inputs[0], op), bind(op.inputs[1], op), bind(op.inputs[2], op), bind(op.inputs[3], op), y(), op.eps, op.activation));
        break;
      case 'batchnorm_grad_params':
        dispatches.push(...lowerBatchNormGradParams(env, bind(op.inputs[0], op), bind(op.inputs[1], op), bind(op.inputs[2], op), y(), op.eps));
        break;
      case 'batchnorm_grad_input': {
        const sums = op.inputs[4] !== undefined ? bind(op.inputs[4], op) : null;
        dispatches.push(...lowerBatchNormGradInput(env, bind(op.inputs[0], op), bind(op.inputs[1], op), bind(op.inputs[2], op), bind(op.inputs[3], op), sums, y(), op.eps));
        break;
      }
      default: {
        const never: never = op;
        throw new Error(`internal: no lowering for ${(never as GraphOp).kind}`);
      }
    }
    for (const [buffer, bytes] of transient) release(buffer, bytes);
    for (const st of byLastUse.get(idx) ?? []) {
      if (st.def >= 0 && st.buffer) release(st.buffer, st.bytes); // graph inputs keep their own buffer
    }
  }
  const slot = (name: string): PlanSlot => {
    const shape = a.shapes.get(name)!;
    const s = storage.get(name);
    if (s?.buffer) return { shape, buffer: s.buffer, bytes: sizeOf(shape) * 4 };
    const c = a.constants.get(name);
    if (!c) throw new Error(`internal: result '${name}' has no storage`);
    const w = weights.whole(name, c, `result '${name}'`);
    return { shape, buffer: w.buffer, bytes: sizeOf(shape) * 4 };
  };
  const inputs = new Map(a.inputs.filter((i) => !bound.has(i)).map((i) => [i, slot(i)]));
  const results = new Map([...new Set([...a.outputs, ...keep])].map((r) => [r, slot(r)]));
  return ExecutionPlan.build(ctx, dispatches.filter((d) => d.workgroups.every((w) => w > 0)), inputs, results, owned, arenaBytes);
}

import { type LowerContext, type OpKind, opDef } from './registry.js';
import type { BoundTensor, LowerEnv } from './types.js';
import { sizeClass } from '../runtime/buffer-pool.js';
import type { GpuContext } from '../runtime/device.js';
import { LimitError, typedError } from '../runtime/errors.js';
import { ExecutionPlan, type PlanSlot } from '../runtime/plan.js';
import type { Dispatch } from '../runtime/recorder.js';
import { as4d, sizeOf } from '../runtime/shape.js';
import type { GraphOp, OpGraph } from './graph.js';
import type { WeightStore } from '../runtime/weights.js';

/** Where a value's elements live during the pass. */
interface Storage {
  root: string;
  bytes: number;
  def: number;
  lastUse: number;
  buffer?: GPUBuffer;
}


/** Lowers one op by its kind's definition. */
function lowerOp(c: LowerContext<OpKind>): Dispatch[] {
  const lower = opDef(c.op).lower as (ctx: LowerContext<OpKind>) => Dispatch[];
  return lower(c);
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
 * the weight store, then every op lowered to prepared launches. When it throws, every pool
 * buffer it took is back in the pool, and the error is a CamgpuError (InternalError for a bug).
 */
export async function compilePlan(ctx: GpuContext, a: OpGraph, weights: WeightStore, keep: ReadonlySet<string>, bound: ReadonlyMap<string, GPUBuffer> = new Map()): Promise<ExecutionPlan> {
  const owned: GPUBuffer[] = [];
  try {
    return await buildPlan(ctx, a, weights, keep, bound, owned);
  } catch (e) {
    for (const b of owned.splice(0)) ctx.pool.release(b);
    throw typedError(e, 'plan compilation');
  }
}

async function buildPlan(ctx: GpuContext, a: OpGraph, weights: WeightStore, keep: ReadonlySet<string>, bound: ReadonlyMap<string, GPUBuffer>, owned: GPUBuffer[]): Promise<ExecutionPlan> {
  const limit = ctx.activationBindingLimit;
  const storage = new Map<string, Storage>();
  const rootOf = (name: string) => storage.get(name)?.root ?? name;
  for (const i of a.inputs) storage.set(i, { root: i, bytes: sizeOf(a.shapes.get(i)!) * 4, def: -1, lastUse: -1 });
  a.ops.forEach((op, idx) => {
    for (const inp of op.inputs) {
      const s = storage.get(rootOf(inp));
      if (s) s.lastUse = Math.max(s.lastUse, idx);
    }
    const view = opDef(op).view === true;
    if (view && storage.has(rootOf(op.inputs[0]))) {
      const root = rootOf(op.inputs[0]);
      storage.set(op.output, storage.get(root)!);
      return;
    }
    if (view && a.constants.has(op.inputs[0])) return;
    const bytes = sizeOf(a.shapes.get(op.output)!) * 4;
    storage.set(op.output, { root: op.output, bytes, def: idx, lastUse: idx });
  });
  for (const k of [...keep, ...a.outputs]) {
    const s = storage.get(k);
    if (s) s.lastUse = Infinity;
  }
  // Allocate: inputs first, then every op's output before freeing what it was the last to read.
  const free = new Map<number, GPUBuffer[]>();
  let arenaBytes = 0;
  const take = (bytes: number, label: string) => {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`${label}: tensor byte size ${bytes} is not a size (a shape rule let a bad shape through)`);
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
    let list = free.get(cls);
    if (!list) free.set(cls, (list = []));
    list.push(buffer);
  };
  const roots = new Map<string, Storage>();
  for (const s of storage.values()) roots.set(s.root, s);
  // Bound inputs (a trainer's parameters) are read in place; the others get a buffer to be copied into.
  for (const i of a.inputs) roots.get(i)!.buffer = bound.get(i) ?? take(roots.get(i)!.bytes, `input '${i}'`);
  const byDef = new Map<number, Storage[]>();
  const byLastUse = new Map<number, Storage[]>();
  for (const s of roots.values()) {
    const add = (m: Map<number, Storage[]>, k: number) => {
      const list = m.get(k);
      if (list) list.push(s);
      else m.set(k, [s]);
    };
    if (s.def >= 0) add(byDef, s.def);
    if (Number.isFinite(s.lastUse) && s.lastUse >= 0) add(byLastUse, s.lastUse);
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
    const shapeOf = (k: number) => a.shapes.get(op.inputs[k])!;
    const outShape = a.shapes.get(op.output)!;
    const context: LowerContext<OpKind> = {
      op,
      env,
      shapeOf,
      outShape,
      input: (k, shape) => bind(op.inputs[k], op, shape ? [...shape] : undefined),
      input4d: (k) => bind(op.inputs[k], op, as4d(shapeOf(k))),
      output: (shape) => bind(op.output, op, shape ? [...shape] : undefined),
      output4d: () => bind(op.output, op, as4d(outShape)),
      oversizedConstant: (k) => {
        const name = op.inputs[k];
        const value = a.constants.get(name);
        if (!value || sizeOf(value.dims) * 4 <= limit) return null;
        return { value, chunks: weights.chunked(name, value, `node '${op.node.name}' (${op.node.opType})`) };
      },
    };
    dispatches.push(...lowerOp(context));
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

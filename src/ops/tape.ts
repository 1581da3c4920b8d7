import { InputError, ShapeError } from '../runtime/errors.js';
import { type HostTensor, hostTensor } from '../runtime/host-tensor.js';
import { formatShape, normalizeAxis, sizeOf } from '../runtime/shape.js';
import type { BinaryOpKind } from '../shaders/elementwise.js';
import { type Activation, NO_ACTIVATION } from './activation.js';
import type { GemmAttrs } from './gemm.js';
import type { GraphOp, OpGraph, OpOrigin, OpWithoutOutput, Sym, TapeOps } from './graph.js';
import type { RandomAttrs } from './random.js';
import type { RiseAttrs } from './rise.js';
import type { SortAttrs } from './sort.js';
import type { RankedBlendAttrs } from './blend.js';
import type { ImputeAttrs } from './impute.js';
import type { ReduceKind } from './reduce.js';
import { inferShape } from './registry.js';
import type { BilinearOptions } from './resample.js';

export type { Sym } from './graph.js';

/**
 * Records GPU-level ops on symbolic values, with static shapes, into an OpGraph. Model
 * graphs are appended whole (include); CAM math and objectives are recorded op by op with
 * the same op kinds; autodiff appends the backward ops to the same tape; compilePlan turns
 * the result into one execution plan.
 */
export class Tape implements TapeOps {
  readonly graph: OpGraph = { ops: [], shapes: new Map(), constants: new Map(), inputs: [], outputs: [] };
  private counter = 0;
  private prefix = '';

  /** A tensor name not used yet on this tape. */
  fresh(prefix: string): string {
    let name: string;
    do name = `${prefix}#${this.counter++}`;
    while (this.graph.shapes.has(name));
    return name;
  }

  sym(name: string): Sym {
    const shape = this.graph.shapes.get(name);
    if (!shape) throw new InputError(`tape has no tensor '${name}'`);
    return { name, shape };
  }

  input(name: string, shape: readonly number[]): Sym {
    if (this.graph.shapes.has(name)) throw new InputError(`tape already has a tensor '${name}'`);
    this.graph.inputs.push(name);
    this.graph.shapes.set(name, [...shape]);
    return { name, shape };
  }

  constant(t: HostTensor, name?: string): Sym {
    const n = name ?? this.fresh('const');
    this.graph.constants.set(n, t);
    this.graph.shapes.set(n, [...t.dims]);
    return { name: n, shape: t.dims };
  }

  scalar(v: number): Sym {
    return this.constant(hostTensor('float32', [], [v]));
  }

  /**
   * Appends an op, named `name` or freshly. Its output shape comes from the op's own rule
   * (src/ops/registry.ts); `shape` is what the caller expects, checked against the rule,
   * and required for kinds whose inputs leave it open (views, broadcasts, resizes, slices).
   */
  record(op: OpWithoutOutput, shape: readonly number[] | null, origin: OpOrigin, name?: string): Sym {
    if (name !== undefined && this.graph.shapes.has(name)) throw new InputError(`tape already has a tensor '${name}'`);
    const node = this.prefix ? { ...origin, name: `${this.prefix}${origin.name}` } : origin;
    const output = name ?? this.fresh(node.name);
    const full = { ...op, output, node } as GraphOp;
    const inputShapes = full.inputs.map((i) => {
      const s = this.graph.shapes.get(i);
      if (!s) throw new InputError(`${origin.name}: reads '${i}', which is not a tensor of the tape`);
      return s;
    });
    const out = inferShape(full, inputShapes, shape);
    this.graph.ops.push(full);
    this.graph.shapes.set(output, out);
    return { name: output, shape: out };
  }

  /**
   * Appends every op of another graph (a model's), renaming its tensors under `prefix` and
   * binding its inputs to `inputs`; constants are shared by name. Returns the new names.
   */
  include(g: OpGraph, inputs: ReadonlyMap<string, Sym>, prefix: string): Map<string, Sym> {
    const rename = new Map<string, string>();
    for (const i of g.inputs) {
      const bound = inputs.get(i);
      if (!bound) throw new InputError(`no value for the included graph's input '${i}'`);
      const want = g.shapes.get(i)!;
      if (formatShape(want) !== formatShape(bound.shape)) throw new ShapeError(`input '${i}'`, `expects ${formatShape(want)}, got ${formatShape(bound.shape)}`);
      rename.set(i, bound.name);
    }
    for (const [name, t] of g.constants) {
      if (!this.graph.constants.has(name)) this.constant(t, name);
      rename.set(name, name);
    }
    const map = (n: string) => {
      const r = rename.get(n);
      if (r === undefined) throw new InputError(`included graph reads '${n}' before it is computed`);
      return r;
    };
    for (const op of g.ops) {
      const out = `${prefix}${op.output}`;
      if (this.graph.shapes.has(out)) throw new InputError(`tape already has a tensor '${out}'`);
      this.graph.ops.push({ ...op, inputs: op.inputs.map(map), output: out } as GraphOp);
      this.graph.shapes.set(out, [...g.shapes.get(op.output)!]);
      rename.set(op.output, out);
    }
    const result = new Map<string, Sym>();
    for (const [from, to] of rename) result.set(from, { name: to, shape: this.graph.shapes.get(to)! });
    return result;
  }

  // Op helpers (shape rules come from the ops' own modules).

  binary(op: BinaryOpKind, a: Sym, b: Sym, activation: Activation = NO_ACTIVATION, origin?: OpOrigin): Sym {
    const o = origin ?? { name: op, opType: op };
    return this.record({ kind: 'binary', op, inputs: [a.name, b.name], activation }, null, o);
  }

  add(a: Sym, b: Sym): Sym {
    return this.binary('add', a, b);
  }

  sub(a: Sym, b: Sym): Sym {
    return this.binary('sub', a, b);
  }

  mul(a: Sym, b: Sym): Sym {
    return this.binary('mul', a, b);
  }

  div(a: Sym, b: Sym): Sym {
    return this.binary('div', a, b);
  }

  activation(x: Sym, activation: Activation): Sym {
    return this.record({ kind: 'unary', inputs: [x.name], activation }, null, { name: activation.kind, opType: activation.kind });
  }

  reshape(x: Sym, shape: readonly number[]): Sym {
    if (sizeOf(shape) !== sizeOf(x.shape)) throw new ShapeError('reshape', `cannot reshape ${formatShape(x.shape)} to ${formatShape(shape)}`);
    const c = this.graph.constants.get(x.name);
    // Reshaping a constant needs no op: a new constant view of the same values.
    if (c) return this.constant({ ...c, dims: [...shape] });
    return this.record({ kind: 'alias', inputs: [x.name] }, shape, { name: 'reshape', opType: 'Reshape' });
  }

  matmul(a: Sym, b: Sym, trans: { transA?: boolean; transB?: boolean } = {}): Sym {
    return this.record({ kind: 'matmul', inputs: [a.name, b.name], activation: NO_ACTIVATION, ...trans }, null, { name: 'matmul', opType: 'MatMul' });
  }

  gemm(a: Sym, b: Sym, c: Sym | null, attrs: Partial<GemmAttrs>): Sym {
    const full: GemmAttrs = { transA: false, transB: false, alpha: 1, beta: 1, activation: NO_ACTIVATION, ...attrs };
    const inputs: [string, string] | [string, string, string] = c ? [a.name, b.name, c.name] : [a.name, b.name];
    return this.record({ kind: 'gemm', inputs, attrs: full }, null, { name: 'gemm', opType: 'Gemm' });
  }

  reduce(kind: ReduceKind, x: Sym, axes: readonly number[]): Sym {
    const norm = axes.map((a) => normalizeAxis(a, x.shape.length));
    if (norm.some((a) => a < 0 || a >= x.shape.length)) throw new ShapeError('reduce', `axes [${axes}] out of range for ${formatShape(x.shape)}`);
    return this.record({ kind: 'reduce', reduce: kind, inputs: [x.name], axes: norm }, null, { name: `reduce_${kind}`, opType: `Reduce${kind[0].toUpperCase()}${kind.slice(1)}` });
  }

  broadcast(x: Sym, shape: readonly number[]): Sym {
    return this.record({ kind: 'broadcast', inputs: [x.name] }, shape, { name: 'broadcast', opType: 'Expand' });
  }

  softmax(x: Sym, axis: number, log = false): Sym {
    return this.record({ kind: 'softmax', inputs: [x.name], axis, coerce2d: false, log }, null, { name: log ? 'log_softmax' : 'softmax', opType: log ? 'LogSoftmax' : 'Softmax' });
  }

  resize(x: Sym, size: [number, number], options: Omit<BilinearOptions, 'outOffset'>): Sym {
    const shape = [...x.shape.slice(0, -2), ...size];
    return this.record({ kind: 'resize', inputs: [x.name], options }, shape, { name: 'resize', opType: 'Resize' });
  }

  /** cond ≠ 0 ? a : b elementwise; a and b are broadcast to cond's shape. */
  where(cond: Sym, a: Sym, b: Sym): Sym {
    const fit = (v: Sym) => (formatShape(v.shape) === formatShape(cond.shape) ? v : this.broadcast(v, cond.shape));
    return this.record({ kind: 'where', inputs: [cond.name, fit(a).name, fit(b).name] }, null, { name: 'where', opType: 'Where' });
  }

  /** Seeded counter-based random values of `shape` ([N, …]); `rows` [N] holds each row's image index. */
  random(rows: Sym, shape: readonly number[], attrs: RandomAttrs, perRow?: { streams: Sym; blocks: Sym }): Sym {
    const inputs: [string] | [string, string, string] = perRow ? [rows.name, perRow.streams.name, perRow.blocks.name] : [rows.name];
    return this.record({ kind: 'random', inputs, attrs }, shape, { name: `random_${attrs.dist}`, opType: 'Random' });
  }

  /**
   * Records what `body` records under `name/`: its ops' names (and so their launches' labels
   * in profiles) say which method or stage they belong to.
   */
  scope<T>(name: string, body: () => T): T {
    const before = this.prefix;
    this.prefix = `${before}${name}/`;
    try {
      return body();
    } finally {
      this.prefix = before;
    }
  }

  /** Rows of x [R0, …] at the row numbers idx [N] (f32): [N, …]. */
  gatherRows(x: Sym, idx: Sym): Sym {
    return this.record({ kind: 'gather_rows', inputs: [x.name, idx.name] }, null, { name: 'gather_rows', opType: 'Gather' });
  }

  /** RISE's seeded random masks [N, h, w] for the mask ids [N] (f32). */
  riseMasks(ids: Sym, attrs: RiseAttrs): Sym {
    return this.record({ kind: 'rise_masks', inputs: [ids.name], attrs }, null, { name: 'rise_masks', opType: 'RiseMasks' });
  }

  /** Each row of the last axis sorted, stably (ties keep their order): the values, or where each came from. */
  /** Insertion/deletion step images [nb, C, H, W] (src/ops/blend.ts): info [nb, 5] = (item, image, substrate, count, insertion) per row. */
  rankedBlend(x: Sym, sub: Sym, ranks: Sym, info: Sym, attrs: RankedBlendAttrs): Sym {
    return this.record({ kind: 'ranked_blend', inputs: [x.name, sub.name, ranks.name, info.name], attrs }, null, { name: 'ranked_blend', opType: 'RankedBlend' });
  }

  sort(x: Sym, attrs: SortAttrs): Sym {
    return this.record({ kind: 'sort', inputs: [x.name], attrs }, null, { name: `sort_${attrs.output}`, opType: 'Sort' });
  }

  /** x [N, C, H, W] with every pixel where keep ([N, 1, H, W] or [N, H, W]) is ≤ 0.5 filled by noisy linear imputation's linear part (no noise). */
  impute(x: Sym, keep: Sym, attrs: ImputeAttrs): Sym {
    return this.record({ kind: 'impute', inputs: [x.name, keep.name], attrs }, null, { name: 'impute', opType: 'Impute' });
  }

  /** ‖b − A·u‖ / ‖b‖ per image [N] of an imputed image and its keep mask. */
  imputeResidual(filled: Sym, keep: Sym): Sym {
    return this.record({ kind: 'impute_residual', inputs: [filled.name, keep.name] }, null, { name: 'impute_residual', opType: 'ImputeResidual' });
  }

  onehotArgmax(x: Sym): Sym {
    return this.record({ kind: 'onehot_argmax', inputs: [x.name] }, null, { name: 'onehot_argmax', opType: 'ArgMax' });
  }

  /** Sums `x` over the axes along which it was broadcast to reach its shape from `target`. */
  reduceTo(x: Sym, target: readonly number[]): Sym {
    if (formatShape(x.shape) === formatShape(target)) return x;
    const lead = x.shape.length - target.length;
    const axes: number[] = [];
    x.shape.forEach((d, i) => {
      const t = i < lead ? 1 : target[i - lead];
      if (i < lead || (t === 1 && d !== 1)) axes.push(i);
    });
    const r = axes.length ? this.reduce('sum', x, axes) : x;
    return this.reshape(r, target);
  }
}

import { InputError, ShapeError } from '../runtime/errors.js';
import { type HostTensor, hostTensor } from '../runtime/host-tensor.js';
import { formatShape, normalizeAxis, sizeOf } from '../runtime/shape.js';
import type { BinaryOpKind } from '../shaders/elementwise.js';
import { type Activation, NO_ACTIVATION } from './activation.js';
import { binaryOutputShape } from './elementwise.js';
import { type GemmAttrs, gemmOutputShape, matmulOutputShape } from './gemm.js';
import type { GraphOp, OpGraph, OpOrigin } from './graph.js';
import type { ReduceKind } from './reduce.js';
import type { BilinearOptions } from './resample.js';

/** A value recorded on a tape: the name of a tensor of its graph and its static shape. */
export interface Sym {
  readonly name: string;
  readonly shape: readonly number[];
}

type OpWithoutOutput = GraphOp extends infer T ? (T extends GraphOp ? Omit<T, 'output' | 'node'> : never) : never;

/**
 * Records GPU-level ops on symbolic values, with static shapes, into an OpGraph. Model
 * graphs are appended whole (include); CAM math and objectives are recorded op by op with
 * the same op kinds; autodiff appends the backward ops to the same tape; compilePlan turns
 * the result into one execution plan.
 */
export class Tape {
  readonly graph: OpGraph = { ops: [], shapes: new Map(), constants: new Map(), inputs: [], outputs: [] };
  private counter = 0;

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

  /** Appends an op computing a new tensor of the given shape (named `name`, or a fresh name). */
  record(op: OpWithoutOutput, shape: readonly number[], origin: OpOrigin, name?: string): Sym {
    if (name !== undefined && this.graph.shapes.has(name)) throw new InputError(`tape already has a tensor '${name}'`);
    const output = name ?? this.fresh(origin.name);
    this.graph.ops.push({ ...op, output, node: origin } as GraphOp);
    this.graph.shapes.set(output, [...shape]);
    return { name: output, shape };
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
    return this.record({ kind: 'binary', op, inputs: [a.name, b.name], activation }, binaryOutputShape(o.name, a.shape, b.shape), o);
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
    return this.record({ kind: 'unary', inputs: [x.name], activation }, x.shape, { name: activation.kind, opType: activation.kind });
  }

  reshape(x: Sym, shape: readonly number[]): Sym {
    if (sizeOf(shape) !== sizeOf(x.shape)) throw new ShapeError('reshape', `cannot reshape ${formatShape(x.shape)} to ${formatShape(shape)}`);
    const c = this.graph.constants.get(x.name);
    // Reshaping a constant needs no op: a new constant view of the same values.
    if (c) return this.constant({ ...c, dims: [...shape] });
    return this.record({ kind: 'alias', inputs: [x.name] }, shape, { name: 'reshape', opType: 'Reshape' });
  }

  matmul(a: Sym, b: Sym, trans: { transA?: boolean; transB?: boolean } = {}): Sym {
    const t = (s: readonly number[], on?: boolean) => (on && s.length >= 2 ? [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]] : s);
    const shape = matmulOutputShape('matmul', t(a.shape, trans.transA), t(b.shape, trans.transB));
    return this.record({ kind: 'matmul', inputs: [a.name, b.name], activation: NO_ACTIVATION, ...trans }, shape, { name: 'matmul', opType: 'MatMul' });
  }

  gemm(a: Sym, b: Sym, c: Sym | null, attrs: Partial<GemmAttrs>): Sym {
    const full: GemmAttrs = { transA: false, transB: false, alpha: 1, beta: 1, activation: NO_ACTIVATION, ...attrs };
    const shape = gemmOutputShape('gemm', a.shape, b.shape, c?.shape ?? null, full);
    const inputs: [string, string] | [string, string, string] = c ? [a.name, b.name, c.name] : [a.name, b.name];
    return this.record({ kind: 'gemm', inputs, attrs: full }, shape, { name: 'gemm', opType: 'Gemm' });
  }

  reduce(kind: ReduceKind, x: Sym, axes: readonly number[]): Sym {
    const norm = axes.map((a) => normalizeAxis(a, x.shape.length));
    if (norm.some((a) => a < 0 || a >= x.shape.length)) throw new ShapeError('reduce', `axes [${axes}] out of range for ${formatShape(x.shape)}`);
    const shape = x.shape.map((d, i) => (norm.includes(i) ? 1 : d));
    return this.record({ kind: 'reduce', reduce: kind, inputs: [x.name], axes: norm }, shape, { name: `reduce_${kind}`, opType: `Reduce${kind[0].toUpperCase()}${kind.slice(1)}` });
  }

  broadcast(x: Sym, shape: readonly number[]): Sym {
    binaryOutputShape('broadcast', x.shape, shape);
    return this.record({ kind: 'broadcast', inputs: [x.name] }, shape, { name: 'broadcast', opType: 'Expand' });
  }

  softmax(x: Sym, axis: number, log = false): Sym {
    return this.record({ kind: 'softmax', inputs: [x.name], axis, coerce2d: false, log }, x.shape, { name: log ? 'log_softmax' : 'softmax', opType: log ? 'LogSoftmax' : 'Softmax' });
  }

  resize(x: Sym, size: [number, number], options: Omit<BilinearOptions, 'outOffset'>): Sym {
    const shape = [...x.shape.slice(0, -2), ...size];
    return this.record({ kind: 'resize', inputs: [x.name], options }, shape, { name: 'resize', opType: 'Resize' });
  }

  onehotArgmax(x: Sym): Sym {
    if (x.shape.length !== 2) throw new ShapeError('onehot_argmax', `needs [N, C], got ${formatShape(x.shape)}`);
    return this.record({ kind: 'onehot_argmax', inputs: [x.name] }, x.shape, { name: 'onehot_argmax', opType: 'ArgMax' });
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

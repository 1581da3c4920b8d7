import { type Activation, POINTWISE } from '../ops/activation.js';
import type { GraphOp, OpGraph } from '../ops/graph.js';
import type { OpKind, OpOf } from '../ops/registry.js';
import { InputError, UnsupportedOpError } from '../runtime/errors.js';
import { type HostTensor, toFloat32 } from '../runtime/host-tensor.js';
import { normalizeAxis, sizeOf } from '../runtime/shape.js';
import { MAX_OPSET } from './import.js';
import { type AttributeProto, type NodeProto, onnx, type TensorProto, type ValueInfoProto } from './proto.js';

export interface ExportInput {
  name: string;
  /** Axis 0 becomes the symbolic dim 'N' (default true), so the file runs at any batch size. */
  batchAxis?: boolean;
}

export interface ExportOptions {
  /** Graph inputs in the order the file declares them. */
  inputs: readonly ExportInput[];
  /** Tensors the file returns; ops that none of them needs are left out. */
  outputs: readonly string[];
  /** Default-domain opset, 13 (Softmax on one axis, Clip/Pad bounds as inputs) through 21. Default 17. */
  opset?: number;
  producer?: string;
  graphName?: string;
  docString?: string;
}

export const EXPORT_MIN_OPSET = 13;
export const EXPORT_DEFAULT_OPSET = 17;

/** Writes one op's ONNX nodes into the writer and returns its output's batch factor. */
type OnnxForm<K extends OpKind> = (w: GraphWriter, op: OpOf<K>, inShape: number[], outShape: number[], factor: number | undefined) => number | undefined;

const BATCH_DIM = 'N';
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const AT = onnx.AttributeProto.AttributeType;
const utf8 = new TextEncoder();

const attr = {
  int: (name: string, i: number): AttributeProto => ({ name, type: AT.INT, i }),
  ints: (name: string, ints: number[]): AttributeProto => ({ name, type: AT.INTS, ints }),
  float: (name: string, f: number): AttributeProto => ({ name, type: AT.FLOAT, f }),
  string: (name: string, s: string): AttributeProto => ({ name, type: AT.STRING, s: utf8.encode(s) }),
};

/** An activation's ONNX op type, which also names its node (by the kind where ONNX has no op). */
const activationOpName = (kind: Activation['kind']): string => POINTWISE[kind].onnxOp ?? kind;
const BINARY_OP = { add: 'Add', sub: 'Sub', mul: 'Mul', div: 'Div' } as const;

/** The IR version that goes with an opset (onnx/helper.py's VERSION_TABLE). */
function irVersionFor(opset: number): number {
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  return 10;
}

function floatBytes(data: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(data.length * 4);
  const v = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) v.setFloat32(i * 4, data[i], true);
  return out;
}

function int64Bytes(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const v = new DataView(out.buffer);
  values.forEach((x, i) => v.setBigInt64(i * 8, BigInt(x), true));
  return out;
}

/** The last two axes of a stack of matrices swapped. */
function transposeLast2(t: HostTensor): { dims: number[]; data: Float32Array } {
  const r = t.dims.length;
  const [m, n] = [t.dims[r - 2], t.dims[r - 1]];
  const src = toFloat32(t);
  const data = new Float32Array(src.length);
  for (let b = 0; b < src.length / Math.max(m * n, 1); b++) {
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) data[b * m * n + j * m + i] = src[b * m * n + i * n + j];
  }
  return { dims: [...t.dims.slice(0, -2), n, m], data };
}

/** GraphOp kinds with an ONNX form (their ONNX_FORMS row is not null). */
export function exportableKinds(): OpKind[] {
  return (Object.keys(GraphWriter.ONNX_FORMS) as OpKind[]).filter((k) => GraphWriter.ONNX_FORMS[k] !== null).sort();
}

/** Refusals list the exportable GraphOp kinds where import errors list ONNX ops. */
function cannot(op: GraphOp, detail: string): never {
  throw new UnsupportedOpError(op.kind, op.node.name, `cannot export to ONNX: ${detail}`, exportableKinds());
}

/** Ops that some requested output depends on, in their original order. */
function liveOps(g: OpGraph, outputs: readonly string[]): GraphOp[] {
  const live = new Set(outputs);
  const out: GraphOp[] = [];
  for (let i = g.ops.length - 1; i >= 0; i--) {
    const op = g.ops[i];
    if (!live.has(op.output)) continue;
    out.push(op);
    for (const x of op.inputs) live.add(x);
  }
  return out.reverse();
}

/**
 * Builds the node list. Names of tensors that the exported graph references keep their
 * OpGraph names; tensors the export introduces (pre-activation results, Reshape targets,
 * BatchNormalization statistics) get `<node>::what` / `<node>_output_0` names, deduplicated
 * against the referenced ones only, so exporting a re-import of the file names them alike.
 */
class GraphWriter {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  /**
   * Tensors whose axis 0 scales with the dynamic batch: axis 0 = N·factor (factor 1: the
   * batch itself; more after a reshape folds other axes into it, as Flatten(axis=2) does).
   */
  private readonly factor = new Map<string, number>();
  /** The batch the graph was analyzed at (axis 0 of the batched inputs). */
  private readonly batch: number | null = null;
  private readonly tensorNames: Set<string>;
  private readonly nodeNames = new Set<string>();
  private readonly defined = new Set<string>();
  private readonly declaredInputs: ReadonlySet<string>;

  constructor(private readonly g: OpGraph, private readonly opset: number, ops: readonly GraphOp[], inputs: readonly ExportInput[], outputs: readonly string[]) {
    this.tensorNames = new Set([...inputs.map((i) => i.name), ...outputs, ...ops.flatMap((op) => [...op.inputs, op.output])]);
    this.declaredInputs = new Set(inputs.map((i) => i.name));
    for (const i of inputs) {
      this.defined.add(i.name);
      const s = this.shape(i.name);
      if (i.batchAxis === false || s.length === 0) continue;
      if (this.batch !== null && s[0] !== this.batch) {
        throw new InputError(`cannot export: batched inputs disagree on the batch (${s[0]} for '${i.name}', ${this.batch} before); set batchAxis: false on inputs without one`);
      }
      this.batch = s[0];
      this.factor.set(i.name, 1);
    }
  }

  /** Whether axis 0 of the tensor is the batch itself (written as the symbolic dim). */
  isBatched(name: string): boolean {
    return this.factor.get(name) === 1;
  }

  shape(name: string): number[] {
    const s = this.g.shapes.get(name);
    if (!s) throw new InputError(`cannot export: no shape for tensor '${name}' in the op graph`);
    return s;
  }

  private unique(set: Set<string>, base: string): string {
    let name = base;
    for (let k = 1; set.has(name); k++) name = `${base}#${k}`;
    set.add(name);
    return name;
  }

  freshTensor(base: string): string {
    return this.unique(this.tensorNames, base);
  }

  nodeName(base: string): string {
    return this.unique(this.nodeNames, base);
  }

  node(name: string, opType: string, inputs: string[], outputs: string[], attribute: AttributeProto[] = []): void {
    // Optional inputs are skipped with '' in the middle but simply left off at the end.
    while (inputs.length > 0 && inputs[inputs.length - 1] === '') inputs.pop();
    this.nodes.push({ name, opType, input: inputs, output: outputs, attribute });
    for (const o of outputs) this.defined.add(o);
  }

  floatInit(base: string, dims: number[], data: ArrayLike<number>, exact = false): string {
    const name = exact ? base : this.freshTensor(base);
    this.initializers.push({ name, dims, dataType: FLOAT, rawData: floatBytes(data) });
    this.defined.add(name);
    return name;
  }

  int64Init(base: string, values: number[]): string {
    const name = this.freshTensor(base);
    this.initializers.push({ name, dims: [values.length], dataType: INT64, rawData: int64Bytes(values) });
    this.defined.add(name);
    return name;
  }

  /** An op input: a constant becomes an initializer (float32, what the GPU computes with) on first use. */
  input(name: string, op: GraphOp): string {
    if (this.defined.has(name)) return name;
    const c = this.g.constants.get(name);
    if (c) return this.floatInit(name, [...c.dims], toFloat32(c), true);
    if (this.g.inputs.includes(name) && !this.declaredInputs.has(name)) {
      throw new InputError(`cannot export: node '${op.node.name}' reads graph input '${name}', which options.inputs does not list`);
    }
    throw new InputError(`cannot export: node '${op.node.name}' reads '${name}', which no graph input, constant or earlier op provides`);
  }

  activation(act: Activation, x: string, y: string, name: string): void {
    switch (act.kind) {
      case 'leaky_relu':
        this.node(name, 'LeakyRelu', [x], [y], [attr.float('alpha', act.alpha)]);
        break;
      case 'clip': {
        // An infinite bound is an absent one: that is how the importer reads it back.
        const min = Number.isFinite(act.min) ? this.floatInit(`${name}::min`, [], [act.min]) : '';
        const max = Number.isFinite(act.max) ? this.floatInit(`${name}::max`, [], [act.max]) : '';
        this.node(name, 'Clip', [x, min, max], [y]);
        break;
      }
      case 'pow':
        this.node(name, 'Pow', [x, this.floatInit(`${name}::exponent`, [], [act.p])], [y]);
        break;
      default: {
        // The rest are ONNX ops of one input and no attributes (Identity for 'none').
        const opType = POINTWISE[act.kind].onnxOp;
        if (opType === null) throw new InputError(`cannot export: ONNX has no op for the '${act.kind}' activation`);
        this.node(name, opType, [x], [y]);
      }
    }
  }

  /** The op as one node, plus its fused activation as a node of its own (suffixed name). */
  withActivation(op: GraphOp, opType: string, inputs: string[], attrs: AttributeProto[], act: Activation): void {
    const name = this.nodeName(op.node.name);
    if (act.kind === 'none') {
      this.node(name, opType, inputs, [op.output], attrs);
      return;
    }
    const pre = this.freshTensor(`${name}_output_0`);
    this.node(name, opType, inputs, [pre], attrs);
    this.activation(act, pre, op.output, this.nodeName(`${name}_${activationOpName(act.kind)}`));
  }

  /**
   * The batch factor of a broadcast result of rank `rank`: operands of that rank must all
   * scale alike on axis 0, or have size 1 there (those of lower rank never reach axis 0).
   */
  private commonFactor(names: readonly string[], rank: number): number | undefined {
    let f: number | undefined;
    for (const n of names) {
      const s = this.shape(n);
      if (s.length < rank) continue;
      const g = this.factor.get(n);
      if (g === undefined) {
        if (s[0] !== 1) return undefined;
      } else if (f !== undefined && f !== g) {
        return undefined;
      } else {
        f = g;
      }
    }
    return f;
  }

  /**
   * Writes the op's nodes by its kind's row of ONNX_FORMS and tracks the batch factor of its
   * output: ops that map axis 0 to axis 0 keep the input's factor unless their row says otherwise.
   */
  emit(op: GraphOp): void {
    const form = GraphWriter.ONNX_FORMS[op.kind] as OnnxForm<OpKind> | null;
    if (!form) cannot(op, `'${op.kind}' ops (recorded by tapes) have no ONNX form here`);
    const inShape = this.shape(op.inputs[0]);
    const outShape = this.shape(op.output);
    const f = form(this, op, inShape, outShape, this.factor.get(op.inputs[0]));
    if (f !== undefined && outShape.length > 0) this.factor.set(op.output, f);
  }

  /**
   * The ONNX form of each op kind: writes its nodes and returns its output's batch factor
   * (see `factor`). null: the kind has no ONNX form (backward ops, CAM math).
   */
  static readonly ONNX_FORMS: { [K in OpKind]: OnnxForm<K> | null } = {
    conv: (w, op, inShape, _out, f) => {
      const a = op.attrs;
      const s = spatialAttrs(op, inShape.length - 2, a.kernel, a.strides, a.pads, a.dilations);
      const inputs = op.inputs.map((i) => w.input(i, op));
      const attrs = [attr.ints('dilations', s.dilations), attr.int('group', a.groups), attr.ints('kernel_shape', s.kernel), attr.ints('pads', s.pads), attr.ints('strides', s.strides)];
      w.withActivation(op, 'Conv', inputs, attrs, a.activation);
      return f;
    },
    gemm: (w, op, _in, _out, f) => {
      const a = op.attrs;
      const inputs = op.inputs.map((i) => w.input(i, op));
      const attrs = [attr.float('alpha', a.alpha), attr.float('beta', a.beta), attr.int('transA', a.transA ? 1 : 0), attr.int('transB', a.transB ? 1 : 0)];
      w.withActivation(op, 'Gemm', inputs, attrs, a.activation);
      return a.transA ? undefined : f;
    },
    matmul: (w, op, _in, outShape, f) => {
      const r = outShape.length;
      const [x, b] = op.inputs;
      // For 2-D products axis 0 of B is the reduced axis, never the batch.
      let g = f;
      if (r < 2 || w.shape(x).length !== r) g = undefined;
      else if (r === 2) g = op.transA || w.factor.has(b) ? undefined : f;
      else g = w.commonFactor([x, b], r);
      const inputs = [w.transposed(op, x, op.transA === true), w.transposed(op, b, op.transB === true)];
      w.withActivation(op, 'MatMul', inputs, [], op.activation);
      return g;
    },
    binary: (w, op, _in, outShape) => {
      const r = outShape.length;
      w.withActivation(op, BINARY_OP[op.op], op.inputs.map((i) => w.input(i, op)), [], op.activation);
      return r > 0 ? w.commonFactor(op.inputs, r) : undefined;
    },
    unary: (w, op, _in, _out, f) => {
      w.activation(op.activation, w.input(op.inputs[0], op), op.output, w.nodeName(op.node.name));
      return f;
    },
    affine: (w, op, _in, _out, f) => {
      w.affine(op);
      return f;
    },
    pool: (w, op, inShape, _out, f) => {
      const a = op.attrs;
      const s = spatialAttrs(op, inShape.length - 2, a.kernel, a.strides, a.pads, a.dilations);
      const attrs = [attr.int('ceil_mode', a.ceilMode ? 1 : 0)];
      if (op.pool === 'avg') attrs.push(attr.int('count_include_pad', a.countIncludePad ? 1 : 0));
      if (s.dilations.some((d) => d !== 1)) {
        if (op.pool === 'avg' && w.opset < 19) cannot(op, `AveragePool has dilations only from opset 19 (exporting opset ${w.opset})`);
        attrs.push(attr.ints('dilations', s.dilations));
      }
      attrs.push(attr.ints('kernel_shape', s.kernel), attr.ints('pads', s.pads), attr.ints('strides', s.strides));
      w.node(w.nodeName(op.node.name), op.pool === 'max' ? 'MaxPool' : 'AveragePool', [w.input(op.inputs[0], op)], [op.output], attrs);
      return f;
    },
    global_pool: (w, op, _in, _out, f) => {
      w.node(w.nodeName(op.node.name), op.pool === 'max' ? 'GlobalMaxPool' : 'GlobalAveragePool', [w.input(op.inputs[0], op)], [op.output]);
      return f;
    },
    softmax: (w, op, inShape, _out, f) => w.softmax(op, inShape, f),
    concat: (w, op, _in, outShape) => {
      const fs = new Set(op.inputs.map((i) => w.factor.get(i)));
      w.node(w.nodeName(op.node.name), 'Concat', op.inputs.map((i) => w.input(i, op)), [op.output], [attr.int('axis', op.axis)]);
      return normalizeAxis(op.axis, outShape.length) !== 0 && fs.size === 1 ? [...fs][0] : undefined;
    },
    pad: (w, op, inShape, _out, f) => {
      const r = inShape.length;
      if (op.mode === 'wrap' && w.opset < 19) cannot(op, `Pad mode 'wrap' needs opset 19 (exporting opset ${w.opset})`);
      const name = w.nodeName(op.node.name);
      const inputs = [w.input(op.inputs[0], op), w.int64Init(`${name}::pads`, op.pads)];
      if (op.mode === 'constant') inputs.push(w.floatInit(`${name}::value`, [], [op.value]));
      w.node(name, 'Pad', inputs, [op.output], [attr.string('mode', op.mode)]);
      return op.pads[0] !== 0 || op.pads[r] !== 0 ? undefined : f;
    },
    alias: (w, op, inShape, outShape, f) => w.alias(op, inShape, outShape, f),
    reduce: null,
    broadcast: null,
    resize: null,
    onehot_argmax: null,
    where: null,
    gather_rows: null,
    rise_masks: null,
    sort: null,
    ranked_blend: null,
    impute: null,
    impute_residual: null,
    random: null,
    conv_grad_input: null,
    conv_grad_weight: null,
    pool_grad: null,
    global_pool_grad: null,
    reduce_grad: null,
    activation_grad: null,
    softmax_grad: null,
    resize_grad: null,
    slice: null,
    pad_grad: null,
    batchnorm_stats: null,
    batchnorm: null,
    batchnorm_grad_params: null,
    batchnorm_grad_input: null,
  };

  /** A matmul operand as ONNX MatMul reads it: transposed into an initializer, or by a Transpose node. */
  private transposed(op: GraphOp, name: string, trans: boolean): string {
    const s = this.shape(name);
    if (!trans || s.length < 2) return this.input(name, op);
    const c = this.g.constants.get(name);
    if (c) {
      const t = transposeLast2(c);
      return this.floatInit(`${name}::T`, t.dims, t.data);
    }
    const y = this.freshTensor(`${name}::T`);
    const perm = [...s.keys()];
    [perm[s.length - 2], perm[s.length - 1]] = [perm[s.length - 1], perm[s.length - 2]];
    this.node(this.nodeName(`${op.node.name}_Transpose`), 'Transpose', [this.input(name, op)], [y], [attr.ints('perm', perm)]);
    return y;
  }

  /**
   * Inference BatchNormalization with mean 0, variance 1 and epsilon 0: the importer then
   * recomputes scale/sqrt(1 + 0) = scale and bias − 0·scale = bias exactly, so the op comes
   * back as the same affine op with bit-identical constants (Mul + Add would come back as
   * two broadcast ops). Scale and shift computed at run time take the Mul + Add form.
   */
  private affine(op: Extract<GraphOp, { kind: 'affine' }>): void {
    const [x, s, t] = op.inputs;
    const xs = this.shape(x);
    const c = xs.length > 1 ? xs[1] : 1;
    const sc = this.g.constants.get(s);
    const tc = this.g.constants.get(t);
    const name = this.nodeName(op.node.name);
    if (xs.length >= 2 && sc && tc && sc.data.length === c && tc.data.length === c) {
      const param = (n: string, v: HostTensor) => (v.dims.length === 1 ? this.input(n, op) : this.floatInit(`${n}::flat`, [c], toFloat32(v)));
      const inputs = [this.input(x, op), param(s, sc), param(t, tc), this.floatInit(`${name}::mean`, [c], new Float32Array(c)), this.floatInit(`${name}::var`, [c], new Float32Array(c).fill(1))];
      const attrs = [attr.float('epsilon', 0)];
      if (op.activation.kind === 'none') {
        this.node(name, 'BatchNormalization', inputs, [op.output], attrs);
      } else {
        const pre = this.freshTensor(`${name}_output_0`);
        this.node(name, 'BatchNormalization', inputs, [pre], attrs);
        this.activation(op.activation, pre, op.output, this.nodeName(`${name}_${activationOpName(op.activation.kind)}`));
      }
      return;
    }
    // Per-channel parameters broadcast as [C, 1, …, 1] against [N, C, …].
    const target = [c, ...new Array(Math.max(xs.length - 2, 0)).fill(1)];
    const perChannel = (n: string, what: string): string => {
      const k = this.g.constants.get(n);
      if (k) return this.floatInit(`${n}::${what}`, target, toFloat32(k));
      const y = this.freshTensor(`${name}::${what}`);
      this.node(this.nodeName(`${name}_Reshape_${what}`), 'Reshape', [this.input(n, op), this.int64Init(`${name}::${what}_shape`, target)], [y]);
      return y;
    };
    const scaled = this.freshTensor(`${name}_Mul_output_0`);
    this.node(this.nodeName(`${name}_Mul`), 'Mul', [this.input(x, op), perChannel(s, 'scale')], [scaled]);
    const shift = perChannel(t, 'shift');
    if (op.activation.kind === 'none') {
      this.node(name, 'Add', [scaled, shift], [op.output]);
    } else {
      const pre = this.freshTensor(`${name}_output_0`);
      this.node(name, 'Add', [scaled, shift], [pre]);
      this.activation(op.activation, pre, op.output, this.nodeName(`${name}_${activationOpName(op.activation.kind)}`));
    }
  }

  /**
   * Opset-13 Softmax normalizes one axis. The older rule (coerce2d: flatten [axis, rank)
   * into one axis) is the same thing when axis is the last one; otherwise it is written as
   * Flatten + Softmax + Reshape back, with the reshapes written as aliases are, so a
   * re-import exports to the same file. Returns the result's batch factor.
   */
  private softmax(op: Extract<GraphOp, { kind: 'softmax' }>, xs: number[], f: number | undefined): number | undefined {
    const opType = op.log ? 'LogSoftmax' : 'Softmax';
    const r = xs.length;
    const ax = normalizeAxis(op.axis, Math.max(r, 1));
    const name = this.nodeName(op.node.name);
    const x = this.input(op.inputs[0], op);
    if (!op.coerce2d || ax >= r - 1) {
      this.node(name, opType, [x], [op.output], [attr.int('axis', op.coerce2d ? ax : op.axis)]);
      return f;
    }
    const flatShape = [sizeOf(xs.slice(0, ax)), sizeOf(xs.slice(ax))];
    const flat = this.freshTensor(`${name}_Flatten_output_0`);
    const flatNode = this.nodeName(`${name}_Flatten`);
    let ff: number | undefined;
    if (ax === 0) this.node(flatNode, 'Flatten', [x], [flat], [attr.int('axis', 0)]);
    else ff = this.reshape(flatNode, x, flat, xs, flatShape, f);
    const soft = this.freshTensor(`${name}_output_0`);
    this.node(name, opType, [flat], [soft], [attr.int('axis', 1)]);
    const back = this.nodeName(`${name}_Reshape`);
    // Over axis 0 it normalizes across the batch; -1 still restores any batch size.
    if (ax === 0) return this.reshapeTo(back, soft, op.output, f === undefined ? [...xs] : [-1, ...xs.slice(1)], f);
    return this.reshape(back, soft, op.output, flatShape, xs, ff);
  }

  /** Returns the result's batch factor. */
  private alias(op: Extract<GraphOp, { kind: 'alias' }>, xs: number[], ys: number[], f: number | undefined): number | undefined {
    const x = op.inputs[0];
    const c = this.g.constants.get(x);
    if (c && !this.defined.has(x)) {
      // A view of a constant is a constant: no node needed.
      this.floatInit(op.output, [...ys], toFloat32(c), true);
      return undefined;
    }
    return this.reshape(this.nodeName(op.node.name), this.input(x, op), op.output, xs, ys, f);
  }

  private reshapeTo(name: string, x: string, y: string, target: number[], f: number | undefined): number | undefined {
    this.node(name, 'Reshape', [x, this.int64Init(`${name}::shape`, target)], [y]);
    return f;
  }

  /**
   * Same elements, new shape, written so that the batch stays dynamic: Identity, Flatten
   * where the new shape is one, else Reshape whose axis 0 is 0 (copy the input's, the batch)
   * or -1 (the batch times the axes folded into it). Returns the result's batch factor.
   */
  private reshape(name: string, x: string, y: string, xs: number[], ys: number[], f: number | undefined): number | undefined {
    if (xs.length === ys.length && xs.every((d, i) => d === ys[i])) {
      this.node(name, 'Identity', [x], [y]);
      return f;
    }
    if (ys.length === 2) {
      for (let k = 1; k <= xs.length; k++) {
        if (sizeOf(xs.slice(0, k)) === ys[0] && sizeOf(xs.slice(k)) === ys[1]) {
          this.node(name, 'Flatten', [x], [y], [attr.int('axis', k)]);
          return f === undefined ? undefined : f * sizeOf(xs.slice(1, k));
        }
      }
    }
    if (f !== undefined && this.batch !== null && ys.length > 0) {
      if (xs.length > 0 && xs[0] === ys[0] && sizeOf(xs.slice(1)) === sizeOf(ys.slice(1))) return this.reshapeTo(name, x, y, [0, ...ys.slice(1)], f);
      if (this.batch > 0 && ys[0] % this.batch === 0) return this.reshapeTo(name, x, y, [-1, ...ys.slice(1)], ys[0] / this.batch);
    }
    return this.reshapeTo(name, x, y, [...ys], undefined);
  }

  valueInfo(name: string, batched: boolean): ValueInfoProto {
    const dims = this.shape(name);
    return {
      name,
      type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d, i) => (i === 0 && batched ? { dimParam: BATCH_DIM } : { dimValue: d })) } } },
    };
  }

  /** A graph output that is a constant: ONNX outputs are node results, so an Identity of an initializer. */
  constantOutput(name: string): void {
    const c = this.g.constants.get(name)!;
    const init = this.floatInit(`${name}::value`, [...c.dims], toFloat32(c));
    this.node(this.nodeName(`${name}_Identity`), 'Identity', [init], [name]);
  }

  isDefined(name: string): boolean {
    return this.defined.has(name);
  }
}

/**
 * GraphOps keep 1-D convolutions and pools as 2-D ones with H = 1 (analyze's as4d); the
 * exported node gets back the rank of its tensors. 2-D pads [top, left, bottom, right] are
 * already ONNX's [x1_begin, x2_begin, x1_end, x2_end].
 */
function spatialAttrs(op: GraphOp, rank: number, kernel: [number, number], strides: [number, number], pads: [number, number, number, number], dilations: [number, number]) {
  if (rank === 2) return { kernel: [...kernel], strides: [...strides], pads: [...pads], dilations: [...dilations] };
  if (rank !== 1) cannot(op, `${rank}-D spatial input`);
  if (kernel[0] !== 1 || strides[0] !== 1 || dilations[0] !== 1 || pads[0] !== 0 || pads[2] !== 0) cannot(op, '1-D op with a non-trivial H axis');
  return { kernel: [kernel[1]], strides: [strides[1]], pads: [pads[1], pads[3]], dilations: [dilations[1]] };
}

/**
 * Writes an OpGraph as a standard ONNX model (default domain only, float32 tensors): each
 * GraphOp becomes its ONNX op, a fused activation a node of its own, constants initializers
 * with raw data. The file imports back into the same GraphOps (see exportableKinds) and
 * runs in other runtimes; with batchAxis the batch is the symbolic dim 'N'.
 */
export function exportOnnx(graph: OpGraph, options: ExportOptions): Uint8Array {
  const opset = options.opset ?? EXPORT_DEFAULT_OPSET;
  if (!Number.isInteger(opset) || opset < EXPORT_MIN_OPSET || opset > MAX_OPSET) {
    throw new InputError(`cannot export to opset ${opset}: supported are ${EXPORT_MIN_OPSET} through ${MAX_OPSET}`);
  }
  if (options.outputs.length === 0) throw new InputError('cannot export: no outputs given');
  for (const list of [options.inputs.map((i) => i.name), options.outputs]) {
    const dup = list.find((n, i) => list.indexOf(n) !== i);
    if (dup !== undefined) throw new InputError(`cannot export: '${dup}' is listed twice`);
  }
  const produced = new Set(graph.ops.map((op) => op.output));
  for (const i of options.inputs) {
    if (!graph.shapes.has(i.name) || produced.has(i.name) || graph.constants.has(i.name)) {
      throw new InputError(`cannot export: input '${i.name}' is not a graph input of the op graph (inputs: ${graph.inputs.join(', ')})`);
    }
  }
  const inputNames = new Set(options.inputs.map((i) => i.name));
  for (const o of options.outputs) {
    if (!produced.has(o) && !graph.constants.has(o) && !inputNames.has(o)) throw new InputError(`cannot export: output '${o}' is not computed by the op graph`);
  }
  const ops = liveOps(graph, options.outputs);
  const w = new GraphWriter(graph, opset, ops, options.inputs, options.outputs);
  for (const op of ops) w.emit(op);
  for (const o of options.outputs) {
    if (!w.isDefined(o)) w.constantOutput(o);
  }
  const model = onnx.ModelProto.create({
    irVersion: irVersionFor(opset),
    producerName: options.producer ?? 'camgpu',
    opsetImport: [{ domain: '', version: opset }],
    docString: options.docString ?? '',
    graph: {
      name: options.graphName ?? 'camgpu',
      node: w.nodes,
      initializer: w.initializers,
      input: options.inputs.map((i) => w.valueInfo(i.name, w.isBatched(i.name))),
      output: options.outputs.map((o) => w.valueInfo(o, w.isBatched(o))),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

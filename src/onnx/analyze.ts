import { type Activation, NO_ACTIVATION } from '../ops/activation.js';
import { autoPads, type AutoPad, convOutputShape } from '../ops/conv.js';
import type { Conv2dAttrs } from '../ops/conv-attrs.js';
import { binaryOutputShape } from '../ops/elementwise.js';
import { gemmOutputShape, matmulOutputShape } from '../ops/gemm.js';
import { concatOutputShape, padOutputShape } from '../ops/layout.js';
import { globalPoolOutputShape, type Pool2dAttrs, poolOutputShape } from '../ops/pool.js';
import { CamgpuError, InputError, InternalError, LimitError, OnnxFormatError, ShapeError, typedSync, UnsupportedOpError } from '../runtime/errors.js';
import { as4d, formatShape, normalizeAxis, sizeOf } from '../runtime/shape.js';
import type { BinaryOpKind } from '../shaders/elementwise.js';
import type { PadMode } from '../shaders/layout.js';
import { checkAxes, checkAxis, checkLength } from './check.js';
import { CPU_ONLY_OPS, FOLDABLE_OPS, flattenAxis, foldNode, reshapeShape, squeezeShape, unsqueezeShape } from './cpu-eval.js';
import { type HostTensor, hostTensor, isFloatType, toNumbers } from '../runtime/host-tensor.js';
import { attrInts, attrNumber, attrString, type IrGraph, type IrNode, resolveAlias } from './ir.js';
import type { GraphOp, OpGraph } from '../ops/graph.js';
import { dtypeOf } from './proto.js';

/** Everything known about a tensor at plan time. */
interface Value {
  shape: number[];
  /** Set when the value is known on the CPU (initializer, constant, folded). */
  constant: HostTensor | null;
}

export interface AnalyzeOptions {
  /** Tensors that must survive as they are: graph outputs and requested taps (no fusion hides them). */
  keep: ReadonlySet<string>;
  /**
   * Values of graph inputs that an op needs at plan time (a Reshape shape, Clip bounds,
   * Pad amounts fed as inputs). Used only where a constant is required.
   */
  inputValues?: ReadonlyMap<string, HostTensor>;
}

interface NodeEnv {
  shape(name: string): number[];
  /** The value of an input that must be known at plan time. */
  constant(name: string, what: string): HostTensor;
  optional(name: string | undefined): boolean;
  opset: number;
}

type Lowering = (n: IrNode, env: NodeEnv) => { ops: GraphOp[]; shapes: number[][] };

function where(n: IrNode): string {
  return `node '${n.name}' (${n.opType})`;
}

function unsupported(n: IrNode, detail: string): never {
  throw new UnsupportedOpError(n.opType, n.name, detail, SUPPORTED_OPS);
}

/** strides, dilations and pads (defaults filled in), each with one value per spatial axis (two for pads). */
function spatialAttrs(n: IrNode, rank: number) {
  const s = attrInts(n, 'strides', null) ?? new Array(rank).fill(1);
  const d = attrInts(n, 'dilations', null) ?? new Array(rank).fill(1);
  const p = attrInts(n, 'pads', null) ?? new Array(2 * rank).fill(0);
  const what = `a ${rank}-D ${n.opType}`;
  checkLength(n, 'strides', s, rank, what);
  checkLength(n, 'dilations', d, rank, what);
  checkLength(n, 'pads', p, 2 * rank, what);
  return { s, d, p };
}

/** The value of a one-element constant input (Clip bounds, Pad's constant value). */
function scalarInput(n: IrNode, env: NodeEnv, name: string, what: string, field: string): number {
  const t = env.constant(name, what);
  if (t.data.length !== 1) throw new ShapeError(where(n), `${what} must hold one value, got ${t.data.length}`, { node: n.name, field });
  const v = t.data[0];
  if (Number.isNaN(v)) unsupported(n, `a NaN ${what}`);
  return v;
}

/** Maps 1-D (N, C, L) spatial parameters onto the 2-D kernels as H = 1. */
function to2d(values: number[], rank: number, fill: number): [number, number] {
  return rank === 1 ? [fill, values[0]] : [values[0], values[1]];
}

function resolvePads(n: IrNode, xShape: number[], kernel: number[], strides: number[], dilations: number[], pads: number[]): [number, number, number, number] {
  const rank = kernel.length;
  const ap = attrString(n, 'auto_pad', 'NOTSET') as AutoPad;
  if (!['NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID'].includes(ap)) unsupported(n, `auto_pad '${ap}'`);
  const begin: number[] = [];
  const end: number[] = [];
  for (let i = 0; i < rank; i++) {
    const [b, e] = autoPads(ap, xShape[2 + i], kernel[i], strides[i], dilations[i], [pads[i], pads[i + rank]]);
    begin.push(b);
    end.push(e);
  }
  if (rank === 1) return [0, begin[0], 0, end[0]];
  return [begin[0], begin[1], end[0], end[1]];
}

function checkSpatialRank(n: IrNode, x: number[]): number {
  const rank = x.length - 2;
  if (rank !== 1 && rank !== 2) unsupported(n, `${rank}-D spatial input ${formatShape(x)} (1-D and 2-D are supported)`);
  return rank;
}

function from4d(y: number[], rank: number): number[] {
  return rank === 1 ? [y[0], y[1], y[3]] : y;
}

function clipActivation(n: IrNode, env: NodeEnv): Activation {
  let min = -Infinity;
  let max = Infinity;
  if (env.opset < 11) {
    min = attrNumber(n, 'min', -3.4028234663852886e38);
    max = attrNumber(n, 'max', 3.4028234663852886e38);
  } else {
    if (env.optional(n.inputs[1])) min = scalarInput(n, env, n.inputs[1], 'Clip min', 'min');
    if (env.optional(n.inputs[2])) max = scalarInput(n, env, n.inputs[2], 'Clip max', 'max');
  }
  return { kind: 'clip', min, max };
}

const BINARY: ReadonlyMap<string, BinaryOpKind> = new Map([['Add', 'add'], ['Sub', 'sub'], ['Mul', 'mul'], ['Div', 'div']]);

/** For ops that read some inputs on the CPU: the index of the first such input. */
const CPU_PARAMS: ReadonlyMap<string, number> = new Map([['Reshape', 1], ['Pad', 1], ['Squeeze', 1], ['Unsqueeze', 1], ['Dropout', 1], ['Clip', 1], ['BatchNormalization', 1]]);

/** Op lowerings by op type: a Map, so no name (`constructor`, `__proto__`) finds anything it should not. */
const LOWERINGS: ReadonlyMap<string, Lowering> = new Map(Object.entries({
  Conv: (n: IrNode, env: NodeEnv) => {
    const x = env.shape(n.inputs[0]);
    const w = env.shape(n.inputs[1]);
    const rank = checkSpatialRank(n, x);
    if (w.length !== x.length) throw new ShapeError(where(n), `weight ${formatShape(w)} must have the rank of input ${formatShape(x)}`, { node: n.name, field: 'input' });
    const kernel = attrInts(n, 'kernel_shape', null) ?? w.slice(2);
    checkLength(n, 'kernel_shape', kernel, rank, `a ${rank}-D Conv`);
    if (w.slice(2).some((k) => k < 1)) throw new ShapeError(where(n), `weight ${formatShape(w)} has an empty kernel`, { node: n.name, field: 'kernel_shape' });
    const { s, d, p } = spatialAttrs(n, rank);
    const pads = resolvePads(n, x, kernel, s, d, p);
    const attrs: Conv2dAttrs = {
      kernel: to2d(kernel, rank, 1),
      strides: to2d(s, rank, 1),
      pads,
      dilations: to2d(d, rank, 1),
      groups: attrNumber(n, 'group', 1),
      activation: NO_ACTIVATION,
    };
    const y = convOutputShape(where(n), as4d(x), as4d(w), attrs);
    const hasBias = env.optional(n.inputs[2]);
    const inputs: [string, string] | [string, string, string] = hasBias ? [n.inputs[0], n.inputs[1], n.inputs[2]] : [n.inputs[0], n.inputs[1]];
    if (hasBias && sizeOf(env.shape(n.inputs[2])) !== w[0]) throw new ShapeError(where(n), `bias ${formatShape(env.shape(n.inputs[2]))} does not match ${w[0]} output channels`);
    return { ops: [{ kind: 'conv', node: n, inputs, output: n.outputs[0], attrs }], shapes: [from4d(y, rank)] };
  },
  MaxPool: (n, env) => pool(n, env, 'max'),
  AveragePool: (n, env) => pool(n, env, 'avg'),
  GlobalAveragePool: (n, env) => ({
    ops: [{ kind: 'global_pool', node: n, pool: 'avg', inputs: [n.inputs[0]], output: n.outputs[0] }],
    shapes: [globalPoolOutputShape(where(n), env.shape(n.inputs[0]))],
  }),
  GlobalMaxPool: (n, env) => ({
    ops: [{ kind: 'global_pool', node: n, pool: 'max', inputs: [n.inputs[0]], output: n.outputs[0] }],
    shapes: [globalPoolOutputShape(where(n), env.shape(n.inputs[0]))],
  }),
  Gemm: (n, env) => {
    const attrs = {
      transA: attrNumber(n, 'transA', 0) === 1,
      transB: attrNumber(n, 'transB', 0) === 1,
      alpha: attrNumber(n, 'alpha', 1),
      beta: attrNumber(n, 'beta', 1),
      activation: NO_ACTIVATION,
    };
    const hasC = env.optional(n.inputs[2]);
    const y = gemmOutputShape(where(n), env.shape(n.inputs[0]), env.shape(n.inputs[1]), hasC ? env.shape(n.inputs[2]) : null, attrs);
    const inputs: [string, string] | [string, string, string] = hasC ? [n.inputs[0], n.inputs[1], n.inputs[2]] : [n.inputs[0], n.inputs[1]];
    return { ops: [{ kind: 'gemm', node: n, inputs, output: n.outputs[0], attrs }], shapes: [y] };
  },
  MatMul: (n, env) => ({
    ops: [{ kind: 'matmul', node: n, inputs: [n.inputs[0], n.inputs[1]], output: n.outputs[0], activation: NO_ACTIVATION }],
    shapes: [matmulOutputShape(where(n), env.shape(n.inputs[0]), env.shape(n.inputs[1]))],
  }),
  Relu: (n, env) => unary(n, env, { kind: 'relu' }),
  Sigmoid: (n, env) => unary(n, env, { kind: 'sigmoid' }),
  LeakyRelu: (n, env) => unary(n, env, { kind: 'leaky_relu', alpha: attrNumber(n, 'alpha', 0.01) }),
  Clip: (n, env) => unary(n, env, clipActivation(n, env)),
  Add: (n, env) => binary(n, env),
  Sub: (n, env) => binary(n, env),
  Mul: (n, env) => binary(n, env),
  Div: (n, env) => binary(n, env),
  Flatten: (n, env) => {
    const x = env.shape(n.inputs[0]);
    const axis = flattenAxis(n, x.length);
    return alias(n, [sizeOf(x.slice(0, axis)), sizeOf(x.slice(axis))]);
  },
  Reshape: (n, env) => {
    const x = env.shape(n.inputs[0]);
    const target = env.opset >= 5 ? toNumbers(env.constant(n.inputs[1], 'Reshape shape')) : attrInts(n, 'shape', [])!;
    return alias(n, reshapeShape(n, x, target, attrNumber(n, 'allowzero', 0) === 1));
  },
  Squeeze: (n, env) => {
    const x = env.shape(n.inputs[0]);
    const axes = env.opset >= 13 ? (env.optional(n.inputs[1]) ? toNumbers(env.constant(n.inputs[1], 'Squeeze axes')) : null) : attrInts(n, 'axes', null);
    return alias(n, squeezeShape(n, x, axes));
  },
  Unsqueeze: (n, env) => {
    const x = env.shape(n.inputs[0]);
    const axes = env.opset >= 13 ? toNumbers(env.constant(n.inputs[1], 'Unsqueeze axes')) : attrInts(n, 'axes', [])!;
    return alias(n, unsqueezeShape(n, x, axes));
  },
  Identity: (n, env) => alias(n, env.shape(n.inputs[0])),
  Dropout: (n, env) => {
    if (n.outputs.length > 1 && n.outputs[1]) unsupported(n, 'the mask output of Dropout');
    if (env.opset >= 12 && env.optional(n.inputs[2]) && env.constant(n.inputs[2], 'Dropout training_mode').data[0]) unsupported(n, 'training_mode=1');
    return alias(n, env.shape(n.inputs[0]));
  },
  Concat: (n, env) => {
    const xs = n.inputs.filter((i) => env.optional(i));
    const axis = attrNumber(n, 'axis', 1);
    return { ops: [{ kind: 'concat', node: n, inputs: xs, output: n.outputs[0], axis }], shapes: [concatOutputShape(where(n), xs.map((i) => env.shape(i)), axis)] };
  },
  Softmax: (n, env) => softmax(n, env, false),
  LogSoftmax: (n, env) => softmax(n, env, true),
  Pad: (n, env) => {
    const x = env.shape(n.inputs[0]);
    const mode = attrString(n, 'mode', 'constant') as PadMode;
    if (!['constant', 'reflect', 'edge', 'wrap'].includes(mode)) unsupported(n, `mode '${mode}'`);
    let pads: number[];
    let value = 0;
    if (env.opset < 11) {
      pads = attrInts(n, 'pads', null) ?? attrInts(n, 'paddings', [])!;
      value = attrNumber(n, 'value', 0);
    } else {
      pads = toNumbers(env.constant(n.inputs[1], 'Pad pads'));
      if (env.optional(n.inputs[2])) {
        const c = env.constant(n.inputs[2], 'Pad constant_value');
        value = c.data.length === 0 ? 0 : scalarInput(n, env, n.inputs[2], 'Pad constant_value', 'constant_value');
      }
      if (env.optional(n.inputs[3])) {
        // opset 18: pads only for the listed axes.
        const axes = checkAxes(n, 'axes', toNumbers(env.constant(n.inputs[3], 'Pad axes')), x.length);
        checkLength(n, 'pads', pads, 2 * axes.length, `Pad over ${axes.length} axes`);
        const full = new Array(2 * x.length).fill(0);
        axes.forEach((a, i) => {
          full[a] = pads[i];
          full[a + x.length] = pads[i + axes.length];
        });
        pads = full;
      }
    }
    if (pads.some((q) => !Number.isSafeInteger(q))) throw new ShapeError(where(n), `pads [${pads}] must be integers`, { node: n.name, field: 'pads' });
    if (Number.isNaN(value)) unsupported(n, 'a NaN constant value');
    return { ops: [{ kind: 'pad', node: n, inputs: [n.inputs[0]], output: n.outputs[0], pads, mode, value }], shapes: [padOutputShape(where(n), x, pads)] };
  },
  BatchNormalization: (n, env) => {
    if (attrNumber(n, 'training_mode', 0) === 1) unsupported(n, 'training_mode=1 (only inference BatchNormalization is supported)');
    if (n.outputs.slice(1).some((o) => o)) unsupported(n, 'running mean/variance outputs (training mode)');
    if (env.opset < 9 && attrNumber(n, 'spatial', 1) !== 1) unsupported(n, 'spatial=0');
    const x = env.shape(n.inputs[0]);
    if (x.length < 2) throw new ShapeError(where(n), `input ${formatShape(x)} has no channel axis`, { node: n.name, field: 'input' });
    const c = x[1];
    const [scale, bias, mean, varT] = [1, 2, 3, 4].map((i) => env.constant(n.inputs[i], 'BatchNormalization parameters'));
    for (const t of [scale, bias, mean, varT]) {
      if (t.data.length !== c) throw new ShapeError(where(n), `parameter of ${t.data.length} values for ${c} channels`);
    }
    const eps = attrNumber(n, 'epsilon', 1e-5);
    const s = new Float32Array(c);
    const sh = new Float32Array(c);
    for (let i = 0; i < c; i++) {
      const k = scale.data[i] / Math.sqrt(varT.data[i] + eps);
      s[i] = k;
      sh[i] = bias.data[i] - mean.data[i] * k;
    }
    const scaleName = `${n.name}::scale`;
    const shiftName = `${n.name}::shift`;
    return {
      ops: [{ kind: 'affine', node: n, inputs: [n.inputs[0], scaleName, shiftName], output: n.outputs[0], activation: NO_ACTIVATION }],
      shapes: [x],
      constants: new Map([[scaleName, hostTensor('float32', [c], s)], [shiftName, hostTensor('float32', [c], sh)]]),
    } as ReturnType<Lowering>;
  },
} satisfies Record<string, Lowering>));

function unary(n: IrNode, env: NodeEnv, act: Activation) {
  return { ops: [{ kind: 'unary', node: n, inputs: [n.inputs[0]], output: n.outputs[0], activation: act } as GraphOp], shapes: [env.shape(n.inputs[0])] };
}

function binary(n: IrNode, env: NodeEnv) {
  const op = BINARY.get(n.opType)!;
  if (env.opset < 7 && n.attrs.has('broadcast')) unsupported(n, 'legacy broadcast attribute');
  const y = binaryOutputShape(where(n), env.shape(n.inputs[0]), env.shape(n.inputs[1]));
  return { ops: [{ kind: 'binary', node: n, op, inputs: [n.inputs[0], n.inputs[1]], output: n.outputs[0], activation: NO_ACTIVATION } as GraphOp], shapes: [y] };
}

function alias(n: IrNode, shape: number[]) {
  return { ops: [{ kind: 'alias', node: n, inputs: [n.inputs[0]], output: n.outputs[0] } as GraphOp], shapes: [shape] };
}

function softmax(n: IrNode, env: NodeEnv, log: boolean) {
  const x = env.shape(n.inputs[0]);
  const coerce2d = env.opset < 13;
  const axis = attrNumber(n, 'axis', coerce2d ? 1 : -1);
  checkAxis(n, 'axis', axis, x.length);
  return { ops: [{ kind: 'softmax', node: n, inputs: [n.inputs[0]], output: n.outputs[0], axis, coerce2d, log } as GraphOp], shapes: [x] };
}

/** Most window reads one pooling op may do (N·C·OH·OW·KH·KW): 2^32. */
export const MAX_POOL_READS = 2 ** 32;

function pool(n: IrNode, env: NodeEnv, kind: 'max' | 'avg') {
  const x = env.shape(n.inputs[0]);
  const rank = checkSpatialRank(n, x);
  if (kind === 'max' && n.outputs.length > 1 && n.outputs[1]) unsupported(n, 'the Indices output of MaxPool');
  if (kind === 'max' && attrNumber(n, 'storage_order', 0) !== 0) unsupported(n, 'storage_order=1');
  const kernel = attrInts(n, 'kernel_shape', null);
  if (!kernel || kernel.length !== rank) throw new ShapeError(where(n), `kernel_shape must have ${rank} values`, { node: n.name, field: 'kernel_shape' });
  const { s, d, p } = spatialAttrs(n, rank);
  const attrs: Pool2dAttrs = {
    kernel: to2d(kernel, rank, 1),
    strides: to2d(s, rank, 1),
    pads: resolvePads(n, x, kernel, s, d, p),
    dilations: to2d(d, rank, 1),
    ceilMode: attrNumber(n, 'ceil_mode', 0) === 1,
    countIncludePad: attrNumber(n, 'count_include_pad', 0) === 1,
  };
  const y = poolOutputShape(where(n), as4d(x), attrs);
  // A pool reads its whole window for every output (padding included): a window of 2^31
  // under SAME padding would keep the GPU busy for hours.
  const reads = sizeOf(y) * attrs.kernel[0] * attrs.kernel[1];
  if (reads > MAX_POOL_READS) {
    throw new LimitError(`${where(n)}: a ${attrs.kernel.join('×')} window over ${formatShape(y)} outputs is ${reads} reads, over camgpu's cap of ${MAX_POOL_READS} per pool`, { node: n.name, field: 'kernel_shape' });
  }
  return { ops: [{ kind: 'pool', node: n, pool: kind, inputs: [n.inputs[0]], output: n.outputs[0], attrs } as GraphOp], shapes: [from4d(y, rank)] };
}

/** Every op type camgpu accepts, for error messages. */
export const SUPPORTED_OPS: readonly string[] = [...new Set([...LOWERINGS.keys(), ...FOLDABLE_OPS])].sort();

/**
 * Static shape inference and constant folding for concrete input shapes, then lowering of
 * every remaining node to GPU-level ops.
 */
export function analyze(g: IrGraph, inputShapes: ReadonlyMap<string, number[]>, options: AnalyzeOptions): OpGraph {
  return typedSync('analysis', () => analyzeGraph(g, inputShapes, options));
}

/** Runs one node's analysis; errors get the node's name (an untyped one becomes an InternalError naming it). */
function atNode<T>(n: IrNode, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CamgpuError) throw e.at({ node: n.name });
    throw new InternalError(`analysis of ${where(n)}`, e);
  }
}

function analyzeGraph(g: IrGraph, inputShapes: ReadonlyMap<string, number[]>, options: AnalyzeOptions): OpGraph {
  const values = new Map<string, Value>();
  const constants = new Map<string, HostTensor>();
  for (const [name, t] of g.initializers) values.set(name, { shape: t.dims, constant: t });
  const graphInputs = new Map(g.inputs.map((i) => [i.name, i]));
  const bound = (name: string): HostTensor | null => (graphInputs.has(name) ? options.inputValues?.get(name) ?? null : null);
  for (const inp of g.inputs) {
    if (inp.elemType !== 0) dtypeOf(inp.elemType, `graph input '${inp.name}'`, g.file); // rejects strings
    // A graph input given only in inputValues (no tensor) exists at plan time only.
    const shape = inputShapes.get(inp.name) ?? bound(inp.name)?.dims;
    if (!shape) {
      const reader = g.nodes.find((n) => n.inputs.includes(inp.name));
      // elemType 0: sequence, map or optional values, which the importer keeps without a tensor type.
      if (inp.elemType === 0 && reader) unsupported(reader, `input '${inp.name}' is not a tensor (sequence, map and optional values are not supported)`);
      throw new ShapeError(g.file, `no shape given for graph input '${inp.name}'`);
    }
    values.set(inp.name, { shape: [...shape], constant: null });
  }
  const lookup = (name: string, n: IrNode): Value => {
    const v = values.get(resolveAlias(g, name));
    if (!v) throw new OnnxFormatError(g.file, `${where(n)} reads undefined tensor '${name}'`);
    return v;
  };
  const ops: GraphOp[] = [];
  for (const n of g.nodes) atNode(n, () => {
    if (n.domain && n.domain !== 'ai.onnx') unsupported(n, `domain '${n.domain}' (only the default ONNX domain is supported)`);
    const env: NodeEnv = {
      opset: g.opset,
      shape: (name) => lookup(name, n).shape,
      optional: (name) => name !== undefined && name !== '',
      constant: (name, what) => {
        const v = lookup(name, n);
        if (v.constant) return v.constant;
        const b = bound(resolveAlias(g, name));
        if (b) return b;
        return unsupported(n, `${what} ('${name}') must be known when the model is loaded (an initializer or constant), but it is computed at run time`);
      },
    };
    const inputsConst = n.inputs.map((i) => (i ? lookup(i, n).constant : null));
    const allConst = n.inputs.every((i, k) => !i || inputsConst[k] !== null);
    if (n.opType === 'Shape' || n.opType === 'Size') {
      const x = lookup(n.inputs[0], n);
      const [out] = foldNode(n, [{ dtype: 'float32', dims: x.shape, data: new Float32Array(0) }], g.opset);
      values.set(n.outputs[0], { shape: out.dims, constant: out });
      return;
    }
    if (FOLDABLE_OPS.has(n.opType) && (allConst || CPU_ONLY_OPS.has(n.opType))) {
      // CPU-only ops may also read graph inputs whose values are bound: the result is then known at plan time too.
      const known = n.inputs.map((i, k) => inputsConst[k] ?? (i ? bound(resolveAlias(g, i)) : null));
      if (n.inputs.some((i, k) => i && !known[k])) unsupported(n, 'this op runs only on values known at load time (shape arithmetic), but an input is computed on the GPU');
      const folded = foldNode(n, known, g.opset);
      n.outputs.forEach((o, k) => {
        if (o && folded[k]) values.set(o, { shape: folded[k].dims, constant: folded[k] });
      });
      return;
    }
    const lower = LOWERINGS.get(n.opType);
    if (!lower) unsupported(n, 'no kernel for this op');
    for (const [k, i] of n.inputs.entries()) {
      // Inputs from CPU_PARAMS on are read at plan time (shapes, axes, pads), so any type will do.
      if (!i || k >= (CPU_PARAMS.get(n.opType) ?? Infinity)) continue;
      const c = inputsConst[k];
      const inp = graphInputs.get(resolveAlias(g, i));
      const dtype = c ? c.dtype : inp && inp.elemType !== 0 ? dtypeOf(inp.elemType, `graph input '${inp.name}'`, g.file) : 'float32';
      if (!isFloatType(dtype)) unsupported(n, `input '${i}' has type ${dtype}; GPU ops take float tensors`);
      if (inp && !c && !inputShapes.has(inp.name)) {
        throw new InputError(`${where(n)} reads graph input '${inp.name}' on the GPU, but it was given only in inputValues; pass it as a tensor`);
      }
    }
    const r = lower(n, env) as ReturnType<Lowering> & { constants?: Map<string, HostTensor> };
    for (const [name, t] of r.constants ?? []) values.set(name, { shape: t.dims, constant: t });
    n.outputs.forEach((o, k) => {
      if (o && r.shapes[k]) values.set(o, { shape: r.shapes[k], constant: null });
    });
    for (const op of r.ops) ops.push(op);
  });
  const shapes = new Map<string, number[]>();
  for (const [name, v] of values) shapes.set(name, v.shape);
  const used = new Set(ops.flatMap((o) => o.inputs));
  for (const name of used) {
    const v = values.get(name);
    if (v?.constant) constants.set(name, v.constant);
  }
  const outputs = g.outputs.map((o) => resolveAlias(g, o.name));
  for (const o of outputs) {
    const v = values.get(o);
    if (v?.constant && !constants.has(o)) constants.set(o, v.constant);
  }
  return { ops, shapes, constants, inputs: g.inputs.filter((i) => inputShapes.has(i.name)).map((i) => i.name), outputs };
}

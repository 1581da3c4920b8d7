import { LimitError, OnnxFormatError, ShapeError } from '../runtime/errors.js';
import type { IrNode } from './ir.js';
import { type AttributeProto, type GraphProto, int64, isOnnxDataType, type ModelProto, type NodeProto, tensorLayout } from './proto.js';

/**
 * The model checker: everything about a model that can be wrong before any shape is known,
 * checked on the decoded protobuf before the importer builds its IR, in the spirit of
 * `onnx.checker` and stricter where camgpu must be (it runs every file it is given):
 *
 * - header: `ir_version` known, `opset_import` as that IR version requires it, one entry per
 *   domain (the default domain once);
 * - structure: single assignment (every tensor written once: by a graph input, an
 *   initializer or one node output), unique non-empty names, no dangling reads, a
 *   topological order (found when the file's order is not one) or a reported cycle, outputs
 *   that exist;
 * - nodes of the ops camgpu supports: input and output counts, required inputs present,
 *   every attribute known for the op at the model's opset, of its type and arity, integers
 *   in range (kernel, stride, dilation ≥ 1, pads ≥ 0, group ≥ 1, flags 0/1), floats finite
 *   where the op needs them;
 * - initializers and tensor attributes: known data type, dims, data of exactly dims ×
 *   element size, well-formed external data keys (the reader checks the file).
 *
 * What needs shapes (perm and axes within rank, list lengths equal to the spatial rank,
 * group dividing the channels, fold sizes) is checked in analysis, by the helpers at the end
 * of this file. Ops camgpu does not know are left for analysis to refuse by name.
 */

/** The newest ONNX IR version camgpu reads (onnx 1.17+: IR 11). */
export const MAX_IR_VERSION = 11;
/** IR version 3 introduced opset_import; older files mean opset 1. */
const FIRST_IR_WITH_OPSETS = 3;
const I32 = 2 ** 31 - 1;

/** Most elements one CPU fold (or a folded constant) may hold: 2^24 (64 MiB as float32). */
export const FOLD_MAX_ELEMENTS = 1 << 24;
/** Highest tensor rank camgpu accepts anywhere (shapes, perm, axes lists). */
export const MAX_RANK = 64;

type AttrType = 'float' | 'int' | 'string' | 'tensor' | 'graph' | 'floats' | 'ints' | 'strings' | 'tensors' | 'graphs' | 'sparse_tensor' | 'sparse_tensors' | 'type_proto' | 'type_protos';

/** AttributeProto.type codes. */
const ATTR_TYPES: ReadonlyMap<number, AttrType> = new Map([
  [1, 'float'], [2, 'int'], [3, 'string'], [4, 'tensor'], [5, 'graph'], [6, 'floats'], [7, 'ints'], [8, 'strings'],
  [9, 'tensors'], [10, 'graphs'], [11, 'sparse_tensor'], [12, 'sparse_tensors'], [13, 'type_proto'], [14, 'type_protos'],
]);

/** Which field of an AttributeProto each type keeps its value in. */
const ATTR_FIELD: ReadonlyMap<AttrType, keyof AttributeProto> = new Map([
  ['float', 'f'], ['int', 'i'], ['string', 's'], ['tensor', 't'], ['graph', 'g'], ['floats', 'floats'], ['ints', 'ints'],
  ['strings', 'strings'], ['tensors', 'tensors'], ['graphs', 'graphs'], ['sparse_tensor', 'sparseTensor'],
  ['sparse_tensors', 'sparseTensors'], ['type_proto', 'tp'], ['type_protos', 'typeProtos'],
] as [AttrType, keyof AttributeProto][]);

function populated(a: AttributeProto, field: keyof AttributeProto): boolean {
  const v = a[field];
  if (Array.isArray(v)) return v.length > 0;
  // protobufjs keeps defaults on the prototype: a field is present when it is an own property.
  return Object.prototype.hasOwnProperty.call(a, field) && v !== null && v !== undefined;
}

/** The fields of an attribute that hold a value. */
function populatedFields(a: AttributeProto): AttrType[] {
  return [...ATTR_FIELD].filter(([, f]) => populated(a, f)).map(([t]) => t);
}

/**
 * An attribute's type: its `type` field, or for old files that leave it unset the one field
 * that holds a value (null when none or several do).
 */
export function attributeType(a: AttributeProto): AttrType | null {
  if (a.type) return ATTR_TYPES.get(a.type) ?? null;
  const fields = populatedFields(a);
  return fields.length === 1 ? fields[0] : null;
}

interface AttrRule {
  type: AttrType;
  /** Opsets in which the op has this attribute: [since, until). */
  since?: number;
  until?: number;
  required?: boolean;
  /** Integer range, of the value or of every list element. */
  min?: number;
  max?: number;
  /** Lists must not be empty. */
  nonEmpty?: boolean;
  /** Floats must be finite (or, with 'number', just not NaN). */
  finite?: true | 'number';
  /** Allowed string values. */
  oneOf?: readonly string[];
}

type Arity = readonly [required: number, max: number];

interface OpSchema {
  inputs: (opset: number) => Arity;
  outputs: (opset: number) => Arity;
  attrs: Readonly<Record<string, AttrRule>>;
  /** Checks across attributes; `fail(field, detail)` throws. */
  check?: (attrs: ReadonlyMap<string, AttrValueView>, fail: (field: string, detail: string) => never) => void;
}

/** An attribute's value as the checker sees it. */
type AttrValueView = number | number[] | string | string[] | object;

const fixed = (a: number, b = a): ((opset: number) => Arity) => () => [a, b];
const bool: AttrRule = { type: 'int', min: 0, max: 1 };
const axisRule: AttrRule = { type: 'int', min: -I32, max: I32 };
const axesRule: AttrRule = { type: 'ints', min: -I32, max: I32 };
const positive: AttrRule = { type: 'ints', min: 1, max: I32, nonEmpty: true };
const finiteFloat: AttrRule = { type: 'float', finite: true };
const AUTO_PAD: AttrRule = { type: 'string', oneOf: ['NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID'] };

/** kernel_shape, strides and dilations list one value per spatial axis, pads two. */
function spatialCheck(attrs: ReadonlyMap<string, AttrValueView>, fail: (field: string, detail: string) => never): void {
  let rank: number | null = null;
  let from = '';
  for (const [field, per] of [['kernel_shape', 1], ['strides', 1], ['dilations', 1], ['pads', 2]] as const) {
    const v = attrs.get(field);
    if (!Array.isArray(v)) continue;
    if (v.length % per !== 0) fail(field, `has ${v.length} values; it takes ${per} per spatial axis`);
    const r = v.length / per;
    if (rank !== null && r !== rank) fail(field, `lists ${r} spatial axes, but ${from} lists ${rank}`);
    rank = r;
    from = field;
  }
}

const POOL_COMMON: Record<string, AttrRule> = {
  auto_pad: AUTO_PAD,
  kernel_shape: { ...positive, required: true },
  pads: { type: 'ints', min: 0, max: I32, nonEmpty: true },
  strides: positive,
};

const SCHEMAS: ReadonlyMap<string, OpSchema> = new Map<string, OpSchema>([
  ['Conv', {
    inputs: fixed(2, 3), outputs: fixed(1),
    attrs: { auto_pad: AUTO_PAD, dilations: positive, group: { type: 'int', min: 1, max: I32 }, kernel_shape: positive, pads: POOL_COMMON.pads, strides: positive },
    check: spatialCheck,
  }],
  ['MaxPool', {
    inputs: fixed(1), outputs: fixed(1, 2),
    attrs: { ...POOL_COMMON, ceil_mode: { ...bool, since: 10 }, dilations: { ...positive, since: 10 }, storage_order: { ...bool, since: 8 } },
    check: spatialCheck,
  }],
  ['AveragePool', {
    inputs: fixed(1), outputs: fixed(1),
    attrs: { ...POOL_COMMON, ceil_mode: { ...bool, since: 10 }, count_include_pad: bool, dilations: { ...positive, since: 19 } },
    check: spatialCheck,
  }],
  ['GlobalAveragePool', { inputs: fixed(1), outputs: fixed(1), attrs: {} }],
  ['GlobalMaxPool', { inputs: fixed(1), outputs: fixed(1), attrs: {} }],
  ['Gemm', { inputs: fixed(2, 3), outputs: fixed(1), attrs: { alpha: finiteFloat, beta: finiteFloat, transA: bool, transB: bool } }],
  ['MatMul', { inputs: fixed(2), outputs: fixed(1), attrs: {} }],
  ['Relu', { inputs: fixed(1), outputs: fixed(1), attrs: {} }],
  ['Sigmoid', { inputs: fixed(1), outputs: fixed(1), attrs: {} }],
  ['LeakyRelu', { inputs: fixed(1), outputs: fixed(1), attrs: { alpha: finiteFloat } }],
  ['Clip', {
    inputs: (o) => (o < 11 ? [1, 1] : [1, 3]), outputs: fixed(1),
    attrs: { min: { type: 'float', finite: 'number', until: 11 }, max: { type: 'float', finite: 'number', until: 11 } },
  }],
  ...['Add', 'Sub', 'Mul', 'Div', 'Equal'].map((op): [string, OpSchema] => [op, { inputs: fixed(2), outputs: fixed(1), attrs: {} }]),
  ['Flatten', { inputs: fixed(1), outputs: fixed(1), attrs: { axis: axisRule } }],
  ['Reshape', { inputs: fixed(2), outputs: fixed(1), attrs: { allowzero: { ...bool, since: 14 } } }],
  ['Squeeze', { inputs: (o) => (o < 13 ? [1, 1] : [1, 2]), outputs: fixed(1), attrs: { axes: { ...axesRule, until: 13 } } }],
  ['Unsqueeze', { inputs: (o) => (o < 13 ? [1, 1] : [2, 2]), outputs: fixed(1), attrs: { axes: { ...axesRule, until: 13, required: true } } }],
  ['Identity', { inputs: fixed(1), outputs: fixed(1), attrs: {} }],
  ['Dropout', {
    inputs: (o) => (o < 12 ? [1, 1] : [1, 3]), outputs: fixed(1, 2),
    attrs: { ratio: { type: 'float', finite: true, until: 12 }, seed: { type: 'int', since: 12 } },
  }],
  ['Concat', { inputs: fixed(1, Infinity), outputs: fixed(1), attrs: { axis: { ...axisRule, required: true } } }],
  ['Softmax', { inputs: fixed(1), outputs: fixed(1), attrs: { axis: axisRule } }],
  ['LogSoftmax', { inputs: fixed(1), outputs: fixed(1), attrs: { axis: axisRule } }],
  ['Pad', {
    inputs: (o) => (o < 11 ? [1, 1] : o < 18 ? [2, 3] : [2, 4]), outputs: fixed(1),
    attrs: {
      mode: { type: 'string', oneOf: ['constant', 'reflect', 'edge', 'wrap'] },
      pads: { type: 'ints', min: -I32, max: I32, until: 11, required: true },
      value: { type: 'float', finite: 'number', until: 11 },
    },
  }],
  ['BatchNormalization', {
    inputs: fixed(5), outputs: (o) => (o < 14 ? [1, 5] : [1, 3]),
    attrs: { epsilon: finiteFloat, momentum: finiteFloat, spatial: { ...bool, until: 9 }, training_mode: { ...bool, since: 14 } },
  }],
  ['Constant', {
    inputs: fixed(0), outputs: fixed(1),
    attrs: {
      value: { type: 'tensor' }, sparse_value: { type: 'sparse_tensor', since: 11 }, value_float: { type: 'float', since: 12 },
      value_floats: { type: 'floats', since: 12 }, value_int: { type: 'int', since: 12 }, value_ints: { type: 'ints', since: 12 },
      value_string: { type: 'string', since: 12 }, value_strings: { type: 'strings', since: 12 },
    },
    check: (attrs, fail) => {
      if (attrs.size !== 1) fail(attrs.size ? [...attrs.keys()][1] : 'value', `a Constant takes exactly one value attribute, this one has ${attrs.size}`);
    },
  }],
  ['Shape', { inputs: fixed(1), outputs: fixed(1), attrs: { start: { ...axisRule, since: 15 }, end: { ...axisRule, since: 15 } } }],
  ['Size', { inputs: fixed(1), outputs: fixed(1), attrs: {} }],
  ['Gather', { inputs: fixed(2), outputs: fixed(1), attrs: { axis: axisRule } }],
  ['Cast', { inputs: fixed(1), outputs: fixed(1), attrs: { to: { type: 'int', required: true, min: 1, max: 23 }, saturate: { ...bool, since: 19 } } }],
  ['Slice', {
    inputs: (o) => (o < 10 ? [1, 1] : [3, 5]), outputs: fixed(1),
    attrs: { starts: { type: 'ints', until: 10, required: true }, ends: { type: 'ints', until: 10, required: true }, axes: { ...axesRule, until: 10 } },
    check: (attrs, fail) => {
      const s = attrs.get('starts');
      const e = attrs.get('ends');
      const a = attrs.get('axes');
      if (Array.isArray(s) && Array.isArray(e) && s.length !== e.length) fail('ends', `has ${e.length} values for ${s.length} starts`);
      if (Array.isArray(s) && Array.isArray(a) && a.length !== s.length) fail('axes', `has ${a.length} values for ${s.length} starts`);
    },
  }],
  ['ConstantOfShape', { inputs: fixed(1), outputs: fixed(1), attrs: { value: { type: 'tensor' } } }],
  ['Range', { inputs: fixed(3), outputs: fixed(1), attrs: {} }],
  ['Where', { inputs: fixed(3), outputs: fixed(1), attrs: {} }],
  ['Expand', { inputs: fixed(2), outputs: fixed(1), attrs: {} }],
  ['Transpose', { inputs: fixed(1), outputs: fixed(1), attrs: { perm: { type: 'ints', min: 0, max: MAX_RANK - 1 } } }],
]);

/** Op types whose nodes the checker knows (the rest are refused by name in analysis). */
export const CHECKED_OPS: ReadonlySet<string> = new Set(SCHEMAS.keys());

export interface CheckedModel {
  /** Default-domain opset. */
  opset: number;
  /** Node indices in a topological order (the file's own when it is one). */
  order: number[];
  /** The IR name of every node, by file index: its name, or `<OpType>_<index>` when it has none. */
  names: string[];
}

function isDefaultDomain(d: string | null | undefined): boolean {
  return !d || d === 'ai.onnx';
}

/** The default-domain opset a model imports, checked against its IR version. */
function checkHeader(model: ModelProto, file: string): number {
  const ir = int64(model.irVersion);
  const hasIr = Object.prototype.hasOwnProperty.call(model, 'irVersion');
  if (!hasIr || !Number.isSafeInteger(ir) || ir < 1) {
    throw new OnnxFormatError(file, `ir_version ${hasIr ? ir : '(missing)'} is not a valid IR version (1 through ${MAX_IR_VERSION})`, { field: 'ir_version' });
  }
  if (ir > MAX_IR_VERSION) throw new OnnxFormatError(file, `ir_version ${ir} is newer than camgpu reads (1 through ${MAX_IR_VERSION})`, { field: 'ir_version' });
  const imports = model.opsetImport ?? [];
  if (imports.length === 0) {
    if (ir >= FIRST_IR_WITH_OPSETS) throw new OnnxFormatError(file, `IR version ${ir} requires opset_import, and the model has none`, { field: 'opset_import' });
    // IR 1 and 2 predate opset_import: such files mean opset 1.
    return 1;
  }
  const seen = new Map<string, number>();
  let opset: number | null = null;
  for (const o of imports) {
    const domain = isDefaultDomain(o.domain) ? '' : o.domain!;
    const label = domain || 'ai.onnx (default)';
    const v = int64(o.version);
    if (!Number.isSafeInteger(v) || v < 1) throw new OnnxFormatError(file, `opset_import of domain ${label}: version ${v} is not a positive integer`, { field: 'opset_import' });
    if (seen.has(domain)) throw new OnnxFormatError(file, `opset_import lists domain ${label} twice (versions ${seen.get(domain)} and ${v})`, { field: 'opset_import' });
    seen.set(domain, v);
    if (domain === '') opset = v;
  }
  if (opset === null) throw new OnnxFormatError(file, 'the model imports no default-domain (ai.onnx) opset', { field: 'opset_import' });
  return opset;
}

/** IR names of the nodes (unnamed: `<OpType>_<index>`; a generated name that collides gets `#<index>`). */
function nodeNames(nodes: readonly NodeProto[], file: string): string[] {
  const given = new Map<string, number>();
  nodes.forEach((n, i) => {
    if (!n.name) return;
    const prev = given.get(n.name);
    if (prev !== undefined) throw new OnnxFormatError(file, `nodes ${prev} and ${i} are both named '${n.name}' (node names identify layers)`, { node: n.name, field: 'name' });
    given.set(n.name, i);
  });
  const names = new Set(given.keys());
  return nodes.map((n, i) => {
    if (n.name) return n.name;
    let name = `${n.opType || 'node'}_${i}`;
    if (names.has(name)) name = `${name}#${i}`;
    names.add(name);
    return name;
  });
}

/**
 * Who writes each tensor, and a topological order of the nodes: the file's order when every
 * input is defined before it is read, else one found by Kahn's algorithm (ties in file
 * order); a cycle is reported by the nodes on it.
 */
function checkStructure(graph: GraphProto, file: string, names: string[]): number[] {
  const nodes = graph.node ?? [];
  const writer = new Map<string, string>();
  const define = (name: string, what: string, field: string, node?: string) => {
    const prev = writer.get(name);
    if (prev !== undefined) throw new OnnxFormatError(file, `tensor '${name}' is written twice: by ${prev} and by ${what} (each tensor has exactly one writer)`, { node, field });
    writer.set(name, what);
  };
  const inits = new Set<string>();
  for (const t of graph.initializer ?? []) {
    const name = t.name ?? '';
    if (!name) throw new OnnxFormatError(file, 'an initializer has no name', { field: 'initializer' });
    if (inits.has(name)) throw new OnnxFormatError(file, `initializer '${name}' is defined twice`, { field: 'initializer' });
    inits.add(name);
    define(name, `initializer '${name}'`, 'initializer');
  }
  const inputs = new Set<string>();
  for (const v of graph.input ?? []) {
    const name = v.name ?? '';
    if (!name) throw new OnnxFormatError(file, 'a graph input has no name', { field: 'input' });
    if (inputs.has(name)) throw new OnnxFormatError(file, `graph input '${name}' is declared twice`, { field: 'input' });
    inputs.add(name);
    if (!inits.has(name)) define(name, `graph input '${name}'`, 'input'); // an initializer may also be listed as an input (IR < 4 requires it)
  }
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => {
    const op = n.opType ?? '';
    if (!op) throw new OnnxFormatError(file, `node ${i} ('${names[i]}') has no op_type`, { node: names[i], field: 'op_type' });
    for (const o of n.output ?? []) {
      if (!o) continue; // an omitted optional output
      define(o, `node '${names[i]}' (${op})`, 'output', names[i]);
      producer.set(o, i);
    }
  });
  // Reads: every name defined somewhere; the file's order kept when it is topological.
  let sorted = true;
  const deps: number[][] = nodes.map(() => []);
  nodes.forEach((n, i) => {
    for (const inp of n.input ?? []) {
      if (!inp) continue;
      if (!writer.has(inp)) {
        throw new OnnxFormatError(file, `node '${names[i]}' (${n.opType}) reads '${inp}', which no node, input or initializer defines`, { node: names[i], field: 'input' });
      }
      const p = producer.get(inp);
      if (p === undefined) continue;
      if (p === i) throw new OnnxFormatError(file, `node '${names[i]}' (${n.opType}) reads its own output '${inp}' (a cycle)`, { node: names[i], field: 'input' });
      if (p > i) sorted = false;
      deps[i].push(p);
    }
  });
  const outs = new Set<string>();
  for (const v of graph.output ?? []) {
    const name = v.name ?? '';
    if (!name) throw new OnnxFormatError(file, 'a graph output has an empty name', { field: 'output' });
    if (outs.has(name)) throw new OnnxFormatError(file, `graph output '${name}' is listed twice`, { field: 'output' });
    outs.add(name);
    if (!writer.has(name)) throw new OnnxFormatError(file, `graph output '${name}' is never computed`, { field: 'output' });
  }
  if (sorted) return nodes.map((_, i) => i);
  return topologicalOrder(deps, names, file);
}

/** Kahn's algorithm, ready nodes taken in file order (a binary heap); throws on a cycle. */
function topologicalOrder(deps: number[][], names: string[], file: string): number[] {
  const n = deps.length;
  const users: number[][] = deps.map(() => []);
  const pending = new Int32Array(n);
  deps.forEach((ds, i) => {
    for (const d of ds) {
      users[d].push(i);
      pending[i]++;
    }
  });
  const heap: number[] = [];
  const push = (v: number) => {
    heap.push(v);
    for (let k = heap.length - 1; k > 0;) {
      const p = (k - 1) >> 1;
      if (heap[p] <= heap[k]) break;
      [heap[p], heap[k]] = [heap[k], heap[p]];
      k = p;
    }
  };
  const pop = () => {
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length) {
      heap[0] = last;
      for (let k = 0; ;) {
        const l = 2 * k + 1;
        const r = l + 1;
        let m = k;
        if (l < heap.length && heap[l] < heap[m]) m = l;
        if (r < heap.length && heap[r] < heap[m]) m = r;
        if (m === k) break;
        [heap[m], heap[k]] = [heap[k], heap[m]];
        k = m;
      }
    }
    return top;
  };
  for (let i = 0; i < n; i++) if (pending[i] === 0) push(i);
  const order: number[] = [];
  while (heap.length) {
    const v = pop();
    order.push(v);
    for (const u of users[v]) if (--pending[u] === 0) push(u);
  }
  if (order.length === n) return order;
  // Walk back along unfinished dependencies until a node repeats: that loop is a cycle.
  const done = new Uint8Array(n);
  for (const v of order) done[v] = 1;
  let v = pending.findIndex((p) => p > 0);
  const seenAt = new Map<number, number>();
  const path: number[] = [];
  while (!seenAt.has(v)) {
    seenAt.set(v, path.length);
    path.push(v);
    v = deps[v].find((d) => !done[d])!;
  }
  const loop = path.slice(seenAt.get(v)!).reverse();
  // Reported from the node that comes first in the file.
  const first = loop.indexOf(Math.min(...loop));
  const cycle = [...loop.slice(first), ...loop.slice(0, first)];
  const shown = cycle.slice(0, 8).map((i) => `'${names[i]}'`);
  throw new OnnxFormatError(file, `the graph has a cycle: ${shown.join(' → ')}${cycle.length > 8 ? ` → … (${cycle.length} nodes)` : ` → '${names[cycle[0]]}'`}`, { node: names[cycle[0]], field: 'input' });
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

/** The value of an attribute as rules check it (numbers as JS numbers; non-safe int64 as NaN). */
function attrView(a: AttributeProto, type: AttrType): AttrValueView {
  const int = (v: number | { toNumber(): number } | null | undefined) => {
    const x = int64(v);
    return Number.isSafeInteger(x) ? x : NaN;
  };
  switch (type) {
    case 'float': return a.f ?? 0;
    case 'int': return int(a.i);
    case 'floats': return [...(a.floats ?? [])];
    case 'ints': return (a.ints ?? []).map(int);
    case 'string': return utf8.decode(a.s ?? new Uint8Array());
    case 'strings': return (a.strings ?? []).map((s) => utf8.decode(s));
    default: return {};
  }
}

const UPPER = (t: AttrType) => t.toUpperCase();

function checkNode(n: NodeProto, name: string, opset: number, file: string): void {
  const op = n.opType!;
  const where = `node '${name}' (${op})`;
  const fail = (field: string, detail: string): never => {
    throw new OnnxFormatError(file, `${where}: ${detail}`, { node: name, field });
  };
  const attrs = new Map<string, AttrValueView>();
  const schema = isDefaultDomain(n.domain) ? SCHEMAS.get(op) : undefined;
  for (const a of n.attribute ?? []) {
    const an = a.name ?? '';
    if (!an) fail('attribute', 'an attribute has no name');
    if (attrs.has(an)) fail(an, `attribute '${an}' is given twice`);
    if (a.refAttrName) fail(an, `attribute '${an}' refers to a function attribute ('${a.refAttrName}') outside a function`);
    const type = attributeType(a);
    if (type === null) fail(an, `attribute '${an}' has ${a.type ? `unknown type ${a.type}` : 'no type and no single value'}`);
    const fields = populatedFields(a).filter((t) => t !== type);
    if (fields.length) fail(an, `attribute '${an}' of type ${UPPER(type!)} also holds a ${UPPER(fields[0])} value`);
    if (type === 'tensor' && a.t) {
      tensorLayout(a.t, file, `${where} attribute '${an}'`);
      if (a.t.dataLocation === 1) fail(an, `tensor attribute '${an}' keeps its data in an external file (only initializers may)`);
    }
    attrs.set(an, attrView(a, type!));
    if (!schema) continue;
    const rule = Object.prototype.hasOwnProperty.call(schema.attrs, an) ? schema.attrs[an] : undefined;
    const allowed = (r: AttrRule) => opset >= (r.since ?? 0) && opset < (r.until ?? Infinity);
    if (!rule || !allowed(rule)) {
      const known = Object.entries(schema.attrs).filter(([, r]) => allowed(r)).map(([k]) => k);
      fail(an, `unknown attribute '${an}' for ${op} at opset ${opset} (${known.length ? `it takes ${known.join(', ')}` : 'it takes none'})`);
    }
    if (rule!.type !== type) fail(an, `attribute '${an}' is ${UPPER(type!)}; ${op} takes it as ${UPPER(rule!.type)}`);
    checkAttrValue(rule!, an, attrs.get(an)!, fail);
  }
  if (!schema) return;
  for (const [an, rule] of Object.entries(schema.attrs)) {
    if (rule.required && opset >= (rule.since ?? 0) && opset < (rule.until ?? Infinity) && !attrs.has(an)) fail(an, `required attribute '${an}' is missing`);
  }
  schema.check?.(attrs, fail);
  const [inReq, inMax] = schema.inputs(opset);
  const ins = n.input ?? [];
  if (ins.length > inMax) fail('input', `has ${ins.length} inputs; ${op} at opset ${opset} takes at most ${inMax}`);
  if (ins.length < inReq) fail('input', `has ${ins.length} inputs; ${op} at opset ${opset} takes at least ${inReq}`);
  // Variadic inputs (Concat) can't be omitted; others only past the required ones.
  const mustName = inMax === Infinity ? ins.length : inReq;
  for (let k = 0; k < mustName; k++) if (!ins[k]) fail('input', `input ${k} is required but empty`);
  const [outReq, outMax] = schema.outputs(opset);
  const outs = n.output ?? [];
  if (outs.length > outMax) fail('output', `has ${outs.length} outputs; ${op} at opset ${opset} has at most ${outMax}`);
  if (outs.length < outReq) fail('output', `has ${outs.length} outputs; ${op} takes at least ${outReq}`);
  for (let k = 0; k < outReq; k++) if (!outs[k]) fail('output', `output ${k} is required but empty`);
}

function checkAttrValue(rule: AttrRule, an: string, v: AttrValueView, fail: (field: string, detail: string) => never): void {
  if (rule.type === 'int' || rule.type === 'ints') {
    const list = Array.isArray(v) ? (v as number[]) : [v as number];
    if (rule.type === 'ints' && rule.nonEmpty && list.length === 0) fail(an, `attribute '${an}' is an empty list`);
    const lo = rule.min ?? -Number.MAX_SAFE_INTEGER;
    const hi = rule.max ?? Number.MAX_SAFE_INTEGER;
    for (const x of list) {
      if (!Number.isSafeInteger(x)) fail(an, `attribute '${an}' holds an integer beyond ±2^53`);
      if (x < lo || x > hi) fail(an, `attribute '${an}' = ${Array.isArray(v) ? `[${list.length > 16 ? `${list.slice(0, 16)},…` : list}]` : x}: each value must be in [${lo}, ${hi}]`);
    }
  } else if (rule.type === 'float' || rule.type === 'floats') {
    const list = Array.isArray(v) ? (v as number[]) : [v as number];
    for (const x of list) {
      if (rule.finite === true && !Number.isFinite(x)) fail(an, `attribute '${an}' = ${x} must be a finite number`);
      if (rule.finite === 'number' && Number.isNaN(x)) fail(an, `attribute '${an}' is NaN`);
    }
  } else if (rule.type === 'string' && rule.oneOf && !rule.oneOf.includes(v as string)) {
    fail(an, `attribute '${an}' = '${v}' must be one of ${rule.oneOf.join(', ')}`);
  }
}

function checkValueInfoDims(graph: GraphProto, file: string): void {
  for (const v of graph.input ?? []) {
    for (const d of v.type?.tensorType?.shape?.dim ?? []) {
      if ((d as { value?: string }).value !== 'dimValue') continue;
      const x = int64(d.dimValue);
      if (!Number.isSafeInteger(x) || x < 0) throw new OnnxFormatError(file, `graph input '${v.name}': dimension ${x} is not a non-negative integer`, { field: 'dims' });
    }
  }
}

/**
 * Checks a decoded model (see the file comment); throws OnnxFormatError naming the node or
 * tensor and the field. Returns the opset, a topological order and the nodes' IR names.
 */
export function checkModel(model: ModelProto, file: string): CheckedModel {
  const opset = checkHeader(model, file);
  const graph = model.graph!;
  const nodes = graph.node ?? [];
  const names = nodeNames(nodes, file);
  const order = checkStructure(graph, file, names);
  for (const t of graph.initializer ?? []) tensorLayout(t, file, `tensor '${t.name || '<unnamed>'}'`);
  checkValueInfoDims(graph, file);
  nodes.forEach((n, i) => checkNode(n, names[i], opset, file));
  return { opset, order, names };
}

// ---- Checks that need shapes, used by analysis and CPU folding. ----

function nodeWhere(n: IrNode): string {
  return `node '${n.name}' (${n.opType})`;
}

/** An axis in [-rank, rank), normalized; ShapeError naming the node and field otherwise. */
export function checkAxis(n: IrNode, field: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new ShapeError(nodeWhere(n), `${field} ${axis} is out of range for rank ${rank} (valid: ${-rank} through ${rank - 1})`, { node: n.name, field });
  }
  return axis < 0 ? axis + rank : axis;
}

/** Distinct axes in [-rank, rank), normalized. */
export function checkAxes(n: IrNode, field: string, axes: readonly number[], rank: number): number[] {
  if (axes.length > rank) throw new ShapeError(nodeWhere(n), `${field} lists ${axes.length} axes for rank ${rank}`, { node: n.name, field });
  const seen = new Uint8Array(rank);
  return axes.map((a) => {
    const v = checkAxis(n, field, a, rank);
    if (seen[v]) throw new ShapeError(nodeWhere(n), `${field} [${axes}] names axis ${v} twice`, { node: n.name, field });
    seen[v] = 1;
    return v;
  });
}

/** A permutation of 0 … rank-1. */
export function checkPerm(n: IrNode, perm: readonly number[], rank: number): number[] {
  if (perm.length !== rank) throw new ShapeError(nodeWhere(n), `perm [${perm}] has ${perm.length} entries for rank ${rank}`, { node: n.name, field: 'perm' });
  const seen = new Uint8Array(rank);
  for (const p of perm) {
    if (!Number.isInteger(p) || p < 0 || p >= rank || seen[p]) throw new ShapeError(nodeWhere(n), `perm [${perm}] is not a permutation of 0…${rank - 1}`, { node: n.name, field: 'perm' });
    seen[p] = 1;
  }
  return [...perm];
}

/** A list attribute with exactly `want` values (one per spatial axis, …). */
export function checkLength(n: IrNode, field: string, list: readonly number[], want: number, what: string): void {
  if (list.length !== want) throw new ShapeError(nodeWhere(n), `${field} has ${list.length} values; ${what} takes ${want}`, { node: n.name, field });
}

/** Integer values of a tensor read as a shape, axes or indices: each a safe integer (within ±2^53). */
export function checkIntegers(n: IrNode, field: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isSafeInteger(v)) throw new ShapeError(nodeWhere(n), `${field} holds ${v}, not an integer`, { node: n.name, field });
  }
}

/** Dims of a shape computed from values (ConstantOfShape, Expand, Reshape): non-negative integers, rank ≤ MAX_RANK. */
export function checkDims(n: IrNode, field: string, dims: readonly number[]): void {
  if (dims.length > MAX_RANK) throw new LimitError(`${nodeWhere(n)}: ${field} has rank ${dims.length}, over camgpu's cap of ${MAX_RANK}`, { node: n.name, field });
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new ShapeError(nodeWhere(n), `${field} [${dims.length > 16 ? `${dims.slice(0, 16)},…` : dims}] must be non-negative integers`, { node: n.name, field });
  }
}

/**
 * Checked before a CPU fold allocates: `count` elements (any non-finite or fractional
 * count is a shape error) within FOLD_MAX_ELEMENTS.
 */
export function checkFoldSize(n: IrNode, count: number, what = 'result'): void {
  if (Number.isNaN(count) || count < 0) throw new ShapeError(nodeWhere(n), `the ${what} would have ${count} elements`, { node: n.name });
  if (count > FOLD_MAX_ELEMENTS) {
    throw new LimitError(`${nodeWhere(n)}: folding on the CPU would make a ${what} of ${count} elements, over the cap of ${FOLD_MAX_ELEMENTS} (FOLD_MAX_ELEMENTS)`, { node: n.name });
  }
}

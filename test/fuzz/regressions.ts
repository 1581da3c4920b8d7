import type onnxProto from 'onnx-proto';
import { onnx } from '../../src/onnx/proto.js';

/**
 * Named regression fixtures, one per defect class the structure-aware fuzzer found (issue 8):
 * each a small model (and the files beside it) and the exact typed error it must raise —
 * its code, the node it names and the field. test/hostile.test.ts loads and runs each one
 * through the library and the CLI; the fuzzer's own reproducers reduce to these.
 */

type Attr = onnxProto.onnx.IAttributeProto;
export const ints = (name: string, v: number[]): Attr => ({ name, type: 7, ints: v });
export const int = (name: string, i: number): Attr => ({ name, type: 2, i });
export const float = (name: string, f: number): Attr => ({ name, type: 1, f });
export const floats = (name: string, v: number[]): Attr => ({ name, type: 6, floats: v });
export const str = (name: string, s: string): Attr => ({ name, type: 3, s: new TextEncoder().encode(s) });

export interface NodeSpec {
  op: string;
  name: string;
  in: string[];
  out: string[];
  attrs?: Attr[];
}

export interface InitSpec {
  name: string;
  dims: number[];
  /** float32 values (raw_data), or int64 values, or a full TensorProto. */
  f32?: number[];
  i64?: number[];
  proto?: onnxProto.onnx.ITensorProto;
}

export interface ModelSpec {
  nodes: NodeSpec[];
  inits?: InitSpec[];
  /** Graph inputs: name and dims (float32); default x [1, 4]. */
  inputs?: [string, (number | string)[]][];
  outputs: string[];
  opset?: number;
  /** Replaces opset_import (undefined: the default domain at `opset`). */
  opsets?: { domain: string; version: number }[];
  ir?: number | null;
  /** Last-minute edits of the proto (fields the spec has no words for). */
  edit?: (m: onnxProto.onnx.IModelProto) => void;
}

export function tensorProto(t: InitSpec): onnxProto.onnx.ITensorProto {
  if (t.proto) return { name: t.name, dims: t.dims, ...t.proto };
  if (t.i64) return { name: t.name, dims: t.dims, dataType: 7, rawData: new Uint8Array(BigInt64Array.from(t.i64, (v) => BigInt(v)).buffer) };
  return { name: t.name, dims: t.dims, dataType: 1, rawData: new Uint8Array(Float32Array.from(t.f32 ?? []).buffer) };
}

export function buildProto(s: ModelSpec): onnxProto.onnx.IModelProto {
  const vi = (name: string, dims?: (number | string)[]) => ({
    name, type: { tensorType: { elemType: 1, shape: dims ? { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } : undefined } },
  });
  const m: onnxProto.onnx.IModelProto = {
    irVersion: s.ir === null ? undefined : s.ir ?? 8,
    producerName: 'camgpu-regression',
    opsetImport: s.opsets ?? [{ domain: '', version: s.opset ?? 17 }],
    graph: {
      name: 'g',
      node: s.nodes.map((n) => ({ opType: n.op, name: n.name, input: n.in, output: n.out, attribute: n.attrs ?? [] })),
      initializer: (s.inits ?? []).map(tensorProto),
      input: (s.inputs ?? [['x', [1, 4]]]).map(([n, d]) => vi(n, d)),
      output: s.outputs.map((o) => vi(o)),
    },
  };
  if (s.ir === null) delete m.irVersion;
  s.edit?.(m);
  return m;
}

export function encode(s: ModelSpec): Uint8Array {
  return onnx.ModelProto.encode(onnx.ModelProto.create(buildProto(s))).finish();
}

export interface Regression {
  /** What went wrong before (the defect class). */
  name: string;
  model: ModelSpec;
  /** Files beside the model (external data), symbolic links, a shape to feed. */
  files?: { name: string; bytes: Uint8Array }[];
  symlinks?: { name: string; target: string }[];
  feed?: number[];
  expect: { code: string; node?: string; field?: string; message: RegExp };
  /** Must fail within this many milliseconds (hangs and quadratic folds). */
  withinMs?: number;
}

const relu: NodeSpec = { op: 'Relu', name: 'relu', in: ['x'], out: ['y'] };
const i64c = (name: string, out: string, v: number[], dims = [v.length]): NodeSpec => ({
  op: 'Constant', name, in: [], out: [out], attrs: [{ name: 'value', type: 4, t: tensorProto({ name: '', dims, i64: v }) }],
});
const f32c = (name: string, out: string, v: number[], dims = [v.length]): NodeSpec => ({
  op: 'Constant', name, in: [], out: [out], attrs: [{ name: 'value', type: 4, t: tensorProto({ name: '', dims, f32: v }) }],
});

/** A conv over x [1, 2, 5, 5] with weights w [3, 2, 3, 3]. */
function conv(attrs: Attr[], weightDims = [3, 2, 3, 3]): ModelSpec {
  const n = weightDims.reduce((a, b) => a * b, 1);
  return {
    nodes: [{ op: 'Conv', name: 'conv', in: ['x', 'w'], out: ['y'], attrs }],
    inits: [{ name: 'w', dims: weightDims, f32: Array.from({ length: n }, (_, i) => (i % 7) / 7) }],
    inputs: [['x', [1, 2, 5, 5]]],
    outputs: ['y'],
  };
}
const CONV_FEED = [1, 2, 5, 5];

function pool(attrs: Attr[]): ModelSpec {
  return { nodes: [{ op: 'MaxPool', name: 'pool', in: ['x'], out: ['y'], attrs }], inputs: [['x', [1, 1, 6, 6]]], outputs: ['y'] };
}

/** y = Relu(x), plus `extra` nodes computing `out` (a graph output): the fold under test runs in analysis. */
function withFold(extra: NodeSpec[], out: string, inits: InitSpec[] = []): ModelSpec {
  return { nodes: [relu, ...extra], inits, outputs: ['y', out] };
}

const WEIGHTS = new Uint8Array(new Float32Array(54).fill(0.5).buffer);
function external(entries: [string, string][]): ModelSpec {
  return {
    ...conv([]),
    inits: [{ name: 'w', dims: [3, 2, 3, 3], proto: { dataType: 1, dataLocation: 1, externalData: entries.map(([key, value]) => ({ key, value })) } }],
  };
}

export const REGRESSIONS: readonly Regression[] = [
  // --- process aborts: folds that materialized huge tensors ---
  {
    name: 'Range with limit 1e9 (heap out of memory)',
    model: withFold([i64c('s', 's', [0], []), i64c('l', 'l', [1e9], []), i64c('d', 'd', [1], []), { op: 'Range', name: 'range', in: ['s', 'l', 'd'], out: ['r'] }], 'r'),
    expect: { code: 'LIMIT', node: 'range', message: /node 'range' \(Range\): folding on the CPU would make a result of 1000000000 elements, over the cap of 16777216/ },
    withinMs: 2000,
  },
  {
    name: 'Range with start -1e9 (heap out of memory)',
    model: withFold([i64c('s', 's', [-1e9], []), i64c('l', 'l', [0], []), i64c('d', 'd', [1], []), { op: 'Range', name: 'range', in: ['s', 'l', 'd'], out: ['r'] }], 'r'),
    expect: { code: 'LIMIT', node: 'range', message: /1000000000 elements/ },
    withinMs: 2000,
  },
  {
    name: 'Slice with axes 1e9 (heap out of memory, holey arrays)',
    model: withFold([f32c('c', 'c', [1, 2, 3, 4], [2, 2]), i64c('st', 'st', [0]), i64c('en', 'en', [1]), i64c('ax', 'ax', [1e9]), { op: 'Slice', name: 'slice', in: ['c', 'st', 'en', 'ax'], out: ['r'] }], 'r'),
    expect: { code: 'SHAPE', node: 'slice', field: 'axes', message: /node 'slice' \(Slice\): axes 1000000000 is out of range for rank 2/ },
    withinMs: 2000,
  },
  {
    name: 'Slice with axes 2^31-1 (hang)',
    model: withFold([f32c('c', 'c', [1, 2, 3, 4], [2, 2]), i64c('st', 'st', [0]), i64c('en', 'en', [1]), i64c('ax', 'ax', [2 ** 31 - 1]), { op: 'Slice', name: 'slice', in: ['c', 'st', 'en', 'ax'], out: ['r'] }], 'r'),
    expect: { code: 'SHAPE', node: 'slice', field: 'axes', message: /axes 2147483647 is out of range for rank 2/ },
    withinMs: 2000,
  },
  {
    name: 'Unsqueeze with a million axes (quadratic fold)',
    model: withFold([f32c('c', 'c', [1]), i64c('ax', 'ax', Array.from({ length: 1_000_000 }, (_, i) => i)), { op: 'Unsqueeze', name: 'unsq', in: ['c', 'ax'], out: ['r'] }], 'r'),
    expect: { code: 'LIMIT', node: 'unsq', field: 'axes', message: /node 'unsq' \(Unsqueeze\): the result would have rank 1000001, over camgpu's cap of 64/ },
    withinMs: 3000,
  },
  {
    name: 'ConstantOfShape over 2^32 elements (Invalid array length)',
    model: withFold([i64c('shape', 'shape', [65536, 65537]), { op: 'ConstantOfShape', name: 'cos', in: ['shape'], out: ['r'] }], 'r'),
    expect: { code: 'LIMIT', node: 'cos', message: /4295032832 elements, over the cap/ },
  },
  {
    name: 'Expand to over 2^32 elements (Invalid array length)',
    model: withFold([f32c('c', 'c', [1]), i64c('shape', 'shape', [2 ** 20, 2 ** 13]), { op: 'Expand', name: 'expand', in: ['c', 'shape'], out: ['r'] }], 'r'),
    expect: { code: 'LIMIT', node: 'expand', message: /8589934592 elements/ },
  },
  {
    name: 'a pool window of 2^31-1 under SAME padding (GPU hang)',
    model: pool([ints('kernel_shape', [2 ** 31 - 1, 1]), str('auto_pad', 'SAME_UPPER')]),
    feed: [1, 1, 6, 6],
    expect: { code: 'LIMIT', node: 'pool', field: 'kernel_shape', message: /reads, over camgpu's cap of 4294967296 per pool/ },
    withinMs: 5000,
  },
  // --- untyped errors: structure ---
  {
    name: 'two nodes writing the same tensor (internal: no storage)',
    model: { nodes: [relu, { op: 'Sigmoid', name: 'sig', in: ['x'], out: ['y'] }], outputs: ['y'] },
    expect: { code: 'ONNX_FORMAT', node: 'sig', field: 'output', message: /tensor 'y' is written twice: by node 'relu' \(Relu\) and by node 'sig' \(Sigmoid\)/ },
  },
  {
    name: "a graph output named ''",
    model: { nodes: [relu], outputs: [''] },
    expect: { code: 'ONNX_FORMAT', field: 'output', message: /a graph output has an empty name/ },
  },
  {
    name: 'a node writing an initializer',
    model: { nodes: [relu], inits: [{ name: 'y', dims: [1], f32: [1] }], outputs: ['y'] },
    expect: { code: 'ONNX_FORMAT', node: 'relu', message: /tensor 'y' is written twice: by initializer 'y' and by node 'relu'/ },
  },
  ...['constructor', '__proto__', 'valueOf'].map((op): Regression => ({
    name: `op_type '${op}' (the op table was a plain object)`,
    model: { nodes: [{ op, name: 'odd', in: ['x'], out: ['y'] }], outputs: ['y'] },
    expect: { code: 'UNSUPPORTED_OP', node: 'odd', message: new RegExp(`unsupported op ${op.replace(/_/g, '_')} at node 'odd': no kernel for this op`) },
  })),
  {
    name: 'a cycle',
    model: { nodes: [{ op: 'Relu', name: 'a', in: ['z'], out: ['y'] }, { op: 'Relu', name: 'b', in: ['y'], out: ['z'] }], outputs: ['y'] },
    expect: { code: 'ONNX_FORMAT', node: 'a', field: 'input', message: /the graph has a cycle: 'a' → 'b' → 'a'/ },
  },
  // --- untyped errors: attributes ---
  {
    name: 'a negative kernel (kernel parameter KW = -2 is not a u32)',
    model: pool([ints('kernel_shape', [2, -2])]),
    expect: { code: 'ONNX_FORMAT', node: 'pool', field: 'kernel_shape', message: /node 'pool' \(MaxPool\): attribute 'kernel_shape' = \[2,-2\]: each value must be in \[1, 2147483647\]/ },
  },
  {
    name: 'a huge stride',
    model: conv([ints('strides', [2 ** 40, 1])]),
    expect: { code: 'ONNX_FORMAT', node: 'conv', field: 'strides', message: /attribute 'strides' = \[1099511627776,1\]: each value must be in \[1, 2147483647\]/ },
  },
  {
    name: 'a negative pad',
    model: conv([ints('pads', [1, 1, -1, 1])]),
    expect: { code: 'ONNX_FORMAT', node: 'conv', field: 'pads', message: /attribute 'pads' = \[1,1,-1,1\]: each value must be in \[0, 2147483647\]/ },
  },
  {
    name: 'a zero dilation',
    model: conv([ints('dilations', [0, 1])]),
    expect: { code: 'ONNX_FORMAT', node: 'conv', field: 'dilations', message: /attribute 'dilations' = \[0,1\]/ },
  },
  {
    name: 'an empty stride list (NaN buffer size reached createBuffer)',
    model: conv([ints('strides', [])]),
    expect: { code: 'ONNX_FORMAT', node: 'conv', field: 'strides', message: /attribute 'strides' is an empty list/ },
  },
  {
    name: 'a pad list of the wrong length',
    model: conv([ints('pads', [1, 1])]),
    expect: { code: 'SHAPE', node: 'conv', field: 'pads', message: /node 'conv' \(Conv\): pads has 2 values; a 2-D Conv takes 4/ },
    feed: CONV_FEED,
  },
  {
    name: 'strides stored as floats (silently replaced by the default)',
    model: conv([floats('strides', [2, 2])]),
    expect: { code: 'ONNX_FORMAT', node: 'conv', field: 'strides', message: /attribute 'strides' is FLOATS; Conv takes it as INTS/ },
  },
  {
    name: 'a NaN LeakyRelu alpha (kernel parameter act_a missing)',
    model: { nodes: [{ op: 'LeakyRelu', name: 'leaky', in: ['x'], out: ['y'], attrs: [float('alpha', NaN)] }], outputs: ['y'] },
    expect: { code: 'ONNX_FORMAT', node: 'leaky', field: 'alpha', message: /attribute 'alpha' = NaN must be a finite number/ },
  },
  {
    name: 'kernel [0, 0] (returned zeros)',
    model: pool([ints('kernel_shape', [0, 0])]),
    expect: { code: 'ONNX_FORMAT', node: 'pool', field: 'kernel_shape', message: /attribute 'kernel_shape' = \[0,0\]/ },
  },
  {
    name: 'conv weights with an empty kernel',
    model: conv([], [3, 2, 0, 0]),
    expect: { code: 'SHAPE', node: 'conv', field: 'kernel_shape', message: /weight \[3, 2, 0, 0\] has an empty kernel/ },
    feed: CONV_FEED,
  },
  {
    name: 'group not dividing the channels',
    model: conv([int('group', 3)]),
    expect: { code: 'SHAPE', node: 'conv', message: /not divisible by group=3/ },
    feed: CONV_FEED,
  },
  {
    name: 'an unknown attribute',
    model: conv([int('bogus', 1)]),
    expect: { code: 'ONNX_FORMAT', node: 'conv', field: 'bogus', message: /unknown attribute 'bogus' for Conv at opset 17 \(it takes auto_pad, dilations, group, kernel_shape, pads, strides\)/ },
  },
  {
    name: "Unsqueeze's axes attribute at opset 13 (ignored)",
    model: withFold([f32c('c', 'c', [1]), i64c('ax', 'ax', [0]), { op: 'Unsqueeze', name: 'unsq', in: ['c', 'ax'], out: ['r'], attrs: [ints('axes', [0])] }], 'r'),
    expect: { code: 'ONNX_FORMAT', node: 'unsq', field: 'axes', message: /unknown attribute 'axes' for Unsqueeze at opset 17 \(it takes none\)/ },
  },
  {
    name: 'a perm shorter than the rank (returned NaN)',
    model: withFold([f32c('c', 'c', [1, 2, 3, 4, 5, 6], [1, 2, 3]), { op: 'Transpose', name: 'tr', in: ['c'], out: ['r'], attrs: [ints('perm', [1, 0])] }], 'r'),
    expect: { code: 'SHAPE', node: 'tr', field: 'perm', message: /node 'tr' \(Transpose\): perm \[1,0\] has 2 entries for rank 3/ },
  },
  {
    name: 'a perm out of range (Invalid array length)',
    model: withFold([f32c('c', 'c', [1, 2, 3, 4], [2, 2]), { op: 'Transpose', name: 'tr', in: ['c'], out: ['r'], attrs: [ints('perm', [0, 5])] }], 'r'),
    expect: { code: 'SHAPE', node: 'tr', field: 'perm', message: /perm \[0,5\] is not a permutation of 0…1/ },
  },
  {
    name: 'a perm entry over the rank cap',
    model: withFold([f32c('c', 'c', [1, 2, 3, 4], [2, 2]), { op: 'Transpose', name: 'tr', in: ['c'], out: ['r'], attrs: [ints('perm', [0, 1000000])] }], 'r'),
    expect: { code: 'ONNX_FORMAT', node: 'tr', field: 'perm', message: /attribute 'perm' = \[0,1000000\]: each value must be in \[0, 63\]/ },
  },
  {
    name: 'a Gather axis out of range',
    model: withFold([f32c('c', 'c', [1, 2, 3, 4], [2, 2]), i64c('i', 'i', [0]), { op: 'Gather', name: 'gather', in: ['c', 'i'], out: ['r'], attrs: [int('axis', 5)] }], 'r'),
    expect: { code: 'SHAPE', node: 'gather', field: 'axis', message: /axis 5 is out of range for rank 2/ },
  },
  {
    name: 'a Softmax axis out of range',
    model: { nodes: [{ op: 'Softmax', name: 'sm', in: ['x'], out: ['y'], attrs: [int('axis', 1000000)] }], outputs: ['y'] },
    expect: { code: 'SHAPE', node: 'sm', field: 'axis', message: /axis 1000000 is out of range for rank 2/ },
  },
  // --- invalid models that ran ---
  {
    name: 'initializer data longer than its dims (cut)',
    model: { ...conv([]), inits: [{ name: 'w', dims: [3, 2, 3, 3], f32: new Array(55).fill(0.5) }] },
    expect: { code: 'ONNX_FORMAT', field: 'raw_data', message: /tensor 'w': 220 bytes of raw_data for float32 \[3,2,3,3\], which takes exactly 216/ },
  },
  {
    name: 'initializer data of a narrower type (cut)',
    model: { ...conv([]), inits: [{ name: 'w', dims: [3, 2, 3, 3], proto: { dataType: 10, rawData: new Uint8Array(216) } }] },
    expect: { code: 'ONNX_FORMAT', field: 'raw_data', message: /216 bytes of raw_data for float16 \[3,2,3,3\], which takes exactly 108/ },
  },
  {
    name: 'duplicate initializer names (one silently won)',
    model: { ...conv([]), inits: [{ name: 'w', dims: [3, 2, 3, 3], f32: new Array(54).fill(1) }, { name: 'w', dims: [1], f32: [1] }] },
    expect: { code: 'ONNX_FORMAT', field: 'initializer', message: /initializer 'w' is defined twice/ },
  },
  {
    name: 'a graph input declared twice',
    model: { nodes: [relu], inputs: [['x', [1, 4]], ['x', [1, 4]]], outputs: ['y'] },
    expect: { code: 'ONNX_FORMAT', field: 'input', message: /graph input 'x' is declared twice/ },
  },
  {
    name: 'an extra node input (ignored)',
    model: { nodes: [{ op: 'Relu', name: 'relu', in: ['x', 'x'], out: ['y'] }], outputs: ['y'] },
    expect: { code: 'ONNX_FORMAT', node: 'relu', field: 'input', message: /node 'relu' \(Relu\): has 2 inputs; Relu at opset 17 takes at most 1/ },
  },
  {
    name: 'a missing node input',
    model: { ...conv([]), nodes: [{ op: 'Conv', name: 'conv', in: ['x'], out: ['y'] }] },
    expect: { code: 'ONNX_FORMAT', node: 'conv', field: 'input', message: /has 1 inputs; Conv at opset 17 takes at least 2/ },
  },
  {
    name: 'no opset_import in an IR 8 file (read as opset 7)',
    model: { nodes: [relu], outputs: ['y'], opsets: [] },
    expect: { code: 'ONNX_FORMAT', field: 'opset_import', message: /IR version 8 requires opset_import, and the model has none/ },
  },
  {
    name: 'the default domain imported twice',
    model: { nodes: [relu], outputs: ['y'], opsets: [{ domain: '', version: 13 }, { domain: 'ai.onnx', version: 17 }] },
    expect: { code: 'ONNX_FORMAT', field: 'opset_import', message: /opset_import lists domain ai\.onnx \(default\) twice \(versions 13 and 17\)/ },
  },
  {
    name: 'no ir_version',
    model: { nodes: [relu], outputs: ['y'], ir: null },
    expect: { code: 'ONNX_FORMAT', field: 'ir_version', message: /ir_version \(missing\) is not a valid IR version/ },
  },
  {
    name: 'an ir_version from the future',
    model: { nodes: [relu], outputs: ['y'], ir: 100 },
    expect: { code: 'ONNX_FORMAT', field: 'ir_version', message: /ir_version 100 is newer than camgpu reads/ },
  },
  {
    name: 'a negative input dim (read as symbolic)',
    model: { nodes: [relu], inputs: [['x', [1, -4]]], outputs: ['y'] },
    expect: { code: 'ONNX_FORMAT', field: 'dims', message: /graph input 'x': dimension -4 is not a non-negative integer/ },
  },
  // --- external data ---
  {
    name: 'external data length -1 (read almost the whole file)',
    model: external([['location', 'w.bin'], ['length', '-1']]),
    files: [{ name: 'w.bin', bytes: WEIGHTS }],
    expect: { code: 'ONNX_FORMAT', field: 'length', message: /external data length '-1' is not a non-negative integer/ },
  },
  {
    name: 'a fractional external data offset',
    model: external([['location', 'w.bin'], ['offset', '1.5']]),
    files: [{ name: 'w.bin', bytes: WEIGHTS }],
    expect: { code: 'ONNX_FORMAT', field: 'offset', message: /external data offset '1\.5' is not a non-negative integer/ },
  },
  {
    name: 'external data past the end of its file',
    model: external([['location', 'w.bin'], ['offset', '8']]),
    files: [{ name: 'w.bin', bytes: WEIGHTS }],
    expect: { code: 'ONNX_FORMAT', field: 'length', message: /external data 'w\.bin' holds 216 bytes; needs \[8, 224\)/ },
  },
  {
    name: 'a symlink in the model folder to /etc/passwd (read as weights)',
    model: external([['location', 'w.bin']]),
    symlinks: [{ name: 'w.bin', target: '/etc/passwd' }],
    expect: { code: 'ONNX_FORMAT', field: 'location', message: /external data 'w\.bin' resolves \(through a symbolic link\) to '\/etc\/passwd', outside the model's folder/ },
  },
  {
    name: 'external data location with ..',
    model: external([['location', '../w.bin']]),
    expect: { code: 'ONNX_FORMAT', field: 'location', message: /must be a relative path inside the model's folder/ },
  },
];

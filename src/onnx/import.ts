import { OnnxFormatError } from '../runtime/errors.js';
import type { HostTensor } from '../runtime/host-tensor.js';
import type { AttrValue, IrGraph, IrNode, IrValueInfo } from './ir.js';
import { type AttributeProto, decodeTensor, type ExternalDataReader, int64, type ModelProto, onnx, type ValueInfoProto } from './proto.js';

export const MIN_OPSET = 7;
export const MAX_OPSET = 21;

export interface ImportOptions {
  /** Name used in error messages (the file path). */
  name?: string;
  /** Reader for initializers stored in external data files (Node: relative to the model's folder). */
  readExternal?: ExternalDataReader | null;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

function decodeModel(bytes: Uint8Array, file: string): ModelProto {
  if (bytes.byteLength === 0) throw new OnnxFormatError(file, 'file is empty');
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new OnnxFormatError(file, `not a valid ONNX protobuf (${(e as Error).message}); the file may be truncated or not an ONNX model`);
  }
  if (!model.graph) throw new OnnxFormatError(file, 'the model has no graph (not an ONNX model?)');
  return model;
}

function attrValue(a: AttributeProto, file: string, where: string): AttrValue {
  switch (a.type) {
    case 1: return a.f ?? 0;
    case 2: return int64(a.i);
    case 3: return utf8.decode(a.s ?? new Uint8Array());
    case 4:
      if (!a.t) throw new OnnxFormatError(file, `${where}: tensor attribute '${a.name}' is empty`);
      return decodeTensor(a.t, file, null);
    case 5: return { graph: a.g?.name ?? '' };
    case 6: return [...(a.floats ?? [])];
    case 7: return (a.ints ?? []).map((v) => int64(v));
    case 8: return (a.strings ?? []).map((s) => utf8.decode(s));
    default: {
      // Old files leave `type` unset; infer it from the populated field.
      if (a.ints && a.ints.length) return a.ints.map((v) => int64(v));
      if (a.floats && a.floats.length) return [...a.floats];
      if (a.t) return decodeTensor(a.t, file, null);
      if (a.s && a.s.length) return utf8.decode(a.s);
      if (a.i !== undefined && a.i !== null && int64(a.i) !== 0) return int64(a.i);
      if (a.f) return a.f;
      return 0;
    }
  }
}

function valueInfo(v: ValueInfoProto): IrValueInfo {
  const tt = v.type?.tensorType;
  const dims = tt?.shape?.dim
    ? tt.shape.dim.map((d) => (d.dimValue !== null && d.dimValue !== undefined && int64(d.dimValue) > 0 ? int64(d.dimValue) : d.dimParam || null))
    : null;
  return { name: v.name ?? '', dims, elemType: tt?.elemType ?? 0 };
}

/** Parses and validates an ONNX model into camgpu's graph IR (no shape work yet). */
export function importOnnx(bytes: Uint8Array, options: ImportOptions = {}): IrGraph {
  const file = options.name ?? '<memory>';
  const model = decodeModel(bytes, file);
  const graph = model.graph!;
  let opset: number | null = null;
  for (const o of model.opsetImport ?? []) {
    if (!o.domain || o.domain === 'ai.onnx') opset = int64(o.version);
  }
  if (opset === null) {
    if ((model.opsetImport ?? []).length === 0) opset = MIN_OPSET; // IR v2 files predate opset_import
    else throw new OnnxFormatError(file, 'the model imports no default-domain (ai.onnx) opset');
  }
  if (opset < MIN_OPSET || opset > MAX_OPSET) {
    throw new OnnxFormatError(file, `opset ${opset} is not supported (supported: ${MIN_OPSET} through ${MAX_OPSET})`);
  }
  const initializers = new Map<string, HostTensor>();
  for (const t of graph.initializer ?? []) {
    initializers.set(t.name ?? '', decodeTensor(t, file, options.readExternal ?? null));
  }
  const inputs = (graph.input ?? []).map(valueInfo).filter((v) => !initializers.has(v.name));
  const outputs = (graph.output ?? []).map(valueInfo);
  if (outputs.length === 0) throw new OnnxFormatError(file, 'the graph declares no outputs');
  const defined = new Set<string>([...initializers.keys(), ...inputs.map((i) => i.name), '']);
  const names = new Set<string>();
  const nodes: IrNode[] = (graph.node ?? []).map((n, i) => {
    const opType = n.opType ?? '';
    let name = n.name || `${opType || 'node'}_${i}`;
    if (names.has(name)) name = `${name}#${i}`;
    names.add(name);
    if (!opType) throw new OnnxFormatError(file, `node ${i} ('${name}') has no op_type`);
    const attrs = new Map<string, AttrValue>();
    for (const a of n.attribute ?? []) attrs.set(a.name ?? '', attrValue(a, file, `node '${name}' (${opType})`));
    const node: IrNode = { name, opType, domain: n.domain ?? '', inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])], attrs };
    for (const inp of node.inputs) {
      if (!defined.has(inp)) {
        throw new OnnxFormatError(file, `node '${name}' (${opType}) reads '${inp}', which no earlier node, input or initializer defines (graph not topologically sorted or truncated)`);
      }
    }
    for (const o of node.outputs) defined.add(o);
    return node;
  });
  for (const o of outputs) {
    if (!defined.has(o.name)) throw new OnnxFormatError(file, `graph output '${o.name}' is never computed`);
  }
  return {
    file,
    opset,
    producer: `${model.producerName ?? ''} ${model.producerVersion ?? ''}`.trim(),
    nodes,
    inputs,
    outputs,
    initializers,
    aliases: new Map(),
  };
}

import { OnnxFormatError, typedSync } from '../runtime/errors.js';
import { attributeType, checkModel } from './check.js';
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
  switch (attributeType(a)) {
    case 'float': return a.f ?? 0;
    case 'int': return int64(a.i);
    case 'string': return utf8.decode(a.s ?? new Uint8Array());
    case 'tensor':
      if (!a.t) throw new OnnxFormatError(file, `${where}: tensor attribute '${a.name}' is empty`, { field: a.name ?? '' });
      return decodeTensor(a.t, file, null);
    case 'graph': return { graph: a.g?.name ?? '' };
    case 'floats': return [...(a.floats ?? [])];
    case 'ints': return (a.ints ?? []).map((v) => int64(v));
    case 'strings': return (a.strings ?? []).map((s) => utf8.decode(s));
    default: return { graph: '' }; // sparse tensors, type protos, lists of graphs or tensors: no op camgpu runs takes them
  }
}

function valueInfo(v: ValueInfoProto): IrValueInfo {
  const tt = v.type?.tensorType;
  // 0 is read as unknown, as before (negative dims are refused by the checker).
  const dims = tt?.shape?.dim
    ? tt.shape.dim.map((d) => ((d as { value?: string }).value === 'dimValue' && int64(d.dimValue) > 0 ? int64(d.dimValue) : d.dimParam || null))
    : null;
  return { name: v.name ?? '', dims, elemType: tt?.elemType ?? 0 };
}

/**
 * Parses and checks an ONNX model (src/onnx/check.ts) into camgpu's graph IR (no shape work
 * yet). Every failure is a CamgpuError: OnnxFormatError for a malformed file.
 */
export function importOnnx(bytes: Uint8Array, options: ImportOptions = {}): IrGraph {
  return typedSync('import', () => importChecked(bytes, options));
}

function importChecked(bytes: Uint8Array, options: ImportOptions): IrGraph {
  const file = options.name ?? '<memory>';
  const model = decodeModel(bytes, file);
  const graph = model.graph!;
  const { opset, order, names } = checkModel(model, file);
  if (opset < MIN_OPSET || opset > MAX_OPSET) {
    throw new OnnxFormatError(file, `opset ${opset} is not supported (supported: ${MIN_OPSET} through ${MAX_OPSET})`, { field: 'opset_import' });
  }
  const initializers = new Map<string, HostTensor>();
  for (const t of graph.initializer ?? []) {
    initializers.set(t.name ?? '', decodeTensor(t, file, options.readExternal ?? null));
  }
  const inputs = (graph.input ?? []).map(valueInfo).filter((v) => !initializers.has(v.name));
  const outputs = (graph.output ?? []).map(valueInfo);
  if (outputs.length === 0) throw new OnnxFormatError(file, 'the graph declares no outputs', { field: 'output' });
  const protoNodes = graph.node ?? [];
  const nodes: IrNode[] = order.map((i) => {
    const n = protoNodes[i];
    const opType = n.opType!;
    const name = names[i];
    const attrs = new Map<string, AttrValue>();
    for (const a of n.attribute ?? []) attrs.set(a.name ?? '', attrValue(a, file, `node '${name}' (${opType})`));
    return { name, opType, domain: n.domain ?? '', inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])], attrs };
  });
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

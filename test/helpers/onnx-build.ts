import { onnx } from '../../src/onnx/proto.js';

/** Builds small ONNX models in tests (float32 tensors; int64 initializers for shapes and pads). */
export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  attrs?: Record<string, number | number[] | string>;
}

export function buildModel(spec: {
  nodes: NodeSpec[];
  inputs: { name: string; dims: (number | string)[] }[];
  outputs: { name: string; dims?: (number | string)[] }[];
  initializers?: { name: string; dims: number[]; data: Float32Array | BigInt64Array }[];
  opset?: number;
}): Uint8Array {
  const tensorType = (dims: (number | string)[] | undefined) => ({
    tensorType: { elemType: 1, shape: dims ? { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } : undefined },
  });
  const attr = (name: string, v: number | number[] | string) => {
    if (typeof v === 'string') return { name, type: 3, s: new TextEncoder().encode(v) };
    if (Array.isArray(v)) return { name, type: 7, ints: v };
    return Number.isInteger(v) ? { name, type: 2, i: v } : { name, type: 1, f: v };
  };
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'camgpu-test',
    opsetImport: [{ domain: '', version: spec.opset ?? 17 }],
    graph: {
      name: 'test',
      node: spec.nodes.map((n, i) => ({
        opType: n.op,
        name: n.name ?? `${n.op}_${i}`,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attrs ?? {}).map(([k, v]) => attr(k, v)),
      })),
      input: spec.inputs.map((i) => ({ name: i.name, type: tensorType(i.dims) })),
      output: spec.outputs.map((o) => ({ name: o.name, type: tensorType(o.dims) })),
      initializer: (spec.initializers ?? []).map((t) => ({
        name: t.name,
        dims: t.dims,
        dataType: t.data instanceof BigInt64Array ? 7 : 1,
        rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      })),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

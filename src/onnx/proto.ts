import onnxProto from 'onnx-proto';
import { OnnxFormatError } from '../runtime/errors.js';
import { type DType, type HostTensor, hostSize } from '../runtime/host-tensor.js';

export const { onnx } = onnxProto;
export type ModelProto = onnxProto.onnx.ModelProto;
export type TensorProto = onnxProto.onnx.ITensorProto;
export type AttributeProto = onnxProto.onnx.IAttributeProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type GraphProto = onnxProto.onnx.IGraphProto;

/** protobufjs gives int64 fields as number or Long depending on magnitude. */
export function int64(v: number | { toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

const DATA_TYPES: Record<number, DType> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64',
  9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16',
};

const BYTES: Record<DType, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int8: 1, uint8: 1, int16: 2, uint16: 2,
  int32: 4, uint32: 4, int64: 8, uint64: 8, bool: 1,
};

export function dtypeOf(code: number, where: string, file: string): DType {
  const d = DATA_TYPES[code];
  if (!d) throw new OnnxFormatError(file, `${where}: unsupported tensor data type ${code} (strings and complex numbers are not supported)`);
  return d;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** A fresh, aligned copy of the first `n` bytes (works for Node Buffers and plain views alike). */
export function copyBytes(bytes: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  out.set(bytes.subarray(0, n));
  return out;
}

function decodeRaw(dtype: DType, bytes: Uint8Array, count: number): Float32Array | Float64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const floats = dtype === 'float32' || dtype === 'float64' || dtype === 'float16' || dtype === 'bfloat16';
  const out = floats ? new Float32Array(count) : new Float64Array(count);
  switch (dtype) {
    case 'float32':
      // Copy first: raw_data usually sits at an unaligned offset inside the file's buffer
      // (and a Node Buffer's slice() is a view, not a copy).
      out.set(new Float32Array(copyBytes(bytes, count * 4).buffer));
      break;
    case 'float64': for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true); break;
    case 'float16': for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(i * 2, true)); break;
    case 'bfloat16': for (let i = 0; i < count; i++) out[i] = new Float32Array(new Uint32Array([view.getUint16(i * 2, true) << 16]).buffer)[0]; break;
    case 'int8': for (let i = 0; i < count; i++) out[i] = view.getInt8(i); break;
    case 'uint8': case 'bool': for (let i = 0; i < count; i++) out[i] = view.getUint8(i); break;
    case 'int16': for (let i = 0; i < count; i++) out[i] = view.getInt16(i * 2, true); break;
    case 'uint16': for (let i = 0; i < count; i++) out[i] = view.getUint16(i * 2, true); break;
    case 'int32': for (let i = 0; i < count; i++) out[i] = view.getInt32(i * 4, true); break;
    case 'uint32': for (let i = 0; i < count; i++) out[i] = view.getUint32(i * 4, true); break;
    case 'int64': for (let i = 0; i < count; i++) out[i] = Number(view.getBigInt64(i * 8, true)); break;
    case 'uint64': for (let i = 0; i < count; i++) out[i] = Number(view.getBigUint64(i * 8, true)); break;
  }
  return out;
}

/** Reads the bytes of an initializer stored outside the model file. */
export type ExternalDataReader = (location: string, offset: number, length: number | null) => Uint8Array;

/** Decodes a TensorProto from any of its storage forms: raw_data, typed fields, external data. */
export function decodeTensor(t: TensorProto, file: string, readExternal: ExternalDataReader | null): HostTensor {
  const name = t.name || '<unnamed>';
  const where = `tensor '${name}'`;
  const dtype = dtypeOf(t.dataType ?? 0, where, file);
  const dims = (t.dims ?? []).map((d) => int64(d));
  if (dims.some((d) => d < 0 || !Number.isFinite(d))) throw new OnnxFormatError(file, `${where}: invalid dims [${dims}]`);
  const count = hostSize(dims);
  const bytesNeeded = count * BYTES[dtype];
  let raw: Uint8Array | null = null;
  if (t.dataLocation === 1) {
    const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = entries.get('location');
    if (!location) throw new OnnxFormatError(file, `${where}: external data without a location`);
    if (!readExternal) throw new OnnxFormatError(file, `${where}: stored in external file '${location}', but no external data reader was given`);
    const offset = Number(entries.get('offset') ?? 0);
    const length = entries.has('length') ? Number(entries.get('length')) : null;
    raw = readExternal(location, offset, length);
  } else if (t.rawData && t.rawData.length > 0) {
    raw = t.rawData;
  }
  if (raw) {
    if (raw.byteLength < bytesNeeded) {
      throw new OnnxFormatError(file, `${where}: ${raw.byteLength} bytes of data for ${dtype} [${dims}] (needs ${bytesNeeded}); the file may be truncated`);
    }
    return { dtype, dims, data: decodeRaw(dtype, raw, count) };
  }
  let values: ArrayLike<number | { toNumber(): number }> = [];
  if (dtype === 'float32') values = t.floatData ?? [];
  else if (dtype === 'float64') values = t.doubleData ?? [];
  else if (dtype === 'int64') values = t.int64Data ?? [];
  else if (dtype === 'uint32' || dtype === 'uint64') values = t.uint64Data ?? [];
  else values = t.int32Data ?? [];
  if (values.length !== count) {
    throw new OnnxFormatError(file, `${where}: holds ${values.length} values for ${dtype} [${dims}] (needs ${count})`);
  }
  const floats = dtype === 'float32' || dtype === 'float64' || dtype === 'float16' || dtype === 'bfloat16';
  const out = floats ? new Float32Array(count) : new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const v = int64(values[i] as number);
    out[i] = dtype === 'float16' ? halfToFloat(v) : dtype === 'bfloat16' ? new Float32Array(new Uint32Array([v << 16]).buffer)[0] : v;
  }
  return { dtype, dims, data: out };
}

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

const DATA_TYPES: ReadonlyMap<number, DType> = new Map([
  [1, 'float32'], [2, 'uint8'], [3, 'int8'], [4, 'uint16'], [5, 'int16'], [6, 'int32'], [7, 'int64'],
  [9, 'bool'], [10, 'float16'], [11, 'float64'], [12, 'uint32'], [13, 'uint64'], [16, 'bfloat16'],
]);

/** Element type codes that ONNX defines (1 FLOAT … 23 FLOAT4E2M1), supported or not. */
export function isOnnxDataType(code: number): boolean {
  return Number.isInteger(code) && code >= 1 && code <= 23;
}

const BYTES: Record<DType, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int8: 1, uint8: 1, int16: 2, uint16: 2,
  int32: 4, uint32: 4, int64: 8, uint64: 8, bool: 1,
};

export function dtypeOf(code: number, where: string, file: string): DType {
  const d = DATA_TYPES.get(code);
  if (!d) {
    const what = isOnnxDataType(code) ? 'unsupported tensor data type' : 'unknown tensor data type';
    throw new OnnxFormatError(file, `${where}: ${what} ${code} (strings, complex numbers and 4/8-bit floats are not supported)`, { field: 'data_type' });
  }
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

/**
 * Reads the bytes of an initializer stored outside the model file: exactly `length` bytes
 * from `offset` (both checked non-negative integers); the reader checks that they lie
 * within the file, and that the file lies inside the model's folder.
 */
export type ExternalDataReader = (location: string, offset: number, length: number) => Uint8Array;

/** Bytes per element of each supported data type. */
export function elementBytes(d: DType): number {
  return BYTES[d];
}

/** Where a TensorProto keeps its values, checked against its dims without decoding them. */
export interface TensorLayout {
  dtype: DType;
  dims: number[];
  count: number;
  /** dims × element size. */
  bytes: number;
  source: 'raw' | 'typed' | 'external' | 'none';
  external?: { location: string; offset: number; length: number };
}

const EXTERNAL_KEYS = new Set(['location', 'offset', 'length', 'checksum']);

/** A non-negative integer written as decimal digits (external data offsets and lengths). */
function parseByteCount(v: string): number | null {
  if (!/^[0-9]{1,16}$/.test(v)) return null;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * Checks a TensorProto's type, dims and storage: a known data type, dims that are
 * non-negative integers with a representable element count, values in exactly one storage
 * form, and exactly dims × element size of them (never more, never fewer: a longer or
 * narrower-typed buffer is an error, not cut to fit). External data keys are parsed here;
 * the file itself is the reader's.
 */
export function tensorLayout(t: TensorProto, file: string, where: string): TensorLayout {
  const dtype = dtypeOf(t.dataType ?? 0, where, file);
  const rawDims = t.dims ?? [];
  const dims: number[] = [];
  for (const d of rawDims) {
    const v = int64(d);
    if (!Number.isSafeInteger(v) || v < 0) throw new OnnxFormatError(file, `${where}: dims [${rawDims.map((q) => int64(q))}] must be non-negative integers`, { field: 'dims' });
    dims.push(v);
  }
  const count = hostSize(dims);
  const bytes = count * BYTES[dtype];
  if (!Number.isSafeInteger(bytes)) throw new OnnxFormatError(file, `${where}: dims [${dims}] hold more elements than any file can`, { field: 'dims' });
  if (t.segment) throw new OnnxFormatError(file, `${where}: segmented tensors are not supported`, { field: 'segment' });
  const typedCounts: [string, number][] = [
    ['float_data', t.floatData?.length ?? 0], ['int32_data', t.int32Data?.length ?? 0], ['int64_data', t.int64Data?.length ?? 0],
    ['double_data', t.doubleData?.length ?? 0], ['uint64_data', t.uint64Data?.length ?? 0], ['string_data', t.stringData?.length ?? 0],
  ];
  const typed = typedCounts.filter(([, n]) => n > 0);
  const hasRaw = (t.rawData?.length ?? 0) > 0;
  const external = t.dataLocation === 1;
  if (t.dataLocation !== undefined && t.dataLocation !== null && t.dataLocation !== 0 && t.dataLocation !== 1) {
    throw new OnnxFormatError(file, `${where}: unknown data_location ${t.dataLocation}`, { field: 'data_location' });
  }
  const forms = typed.length + (hasRaw ? 1 : 0) + (external ? 1 : 0);
  if (forms > 1) {
    const names = [...typed.map(([k]) => k), ...(hasRaw ? ['raw_data'] : []), ...(external ? ['external data'] : [])];
    throw new OnnxFormatError(file, `${where}: values stored in several places (${names.join(', ')}); a tensor keeps them in one`, { field: names[0] });
  }
  if (external) {
    const entries = new Map<string, string>();
    for (const e of t.externalData ?? []) {
      const key = e.key ?? '';
      if (!EXTERNAL_KEYS.has(key)) throw new OnnxFormatError(file, `${where}: unknown external data key '${key}' (known: ${[...EXTERNAL_KEYS].join(', ')})`, { field: key });
      if (entries.has(key)) throw new OnnxFormatError(file, `${where}: external data key '${key}' given twice`, { field: key });
      entries.set(key, e.value ?? '');
    }
    const location = entries.get('location');
    if (!location) throw new OnnxFormatError(file, `${where}: external data without a location`, { field: 'location' });
    const offsetText = entries.get('offset') ?? '0';
    const offset = parseByteCount(offsetText);
    if (offset === null) throw new OnnxFormatError(file, `${where}: external data offset '${offsetText}' is not a non-negative integer`, { field: 'offset' });
    let length = bytes;
    if (entries.has('length')) {
      const l = parseByteCount(entries.get('length')!);
      if (l === null) throw new OnnxFormatError(file, `${where}: external data length '${entries.get('length')}' is not a non-negative integer`, { field: 'length' });
      if (l !== bytes) throw new OnnxFormatError(file, `${where}: external data length ${l} for ${dtype} [${dims}], which takes exactly ${bytes} bytes`, { field: 'length' });
      length = l;
    }
    return { dtype, dims, count, bytes, source: 'external', external: { location, offset, length } };
  }
  if (hasRaw) {
    const n = t.rawData!.length;
    if (n !== bytes) {
      throw new OnnxFormatError(file, `${where}: ${n} bytes of raw_data for ${dtype} [${dims}], which takes exactly ${bytes}${n < bytes ? '; the file may be truncated' : ''}`, { field: 'raw_data' });
    }
    return { dtype, dims, count, bytes, source: 'raw' };
  }
  const field = typedField(dtype);
  const [otherName] = typed.find(([k]) => k !== field) ?? [];
  if (otherName) throw new OnnxFormatError(file, `${where}: ${dtype} values stored in ${otherName} (they belong in ${field})`, { field: otherName });
  const n = typed.length ? typed[0][1] : 0;
  if (n !== count) throw new OnnxFormatError(file, `${where}: holds ${n} values for ${dtype} [${dims}] (needs ${count})`, { field });
  return { dtype, dims, count, bytes, source: count === 0 ? 'none' : 'typed' };
}

/** The TensorProto field that holds values of a type when they are not raw bytes. */
function typedField(d: DType): string {
  if (d === 'float32') return 'float_data';
  if (d === 'float64') return 'double_data';
  if (d === 'int64') return 'int64_data';
  if (d === 'uint32' || d === 'uint64') return 'uint64_data';
  return 'int32_data';
}

/** Decodes a TensorProto from any of its storage forms: raw_data, typed fields, external data. */
export function decodeTensor(t: TensorProto, file: string, readExternal: ExternalDataReader | null): HostTensor {
  const name = t.name || '<unnamed>';
  const where = `tensor '${name}'`;
  const layout = tensorLayout(t, file, where);
  const { dtype, dims, count, bytes } = layout;
  let raw: Uint8Array | null = null;
  if (layout.external) {
    const { location, offset, length } = layout.external;
    if (!readExternal) throw new OnnxFormatError(file, `${where}: stored in external file '${location}', but no external data reader was given`, { field: 'location' });
    raw = readExternal(location, offset, length);
    if (raw.byteLength !== bytes) throw new OnnxFormatError(file, `${where}: external file '${location}' gave ${raw.byteLength} bytes for ${dtype} [${dims}] (needs ${bytes})`, { field: 'length' });
  } else if (layout.source === 'raw') {
    raw = t.rawData!;
  }
  if (raw) return { dtype, dims, data: decodeRaw(dtype, raw, count) };
  let values: ArrayLike<number | { toNumber(): number }> = [];
  if (dtype === 'float32') values = t.floatData ?? [];
  else if (dtype === 'float64') values = t.doubleData ?? [];
  else if (dtype === 'int64') values = t.int64Data ?? [];
  else if (dtype === 'uint32' || dtype === 'uint64') values = t.uint64Data ?? [];
  else values = t.int32Data ?? [];
  const floats = dtype === 'float32' || dtype === 'float64' || dtype === 'float16' || dtype === 'bfloat16';
  const out = floats ? new Float32Array(count) : new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const v = int64(values[i] as number);
    out[i] = dtype === 'float16' ? halfToFloat(v) : dtype === 'bfloat16' ? new Float32Array(new Uint32Array([v << 16]).buffer)[0] : v;
  }
  return { dtype, dims, data: out };
}

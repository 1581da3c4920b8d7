import { InputError } from '../runtime/errors.js';

/** A NumPy array as read from or written to a `.npy` file (float32 and float64 become Float32Array). */
export interface NpyArray {
  shape: number[];
  data: Float32Array;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Parses a version 1–3 `.npy` file of little-endian float32 / float64 / integer data in C order. */
export function parseNpy(bytes: Uint8Array, file = '<npy>'): NpyArray {
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) throw new InputError(`${file}: not a .npy file (bad magic)`);
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + headerLen > bytes.length) throw new InputError(`${file}: truncated .npy header`);
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new InputError(`${file}: malformed .npy header: ${header.trim()}`);
  if (fortran === 'True') throw new InputError(`${file}: Fortran-order arrays are not supported; save with np.ascontiguousarray`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new InputError(`${file}: bad shape (${shapeText})`);
  const count = shape.reduce((a, b) => a * b, 1);
  const body = bytes.subarray(start + headerLen);
  const readers: Record<string, [number, (v: DataView, o: number) => number]> = {
    '<f4': [4, (v, o) => v.getFloat32(o, true)],
    '<f8': [8, (v, o) => v.getFloat64(o, true)],
    '<i4': [4, (v, o) => v.getInt32(o, true)],
    '<i8': [8, (v, o) => Number(v.getBigInt64(o, true))],
    '|u1': [1, (v, o) => v.getUint8(o)],
  };
  const r = readers[descr];
  if (!r) throw new InputError(`${file}: dtype '${descr}' is not supported (float32, float64, int32, int64, uint8 are)`);
  if (body.length < count * r[0]) throw new InputError(`${file}: truncated data (${body.length} bytes for ${count} elements of ${descr})`);
  const data = new Float32Array(count);
  if (descr === '<f4') {
    const aligned = new Uint8Array(count * 4);
    aligned.set(body.subarray(0, count * 4));
    data.set(new Float32Array(aligned.buffer));
  } else {
    const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
    for (let i = 0; i < count; i++) data[i] = r[1](v, i * r[0]);
  }
  return { shape, data };
}

/** Serializes float32 data as a version 1.0 `.npy` file. */
export function formatNpy(data: Float32Array, shape: readonly number[]): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

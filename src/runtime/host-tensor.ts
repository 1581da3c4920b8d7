/**
 * Tensors held on the CPU: initializers, constants and the results of constant folding.
 * Floating types are kept as Float32Array, integer and boolean types as Float64Array
 * (exact to 2^53, which covers every shape, index and axis a CNN graph computes).
 */
export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64' | 'bool';

export interface HostTensor {
  dtype: DType;
  dims: number[];
  data: Float32Array | Float64Array;
}

export function isFloatType(d: DType): boolean {
  return d === 'float32' || d === 'float64' || d === 'float16' || d === 'bfloat16';
}

export function hostSize(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function hostTensor(dtype: DType, dims: number[], values: ArrayLike<number>): HostTensor {
  const data = isFloatType(dtype) ? Float32Array.from(values) : Float64Array.from(values);
  return { dtype, dims, data };
}

/** The values as float32, for upload to the GPU. */
export function toFloat32(t: HostTensor): Float32Array {
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
}

/** The values as plain numbers (shape and index arithmetic). */
export function toNumbers(t: HostTensor): number[] {
  return Array.from(t.data);
}

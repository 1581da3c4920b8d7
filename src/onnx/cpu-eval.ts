import { LimitError, ShapeError } from '../runtime/errors.js';
import { broadcastShapes, stridesOf } from '../runtime/shape.js';
import { type DType, type HostTensor, hostSize, isFloatType } from '../runtime/host-tensor.js';
import { checkAxes, checkAxis, checkDims, checkFoldSize, checkIntegers, checkPerm, MAX_RANK } from './check.js';
import { attrInts, attrNumber, type IrNode } from './ir.js';
import { dtypeOf } from './proto.js';

/**
 * CPU evaluation of the small integer sub-graphs exporters emit around shapes
 * (Shape → Gather → Unsqueeze → Concat → Reshape and friends), so that at plan time every
 * shape is a number. Every fold checks the size of what it makes against FOLD_MAX_ELEMENTS
 * before allocating (LimitError naming the node), every axis and permutation against the
 * rank (ShapeError), and runs in time linear in its input and output.
 */
export type CpuFold = (n: IrNode, inputs: (HostTensor | null)[], opset: number) => HostTensor[];

function where(n: IrNode): string {
  return `node '${n.name}' (${n.opType})`;
}

function need(n: IrNode, t: HostTensor | null, i: number): HostTensor {
  if (!t) throw new ShapeError(where(n), `input ${i} is required`, { node: n.name, field: 'input' });
  return t;
}

/** Storage for `count` elements of `dtype`, after the size check. */
function alloc(n: IrNode, dtype: DType, count: number): Float32Array | Float64Array {
  checkFoldSize(n, count);
  return isFloatType(dtype) ? new Float32Array(count) : new Float64Array(count);
}

function tensor(dtype: DType, dims: number[], data: Float32Array | Float64Array): HostTensor {
  return { dtype, dims, data };
}

/** A tensor's values as integers (shapes, axes, indices): each a safe integer. */
function ints(n: IrNode, field: string, t: HostTensor): number[] {
  checkIntegers(n, field, t.data);
  return Array.from(t.data);
}

/**
 * Slice bounds: integer-valued, but possibly beyond 2^53 (INT64_MAX stands for "to the end").
 */
function bounds(n: IrNode, field: string, values: ArrayLike<number>): number[] {
  const out = Array.from(values);
  for (const v of out) if (!Number.isInteger(v)) throw new ShapeError(where(n), `${field} holds ${v}, not an integer`, { node: n.name, field });
  return out;
}

function rankCheck(n: IrNode, rank: number, field: string): void {
  if (rank > MAX_RANK) throw new LimitError(`${where(n)}: the result would have rank ${rank}, over camgpu's cap of ${MAX_RANK}`, { node: n.name, field });
}

/** Strides of `dims` broadcast against an output of rank `rank` (0 where the dim is broadcast). */
function broadcastStrides(dims: readonly number[], out: readonly number[]): number[] {
  const st = stridesOf(dims);
  return out.map((_, d) => {
    const j = d - (out.length - dims.length);
    return j < 0 || dims[j] === 1 ? 0 : st[j];
  });
}

/** Visits every output index of `out`, passing the broadcast offsets into each input. Linear in the output size. */
function forEachBroadcast(out: readonly number[], inputs: readonly (readonly number[])[], visit: (i: number, offsets: readonly number[]) => void): void {
  const size = hostSize(out);
  const strides = inputs.map((d) => broadcastStrides(d, out));
  const r = out.length;
  const idx = new Array<number>(r).fill(0);
  const off = inputs.map(() => 0);
  for (let i = 0; i < size; i++) {
    visit(i, off);
    // Odometer increment, updating offsets incrementally.
    for (let d = r - 1; d >= 0; d--) {
      idx[d]++;
      for (let k = 0; k < off.length; k++) off[k] += strides[k][d];
      if (idx[d] < out[d]) break;
      for (let k = 0; k < off.length; k++) off[k] -= strides[k][d] * out[d];
      idx[d] = 0;
    }
  }
}

function broadcastOrThrow(n: IrNode, shapes: readonly (readonly number[])[]): number[] {
  let out: number[] | null = [...shapes[0]];
  for (const s of shapes.slice(1)) {
    out = out && broadcastShapes(out, s);
    if (!out) throw new ShapeError(where(n), `shapes ${shapes.map((q) => `[${q}]`).join(' and ')} do not broadcast`, { node: n.name, field: 'input' });
  }
  return out!;
}

function elementwise(n: IrNode, a: HostTensor, b: HostTensor, f: (x: number, y: number) => number, outType?: DType): HostTensor {
  const out = broadcastOrThrow(n, [a.dims, b.dims]);
  const dtype = outType ?? a.dtype;
  const vals = alloc(n, dtype, hostSize(out));
  forEachBroadcast(out, [a.dims, b.dims], (i, [oa, ob]) => {
    vals[i] = f(a.data[oa], b.data[ob]);
  });
  return tensor(dtype, out, vals);
}

function intDiv(x: number, y: number): number {
  return Math.trunc(x / y);
}

function reshapeDims(n: IrNode, dims: readonly number[], shape: readonly number[], allowZero: boolean): number[] {
  const w = `node '${n.name}' (Reshape)`;
  const place = { node: n.name, field: 'shape' };
  rankCheck(n, shape.length, 'shape');
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < -1) throw new ShapeError(w, `shape [${shape}] holds ${d}; entries must be integers ≥ -1`, place);
  }
  if (allowZero && shape.includes(0) && shape.includes(-1)) throw new ShapeError(w, `shape [${shape}] has both 0 and -1 with allowzero=1`, place);
  const out = shape.map((d, i) => {
    if (d !== 0 || allowZero) return d;
    if (i >= dims.length) throw new ShapeError(w, `shape [${shape}] copies dim ${i} (0), but the input [${dims}] has rank ${dims.length}`, place);
    return dims[i];
  });
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const total = hostSize(dims);
  const neg = out.filter((d) => d === -1).length;
  if (neg > 1) throw new ShapeError(w, `more than one -1 in shape [${shape}]`, place);
  if (neg === 1) {
    if (known === 0 || total % known !== 0) throw new ShapeError(w, `cannot reshape [${dims}] to [${shape}]`, place);
    out[out.indexOf(-1)] = total / known;
  } else if (known !== total) {
    throw new ShapeError(w, `cannot reshape [${dims}] (${total} elements) to [${shape}]`, place);
  }
  return out;
}

/** Shape rule of Reshape shared by folding and the GPU alias. */
export function reshapeShape(n: IrNode, dims: number[], shape: number[], allowZero: boolean): number[] {
  return reshapeDims(n, dims, shape, allowZero);
}

/** Shape rule of Unsqueeze (folding and GPU alias): linear in the output rank. */
export function unsqueezeShape(n: IrNode, dims: readonly number[], axes: readonly number[]): number[] {
  const r = dims.length + axes.length;
  rankCheck(n, r, 'axes');
  const norm = checkAxes(n, 'axes', axes, r);
  const mark = new Uint8Array(r);
  for (const a of norm) mark[a] = 1;
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < r; i++) out.push(mark[i] ? 1 : dims[j++]);
  return out;
}

/** Shape rule of Squeeze: the listed axes (each of size 1), or every axis of size 1. */
export function squeezeShape(n: IrNode, dims: readonly number[], axes: readonly number[] | null): number[] {
  const drop = new Uint8Array(dims.length);
  if (axes) {
    for (const a of checkAxes(n, 'axes', axes, dims.length)) {
      if (dims[a] !== 1) throw new ShapeError(where(n), `cannot squeeze axis ${a} of [${dims}]`, { node: n.name, field: 'axes' });
      drop[a] = 1;
    }
  } else {
    dims.forEach((d, i) => (drop[i] = d === 1 ? 1 : 0));
  }
  return dims.filter((_, i) => !drop[i]);
}

/** Flatten's axis, in [-rank, rank]. */
export function flattenAxis(n: IrNode, rank: number): number {
  const axis = attrNumber(n, 'axis', 1);
  if (!Number.isInteger(axis) || axis < -rank || axis > rank) {
    throw new ShapeError(where(n), `axis ${axis} is out of range for rank ${rank} (valid: ${-rank} through ${rank})`, { node: n.name, field: 'axis' });
  }
  return axis < 0 ? axis + rank : axis;
}

export function sliceParams(n: IrNode, dims: number[], starts: number[], ends: number[], axes: number[] | null, steps: number[] | null) {
  const r = dims.length;
  const place = (field: string) => ({ node: n.name, field });
  if (ends.length !== starts.length) throw new ShapeError(where(n), `${ends.length} ends for ${starts.length} starts`, place('ends'));
  const ax = axes ? checkAxes(n, 'axes', axes, r) : starts.map((_, i) => i);
  if (ax.length !== starts.length) throw new ShapeError(where(n), `${ax.length} axes for ${starts.length} starts`, place('axes'));
  if (!axes && starts.length > r) throw new ShapeError(where(n), `${starts.length} starts for rank ${r}`, place('starts'));
  if (steps && steps.length !== starts.length) throw new ShapeError(where(n), `${steps.length} steps for ${starts.length} starts`, place('steps'));
  const st = steps ?? starts.map(() => 1);
  const begin = dims.map(() => 0);
  const stride = dims.map(() => 1);
  const size = [...dims];
  ax.forEach((a, i) => {
    const d = dims[a];
    const s = st[i];
    if (s === 0) throw new ShapeError(where(n), 'a step of 0', place('steps'));
    let b = starts[i];
    let e = ends[i];
    if (s > 0) {
      b = b < 0 ? Math.max(0, b + d) : Math.min(b, d);
      e = e < 0 ? Math.max(0, e + d) : Math.min(e, d);
    } else {
      b = b < 0 ? Math.max(-1, b + d) : Math.min(b, d - 1);
      e = e < 0 ? Math.max(-1, e + d) : Math.min(e, d - 1);
    }
    size[a] = Math.max(0, Math.ceil((e - b) / s));
    begin[a] = b;
    stride[a] = s;
  });
  return { begin, stride, size };
}

/** x rounded to the nearest value of a float type (ties to even; bfloat16 truncates, as ONNX's reference Cast does). */
function roundToFloat(to: DType, x: number): number {
  if (to === 'float64' || !Number.isFinite(x)) return x;
  if (to === 'float32') return Math.fround(x);
  if (to === 'bfloat16') {
    const f = new Float32Array([x]);
    const bits = new Uint32Array(f.buffer);
    bits[0] &= 0xffff0000;
    return f[0];
  }
  // float16: 10 fraction bits, subnormal below 2^-14, overflow to infinity past 65504.
  const a = Math.abs(x);
  if (a === 0) return x;
  let e = Math.max(Math.floor(Math.log2(a)), -14);
  if (2 ** e > a && e > -14) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (e - 10);
  let m = Math.floor(a / ulp);
  const rest = a / ulp - m;
  if (rest > 0.5 || (rest === 0.5 && m % 2 === 1)) m++;
  const r = m * ulp;
  return Math.sign(x) * (r > 65504 ? Infinity : r);
}

/** One value of a scalar (or one-element) input. */
function scalar(n: IrNode, t: HostTensor, field: string): number {
  if (t.data.length !== 1) throw new ShapeError(where(n), `${field} must hold one value, got ${t.data.length} (dims [${t.dims}])`, { node: n.name, field });
  return t.data[0];
}

const FOLDS: ReadonlyMap<string, CpuFold> = new Map<string, CpuFold>([
  ['Constant', (n) => {
    const v = n.attrs.get('value');
    if (v && typeof v === 'object' && 'dims' in v) return [v];
    const list = (key: string, dtype: DType) => {
      const f = n.attrs.get(key) as number[];
      const data = alloc(n, dtype, f.length);
      data.set(f);
      return [tensor(dtype, [f.length], data)];
    };
    const one = (dtype: DType, x: number) => {
      const data = alloc(n, dtype, 1);
      data[0] = x;
      return [tensor(dtype, [], data)];
    };
    if (n.attrs.has('value_float')) return one('float32', attrNumber(n, 'value_float', 0));
    if (n.attrs.has('value_floats')) return list('value_floats', 'float32');
    if (n.attrs.has('value_int')) return one('int64', attrNumber(n, 'value_int', 0));
    if (n.attrs.has('value_ints')) return list('value_ints', 'int64');
    throw new ShapeError(`node '${n.name}' (Constant)`, 'unsupported Constant form (sparse or string)', { node: n.name, field: 'value' });
  }],
  ['Identity', (n, [x]) => [need(n, x, 0)]],
  ['Shape', (n, [x], opset) => {
    const dims = need(n, x, 0).dims;
    const r = dims.length;
    let start = opset >= 15 ? attrNumber(n, 'start', 0) : 0;
    let end = opset >= 15 ? attrNumber(n, 'end', r) : r;
    start = Math.min(Math.max(start < 0 ? start + r : start, 0), r);
    end = Math.min(Math.max(end < 0 ? end + r : end, 0), r);
    const v = dims.slice(start, Math.max(start, end));
    return [tensor('int64', [v.length], Float64Array.from(v))];
  }],
  ['Size', (n, [x]) => [tensor('int64', [], Float64Array.of(hostSize(need(n, x, 0).dims)))]],
  ['Gather', (n, [data, indices]) => {
    const d = need(n, data, 0);
    const ind = need(n, indices, 1);
    if (d.dims.length === 0) throw new ShapeError(where(n), 'cannot gather from a scalar', { node: n.name, field: 'input' });
    const axis = checkAxis(n, 'axis', attrNumber(n, 'axis', 0), d.dims.length);
    const outer = hostSize(d.dims.slice(0, axis));
    const inner = hostSize(d.dims.slice(axis + 1));
    const len = d.dims[axis];
    const idx = ints(n, 'indices', ind).map((i) => {
      const j = i < 0 ? i + len : i;
      if (j < 0 || j >= len) throw new ShapeError(where(n), `index ${i} out of range for axis of length ${len}`, { node: n.name, field: 'indices' });
      return j;
    });
    const dims = [...d.dims.slice(0, axis), ...ind.dims, ...d.dims.slice(axis + 1)];
    rankCheck(n, dims.length, 'indices');
    const vals = alloc(n, d.dtype, outer * idx.length * inner);
    let k = 0;
    for (let o = 0; o < outer; o++) {
      for (const j of idx) {
        const base = (o * len + j) * inner;
        for (let q = 0; q < inner; q++) vals[k++] = d.data[base + q];
      }
    }
    return [tensor(d.dtype, dims, vals)];
  }],
  ['Unsqueeze', (n, [x, axesT], opset) => {
    const t = need(n, x, 0);
    const axes = opset >= 13 ? ints(n, 'axes', need(n, axesT, 1)) : attrInts(n, 'axes', [])!;
    return [{ ...t, dims: unsqueezeShape(n, t.dims, axes) }];
  }],
  ['Squeeze', (n, [x, axesT], opset) => {
    const t = need(n, x, 0);
    const axes = opset >= 13 ? (axesT ? ints(n, 'axes', axesT) : null) : attrInts(n, 'axes', null);
    return [{ ...t, dims: squeezeShape(n, t.dims, axes) }];
  }],
  ['Concat', (n, xs) => {
    const ts = xs.map((x, i) => need(n, x, i));
    if (ts.length === 0) throw new ShapeError(where(n), 'Concat needs at least one input', { node: n.name, field: 'input' });
    const rank = ts[0].dims.length;
    if (rank === 0) throw new ShapeError(where(n), 'cannot concatenate scalars', { node: n.name, field: 'input' });
    const axis = checkAxis(n, 'axis', attrNumber(n, 'axis', 0), rank);
    for (const t of ts) {
      if (t.dims.length !== rank || t.dims.some((d, i) => i !== axis && d !== ts[0].dims[i])) {
        throw new ShapeError(where(n), `inputs ${ts.map((q) => `[${q.dims}]`).join(', ')} differ off axis ${axis}`, { node: n.name, field: 'input' });
      }
    }
    const outer = hostSize(ts[0].dims.slice(0, axis));
    const dims = [...ts[0].dims];
    dims[axis] = ts.reduce((s, t) => s + t.dims[axis], 0);
    const vals = alloc(n, ts[0].dtype, hostSize(dims));
    let k = 0;
    for (let o = 0; o < outer; o++) {
      for (const t of ts) {
        const chunk = hostSize(t.dims.slice(axis));
        for (let q = 0; q < chunk; q++) vals[k++] = t.data[o * chunk + q];
      }
    }
    return [tensor(ts[0].dtype, dims, vals)];
  }],
  ['Reshape', (n, [x, s], opset) => {
    const t = need(n, x, 0);
    const shape = opset >= 5 ? ints(n, 'shape', need(n, s, 1)) : attrInts(n, 'shape', [])!;
    return [{ ...t, dims: reshapeDims(n, t.dims, shape, attrNumber(n, 'allowzero', 0) === 1) }];
  }],
  ['Flatten', (n, [x]) => {
    const t = need(n, x, 0);
    const axis = flattenAxis(n, t.dims.length);
    const a = hostSize(t.dims.slice(0, axis));
    return [{ ...t, dims: [a, hostSize(t.dims.slice(axis))] }];
  }],
  ['Cast', (n, [x]) => {
    const t = need(n, x, 0);
    const to = dtypeOf(attrNumber(n, 'to', 1), `node '${n.name}' (Cast)`, '');
    const out = alloc(n, to, t.data.length);
    const float = isFloatType(to);
    for (let i = 0; i < t.data.length; i++) {
      const q = t.data[i];
      out[i] = float ? roundToFloat(to, q) : to === 'bool' ? (q !== 0 ? 1 : 0) : Math.trunc(q);
    }
    return [tensor(to, [...t.dims], out)];
  }],
  ['Slice', (n, [x, s, e, a, st], opset) => {
    const t = need(n, x, 0);
    const starts = opset >= 10 ? bounds(n, 'starts', need(n, s, 1).data) : attrInts(n, 'starts', [])!;
    const ends = opset >= 10 ? bounds(n, 'ends', need(n, e, 2).data) : attrInts(n, 'ends', [])!;
    const axes = opset >= 10 ? (a ? ints(n, 'axes', a) : null) : attrInts(n, 'axes', null);
    const steps = opset >= 10 && st ? ints(n, 'steps', st) : null;
    const p = sliceParams(n, t.dims, starts, ends, axes, steps);
    const size = hostSize(p.size);
    const vals = alloc(n, t.dtype, size);
    const src = stridesOf(t.dims);
    // Offset of the first element and per-axis steps in the source; odometer over the output.
    let off = p.begin.reduce((acc, b, d) => acc + b * src[d], 0);
    const r = p.size.length;
    const idx = new Array<number>(r).fill(0);
    for (let i = 0; i < size; i++) {
      vals[i] = t.data[off];
      for (let d = r - 1; d >= 0; d--) {
        idx[d]++;
        off += p.stride[d] * src[d];
        if (idx[d] < p.size[d]) break;
        off -= p.stride[d] * src[d] * p.size[d];
        idx[d] = 0;
      }
    }
    return [tensor(t.dtype, p.size, vals)];
  }],
  ['ConstantOfShape', (n, [s]) => {
    const dims = ints(n, 'shape', need(n, s, 0));
    checkDims(n, 'shape', dims);
    const v = n.attrs.get('value');
    const given = v && typeof v === 'object' && 'data' in v ? v : null;
    if (given && given.data.length !== 1) throw new ShapeError(where(n), `value must hold one element, got ${given.data.length}`, { node: n.name, field: 'value' });
    const dtype = given ? given.dtype : 'float32';
    const out = alloc(n, dtype, hostSize(dims));
    if (given) out.fill(given.data[0]);
    return [tensor(dtype, dims, out)];
  }],
  ['Range', (n, [s, l, d]) => {
    const st = need(n, s, 0);
    const start = scalar(n, st, 'start');
    const limit = scalar(n, need(n, l, 1), 'limit');
    const delta = scalar(n, need(n, d, 2), 'delta');
    for (const [field, v] of [['start', start], ['limit', limit], ['delta', delta]] as const) {
      if (!Number.isFinite(v)) throw new ShapeError(where(n), `${field} is ${v}`, { node: n.name, field });
    }
    if (delta === 0) throw new ShapeError(where(n), 'delta is 0', { node: n.name, field: 'delta' });
    const count = Math.max(Math.ceil((limit - start) / delta), 0);
    const out = alloc(n, st.dtype, count);
    for (let i = 0; i < count; i++) out[i] = start + i * delta;
    return [tensor(st.dtype, [count], out)];
  }],
  ['Add', (n, [a, b]) => [elementwise(n, need(n, a, 0), need(n, b, 1), (x, y) => x + y)]],
  ['Sub', (n, [a, b]) => [elementwise(n, need(n, a, 0), need(n, b, 1), (x, y) => x - y)]],
  ['Mul', (n, [a, b]) => [elementwise(n, need(n, a, 0), need(n, b, 1), (x, y) => x * y)]],
  ['Div', (n, [a, b]) => {
    const ta = need(n, a, 0);
    return [elementwise(n, ta, need(n, b, 1), isFloatType(ta.dtype) ? (x, y) => x / y : intDiv)];
  }],
  ['Equal', (n, [a, b]) => [elementwise(n, need(n, a, 0), need(n, b, 1), (x, y) => (x === y ? 1 : 0), 'bool')]],
  ['Where', (n, [c, a, b]) => {
    const cond = need(n, c, 0);
    const ta = need(n, a, 1);
    const tb = need(n, b, 2);
    const out = broadcastOrThrow(n, [cond.dims, ta.dims, tb.dims]);
    const vals = alloc(n, ta.dtype, hostSize(out));
    forEachBroadcast(out, [cond.dims, ta.dims, tb.dims], (i, [oc, oa, ob]) => {
      vals[i] = cond.data[oc] ? ta.data[oa] : tb.data[ob];
    });
    return [tensor(ta.dtype, out, vals)];
  }],
  ['Expand', (n, [x, s]) => {
    const t = need(n, x, 0);
    const shape = ints(n, 'shape', need(n, s, 1));
    checkDims(n, 'shape', shape);
    const out = broadcastOrThrow(n, [t.dims, shape]);
    const vals = alloc(n, t.dtype, hostSize(out));
    forEachBroadcast(out, [t.dims], (i, [o]) => {
      vals[i] = t.data[o];
    });
    return [tensor(t.dtype, out, vals)];
  }],
  ['Transpose', (n, [x]) => {
    const t = need(n, x, 0);
    const r = t.dims.length;
    const perm = checkPerm(n, attrInts(n, 'perm', null) ?? t.dims.map((_, i) => r - 1 - i), r);
    const dims = perm.map((p) => t.dims[p]);
    const src = stridesOf(t.dims);
    const size = hostSize(dims);
    const vals = alloc(n, t.dtype, size);
    const step = perm.map((p) => src[p]);
    let off = 0;
    const idx = new Array<number>(r).fill(0);
    for (let i = 0; i < size; i++) {
      vals[i] = t.data[off];
      for (let d = r - 1; d >= 0; d--) {
        idx[d]++;
        off += step[d];
        if (idx[d] < dims[d]) break;
        off -= step[d] * dims[d];
        idx[d] = 0;
      }
    }
    return [tensor(t.dtype, dims, vals)];
  }],
]);

/** Op types folded on the CPU when all their inputs are known at plan time. */
export const FOLDABLE_OPS: ReadonlySet<string> = new Set(FOLDS.keys());

/** Op types that are always evaluated on the CPU: shape arithmetic the GPU path does not run. */
export const CPU_ONLY_OPS: ReadonlySet<string> = new Set([
  'Constant', 'Shape', 'Size', 'Gather', 'Cast', 'Slice', 'ConstantOfShape', 'Range', 'Equal', 'Where', 'Expand', 'Transpose',
]);

export function foldNode(n: IrNode, inputs: (HostTensor | null)[], opset: number): HostTensor[] {
  const f = FOLDS.get(n.opType);
  if (!f) throw new Error(`no CPU folding for ${n.opType}`);
  return f(n, inputs, opset);
}

import { ShapeError } from '../runtime/errors.js';
import { broadcastShapes, normalizeAxis, stridesOf } from '../runtime/shape.js';
import { type DType, type HostTensor, hostSize, hostTensor, isFloatType, toNumbers } from '../runtime/host-tensor.js';
import { attrInts, attrNumber, type IrNode } from './ir.js';
import { dtypeOf } from './proto.js';

/**
 * CPU evaluation of the small integer sub-graphs exporters emit around shapes
 * (Shape → Gather → Unsqueeze → Concat → Reshape and friends), so that at plan time every
 * shape is a number. Returns null for ops it does not fold; those run on the GPU.
 */
export type CpuFold = (n: IrNode, inputs: (HostTensor | null)[], opset: number) => HostTensor[];

function need(n: IrNode, t: HostTensor | null, i: number): HostTensor {
  if (!t) throw new ShapeError(`node '${n.name}' (${n.opType})`, `input ${i} is required`);
  return t;
}

function elementwise(n: IrNode, a: HostTensor, b: HostTensor, f: (x: number, y: number) => number, outType?: DType): HostTensor {
  const out = broadcastShapes(a.dims, b.dims);
  if (!out) throw new ShapeError(`node '${n.name}' (${n.opType})`, `shapes [${a.dims}] and [${b.dims}] do not broadcast`);
  const size = hostSize(out);
  const os = stridesOf(out);
  const idx = (t: HostTensor, i: number) => {
    let off = 0;
    const st = stridesOf(t.dims);
    for (let d = 0; d < out.length; d++) {
      const j = d - (out.length - t.dims.length);
      if (j < 0 || t.dims[j] === 1) continue;
      off += Math.floor(i / os[d]) % out[d] * st[j];
    }
    return t.data[off];
  };
  const vals = new Array<number>(size);
  for (let i = 0; i < size; i++) vals[i] = f(idx(a, i), idx(b, i));
  return hostTensor(outType ?? a.dtype, out, vals);
}

function intDiv(x: number, y: number): number {
  return Math.trunc(x / y);
}

function reshapeDims(n: IrNode, data: HostTensor, shape: number[], allowZero: boolean): number[] {
  const out = shape.map((d, i) => (d === 0 && !allowZero ? data.dims[i] : d));
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const total = hostSize(data.dims);
  const neg = out.filter((d) => d === -1).length;
  if (neg > 1) throw new ShapeError(`node '${n.name}' (Reshape)`, `more than one -1 in shape [${shape}]`);
  if (neg === 1) {
    if (known === 0 || total % known !== 0) throw new ShapeError(`node '${n.name}' (Reshape)`, `cannot reshape [${data.dims}] to [${shape}]`);
    out[out.indexOf(-1)] = total / known;
  } else if (known !== total) {
    throw new ShapeError(`node '${n.name}' (Reshape)`, `cannot reshape [${data.dims}] (${total} elements) to [${shape}]`);
  }
  return out;
}

/** Shape rule of Reshape shared by folding and the GPU alias. */
export function reshapeShape(n: IrNode, dims: number[], shape: number[], allowZero: boolean): number[] {
  return reshapeDims(n, { dtype: 'float32', dims, data: new Float32Array(0) }, shape, allowZero);
}

export function sliceParams(dims: number[], starts: number[], ends: number[], axes: number[] | null, steps: number[] | null) {
  const r = dims.length;
  const ax = (axes ?? starts.map((_, i) => i)).map((a) => normalizeAxis(a, r));
  const st = steps ?? starts.map(() => 1);
  const begin = dims.map(() => 0);
  const stride = dims.map(() => 1);
  const size = [...dims];
  ax.forEach((a, i) => {
    const d = dims[a];
    const s = st[i];
    let b = starts[i];
    let e = ends[i];
    if (s > 0) {
      b = b < 0 ? Math.max(0, b + d) : Math.min(b, d);
      e = e < 0 ? Math.max(0, e + d) : Math.min(e, d);
      size[a] = Math.max(0, Math.ceil((e - b) / s));
    } else {
      b = b < 0 ? Math.max(-1, b + d) : Math.min(b, d - 1);
      e = e < 0 ? Math.max(-1, e + d) : Math.min(e, d - 1);
      size[a] = Math.max(0, Math.ceil((e - b) / s));
    }
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

const FOLDS: Record<string, CpuFold> = {
  Constant: (n) => {
    const v = n.attrs.get('value');
    if (v && typeof v === 'object' && 'dims' in v) return [v];
    if (n.attrs.has('value_float')) return [hostTensor('float32', [], [attrNumber(n, 'value_float', 0)])];
    if (n.attrs.has('value_floats')) { const f = n.attrs.get('value_floats') as number[]; return [hostTensor('float32', [f.length], f)]; }
    if (n.attrs.has('value_int')) return [hostTensor('int64', [], [attrNumber(n, 'value_int', 0)])];
    if (n.attrs.has('value_ints')) { const f = n.attrs.get('value_ints') as number[]; return [hostTensor('int64', [f.length], f)]; }
    throw new ShapeError(`node '${n.name}' (Constant)`, 'unsupported Constant form (sparse or string)');
  },
  Identity: (n, [x]) => [need(n, x, 0)],
  Shape: (n, [x], opset) => {
    const dims = need(n, x, 0).dims;
    const r = dims.length;
    let start = opset >= 15 ? attrNumber(n, 'start', 0) : 0;
    let end = opset >= 15 ? attrNumber(n, 'end', r) : r;
    start = Math.min(Math.max(start < 0 ? start + r : start, 0), r);
    end = Math.min(Math.max(end < 0 ? end + r : end, 0), r);
    const v = dims.slice(start, Math.max(start, end));
    return [hostTensor('int64', [v.length], v)];
  },
  Size: (n, [x]) => [hostTensor('int64', [], [hostSize(need(n, x, 0).dims)])],
  Gather: (n, [data, indices]) => {
    const d = need(n, data, 0);
    const ind = need(n, indices, 1);
    const axis = normalizeAxis(attrNumber(n, 'axis', 0), d.dims.length);
    const outer = d.dims.slice(0, axis).reduce((a, b) => a * b, 1);
    const inner = d.dims.slice(axis + 1).reduce((a, b) => a * b, 1);
    const len = d.dims[axis];
    const idx = toNumbers(ind).map((i) => {
      const j = i < 0 ? i + len : i;
      if (j < 0 || j >= len) throw new ShapeError(`node '${n.name}' (Gather)`, `index ${i} out of range for axis of length ${len}`);
      return j;
    });
    const vals: number[] = [];
    for (let o = 0; o < outer; o++) for (const j of idx) for (let k = 0; k < inner; k++) vals.push(d.data[(o * len + j) * inner + k]);
    return [hostTensor(d.dtype, [...d.dims.slice(0, axis), ...ind.dims, ...d.dims.slice(axis + 1)], vals)];
  },
  Unsqueeze: (n, [x, axesT], opset) => {
    const t = need(n, x, 0);
    const axes = opset >= 13 ? toNumbers(need(n, axesT, 1)) : attrInts(n, 'axes', [])!;
    const r = t.dims.length + axes.length;
    const norm = axes.map((a) => normalizeAxis(a, r)).sort((a, b) => a - b);
    const dims = [...t.dims];
    for (const a of norm) dims.splice(a, 0, 1);
    return [{ ...t, dims }];
  },
  Squeeze: (n, [x, axesT], opset) => {
    const t = need(n, x, 0);
    const axes = opset >= 13 ? (axesT ? toNumbers(axesT) : null) : attrInts(n, 'axes', null);
    const r = t.dims.length;
    const drop = new Set(axes ? axes.map((a) => normalizeAxis(a, r)) : t.dims.flatMap((d, i) => (d === 1 ? [i] : [])));
    return [{ ...t, dims: t.dims.filter((_, i) => !drop.has(i)) }];
  },
  Concat: (n, xs) => {
    const ts = xs.map((x, i) => need(n, x, i));
    const axis = normalizeAxis(attrNumber(n, 'axis', 0), ts[0].dims.length);
    const outer = ts[0].dims.slice(0, axis).reduce((a, b) => a * b, 1);
    const vals: number[] = [];
    const dims = [...ts[0].dims];
    dims[axis] = ts.reduce((s, t) => s + t.dims[axis], 0);
    for (let o = 0; o < outer; o++) {
      for (const t of ts) {
        const chunk = t.dims.slice(axis).reduce((a, b) => a * b, 1);
        for (let k = 0; k < chunk; k++) vals.push(t.data[o * chunk + k]);
      }
    }
    return [hostTensor(ts[0].dtype, dims, vals)];
  },
  Reshape: (n, [x, s], opset) => {
    const t = need(n, x, 0);
    const shape = opset >= 5 ? toNumbers(need(n, s, 1)) : attrInts(n, 'shape', [])!;
    return [{ ...t, dims: reshapeDims(n, t, shape, attrNumber(n, 'allowzero', 0) === 1) }];
  },
  Flatten: (n, [x]) => {
    const t = need(n, x, 0);
    const axis = normalizeAxis(attrNumber(n, 'axis', 1), t.dims.length);
    const a = t.dims.slice(0, axis).reduce((p, q) => p * q, 1);
    return [{ ...t, dims: [a, hostSize(t.dims) / Math.max(a, 1)] }];
  },
  Cast: (n, [x]) => {
    const t = need(n, x, 0);
    const to = dtypeOf(attrNumber(n, 'to', 1), `node '${n.name}' (Cast)`, '');
    const v = toNumbers(t).map((q) => (isFloatType(to) ? roundToFloat(to, q) : to === 'bool' ? (q !== 0 ? 1 : 0) : Math.trunc(q)));
    return [hostTensor(to, [...t.dims], v)];
  },
  Slice: (n, [x, s, e, a, st], opset) => {
    const t = need(n, x, 0);
    const starts = opset >= 10 ? toNumbers(need(n, s, 1)) : attrInts(n, 'starts', [])!;
    const ends = opset >= 10 ? toNumbers(need(n, e, 2)) : attrInts(n, 'ends', [])!;
    const axes = opset >= 10 ? (a ? toNumbers(a) : null) : attrInts(n, 'axes', null);
    const steps = opset >= 10 && st ? toNumbers(st) : null;
    const p = sliceParams(t.dims, starts, ends, axes, steps);
    const size = hostSize(p.size);
    const srcStrides = stridesOf(t.dims);
    const outStrides = stridesOf(p.size);
    const vals = new Array<number>(size);
    for (let i = 0; i < size; i++) {
      let off = 0;
      for (let d = 0; d < p.size.length; d++) off += (p.begin[d] + (Math.floor(i / outStrides[d]) % p.size[d]) * p.stride[d]) * srcStrides[d];
      vals[i] = t.data[off];
    }
    return [hostTensor(t.dtype, p.size, vals)];
  },
  ConstantOfShape: (n, [s]) => {
    const dims = toNumbers(need(n, s, 0));
    const v = n.attrs.get('value');
    const fill = v && typeof v === 'object' && 'data' in v ? v.data[0] : 0;
    const dtype = v && typeof v === 'object' && 'dtype' in v ? v.dtype : 'float32';
    return [hostTensor(dtype, dims, new Array(hostSize(dims)).fill(fill))];
  },
  Range: (n, [s, l, d]) => {
    const start = need(n, s, 0).data[0];
    const limit = need(n, l, 1).data[0];
    const delta = need(n, d, 2).data[0];
    const count = Math.max(Math.ceil((limit - start) / delta), 0);
    return [hostTensor(need(n, s, 0).dtype, [count], Array.from({ length: count }, (_, i) => start + i * delta))];
  },
  Add: (n, [a, b]) => [elementwise(n, need(n, a, 0), need(n, b, 1), (x, y) => x + y)],
  Sub: (n, [a, b]) => [elementwise(n, need(n, a, 0), need(n, b, 1), (x, y) => x - y)],
  Mul: (n, [a, b]) => [elementwise(n, need(n, a, 0), need(n, b, 1), (x, y) => x * y)],
  Div: (n, [a, b]) => {
    const ta = need(n, a, 0);
    return [elementwise(n, ta, need(n, b, 1), isFloatType(ta.dtype) ? (x, y) => x / y : intDiv)];
  },
  Equal: (n, [a, b]) => [elementwise(n, need(n, a, 0), need(n, b, 1), (x, y) => (x === y ? 1 : 0), 'bool')],
  Where: (n, [c, a, b]) => {
    const cond = need(n, c, 0);
    const ta = need(n, a, 1);
    const tb = need(n, b, 2);
    const sel = elementwise(n, cond, ta, (x, y) => (x ? y : NaN));
    return [elementwise(n, sel, tb, (x, y) => (Number.isNaN(x) ? y : x), ta.dtype)];
  },
  Expand: (n, [x, s]) => {
    const t = need(n, x, 0);
    const shape = toNumbers(need(n, s, 1));
    const ones = hostTensor(t.dtype, shape, new Array(hostSize(shape)).fill(0));
    return [elementwise(n, t, ones, (p) => p, t.dtype)];
  },
  Transpose: (n, [x]) => {
    const t = need(n, x, 0);
    const r = t.dims.length;
    const perm = attrInts(n, 'perm', null) ?? t.dims.map((_, i) => r - 1 - i);
    const dims = perm.map((p) => t.dims[p]);
    const src = stridesOf(t.dims);
    const os = stridesOf(dims);
    const size = hostSize(dims);
    const vals = new Array<number>(size);
    for (let i = 0; i < size; i++) {
      let off = 0;
      for (let d = 0; d < r; d++) off += (Math.floor(i / os[d]) % dims[d]) * src[perm[d]];
      vals[i] = t.data[off];
    }
    return [hostTensor(t.dtype, dims, vals)];
  },
};

/** Op types folded on the CPU when all their inputs are known at plan time. */
export const FOLDABLE_OPS: ReadonlySet<string> = new Set(Object.keys(FOLDS));

/** Op types that are always evaluated on the CPU: shape arithmetic the GPU path does not run. */
export const CPU_ONLY_OPS: ReadonlySet<string> = new Set([
  'Constant', 'Shape', 'Size', 'Gather', 'Cast', 'Slice', 'ConstantOfShape', 'Range', 'Equal', 'Where', 'Expand', 'Transpose',
]);

export function foldNode(n: IrNode, inputs: (HostTensor | null)[], opset: number): HostTensor[] {
  const f = FOLDS[n.opType];
  if (!f) throw new Error(`no CPU folding for ${n.opType}`);
  return f(n, inputs, opset);
}

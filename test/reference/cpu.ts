/**
 * Float64 CPU references of the runtime's ops, written for clarity, not speed: the
 * independent ground truth that GPU kernels are tested against.
 */
export type Arr = ArrayLike<number>;

export interface ConvRefAttrs {
  strides: [number, number];
  pads: [number, number, number, number];
  dilations: [number, number];
  groups: number;
}

export function conv2dRef(x: Arr, xs: number[], w: Arr, ws: number[], b: Arr | null, a: ConvRefAttrs): { data: Float64Array; shape: number[] } {
  const [n, c, h, wd] = xs;
  const [co, cig, kh, kw] = ws;
  const oh = Math.floor((h + a.pads[0] + a.pads[2] - a.dilations[0] * (kh - 1) - 1) / a.strides[0]) + 1;
  const ow = Math.floor((wd + a.pads[1] + a.pads[3] - a.dilations[1] * (kw - 1) - 1) / a.strides[1]) + 1;
  const out = new Float64Array(n * co * oh * ow);
  const cog = co / a.groups;
  for (let i = 0; i < n; i++)
    for (let o = 0; o < co; o++) {
      const g = Math.floor(o / cog);
      for (let y = 0; y < oh; y++)
        for (let xq = 0; xq < ow; xq++) {
          let s = b ? b[o] : 0;
          for (let ci = 0; ci < cig; ci++)
            for (let p = 0; p < kh; p++) {
              const iy = y * a.strides[0] - a.pads[0] + p * a.dilations[0];
              if (iy < 0 || iy >= h) continue;
              for (let q = 0; q < kw; q++) {
                const ix = xq * a.strides[1] - a.pads[1] + q * a.dilations[1];
                if (ix < 0 || ix >= wd) continue;
                s += x[((i * c + g * cig + ci) * h + iy) * wd + ix] * w[((o * cig + ci) * kh + p) * kw + q];
              }
            }
          out[((i * co + o) * oh + y) * ow + xq] = s;
        }
    }
  return { data: out, shape: [n, co, oh, ow] };
}

/** C = alpha·op(A)·op(B) + beta·C0 with op = optional transpose; A: M×K, B: K×N after op. */
export function gemmRef(a: Arr, b: Arr, c0: Arr | null, c0Shape: number[], M: number, N: number, K: number, transA: boolean, transB: boolean, alpha: number, beta: number): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (transA ? a[k * M + i] : a[i * K + k]) * (transB ? b[j * K + k] : b[k * N + j]);
      let bias = 0;
      if (c0) {
        const r = c0Shape.length === 2 ? (c0Shape[0] === 1 ? 0 : i) : 0;
        const cc = c0Shape.length >= 1 && c0Shape[c0Shape.length - 1] !== 1 ? j : 0;
        bias = c0Shape.length === 2 ? c0[r * c0Shape[1] + cc] : c0Shape.length === 1 ? c0[cc] : c0[0];
      }
      out[i * N + j] = alpha * s + beta * bias;
    }
  return out;
}

export interface PoolRefAttrs {
  kernel: [number, number];
  strides: [number, number];
  pads: [number, number, number, number];
  dilations: [number, number];
  ceilMode: boolean;
  countIncludePad: boolean;
}

export function poolOutputSize(inSize: number, k: number, s: number, p0: number, p1: number, d: number, ceil: boolean): number {
  const span = inSize + p0 + p1 - d * (k - 1) - 1;
  let out = (ceil ? Math.ceil(span / s) : Math.floor(span / s)) + 1;
  // A window must start inside the input or the left padding (ONNX / PyTorch rule).
  if (ceil && (out - 1) * s >= inSize + p0) out--;
  return out;
}

export function pool2dRef(kind: 'max' | 'avg', x: Arr, xs: number[], a: PoolRefAttrs): { data: Float64Array; shape: number[] } {
  const [n, c, h, w] = xs;
  const oh = poolOutputSize(h, a.kernel[0], a.strides[0], a.pads[0], a.pads[2], a.dilations[0], a.ceilMode);
  const ow = poolOutputSize(w, a.kernel[1], a.strides[1], a.pads[1], a.pads[3], a.dilations[1], a.ceilMode);
  const out = new Float64Array(n * c * oh * ow);
  for (let i = 0; i < n * c; i++)
    for (let y = 0; y < oh; y++)
      for (let xq = 0; xq < ow; xq++) {
        let m = -Infinity;
        let s = 0;
        let cnt = 0;
        let padCnt = 0;
        for (let p = 0; p < a.kernel[0]; p++) {
          const iy = y * a.strides[0] - a.pads[0] + p * a.dilations[0];
          for (let q = 0; q < a.kernel[1]; q++) {
            const ix = xq * a.strides[1] - a.pads[1] + q * a.dilations[1];
            const inPadded = iy < h + a.pads[2] && ix < w + a.pads[3];
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
              if (inPadded && iy >= -a.pads[0] && ix >= -a.pads[1]) padCnt++;
              continue;
            }
            const v = x[(i * h + iy) * w + ix];
            m = Math.max(m, v);
            s += v;
            cnt++;
          }
        }
        out[(i * oh + y) * ow + xq] = kind === 'max' ? m : s / (a.countIncludePad ? cnt + padCnt : cnt);
      }
  return { data: out, shape: [n, c, oh, ow] };
}

/** NumPy matmul: 1-D operands promoted ([K] → [1, K] for A, [K, 1] for B) and the promoted axis dropped; batch axes broadcast. */
export function matmulRef(a: Arr, aShape: number[], b: Arr, bShape: number[]): { data: Float64Array; shape: number[] } {
  const a2 = aShape.length === 1 ? [1, aShape[0]] : aShape;
  const b2 = bShape.length === 1 ? [bShape[0], 1] : bShape;
  const [M, K] = a2.slice(-2);
  const N = b2[b2.length - 1];
  if (b2[b2.length - 2] !== K) throw new Error(`matmulRef: inner dimensions ${K} and ${b2[b2.length - 2]} differ`);
  const ba = a2.slice(0, -2);
  const bb = b2.slice(0, -2);
  const r = Math.max(ba.length, bb.length);
  const pad = (s: number[]) => [...new Array<number>(r - s.length).fill(1), ...s];
  const pa = pad(ba);
  const pb = pad(bb);
  const batch = pa.map((d, i) => {
    if (d !== pb[i] && d !== 1 && pb[i] !== 1) throw new Error(`matmulRef: batch axes [${ba}] and [${bb}] do not broadcast`);
    return Math.max(d, pb[i]);
  });
  const total = batch.reduce((p, q) => p * q, 1);
  const out = new Float64Array(total * M * N);
  for (let z = 0; z < total; z++) {
    // Unravel z over the output batch, then ravel into each operand (index 0 on its broadcast axes).
    let ia = 0;
    let ib = 0;
    let rem = z;
    let sa = 1;
    let sb = 1;
    for (let d = r - 1; d >= 0; d--) {
      const c = rem % batch[d];
      rem = Math.floor(rem / batch[d]);
      ia += (pa[d] === 1 ? 0 : c) * sa;
      ib += (pb[d] === 1 ? 0 : c) * sb;
      sa *= pa[d];
      sb *= pb[d];
    }
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[(ia * M + i) * K + k] * b[(ib * K + k) * N + j];
        out[(z * M + i) * N + j] = s;
      }
  }
  const shape = [...batch, M, N];
  if (aShape.length === 1) shape.splice(shape.length - 2, 1);
  if (bShape.length === 1) shape.splice(shape.length - 1, 1);
  return { data: out, shape };
}

/** One output y[n, co, oh, ow] of conv2dRef (no bias): finite differences re-evaluate only the outputs a perturbation reaches. */
export function conv2dAtRef(x: Arr, xs: number[], w: Arr, ws: number[], a: ConvRefAttrs, n: number, co: number, oh: number, ow: number): number {
  const [, c, h, wd] = xs;
  const [cout, cig, kh, kw] = ws;
  const g = Math.floor(co / (cout / a.groups));
  let s = 0;
  for (let ci = 0; ci < cig; ci++)
    for (let p = 0; p < kh; p++) {
      const iy = oh * a.strides[0] - a.pads[0] + p * a.dilations[0];
      if (iy < 0 || iy >= h) continue;
      for (let q = 0; q < kw; q++) {
        const ix = ow * a.strides[1] - a.pads[1] + q * a.dilations[1];
        if (ix < 0 || ix >= wd) continue;
        s += x[((n * c + g * cig + ci) * h + iy) * wd + ix] * w[((co * cig + ci) * kh + p) * kw + q];
      }
    }
  return s;
}

function normAxes(rank: number, axes: number[]): Set<number> {
  return new Set(axes.map((a) => (a < 0 ? a + rank : a)));
}

/** Reduction with keepdims over `axes` (an empty list reduces nothing). */
export function reduceRef(kind: 'sum' | 'mean' | 'max' | 'min', x: Arr, xs: number[], axes: number[]): { data: Float64Array; shape: number[] } {
  const set = normAxes(xs.length, axes);
  const shape = xs.map((d, i) => (set.has(i) ? 1 : d));
  const total = shape.reduce((p, q) => p * q, 1);
  const init = kind === 'max' ? -Infinity : kind === 'min' ? Infinity : 0;
  const out = new Float64Array(total).fill(init);
  let count = 1;
  set.forEach((a) => (count *= xs[a]));
  const size = xs.reduce((p, q) => p * q, 1);
  for (let i = 0; i < size; i++) {
    let rem = i;
    let o = 0;
    let mul = 1;
    for (let d = xs.length - 1; d >= 0; d--) {
      const c = rem % xs[d];
      rem = Math.floor(rem / xs[d]);
      if (!set.has(d)) o += c * mul;
      mul *= shape[d];
    }
    const v = x[i];
    out[o] = kind === 'max' ? Math.max(out[o], v) : kind === 'min' ? Math.min(out[o], v) : out[o] + v;
  }
  if (kind === 'mean') for (let o = 0; o < total; o++) out[o] /= count;
  return { data: out, shape };
}

/** NumPy broadcast of x to `ys` (x's axes right-aligned). */
export function broadcastRef(x: Arr, xs: number[], ys: number[]): Float64Array {
  const size = ys.reduce((p, q) => p * q, 1);
  const out = new Float64Array(size);
  const off = ys.length - xs.length;
  for (let i = 0; i < size; i++) {
    let rem = i;
    let src = 0;
    let mul = 1;
    for (let d = ys.length - 1; d >= 0; d--) {
      const c = rem % ys[d];
      rem = Math.floor(rem / ys[d]);
      const j = d - off;
      if (j >= 0) {
        if (xs[j] !== 1) src += c * mul;
        mul *= xs[j];
      }
    }
    out[i] = x[src];
  }
  return out;
}

export interface BilinearRefOptions {
  alignCorners: boolean;
  scaled?: [number, number];
  offset?: [number, number];
}

/** Bilinear resize of every plane of x [..., H, W] to the window [offY, offY + outH) × [offX, offX + outW) of the image scaled to `scaled`. */
export function bilinearRef(x: Arr, xs: number[], outH: number, outW: number, o: BilinearRefOptions): { data: Float64Array; shape: number[] } {
  const [inH, inW] = xs.slice(-2);
  const planes = xs.slice(0, -2).reduce((p, q) => p * q, 1);
  const [sh, sw] = o.scaled ?? [outH, outW];
  const [oy0, ox0] = o.offset ?? [0, 0];
  const src = (v: number, inn: number, sc: number) => {
    if (o.alignCorners) return sc > 1 ? (v * (inn - 1)) / (sc - 1) : 0;
    return Math.max(((v + 0.5) * inn) / sc - 0.5, 0);
  };
  const out = new Float64Array(planes * outH * outW);
  for (let p = 0; p < planes; p++)
    for (let y = 0; y < outH; y++) {
      const sy = src(y + oy0, inH, sh);
      const y0 = Math.min(Math.floor(sy), inH - 1);
      const y1 = Math.min(y0 + 1, inH - 1);
      const wy = sy - y0;
      for (let xq = 0; xq < outW; xq++) {
        const sx = src(xq + ox0, inW, sw);
        const x0 = Math.min(Math.floor(sx), inW - 1);
        const x1 = Math.min(x0 + 1, inW - 1);
        const wx = sx - x0;
        const at = (yy: number, xx: number) => x[(p * inH + yy) * inW + xx];
        const top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx;
        const bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx;
        out[(p * outH + y) * outW + xq] = top * (1 - wy) + bottom * wy;
      }
    }
  return { data: out, shape: [...xs.slice(0, -2), outH, outW] };
}

/** ONNX Pad, pads = [b_0 … b_{r−1}, e_0 … e_{r−1}] (negative pads crop). */
export function padRef(x: Arr, xs: number[], pads: number[], mode: 'constant' | 'reflect' | 'edge' | 'wrap', value: number): { data: Float64Array; shape: number[] } {
  const r = xs.length;
  const ys = xs.map((d, i) => d + pads[i] + pads[i + r]);
  const size = ys.reduce((p, q) => p * q, 1);
  const out = new Float64Array(size);
  const map = (c: number, len: number): number | null => {
    if (mode === 'constant') return c >= 0 && c < len ? c : null;
    if (mode === 'edge') return Math.min(Math.max(c, 0), len - 1);
    if (mode === 'wrap') return ((c % len) + len) % len;
    if (len === 1) return 0;
    const period = 2 * (len - 1);
    const m = ((c % period) + period) % period;
    return m >= len ? period - m : m;
  };
  for (let i = 0; i < size; i++) {
    let rem = i;
    let src = 0;
    let mul = 1;
    let inside = true;
    for (let d = r - 1; d >= 0; d--) {
      const c = rem % ys[d];
      rem = Math.floor(rem / ys[d]);
      const m = map(c - pads[d], xs[d]);
      if (m === null) inside = false;
      else src += m * mul;
      mul *= xs[d];
    }
    out[i] = inside ? x[src] : value;
  }
  return { data: out, shape: ys };
}

/** Softmax / log-softmax along `axis`; coerce2d flattens [axis, rank) into one axis (pre-opset-13). */
export function softmaxRef(x: Arr, xs: number[], axis: number, coerce2d: boolean, log: boolean): Float64Array {
  const ax = axis < 0 ? axis + xs.length : axis;
  const prod = (s: number[]) => s.reduce((p, q) => p * q, 1);
  const outer = prod(xs.slice(0, ax));
  const len = coerce2d ? prod(xs.slice(ax)) : xs[ax];
  const inner = coerce2d ? 1 : prod(xs.slice(ax + 1));
  const out = new Float64Array(outer * len * inner);
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      const at = (a: number) => (o * len + a) * inner + i;
      let m = -Infinity;
      for (let a = 0; a < len; a++) m = Math.max(m, x[at(a)]);
      let s = 0;
      for (let a = 0; a < len; a++) s += Math.exp(x[at(a)] - m);
      for (let a = 0; a < len; a++) out[at(a)] = log ? x[at(a)] - m - Math.log(s) : Math.exp(x[at(a)] - m) / s;
    }
  return out;
}

/** Mean or max over each N×C plane of an N×C×spatial tensor. */
export function globalPoolRef(kind: 'max' | 'avg', x: Arr, xs: number[]): { data: Float64Array; shape: number[] } {
  const planes = xs[0] * xs[1];
  const size = xs.slice(2).reduce((p, q) => p * q, 1);
  const out = new Float64Array(planes);
  for (let p = 0; p < planes; p++) {
    let m = -Infinity;
    let s = 0;
    for (let j = 0; j < size; j++) {
      m = Math.max(m, x[p * size + j]);
      s += x[p * size + j];
    }
    out[p] = kind === 'max' ? m : s / size;
  }
  return { data: out, shape: [xs[0], xs[1], ...xs.slice(2).map(() => 1)] };
}

/** Concatenation along `axis`. */
export function concatRef(xs: Arr[], shapes: number[][], axis: number): { data: Float64Array; shape: number[] } {
  const shape = [...shapes[0]];
  shape[axis] = shapes.reduce((p, s) => p + s[axis], 0);
  const outer = shape.slice(0, axis).reduce((p, q) => p * q, 1);
  const inner = shape.slice(axis + 1).reduce((p, q) => p * q, 1);
  const out = new Float64Array(outer * shape[axis] * inner);
  let k = 0;
  for (let o = 0; o < outer; o++)
    xs.forEach((x, t) => {
      const run = shapes[t][axis] * inner;
      for (let j = 0; j < run; j++) out[k++] = x[o * run + j];
    });
  return { data: out, shape };
}

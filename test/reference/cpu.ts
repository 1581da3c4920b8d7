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

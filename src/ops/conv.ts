import { ShapeError } from '../runtime/errors.js';
import { formatShape, type Shape, sizeOf } from '../runtime/shape.js';
import { CONV_GEMM_PARAMS, DEFAULT_TILING, gemmKernel, STRIDED_GEMM_PARAMS } from '../shaders/gemm.js';
import { activationParams } from './activation.js';
import type { Conv2dAttrs } from './conv-attrs.js';
import { chooseConvPath, lowerConvSg8, winogradScratchBytes } from './conv-sg8.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export type AutoPad = 'NOTSET' | 'SAME_UPPER' | 'SAME_LOWER' | 'VALID';

/** Resolves ONNX auto_pad into explicit begin/end pads for one spatial axis. */
export function autoPads(autoPad: AutoPad, inSize: number, kernel: number, stride: number, dilation: number, explicit: [number, number]): [number, number] {
  if (autoPad === 'NOTSET') return explicit;
  if (autoPad === 'VALID') return [0, 0];
  const out = Math.ceil(inSize / stride);
  const total = Math.max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - inSize);
  const small = Math.floor(total / 2);
  return autoPad === 'SAME_UPPER' ? [small, total - small] : [total - small, small];
}

export function convOutputShape(where: string, x: Shape, w: Shape, a: Conv2dAttrs): number[] {
  if (x.length !== 4) throw new ShapeError(where, `Conv input must be 4-D NCHW, got ${formatShape(x)}`);
  if (w.length !== 4) throw new ShapeError(where, `Conv weight must be 4-D [Cout, Cin/group, kH, kW], got ${formatShape(w)}`);
  const [n, c, h, wd] = x;
  const [cout, cinG, kh, kw] = w;
  if (c % a.groups !== 0 || cout % a.groups !== 0) {
    throw new ShapeError(where, `channels ${c} in / ${cout} out are not divisible by group=${a.groups}`);
  }
  if (cinG !== c / a.groups) {
    throw new ShapeError(where, `weight ${formatShape(w)} expects ${cinG * a.groups} input channels, input ${formatShape(x)} has ${c}`);
  }
  if (kh !== a.kernel[0] || kw !== a.kernel[1]) {
    throw new ShapeError(where, `kernel_shape [${a.kernel}] disagrees with weight ${formatShape(w)}`);
  }
  const oh = Math.floor((h + a.pads[0] + a.pads[2] - a.dilations[0] * (kh - 1) - 1) / a.strides[0]) + 1;
  const ow = Math.floor((wd + a.pads[1] + a.pads[3] - a.dilations[1] * (kw - 1) - 1) / a.strides[1]) + 1;
  if (oh < 1 || ow < 1) throw new ShapeError(where, `Conv output would be empty for input ${formatShape(x)} and kernel ${kh}x${kw}`);
  return [n, cout, oh, ow];
}

export function convFlops(y: Shape, w: Shape): number {
  return 2 * y[0] * y[1] * y[2] * y[3] * w[1] * w[2] * w[3];
}

/**
 * Lowers Conv(X, W[, B]): on sg8 adapters to the path chooseConvPath picks; otherwise to the
 * generic matmul core (1×1 unit-stride unpadded convs as strided GEMM, the rest as implicit GEMM).
 *
 * The direct and implicit-GEMM kernels give every (image, group) pair its own workgroup
 * index along z, and the sg8 1×1 matmul every image. When images × groups exceed the
 * device's maxComputeWorkgroupsPerDimension (65535 on lavapipe and most adapters), the
 * batch is split into chunks of images (see lowerConvByImages): the same convolution on
 * consecutive slices of x and y, bound at byte offsets into them, each chunk on the fastest
 * path for its size. That throws a ShapeError when groups alone exceed the limit, or when
 * no chunk that fits keeps both offsets a multiple of minStorageBufferOffsetAlignment.
 */
export function lowerConv(env: LowerEnv, x: BoundTensor, w: BoundTensor, bias: BoundTensor | null, y: BoundTensor, a: Conv2dAttrs): Lowered {
  const zLimit = env.ctx.limits.maxComputeWorkgroupsPerDimension;
  if (x.shape[0] * a.groups > zLimit) return lowerConvByImages(env, x, w, bias, y, a, zLimit);
  const [n, c, h, wd] = x.shape;
  const [cout, cinG, kh, kw] = w.shape;
  const [, , oh, ow] = y.shape;
  const g = a.groups;
  const coutG = cout / g;
  const act = a.activation;
  const tiling = DEFAULT_TILING;
  const flops = convFlops(y.shape, w.shape);
  if (env.ctx.kernelFamily === 'sg8') {
    let path = chooseConvPath(x.shape, w.shape, y.shape, a);
    if ((path === 'winograd4' || path === 'winograd2') && winogradScratchBytes(path === 'winograd4' ? 4 : 2, x.shape, w.shape, y.shape) > env.ctx.limits.maxStorageBufferBindingSize) {
      path = 'direct';
    }
    return lowerConvSg8(env, path, x, w, bias, y, a, flops);
  }
  const pointwise = kh === 1 && kw === 1 && a.strides[0] === 1 && a.strides[1] === 1 && a.pads.every((p) => p === 0);
  if (pointwise) {
    // out[n, g*coutG + m, p] = Σ_k W[g*coutG + m, k] · X[n, g*cinG + k, p]: batch over (n, g).
    const P = h * wd;
    const kernel = gemmKernel({ source: 'strided', activation: act.kind, bias: bias !== null, tiling });
    const params = STRIDED_GEMM_PARAMS.pack({
      M: coutG, N: P, K: cinG, alpha: 1, beta: 1, ...activationParams(act), B2: g,
      a_off: 0, a_sb1: 0, a_sb2: coutG * cinG, a_sm: cinG, a_sk: 1,
      b_off: 0, b_sb1: c * P, b_sb2: cinG * P, b_sk: P, b_sn: 1,
      c_off: 0, c_sb1: cout * P, c_sb2: coutG * P, c_sm: P, c_sn: 1,
      bias_off: 0, bias_sm: 1, bias_sn: 0,
    });
    if (g > 1 && bias) {
      // Bias offset per group is not expressible through B2 strides; split by group.
      return Array.from({ length: g }, (_, gi) => ({
        kernel,
        params: STRIDED_GEMM_PARAMS.pack({
          M: coutG, N: P, K: cinG, alpha: 1, beta: 1, ...activationParams(act), B2: 1,
          a_off: gi * coutG * cinG, a_sb1: 0, a_sb2: 0, a_sm: cinG, a_sk: 1,
          b_off: gi * cinG * P, b_sb1: c * P, b_sb2: 0, b_sk: P, b_sn: 1,
          c_off: gi * coutG * P, c_sb1: cout * P, c_sb2: 0, c_sm: P, c_sn: 1,
          bias_off: gi * coutG, bias_sm: 1, bias_sn: 0,
        }),
        buffers: [w.binding, x.binding, bias.binding, y.binding],
        workgroups: [cdiv(P, tiling.tileN * tiling.wgX), cdiv(coutG, tiling.tileM * tiling.wgY), n] as const,
        label: env.label,
        flops: flops / g,
      }));
    }
    return [{
      kernel,
      params,
      buffers: bias ? [w.binding, x.binding, bias.binding, y.binding] : [w.binding, x.binding, y.binding],
      workgroups: [cdiv(P, tiling.tileN * tiling.wgX), cdiv(coutG, tiling.tileM * tiling.wgY), n * g],
      label: env.label,
      flops,
    }];
  }
  const kernel = gemmKernel({ source: 'conv', activation: act.kind, bias: bias !== null, tiling });
  const P = oh * ow;
  const params = CONV_GEMM_PARAMS.pack({
    M: coutG, N: P, K: cinG * kh * kw, alpha: 1, beta: 1, ...activationParams(act),
    groups: g, cin_g: cinG, H: h, W: wd, KH: kh, KW: kw,
    stride_h: a.strides[0], stride_w: a.strides[1], pad_h: a.pads[0], pad_w: a.pads[1],
    dil_h: a.dilations[0], dil_w: a.dilations[1], OW: ow,
  });
  return [{
    kernel,
    params,
    buffers: bias ? [w.binding, x.binding, bias.binding, y.binding] : [w.binding, x.binding, y.binding],
    workgroups: [cdiv(P, tiling.tileN * tiling.wgX), cdiv(coutG, tiling.tileM * tiling.wgY), n * g],
    label: env.label,
    flops,
  }];
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * lowerConv for a batch whose images × groups exceed `zLimit` workgroups along z: chunks of
 * images small enough to fit, each a view of x and y at a byte offset that keeps
 * minStorageBufferOffsetAlignment, lowered like any conv. Weights derived for one chunk
 * (sg8 packing, Winograd transforms) serve all of them.
 */
function lowerConvByImages(env: LowerEnv, x: BoundTensor, w: BoundTensor, bias: BoundTensor | null, y: BoundTensor, a: Conv2dAttrs, zLimit: number): Lowered {
  const n = x.shape[0];
  const g = a.groups;
  if (g > zLimit) {
    throw new ShapeError(env.label, `Conv with group=${g} needs ${g} workgroups along z for one image, over the device's limit of ${zLimit}`);
  }
  const align = env.ctx.limits.minStorageBufferOffsetAlignment;
  const xImage = sizeOf(x.shape.slice(1)) * 4;
  const yImage = sizeOf(y.shape.slice(1)) * 4;
  // Fewest images whose bytes are a multiple of the alignment in both x and y.
  const sx = align / gcd(xImage, align);
  const sy = align / gcd(yImage, align);
  const step = (sx / gcd(sx, sy)) * sy;
  const fit = Math.floor(zLimit / g);
  const chunk = Math.floor(fit / step) * step;
  if (chunk === 0) {
    throw new ShapeError(env.label, `Conv over ${n} images with group=${g} needs ${n * g} workgroups along z, over the device's limit of ${zLimit}; `
      + `chunks of at most ${fit} images would fit, but images of ${xImage} (input) and ${yImage} (output) bytes keep the ${align}-byte binding alignment only every ${step} images`);
  }
  const derived: { key: string; source: GPUBufferBinding; result: BoundTensor }[] = [];
  const chunkEnv: LowerEnv = {
    ctx: env.ctx,
    label: env.label,
    scratch: (bytes, shape) => env.scratch(bytes, shape),
    derive: (key, source, bytes, shape, make) => {
      const s = source.binding;
      const hit = derived.find((d) => d.key === key && d.source.buffer === s.buffer && d.source.offset === s.offset && d.source.size === s.size);
      if (hit) return hit.result;
      const result = env.derive(key, source, bytes, shape, make);
      derived.push({ key, source: s, result });
      return result;
    },
  };
  const out: Lowered = [];
  for (let i0 = 0; i0 < n; i0 += chunk) {
    const k = Math.min(chunk, n - i0);
    const view = (t: BoundTensor, imageBytes: number): BoundTensor => ({
      shape: [k, ...t.shape.slice(1)],
      binding: { buffer: t.binding.buffer, offset: (t.binding.offset ?? 0) + i0 * imageBytes, size: k * imageBytes },
    });
    out.push(...lowerConv(chunkEnv, view(x, xImage), w, bias, view(y, yImage), a));
  }
  return out;
}

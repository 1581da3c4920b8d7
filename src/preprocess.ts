import { lowerChannelAffine } from './ops/elementwise.js';
import { EagerEnv } from './ops/env.js';
import { lowerBilinear } from './ops/resample.js';
import { bound, cdiv } from './ops/types.js';
import type { GpuContext } from './runtime/device.js';
import { InputError } from './runtime/errors.js';
import { BufferUsage } from './runtime/gpu-constants.js';
import { grid1d } from './runtime/kernel.js';
import { Recorder } from './runtime/recorder.js';
import { Tensor, writeFloats } from './runtime/tensor.js';
import { RESAMPLE_WG, UNPACK_PARAMS, unpackRgbaKernel } from './shaders/resample.js';

/** A decoded image: 8-bit RGBA, row-major. */
export interface RgbaImage {
  width: number;
  height: number;
  rgba: Uint8Array;
  /** Where it came from, for messages. */
  source?: string;
}

export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

export interface PreprocessOptions {
  /** Model input size [H, W]. */
  size: [number, number];
  /**
   * 'resize' (SPEC default): bilinear straight to the input size. 'resize-crop':
   * torchvision style, shorter side to `resizeTo` (default 256 for 224 inputs), then center crop.
   */
  mode?: 'resize' | 'resize-crop';
  resizeTo?: number;
  /** Per-channel mean/std on [0, 1] values; null for no normalization. Default ImageNet. */
  normalize?: { mean: readonly number[]; std: readonly number[] } | null;
  /** 3: RGB planes (default); 1: one luma plane, for grayscale models. */
  channels?: 1 | 3;
}

/**
 * Turns decoded images into the NCHW float batch a model receives, on the GPU: unpack
 * RGBA8 to [0, 1] planes, bilinear resize (half-pixel centers) or resize-and-crop, then
 * (x − mean)/std as one per-channel affine over the batch. One submission for the batch.
 */
export function preprocessImages(ctx: GpuContext, images: readonly RgbaImage[], o: PreprocessOptions): Tensor {
  if (images.length === 0) throw new InputError('no images to preprocess');
  const [H, W] = o.size;
  const C = o.channels ?? 3;
  const norm = o.normalize === undefined ? (C === 3 ? { mean: IMAGENET_MEAN, std: IMAGENET_STD } : null) : o.normalize;
  if (norm && (norm.mean.length !== C || norm.std.length !== C || norm.std.some((s) => !(s > 0)))) {
    throw new InputError(`normalization needs ${C} means and ${C} positive stds, got mean=[${norm.mean}] std=[${norm.std}]`);
  }
  const out = Tensor.empty(ctx, [images.length, C, H, W], 'images');
  // Normalizing reads the resized batch and writes `out`: a binding cannot be both in one launch.
  const resized = norm ? Tensor.empty(ctx, out.shape, 'resized') : out;
  const rec = new Recorder(ctx, { label: 'preprocess' });
  const scratch: GPUBuffer[] = [];
  try {
    images.forEach((img, i) => {
      const px = img.width * img.height;
      if (!(img.width > 0 && img.height > 0) || img.rgba.length !== px * 4) {
        throw new InputError(`image ${img.source ?? i}: ${img.width}x${img.height} with ${img.rgba.length} bytes is not RGBA8`);
      }
      const packed = ctx.pool.acquire(px * 4, BufferUsage.STORAGE | BufferUsage.COPY_DST, 'rgba');
      const planar = ctx.pool.acquire(px * C * 4, undefined, 'planar');
      scratch.push(packed, planar);
      writeFloats(ctx.device.queue, packed, 0, new Uint32Array(img.rgba.buffer.slice(img.rgba.byteOffset, img.rgba.byteOffset + px * 4)));
      rec.dispatch({
        kernel: unpackRgbaKernel(C),
        params: UNPACK_PARAMS.pack({ pixels: px, out_off: 0 }),
        buffers: [{ buffer: packed, offset: 0, size: px * 4 }, { buffer: planar, offset: 0, size: px * C * 4 }],
        workgroups: grid1d(cdiv(px, RESAMPLE_WG)),
        label: 'unpack',
      });
      let scaled: [number, number] = [H, W];
      let offset: [number, number] = [0, 0];
      if (o.mode === 'resize-crop') {
        const s = o.resizeTo ?? Math.round((Math.min(H, W) * 256) / 224);
        const k = s / Math.min(img.height, img.width);
        scaled = [Math.round(img.height * k), Math.round(img.width * k)];
        if (scaled[0] < H || scaled[1] < W) throw new InputError(`resize-crop: shorter side ${s} is smaller than the crop ${H}x${W}`);
        offset = [Math.floor((scaled[0] - H) / 2), Math.floor((scaled[1] - W) / 2)];
      }
      for (const d of lowerBilinear(new EagerEnv(ctx, 'resize'), bound([C, img.height, img.width], planar), bound(out.shape, resized.buffer), [C, H, W], {
        alignCorners: false, scaled, offset, outOffset: i * C * H * W,
      })) rec.dispatch(d);
    });
    if (norm) {
      const scale = Tensor.fromData(ctx, Float32Array.from(norm.std, (s) => 1 / s), [C]);
      const shift = Tensor.fromData(ctx, Float32Array.from(norm.mean, (m, c) => -m / norm.std[c]), [C]);
      for (const d of lowerChannelAffine(new EagerEnv(ctx, 'normalize'), bound(out.shape, resized.buffer), bound([C], scale.buffer), bound([C], shift.buffer), bound(out.shape, out.buffer))) rec.dispatch(d);
      rec.submit();
      scale.dispose();
      shift.dispose();
      resized.dispose();
    } else {
      rec.submit();
    }
  } catch (e) {
    out.dispose();
    if (resized !== out) resized.dispose();
    throw e;
  } finally {
    for (const b of scratch) ctx.pool.release(b);
  }
  return out;
}

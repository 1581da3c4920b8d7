import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { readImageFile } from '../src/io/image-node.js';
import { parseNpy } from '../src/io/npy.js';
import { Model } from '../src/model.js';
import { IMAGENET_MEAN, IMAGENET_STD, preprocessImages, type RgbaImage } from '../src/preprocess.js';
import { FIXTURES } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { relError, rng } from './helpers/random.js';

/** PyTorch's bilinear resize (align_corners=False, no antialias) of one plane, in float64. */
function resizeRef(src: Float64Array, h: number, w: number, oh: number, ow: number, scaled: [number, number], off: [number, number]): Float64Array {
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const sy = Math.max(((y + off[0] + 0.5) * h) / scaled[0] - 0.5, 0);
      const sx = Math.max(((x + off[1] + 0.5) * w) / scaled[1] - 0.5, 0);
      const y0 = Math.min(Math.floor(sy), h - 1);
      const x0 = Math.min(Math.floor(sx), w - 1);
      const y1 = Math.min(y0 + 1, h - 1);
      const x1 = Math.min(x0 + 1, w - 1);
      const wy = sy - y0;
      const wx = sx - x0;
      const top = src[y0 * w + x0] * (1 - wx) + src[y0 * w + x1] * wx;
      const bot = src[y1 * w + x0] * (1 - wx) + src[y1 * w + x1] * wx;
      out[y * ow + x] = top * (1 - wy) + bot * wy;
    }
  }
  return out;
}

function reference(img: RgbaImage, size: [number, number], scaled: [number, number], off: [number, number]): Float64Array {
  const out = new Float64Array(3 * size[0] * size[1]);
  for (let c = 0; c < 3; c++) {
    const plane = new Float64Array(img.width * img.height);
    for (let i = 0; i < plane.length; i++) plane[i] = img.rgba[i * 4 + c] / 255;
    const r = resizeRef(plane, img.height, img.width, size[0], size[1], scaled, off);
    for (let i = 0; i < r.length; i++) out[c * r.length + i] = (r[i] - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
  }
  return out;
}

function randomImage(w: number, h: number, seed: number): RgbaImage {
  const rand = rng(seed);
  const rgba = new Uint8Array(w * h * 4);
  for (let i = 0; i < rgba.length; i++) rgba[i] = i % 4 === 3 ? 255 : Math.floor(rand() * 256);
  return { width: w, height: h, rgba };
}

describe('image preprocessing (SPEC §0) on the GPU', () => {
  it('camgpu run reads the model card beside the model: its preprocessing and class names', async () => {
    const root = join(import.meta.dirname, '..');
    const r = await promisify(execFile)(process.execPath, [join(root, 'bin', 'camgpu.js'), 'run', '--model', join(root, 'models', 'fashion-vgg.onnx'), '--image', join(root, 'examples', 'fashion', 'ankle-boot.png'), '--json']);
    const out = JSON.parse(r.stdout) as { top: { classes: { cls: number; label: string | null }[] }[] };
    expect(out.top[0].classes[0]).toMatchObject({ cls: 9, label: 'Ankle boot' });
  });

  it('resizes bilinearly with half-pixel centers and normalizes with ImageNet mean/std, per image of a batch', async () => {
    const ctx = await gpu();
    const images = [randomImage(53, 37, 1), randomImage(20, 31, 2)];
    const t = preprocessImages(ctx, images, { size: [24, 28] });
    expect(t.shape).toEqual([2, 3, 24, 28]);
    const got = await t.read();
    const per = 3 * 24 * 28;
    images.forEach((img, i) => {
      expect(relError(got.subarray(i * per, (i + 1) * per), reference(img, [24, 28], [24, 28], [0, 0]))).toBeLessThan(1e-5);
    });
    t.dispose();
  });

  it('grayscale models get one luma plane (ITU-R 601), normalized with their own mean/std', async () => {
    const ctx = await gpu();
    const img = randomImage(28, 28, 9);
    const t = preprocessImages(ctx, [img], { size: [56, 56], channels: 1, normalize: { mean: [0.2860], std: [0.3530] } });
    expect(t.shape).toEqual([1, 1, 56, 56]);
    const luma = new Float64Array(28 * 28);
    for (let i = 0; i < luma.length; i++) luma[i] = (0.299 * img.rgba[i * 4] + 0.587 * img.rgba[i * 4 + 1] + 0.114 * img.rgba[i * 4 + 2]) / 255;
    const want = resizeRef(luma, 28, 28, 56, 56, [56, 56], [0, 0]).map((v) => (v - 0.286) / 0.353);
    expect(relError(await t.read(), want)).toBeLessThan(1e-5);
    t.dispose();
  });

  it('resize-crop: shorter side to 256/224 of the size, then a center crop', async () => {
    const ctx = await gpu();
    const img = randomImage(70, 45, 3);
    const t = preprocessImages(ctx, [img], { size: [32, 32], mode: 'resize-crop' });
    const s = Math.round((32 * 256) / 224);
    const k = s / 45;
    const scaled: [number, number] = [Math.round(45 * k), Math.round(70 * k)];
    const off: [number, number] = [Math.floor((scaled[0] - 32) / 2), Math.floor((scaled[1] - 32) / 2)];
    expect(relError(await t.read(), reference(img, [32, 32], scaled, off))).toBeLessThan(1e-5);
    t.dispose();
  });

  it('decodes PNG and JPEG by signature, with clear errors otherwise', () => {
    const dir = mkdtempSync(join(tmpdir(), 'camgpu-img-'));
    const img = randomImage(9, 7, 4);
    const png = new PNG({ width: 9, height: 7 });
    png.data.set(img.rgba);
    writeFileSync(join(dir, 'a.png'), PNG.sync.write(png));
    writeFileSync(join(dir, 'b.dat'), jpeg.encode({ data: Buffer.from(img.rgba), width: 9, height: 7 }, 100).data);
    writeFileSync(join(dir, 'c.png'), 'not an image');
    const a = readImageFile(join(dir, 'a.png'));
    expect(Array.from(a.rgba)).toEqual(Array.from(img.rgba));
    const b = readImageFile(join(dir, 'b.dat'));
    expect([b.width, b.height]).toEqual([9, 7]);
    expect(() => readImageFile(join(dir, 'c.png'))).toThrow(/c\.png is neither a PNG nor a JPEG file/);
    expect(() => readImageFile(join(dir, 'missing.png'))).toThrow(/cannot read image/);
  });

  it('camgpu run --image feeds the preprocessed batch to the model and writes logits.npy', async () => {
    const ctx = await gpu();
    const dir = mkdtempSync(join(tmpdir(), 'camgpu-run-'));
    const imgs = [randomImage(80, 60, 5), randomImage(64, 64, 6)];
    imgs.forEach((img, i) => {
      const png = new PNG({ width: img.width, height: img.height });
      png.data.set(img.rgba);
      writeFileSync(join(dir, `${i}.png`), PNG.sync.write(png));
    });
    const modelPath = join(FIXTURES, 'torch', 'resnet18-w8.onnx');
    await promisify(execFile)(process.execPath, [join(import.meta.dirname, '..', 'bin', 'camgpu.js'), 'run', '--model', modelPath, '--image', `${join(dir, '0.png')},${join(dir, '1.png')}`, '--out', join(dir, 'out'), '--json']);
    const logits = parseNpy(new Uint8Array(readFileSync(join(dir, 'out', 'logits.npy'))));
    expect(logits.shape).toEqual([2, 10]);
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(modelPath)));
    const x = preprocessImages(ctx, imgs, { size: [64, 64] });
    const r = await model.run(x);
    expect(relError(logits.data, await r.outputs.get('logits')!.read())).toBeLessThan(1e-6);
    await model.dispose();
  });
});

/**
 * Saliency maps drawn over images: colormaps, the bilinear map resize and the alpha blend.
 * Pure TypeScript on typed arrays (no Node API), so it runs in browsers too.
 *
 * The colormaps come from libraries, not from tables typed in here: viridis, inferno and
 * turbo from d3-scale-chromatic (viridis/inferno are matplotlib's 256-entry tables; turbo
 * is d3's polynomial fit of Google's Turbo), jet from `colormap` (d3 has no jet). Each is
 * sampled once into a lookup table of 257 entries, entry i being the library's colour at
 * t = i/256 (so 0, ¼, ½, ¾ and 1 are sampled exactly), and a value t ∈ [0, 1] takes the
 * nearest entry, round(256·t).
 */
import createColormap from 'colormap';
import { interpolateInferno, interpolateTurbo, interpolateViridis } from 'd3-scale-chromatic';

export const COLORMAP_NAMES = ['jet', 'turbo', 'viridis', 'inferno'] as const;
export type ColormapName = (typeof COLORMAP_NAMES)[number];

/** An 8-bit RGB image, row-major, 3 bytes a pixel. */
export interface RgbImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/** An 8-bit RGBA image, row-major, 4 bytes a pixel. */
export interface RgbaPixels {
  width: number;
  height: number;
  rgba: Uint8Array;
}

export function isColormapName(name: string): name is ColormapName {
  return (COLORMAP_NAMES as readonly string[]).includes(name);
}

/** Parses the colours d3 returns: '#rrggbb' or 'rgb(r, g, b)'. */
export function parseCssRgb(css: string): [number, number, number] {
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(css);
  if (hex) return [parseInt(hex[1], 16), parseInt(hex[2], 16), parseInt(hex[3], 16)];
  const fn = /^rgb\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)$/.exec(css);
  if (fn) return [Number(fn[1]), Number(fn[2]), Number(fn[3])];
  throw new Error(`not an rgb colour: '${css}'`);
}

/** Entries of a lookup table: samples at t = i/256, i = 0..256. */
export const LUT_SIZE = 257;
const luts = new Map<ColormapName, Uint8Array>();

function buildLut(name: ColormapName): Uint8Array {
  const lut = new Uint8Array(LUT_SIZE * 3);
  if (name === 'jet') {
    // colormap's shade i of n is its colour at i/(n − 1).
    const shades = createColormap({ colormap: 'jet', nshades: LUT_SIZE, format: 'rgba' });
    shades.forEach(([r, g, b], i) => lut.set([r, g, b], i * 3));
    return lut;
  }
  const f = name === 'turbo' ? interpolateTurbo : name === 'viridis' ? interpolateViridis : interpolateInferno;
  for (let i = 0; i < LUT_SIZE; i++) lut.set(parseCssRgb(f(i / (LUT_SIZE - 1))), i * 3);
  return lut;
}

/** The colormap's lookup table, LUT_SIZE × RGB (entry i = the library's colour at i/256). */
export function colormapLut(name: ColormapName): Uint8Array {
  if (!isColormapName(name)) throw new Error(`unknown colormap '${name}'; known: ${COLORMAP_NAMES.join(', ')}`);
  let lut = luts.get(name);
  if (!lut) {
    lut = buildLut(name);
    luts.set(name, lut);
  }
  return lut;
}

/** Index into a lookup table for t (clamped to [0, 1]; NaN counts as 0). */
function lutIndex(t: number): number {
  if (!(t > 0)) return 0;
  if (t >= 1) return LUT_SIZE - 1;
  return Math.round(t * (LUT_SIZE - 1));
}

/** The colour of t ∈ [0, 1] under a colormap (its nearest sample), as 8-bit RGB. */
export function colormapRgb(name: ColormapName, t: number): [number, number, number] {
  const lut = colormapLut(name);
  const i = lutIndex(t) * 3;
  return [lut[i], lut[i + 1], lut[i + 2]];
}

/**
 * Bilinear resize of one h×w map to H×W with half-pixel centers (align_corners=false, as
 * torch's F.interpolate and the preprocessing): the source coordinate of output o is
 * (o + 0.5)·in/out − 0.5, clamped at 0; the right/bottom neighbour is clamped to the edge.
 */
export function resizeBilinear(map: Float32Array, from: readonly [number, number], to: readonly [number, number]): Float32Array {
  const [h, w] = from;
  const [H, W] = to;
  if (map.length !== h * w) throw new Error(`map of ${map.length} values is not ${h}×${w}`);
  if (!(H > 0 && W > 0)) throw new Error(`bad output size ${H}×${W}`);
  const out = new Float32Array(H * W);
  if (h === H && w === W) {
    out.set(map);
    return out;
  }
  const axis = (n: number, inn: number) => {
    const i0 = new Int32Array(n);
    const i1 = new Int32Array(n);
    const f = new Float64Array(n);
    for (let o = 0; o < n; o++) {
      const s = Math.max(((o + 0.5) * inn) / n - 0.5, 0);
      const a = Math.min(Math.floor(s), inn - 1);
      i0[o] = a;
      i1[o] = Math.min(a + 1, inn - 1);
      f[o] = Math.min(s - a, 1);
    }
    return { i0, i1, f };
  };
  const ys = axis(H, h);
  const xs = axis(W, w);
  for (let y = 0; y < H; y++) {
    const r0 = ys.i0[y] * w;
    const r1 = ys.i1[y] * w;
    const fy = ys.f[y];
    for (let x = 0; x < W; x++) {
      const x0 = xs.i0[x];
      const x1 = xs.i1[x];
      const fx = xs.f[x];
      const top = map[r0 + x0] + (map[r0 + x1] - map[r0 + x0]) * fx;
      const bottom = map[r1 + x0] + (map[r1 + x1] - map[r1 + x0]) * fx;
      out[y * W + x] = top + (bottom - top) * fy;
    }
  }
  return out;
}

export interface OverlayOptions {
  colormap?: ColormapName;
  /** Weight of the colour: out = alpha·color + (1 − alpha)·pixel. Default 0.5. */
  alpha?: number;
}

/**
 * Draws a map (h×w, values in [0, 1]) over an image at the IMAGE's size: the map is resized
 * bilinearly (half-pixel centers) to width×height, coloured, and blended
 * alpha·color + (1 − alpha)·pixel per channel, rounded to 8 bits. Returns opaque RGBA.
 */
export function overlay(image: RgbImage, map: Float32Array, mapSize: readonly [number, number], options: OverlayOptions = {}): RgbaPixels {
  const { width, height, rgb } = image;
  const alpha = options.alpha ?? 0.5;
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`alpha must be in [0, 1], got ${alpha}`);
  if (rgb.length !== width * height * 3) throw new Error(`image ${width}×${height} with ${rgb.length} bytes is not RGB8`);
  const lut = colormapLut(options.colormap ?? 'jet');
  const m = resizeBilinear(map, mapSize, [height, width]);
  const out = new Uint8Array(width * height * 4);
  const beta = 1 - alpha;
  for (let p = 0; p < width * height; p++) {
    const c = lutIndex(m[p]) * 3;
    for (let k = 0; k < 3; k++) out[p * 4 + k] = Math.round(alpha * lut[c + k] + beta * rgb[p * 3 + k]);
    out[p * 4 + 3] = 255;
  }
  return { width, height, rgba: out };
}

/** The colormap alone (no image): a heat map of the values at the map's own size. */
export function colorize(map: Float32Array, size: readonly [number, number], colormap: ColormapName = 'jet'): RgbaPixels {
  const [h, w] = size;
  if (map.length !== h * w) throw new Error(`map of ${map.length} values is not ${h}×${w}`);
  const lut = colormapLut(colormap);
  const out = new Uint8Array(h * w * 4);
  for (let p = 0; p < h * w; p++) {
    const c = lutIndex(map[p]) * 3;
    out.set([lut[c], lut[c + 1], lut[c + 2], 255], p * 4);
  }
  return { width: w, height: h, rgba: out };
}

/** Drops the alpha channel of an RGBA image (the pixels are used as they are). */
export function rgbaToRgb(img: { width: number; height: number; rgba: Uint8Array }): RgbImage {
  const n = img.width * img.height;
  const rgb = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) {
    rgb[p * 3] = img.rgba[p * 4];
    rgb[p * 3 + 1] = img.rgba[p * 4 + 1];
    rgb[p * 3 + 2] = img.rgba[p * 4 + 2];
  }
  return { width: img.width, height: img.height, rgb };
}

export function rgbToRgba(img: RgbImage): RgbaPixels {
  const n = img.width * img.height;
  const rgba = new Uint8Array(n * 4);
  for (let p = 0; p < n; p++) {
    rgba[p * 4] = img.rgb[p * 3];
    rgba[p * 4 + 1] = img.rgb[p * 3 + 1];
    rgba[p * 4 + 2] = img.rgb[p * 3 + 2];
    rgba[p * 4 + 3] = 255;
  }
  return { width: img.width, height: img.height, rgba };
}

/** The rectangle [y, x, height, width] of an RGB image, copied. */
export function cropRgb(img: RgbImage, y: number, x: number, h: number, w: number): RgbImage {
  if (y < 0 || x < 0 || h < 1 || w < 1 || y + h > img.height || x + w > img.width) {
    throw new Error(`crop ${w}×${h} at (${x}, ${y}) is outside the ${img.width}×${img.height} image`);
  }
  const rgb = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++) rgb.set(img.rgb.subarray(((y + r) * img.width + x) * 3, ((y + r) * img.width + x + w) * 3), r * w * 3);
  return { width: w, height: h, rgb };
}

/**
 * One image of a normalized NCHW tensor back to 8-bit RGB: x·std + mean, clamped to [0, 1],
 * times 255, rounded. A single channel becomes gray. `data` holds C×H×W values.
 */
export function denormalizeToRgb(data: Float32Array, chw: readonly [number, number, number], mean: readonly number[], std: readonly number[]): RgbImage {
  const [C, H, W] = chw;
  if (C !== 1 && C !== 3) throw new Error(`an image has 1 or 3 channels, not ${C}`);
  if (data.length !== C * H * W) throw new Error(`${data.length} values are not ${C}×${H}×${W}`);
  if (mean.length !== C || std.length !== C) throw new Error(`need ${C} means and stds, got ${mean.length} and ${std.length}`);
  const rgb = new Uint8Array(H * W * 3);
  for (let k = 0; k < 3; k++) {
    const c = C === 1 ? 0 : k;
    for (let p = 0; p < H * W; p++) {
      const v = data[c * H * W + p] * std[c] + mean[c];
      rgb[p * 3 + k] = Math.round(Math.min(Math.max(Number.isFinite(v) ? v : 0, 0), 1) * 255);
    }
  }
  return { width: W, height: H, rgb };
}

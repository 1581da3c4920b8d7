import createColormap from 'colormap';
import { interpolateInferno, interpolateTurbo, interpolateViridis } from 'd3-scale-chromatic';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { base64, gridSvg } from '../src/io/grid.js';
import { decodePng, encodePng, renderGridPng } from '../src/io/grid-node.js';
import { COLORMAP_NAMES, type ColormapName, colormapRgb, cropRgb, denormalizeToRgb, LUT_SIZE, overlay, parseCssRgb, resizeBilinear } from '../src/io/overlay.js';
import { rng } from './helpers/random.js';

const hex = (s: string): [number, number, number] => [parseInt(s.slice(1, 3), 16), parseInt(s.slice(3, 5), 16), parseInt(s.slice(5, 7), 16)];

/** The library called directly at t. */
function library(name: ColormapName, t: number): [number, number, number] {
  if (name === 'jet') {
    // colormap's shade i of n is its colour at i/(n − 1); at the sample points of t this is exact.
    const shades = createColormap({ colormap: 'jet', nshades: LUT_SIZE, format: 'rgba' });
    const [r, g, b] = shades[Math.round(t * (LUT_SIZE - 1))];
    return [r, g, b];
  }
  const f = { turbo: interpolateTurbo, viridis: interpolateViridis, inferno: interpolateInferno }[name];
  return parseCssRgb(f(t));
}

/** d3's turbo as published in its source (Mikhailov's polynomial fit), in float64. */
function d3TurboDefinition(t: number): [number, number, number] {
  const c = (v: number) => Math.max(0, Math.min(255, Math.round(v)));
  return [
    c(34.61 + t * (1172.33 - t * (10793.56 - t * (33300.12 - t * (38394.49 - t * 14825.05))))),
    c(23.31 + t * (557.33 + t * (1225.33 - t * (3574.96 - t * (1073.77 + t * 707.56))))),
    c(27.2 + t * (3211.1 - t * (15327.97 - t * (27814 - t * (22569.18 - t * 6838.66))))),
  ];
}

/** Piecewise-linear colormap from (x, y) stops per channel, float64, 0..1. */
function segments(stops: [number, number][], t: number): number {
  for (let i = 1; i < stops.length; i++) {
    const [x0, y0] = stops[i - 1];
    const [x1, y1] = stops[i];
    if (t <= x1) return y0 + ((y1 - y0) * (t - x0)) / (x1 - x0);
  }
  return stops[stops.length - 1][1];
}

/** `colormap`'s jet stops (its definition), interpolated in float64 and rounded. */
function colormapJetDefinition(t: number): [number, number, number] {
  const stops: [number, [number, number, number]][] = [[0, [0, 0, 131]], [0.125, [0, 60, 170]], [0.375, [5, 255, 255]], [0.625, [255, 255, 0]], [0.875, [250, 0, 0]], [1, [128, 0, 0]]];
  return [0, 1, 2].map((k) => Math.round(segments(stops.map(([x, rgb]) => [x, rgb[k]]), t))) as [number, number, number];
}

/** matplotlib's jet (_jet_data segments), 8-bit. */
function matplotlibJet(t: number): [number, number, number] {
  const r: [number, number][] = [[0, 0], [0.35, 0], [0.66, 1], [0.89, 1], [1, 0.5]];
  const g: [number, number][] = [[0, 0], [0.125, 0], [0.375, 1], [0.64, 1], [0.91, 0], [1, 0]];
  const b: [number, number][] = [[0, 0.5], [0.11, 1], [0.34, 1], [0.65, 0], [1, 0]];
  return [r, g, b].map((s) => Math.round(segments(s, t) * 255)) as [number, number, number];
}

describe('colormaps', () => {
  it('equal the libraries at the ends, the quarters and the middle', () => {
    for (const name of COLORMAP_NAMES) {
      for (const t of [0, 0.25, 0.5, 0.75, 1]) expect(colormapRgb(name, t), `${name}(${t})`).toEqual(library(name, t));
    }
  });

  it('equal published values', () => {
    // matplotlib's viridis and inferno tables (d3 uses the same 256 colours).
    expect(colormapRgb('viridis', 0)).toEqual(hex('#440154'));
    expect(colormapRgb('viridis', 0.5)).toEqual(hex('#21918c'));
    expect(colormapRgb('viridis', 1)).toEqual(hex('#fde725'));
    expect(colormapRgb('inferno', 0)).toEqual(hex('#000004'));
    expect(colormapRgb('inferno', 0.5)).toEqual(hex('#bc3754'));
    expect(colormapRgb('inferno', 1)).toEqual(hex('#fcffa4'));
    // turbo and jet from their definitions (d3's polynomial; colormap's jet stops).
    for (const t of [0, 0.5, 1]) {
      expect(colormapRgb('turbo', t), `turbo(${t})`).toEqual(d3TurboDefinition(t));
      expect(colormapRgb('jet', t), `jet(${t})`).toEqual(colormapJetDefinition(t));
    }
    expect(colormapRgb('turbo', 0)).toEqual([35, 23, 27]);
    expect(colormapRgb('turbo', 0.5)).toEqual([149, 251, 81]);
    expect(colormapRgb('turbo', 1)).toEqual([144, 12, 0]);
    expect(colormapRgb('jet', 0)).toEqual([0, 0, 131]);
    expect(colormapRgb('jet', 0.5)).toEqual([130, 255, 128]);
    expect(colormapRgb('jet', 1)).toEqual([128, 0, 0]);
    // colormap's jet (plotly's stops) is not matplotlib's (nor OpenCV's): the ends and the
    // middle agree within 8 levels, the blue-cyan quarter differs by up to 89 (README says so).
    for (const t of [0, 0.5, 1]) {
      const a = colormapRgb('jet', t);
      const m = matplotlibJet(t);
      for (let k = 0; k < 3; k++) expect(Math.abs(a[k] - m[k]), `jet(${t})[${k}] ${a} vs matplotlib ${m}`).toBeLessThanOrEqual(8);
    }
  });

  it('clamp values outside [0, 1] and NaN', () => {
    expect(colormapRgb('viridis', -3)).toEqual(hex('#440154'));
    expect(colormapRgb('viridis', Number.NaN)).toEqual(hex('#440154'));
    expect(colormapRgb('viridis', 7)).toEqual(hex('#fde725'));
  });
});

/** Bilinear, half-pixel centers, float64, written per output pixel from the definition. */
function bilinearReference(map: ArrayLike<number>, h: number, w: number, H: number, W: number): Float64Array {
  const out = new Float64Array(H * W);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const sy = Math.max(0, ((y + 0.5) * h) / H - 0.5);
      const sx = Math.max(0, ((x + 0.5) * w) / W - 0.5);
      const y0 = Math.floor(sy);
      const x0 = Math.floor(sx);
      const y1 = Math.min(y0 + 1, h - 1);
      const x1 = Math.min(x0 + 1, w - 1);
      const ly = sy - y0;
      const lx = sx - x0;
      out[y * W + x] = (1 - ly) * ((1 - lx) * map[y0 * w + x0] + lx * map[y0 * w + x1]) + ly * ((1 - lx) * map[y1 * w + x0] + lx * map[y1 * w + x1]);
    }
  }
  return out;
}

describe('bilinear map resize', () => {
  it('matches torch align_corners=False on a 2×2 → 4×4 example', () => {
    const r = resizeBilinear(Float32Array.from([0, 1, 2, 3]), [2, 2], [4, 4]);
    expect(Array.from(r.subarray(0, 4))).toEqual([0, 0.25, 0.75, 1]);
    expect(Array.from(r.subarray(12, 16))).toEqual([2, 2.25, 2.75, 3]);
  });

  it('matches a float64 reference up and down, at odd ratios', () => {
    const rand = rng(11);
    for (const [h, w, H, W] of [[7, 7, 224, 224], [3, 5, 28, 17], [14, 14, 56, 56], [56, 56, 28, 28], [9, 4, 4, 9], [1, 1, 3, 3], [6, 6, 6, 6]]) {
      const m = Float32Array.from({ length: h * w }, () => rand());
      const got = resizeBilinear(m, [h, w], [H, W]);
      const ref = bilinearReference(m, h, w, H, W);
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]));
      expect(worst, `${h}x${w} -> ${H}x${W}`).toBeLessThan(1e-6);
    }
  });
});

describe('overlay', () => {
  it('blends alpha·color + (1 − alpha)·pixel (float64 by hand)', () => {
    const rand = rng(5);
    const width = 4;
    const height = 3;
    const rgb = Uint8Array.from({ length: width * height * 3 }, () => Math.floor(rand() * 256));
    // Values on the colormap's sample points, so the colour is the library's at exactly that value.
    const map = Float32Array.from({ length: width * height }, () => Math.floor(rand() * 257) / 256);
    for (const [colormap, alpha] of [['jet', 0.5], ['viridis', 0.3], ['inferno', 1], ['turbo', 0]] as [ColormapName, number][]) {
      const o = overlay({ width, height, rgb }, map, [height, width], { colormap, alpha });
      expect([o.width, o.height]).toEqual([width, height]);
      for (let p = 0; p < width * height; p++) {
        const c = library(colormap, map[p]);
        for (let k = 0; k < 3; k++) expect(o.rgba[p * 4 + k], `${colormap} pixel ${p} channel ${k}`).toBe(Math.round(alpha * c[k] + (1 - alpha) * rgb[p * 3 + k]));
        expect(o.rgba[p * 4 + 3]).toBe(255);
      }
    }
  });

  it("draws a smaller map over the image at the image's own size", () => {
    const rand = rng(9);
    const [width, height] = [5, 3];
    const rgb = Uint8Array.from({ length: width * height * 3 }, () => Math.floor(rand() * 256));
    const map = Float32Array.from([0, 0.25, 0.5, 1]);
    const o = overlay({ width, height, rgb }, map, [2, 2], { colormap: 'jet', alpha: 0.6 });
    expect([o.width, o.height]).toEqual([width, height]);
    const up = bilinearReference(map, 2, 2, height, width);
    for (let p = 0; p < width * height; p++) {
      const c = library('jet', Math.round(up[p] * 256) / 256);
      for (let k = 0; k < 3; k++) expect(o.rgba[p * 4 + k]).toBe(Math.round(0.6 * c[k] + 0.4 * rgb[p * 3 + k]));
    }
  });

  it('refuses alpha outside [0, 1] and a map of the wrong size', () => {
    const img = { width: 2, height: 2, rgb: new Uint8Array(12) };
    expect(() => overlay(img, new Float32Array(4), [2, 2], { alpha: 1.5 })).toThrow(/alpha/);
    expect(() => overlay(img, new Float32Array(3), [2, 2])).toThrow(/2×2/);
  });

  it('draws a normalized tensor back as pixels, and crops', () => {
    const mean = [0.5, 0.4, 0.3];
    const std = [0.2, 0.25, 0.5];
    const px = [[0, 1], [0.5, 0.2], [1, 0.3]];
    const data = Float32Array.from(px.flatMap((p, c) => p.map((v) => (v - mean[c]) / std[c])));
    const img = denormalizeToRgb(data, [3, 1, 2], mean, std);
    expect(Array.from(img.rgb)).toEqual([0, 128, 255, 255, 51, 77]);
    const gray = denormalizeToRgb(Float32Array.from([-10, 0.5]), [1, 1, 2], [0], [1]);
    expect(Array.from(gray.rgb)).toEqual([0, 0, 0, 128, 128, 128]);
    const c = cropRgb({ width: 3, height: 2, rgb: Uint8Array.from({ length: 18 }, (_, i) => i) }, 1, 1, 1, 2);
    expect(Array.from(c.rgb)).toEqual([12, 13, 14, 15, 16, 17]);
  });
});

describe('grid PNG', () => {
  it('base64 matches Node', () => {
    for (const n of [0, 1, 2, 3, 100, 10_000]) {
      const b = Uint8Array.from({ length: n }, (_, i) => (i * 37) & 255);
      expect(base64(b)).toBe(Buffer.from(b).toString('base64'));
    }
  });

  it('decodes with pngjs at the laid-out size, and the labels render', () => {
    const rand = rng(3);
    const panel = (w: number, h: number, lines: string[]) => {
      const rgb = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(rand() * 256));
      const ov = overlay({ width: w, height: h, rgb }, Float32Array.from({ length: 4 }, () => rand()), [2, 2], { colormap: 'turbo' });
      return { png: encodePng(ov), width: w, height: h, lines };
    };
    const labelled = [[panel(28, 28, ['input', 'Ankle boot (9)', 'logit 9.870']), panel(28, 28, ['Grad-CAM', 'Ankle boot (9)', 'logit 9.870']), panel(40, 20, ['HiResCAM & <co>', 'T-shirt/top (0)', 'p 0.9712'])]];
    const g = renderGridPng(labelled, { panel: 96 });
    const png = PNG.sync.read(Buffer.from(g.png));
    expect([png.width, png.height]).toEqual([g.width, g.height]);
    expect(g.width).toBe(8 + 3 * (96 + 8));
    // The label band: dark text pixels on the white page; with no lines the same band is all white.
    const band = (img: { width: number; data: Uint8Array }, [y0, y1]: [number, number]) => {
      let dark = 0;
      for (let y = y0; y < y1; y++) for (let x = 0; x < img.width; x++) if (img.data[(y * img.width + x) * 4] < 128) dark++;
      return dark;
    };
    expect(band(png, g.labelBands[0])).toBeGreaterThan(200);
    const blank = renderGridPng(labelled.map((r) => r.map((p) => ({ ...p, lines: [' '] }))), { panel: 96 });
    const blankPng = PNG.sync.read(Buffer.from(blank.png));
    expect(band(blankPng, blank.labelBands[0])).toBe(0);
    // The pictures are there: the first panel's area is not white.
    const picture = decodePng(g.png);
    let colored = 0;
    for (let y = 8; y < 8 + 96; y++) for (let x = 8; x < 8 + 96; x++) if (picture.rgba[(y * picture.width + x) * 4 + 1] !== 255) colored++;
    expect(colored).toBeGreaterThan(96 * 96 * 0.5);
  });

  it('escapes label text', () => {
    const { svg } = gridSvg([[{ png: new Uint8Array(4), width: 1, height: 1, lines: ['a<b>&"c"'] }]]);
    expect(svg).toContain('a&lt;b&gt;&amp;&quot;c&quot;');
  });
});

/**
 * PNG encoding (pngjs) and SVG rendering (resvg) for Node: the overlays and the labelled
 * grid the `explain` command writes.
 */
import { existsSync } from 'node:fs';
import { Resvg } from '@resvg/resvg-js';
import { PNG } from 'pngjs';
import { type GridLayout, type GridPanel, gridSvg } from './grid.js';
import type { RgbaPixels } from './overlay.js';

/** Encodes opaque or transparent RGBA8 pixels as PNG. */
export function encodePng(img: RgbaPixels): Uint8Array {
  if (img.rgba.length !== img.width * img.height * 4) throw new Error(`${img.width}×${img.height} image with ${img.rgba.length} bytes is not RGBA8`);
  const png = new PNG({ width: img.width, height: img.height });
  png.data = Buffer.from(img.rgba.buffer, img.rgba.byteOffset, img.rgba.byteLength);
  const out = PNG.sync.write(png, { colorType: 6 });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Decodes a PNG to RGBA8. */
export function decodePng(bytes: Uint8Array): RgbaPixels {
  const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return { width: png.width, height: png.height, rgba: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.length) };
}

/** Debian's fonts-dejavu-core; the labels use DejaVu Sans when it is there, else any system sans-serif. */
const DEJAVU = ['/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf'];

/** Renders an SVG document to PNG bytes with resvg (text in DejaVu Sans, or the system's fonts). */
export function renderSvgToPng(svg: string): Uint8Array {
  const dejavu = DEJAVU.filter((f) => existsSync(f));
  const font = dejavu.length === DEJAVU.length
    ? { loadSystemFonts: false, fontFiles: dejavu, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' }
    : { loadSystemFonts: true };
  const out = new Resvg(svg, { font, background: '#ffffff', logLevel: 'off' }).render().asPng();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** A labelled grid of panels as a PNG: `gridSvg` rendered by resvg. */
export function renderGridPng(rows: readonly (readonly GridPanel[])[], layout: GridLayout = {}): { png: Uint8Array; width: number; height: number; labelBands: [number, number][] } {
  const g = gridSvg(rows, layout);
  return { png: renderSvgToPng(g.svg), width: g.width, height: g.height, labelBands: g.labelBands };
}

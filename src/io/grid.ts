/**
 * A labelled grid of pictures as one SVG document: every panel an embedded PNG (data URI)
 * with its text lines underneath. Pure string work (no Node API); `grid-node.ts` renders
 * the SVG to PNG with resvg, and a browser can draw it as it is.
 */

export interface GridPanel {
  /** The picture, PNG-encoded. */
  png: Uint8Array;
  width: number;
  height: number;
  /** Text under the picture, one entry a line; the first line is bold. */
  lines: string[];
}

export interface GridLayout {
  /** Longest side of every panel's picture in the grid, px (pictures are scaled to it). Default 224. */
  panel?: number;
  /** Font size of the labels, px. Default 13. */
  fontSize?: number;
  /** Gap around panels, px. Default 8. */
  gap?: number;
  /** Font family list for the labels. Default 'DejaVu Sans, Liberation Sans, sans-serif'. */
  fontFamily?: string;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Standard base64 (RFC 4648, with padding). */
export function base64(bytes: Uint8Array): string {
  const out: string[] = [];
  let chunk = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i];
    const b = i + 1 < bytes.length ? bytes[i + 1] : 0;
    const c = i + 2 < bytes.length ? bytes[i + 2] : 0;
    const n = (a << 16) | (b << 8) | c;
    chunk += B64[(n >> 18) & 63] + B64[(n >> 12) & 63] + (i + 1 < bytes.length ? B64[(n >> 6) & 63] : '=') + (i + 2 < bytes.length ? B64[n & 63] : '=');
    if (chunk.length >= 4096) {
      out.push(chunk);
      chunk = '';
    }
  }
  out.push(chunk);
  return out.join('');
}

/** Text for SVG content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Cuts a line to about `max` characters with an ellipsis. */
function fit(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, Math.max(1, max - 1))}…`;
}

export interface GridSvg {
  svg: string;
  width: number;
  height: number;
  /** Where each row's label band starts and ends (y, px), for checks. */
  labelBands: [number, number][];
}

/**
 * Lays out rows of panels (rows may differ in length) on a white page: each picture scaled
 * so its longer side is `panel` px (nearest-neighbour when enlarged two times or more, so
 * small inputs stay sharp), centred in its cell, its lines beneath it.
 */
export function gridSvg(rows: readonly (readonly GridPanel[])[], layout: GridLayout = {}): GridSvg {
  const panel = layout.panel ?? 224;
  const fontSize = layout.fontSize ?? 13;
  const gap = layout.gap ?? 8;
  const family = layout.fontFamily ?? 'DejaVu Sans, Liberation Sans, sans-serif';
  const lineHeight = Math.round(fontSize * 1.35);
  const maxLines = Math.max(1, ...rows.flat().map((p) => p.lines.length));
  const band = maxLines * lineHeight + Math.round(fontSize * 0.5);
  const cols = Math.max(1, ...rows.map((r) => r.length));
  const cellW = panel + gap;
  const cellH = panel + band + gap;
  const width = gap + cols * cellW;
  const height = gap + rows.length * cellH;
  const maxChars = Math.max(4, Math.floor(panel / (fontSize * 0.6)));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
  ];
  const labelBands: [number, number][] = [];
  rows.forEach((row, r) => {
    const top = gap + r * cellH;
    labelBands.push([top + panel, top + panel + band]);
    row.forEach((p, c) => {
      const left = gap + c * cellW;
      const s = panel / Math.max(p.width, p.height);
      const w = Math.max(1, Math.round(p.width * s));
      const h = Math.max(1, Math.round(p.height * s));
      const x = left + Math.floor((panel - w) / 2);
      const y = top + Math.floor((panel - h) / 2);
      const rendering = s >= 2 ? ' image-rendering="optimizeSpeed"' : '';
      parts.push(`<image x="${x}" y="${y}" width="${w}" height="${h}" preserveAspectRatio="none"${rendering} href="data:image/png;base64,${base64(p.png)}"/>`);
      p.lines.forEach((line, i) => {
        const ty = top + panel + Math.round(fontSize * 0.25) + (i + 1) * lineHeight - Math.round(lineHeight - fontSize);
        const weight = i === 0 ? ' font-weight="bold"' : '';
        parts.push(`<text x="${left + panel / 2}" y="${ty}" font-family="${escapeXml(family)}" font-size="${fontSize}"${weight} fill="#111111" text-anchor="middle">${escapeXml(fit(line, maxChars))}</text>`);
      });
    });
  });
  parts.push('</svg>');
  return { svg: parts.join('\n'), width, height, labelBands };
}

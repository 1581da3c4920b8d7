import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { InputError } from '../src/runtime/errors.js';

/**
 * Fashion-MNIST from its IDX files (Debian's dataset-fashion-mnist installs them gzipped
 * under /usr/share/datasets/fashion-mnist; plain files work too). Images stay uint8 on the
 * host: the GPU normalizes them while gathering batches.
 */

export const FASHION_MNIST_DIRS = ['/usr/share/datasets/fashion-mnist'];

export const FASHION_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;

/** IDX magic numbers: unsigned bytes (0x08) in 3 dimensions (images) or 1 (labels). */
export const IMAGES_MAGIC = 0x00000803;
export const LABELS_MAGIC = 0x00000801;

export interface ImageSet {
  /** count × rows × cols bytes, row-major, 0 = background. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  rows: number;
  cols: number;
}

export interface FashionMnist {
  dir: string;
  train: ImageSet;
  test: ImageSet;
}

/** The folder holding the dataset: `dir`, else $FASHION_MNIST_DIR, else Debian's; null when none has the files. */
export function findFashionMnist(dir?: string): string | null {
  const candidates = dir ? [dir] : [...(process.env.FASHION_MNIST_DIR ? [process.env.FASHION_MNIST_DIR] : []), ...FASHION_MNIST_DIRS];
  for (const d of candidates) {
    if (['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'].every((f) => locate(d, f) !== null)) return d;
  }
  return null;
}

function locate(dir: string, base: string): string | null {
  for (const f of [`${base}.gz`, base]) if (existsSync(join(dir, f))) return join(dir, f);
  return null;
}

/** The file's bytes, gunzipped when they start with gzip's magic (whatever the file is called). */
function readMaybeGzipped(path: string): Uint8Array {
  let raw: Uint8Array;
  try {
    raw = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new InputError(`cannot read ${path}: ${(e as Error).message}`);
  }
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      return new Uint8Array(gunzipSync(raw));
    } catch (e) {
      throw new InputError(`${path}: not a valid gzip stream: ${(e as Error).message}`);
    }
  }
  return raw;
}

/** Parses an IDX file of unsigned bytes with the given magic (rank = its low byte); returns its dims and payload. */
export function parseIdx(bytes: Uint8Array, what: string, magic: number): { dims: number[]; data: Uint8Array } {
  if (bytes.length < 4) throw new InputError(`${what}: ${bytes.length} bytes is too short for an IDX header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const got = view.getUint32(0, false);
  if (got !== magic) {
    throw new InputError(`${what}: magic number 0x${got.toString(16).padStart(8, '0')}, expected 0x${magic.toString(16).padStart(8, '0')} (IDX, unsigned bytes, ${magic & 0xff} dimensions)`);
  }
  const rank = magic & 0xff;
  const header = 4 + 4 * rank;
  if (bytes.length < header) throw new InputError(`${what}: truncated header (${bytes.length} bytes, needs ${header})`);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const payload = dims.reduce((p, d) => p * d, 1);
  if (bytes.length !== header + payload) {
    throw new InputError(`${what}: dims [${dims.join(', ')}] need ${header + payload} bytes, the file has ${bytes.length}`);
  }
  return { dims, data: bytes.subarray(header) };
}

/** An IDX file (gzipped or not) parsed and checked against `magic`. */
export function readIdxFile(path: string, magic: number): { dims: number[]; data: Uint8Array } {
  return parseIdx(readMaybeGzipped(path), path, magic);
}

function readSet(dir: string, prefix: 'train' | 't10k', expected: number): ImageSet {
  const imgPath = locate(dir, `${prefix}-images-idx3-ubyte`);
  const labPath = locate(dir, `${prefix}-labels-idx1-ubyte`);
  if (!imgPath || !labPath) throw new InputError(`${dir}: no ${prefix}-images-idx3-ubyte[.gz] / ${prefix}-labels-idx1-ubyte[.gz] (install Debian's dataset-fashion-mnist, or set FASHION_MNIST_DIR)`);
  const img = readIdxFile(imgPath, IMAGES_MAGIC);
  const lab = readIdxFile(labPath, LABELS_MAGIC);
  const [count, rows, cols] = img.dims;
  if (count !== expected || rows !== 28 || cols !== 28) throw new InputError(`${imgPath}: ${count} images of ${rows}×${cols}; Fashion-MNIST's ${prefix} split has ${expected} of 28×28`);
  if (lab.dims[0] !== count) throw new InputError(`${labPath}: ${lab.dims[0]} labels for ${count} images`);
  const bad = lab.data.findIndex((l) => l >= FASHION_CLASSES.length);
  if (bad >= 0) throw new InputError(`${labPath}: label ${lab.data[bad]} of item ${bad} is not a class (0–9)`);
  return { images: img.data, labels: lab.data, count, rows, cols };
}

export function loadFashionMnist(dir?: string): FashionMnist {
  const found = findFashionMnist(dir);
  if (!found) {
    throw new InputError(`Fashion-MNIST not found in ${dir ?? [process.env.FASHION_MNIST_DIR, ...FASHION_MNIST_DIRS].filter(Boolean).join(', ')} (apt-get install dataset-fashion-mnist, or set FASHION_MNIST_DIR)`);
  }
  return { dir: found, train: readSet(found, 'train', 60000), test: readSet(found, 't10k', 10000) };
}

/** Mean and standard deviation of the pixels (scaled to [0, 1]) of a set, in float64. */
export function pixelStats(set: ImageSet): { mean: number; std: number } {
  let s = 0;
  let s2 = 0;
  for (const v of set.images) {
    s += v;
    s2 += v * v;
  }
  const n = set.images.length;
  const mean = s / n / 255;
  return { mean, std: Math.sqrt(s2 / n / 65025 - mean * mean) };
}

/**
 * The model input for items `indices` of a set, on the CPU: pixels / 255 normalized with
 * (mean, std), resized bilinearly with half-pixel centers (source coordinate
 * (o + 0.5)·in/out − 0.5, clamped at 0; PyTorch's align_corners=False) to size × size.
 * The reference the exported models are checked with (the trainer does the same on the GPU).
 */
export function preprocess(set: ImageSet, indices: readonly number[], size: number, mean: number, std: number): Float32Array {
  const { rows: H, cols: W } = set;
  const out = new Float32Array(indices.length * size * size);
  const taps = (o: number, inn: number) => {
    const s = Math.max(((o + 0.5) * inn) / size - 0.5, 0);
    const i0 = Math.min(Math.floor(s), inn - 1);
    return { i0, i1: Math.min(i0 + 1, inn - 1), w: s - i0 };
  };
  const ys = Array.from({ length: size }, (_, o) => taps(o, H));
  const xs = Array.from({ length: size }, (_, o) => taps(o, W));
  indices.forEach((idx, k) => {
    const base = idx * H * W;
    const px = (y: number, x: number) => (set.images[base + y * W + x] / 255 - mean) / std;
    for (let oy = 0; oy < size; oy++) {
      const ty = ys[oy];
      for (let ox = 0; ox < size; ox++) {
        const tx = xs[ox];
        const top = px(ty.i0, tx.i0) * (1 - tx.w) + px(ty.i0, tx.i1) * tx.w;
        const bottom = px(ty.i1, tx.i0) * (1 - tx.w) + px(ty.i1, tx.i1) * tx.w;
        out[(k * size + oy) * size + ox] = top * (1 - ty.w) + bottom * ty.w;
      }
    }
  });
  return out;
}

/**
 * The CLI's model inputs, shared by `run` and `explain`: images (files or a folder) decoded
 * on the CPU, or a float32 .npy batch; preprocessing (the model card's, overridden by
 * flags) run on the GPU.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { readImageFile } from '../src/io/image-node.js';
import type { ModelCard } from '../src/io/model-card.js';
import { type NpyArray, parseNpy } from '../src/io/npy.js';
import { type GpuContext, InputError, type Model, Tensor } from '../src/node.js';
import { UsageError } from './args.js';
import { IMAGENET_MEAN, IMAGENET_STD, preprocessImages, type RgbaImage } from '../src/preprocess.js';

export interface InputOptions {
  image: string[];
  /** A folder of PNG/JPEG files (explain only). */
  images?: string;
  inputNpy?: string;
  size?: string;
  resize: string;
  mean?: number[];
  std?: number[];
  normalize: boolean;
}

/** Inputs read from disk, before anything touches the GPU. */
export type HostInput =
  | { kind: 'npy'; file: string; array: NpyArray; names: string[] }
  | { kind: 'images'; files: string[]; images: RgbaImage[]; names: string[]; folder: string | null };

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg']);

/** The PNG/JPEG files of a folder (by extension, not recursive), sorted by name. */
export function listImageFolder(dir: string): string[] {
  let entries: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new InputError(`--images ${dir} is not a folder`);
    entries = readdirSync(dir);
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`cannot read the folder ${dir}: ${(e as Error).message}`);
  }
  const files = entries.filter((f) => IMAGE_EXT.has(extname(f).toLowerCase())).sort().map((f) => join(dir, f)).filter((f) => statSync(f).isFile());
  if (files.length === 0) throw new InputError(`${dir} holds no PNG or JPEG files (.png, .jpg, .jpeg)`);
  return files;
}

/** Reads the files the options name (decoding images, parsing the .npy); throws InputError or UsageError. */
export function readInput(opts: InputOptions, missing = 'give --image FILE or --input-npy FILE'): HostInput {
  const given = [opts.image.length > 0 && '--image', opts.images !== undefined && '--images', opts.inputNpy !== undefined && '--input-npy'].filter(Boolean);
  if (given.length === 2) throw new UsageError(`give either ${given[0]} or ${given[1]}, not both`);
  if (given.length > 2) throw new UsageError(`give only one of ${given.join(', ')}`);
  if (opts.inputNpy !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(readFileSync(opts.inputNpy));
    } catch (e) {
      throw new InputError(`cannot read ${opts.inputNpy}: ${(e as Error).message}`);
    }
    const array = parseNpy(bytes, opts.inputNpy);
    if (array.shape.length < 1) throw new InputError(`${opts.inputNpy}: a scalar is not a model input`);
    return { kind: 'npy', file: opts.inputNpy, array, names: Array.from({ length: array.shape[0] }, (_, i) => `${basename(opts.inputNpy!)}[${i}]`) };
  }
  const files = opts.images !== undefined ? listImageFolder(opts.images) : opts.image;
  if (!files.length) throw new UsageError(missing);
  return { kind: 'images', files, images: files.map((f) => readImageFile(f)), names: files.map((f) => basename(f)), folder: opts.images ?? null };
}

/** The number of model inputs (images, or the .npy's first dimension). */
export function inputCount(h: HostInput): number {
  return h.kind === 'npy' ? h.array.shape[0] : h.images.length;
}

/** How images become model inputs: the card's rule, flags override. */
export interface Preprocessing {
  size: [number, number];
  mode: 'resize' | 'resize-crop';
  channels: 1 | 3;
  /** The mean/std applied (null: --no-normalize). */
  normalize: { mean: number[]; std: number[] } | null;
}

/**
 * The preprocessing for `model` (its card when there is one). For a .npy input, which is
 * used as is, this is the normalization the tensor is taken to carry (to draw it back).
 */
export function resolvePreprocessing(model: Model | null, card: ModelCard | null, opts: InputOptions, npyShape?: readonly number[]): Preprocessing {
  const s = npyShape ?? (card ? [1, ...card.input] : model?.defaultInputShape(1));
  if (!s) throw new Error('internal: images need the model or its card for their preprocessing');
  const channels = s[1];
  if (s.length !== 4 || (channels !== 1 && channels !== 3)) {
    if (npyShape) throw new InputError(`${opts.inputNpy}: shape [${s}] is not a batch of RGB or grayscale images`);
    throw new InputError(`${model?.graph.file ?? card?.path}: input shape [${s}] is not a batch of RGB or grayscale images; use --input-npy`);
  }
  let size: [number, number] = [s[2], s[3]];
  if (opts.size && !npyShape) {
    const m = /^(\d+)x(\d+)$/.exec(opts.size);
    if (!m) throw new UsageError(`--size must look like 224x224, got '${opts.size}'`);
    size = [Number(m[1]), Number(m[2])];
  }
  if (opts.resize !== 'resize' && opts.resize !== 'resize-crop') throw new UsageError(`--resize must be resize or resize-crop, got '${opts.resize}'`);
  const perChannel = (v: number[] | undefined, what: string) => {
    if (v && v.length === 3 && channels === 1) throw new UsageError(`--${what} takes one value per channel; the model is grayscale`);
    return v;
  };
  const cardStats = card && card.input[0] === channels ? card : null;
  // A grayscale .npy with no card to say otherwise is taken to hold [0, 1] values.
  const fallback = npyShape && channels === 1 ? { mean: [0], std: [1] } : { mean: [...IMAGENET_MEAN], std: [...IMAGENET_STD] };
  const mean = perChannel(opts.mean, 'mean') ?? cardStats?.mean ?? fallback.mean;
  const std = perChannel(opts.std, 'std') ?? cardStats?.std ?? fallback.std;
  return { size, mode: opts.resize, channels: channels as 1 | 3, normalize: opts.normalize ? { mean, std } : null };
}

/** The GPU tensor of inputs [from, to) (all by default). */
export function inputTensor(ctx: GpuContext, h: HostInput, prep: Preprocessing | null, from = 0, to = inputCount(h)): Tensor {
  if (h.kind === 'npy') {
    const per = h.array.shape.slice(1).reduce((a, b) => a * b, 1);
    return Tensor.fromData(ctx, h.array.data.subarray(from * per, to * per), [to - from, ...h.array.shape.slice(1)]);
  }
  if (!prep) throw new Error('internal: images need a preprocessing');
  return preprocessImages(ctx, h.images.slice(from, to), { size: prep.size, mode: prep.mode, normalize: prep.normalize, channels: prep.channels });
}

/** `run`'s input: the host input read, then preprocessed (images) or uploaded (.npy). */
export async function loadInput(ctx: GpuContext, model: Model, card: ModelCard | null, opts: InputOptions): Promise<{ x: Tensor; names: string[] }> {
  const host = readInput(opts);
  const prep = host.kind === 'images' ? resolvePreprocessing(model, card, opts) : null;
  return { x: inputTensor(ctx, host, prep), names: host.names };
}

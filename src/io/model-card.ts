import { existsSync, readFileSync } from 'node:fs';
import { InputError } from '../runtime/errors.js';

/**
 * What the CLI needs from a model card (`<model>.json` beside `<model>.onnx`): how to turn
 * an image into the model's input, the class names, and the layer CAMs should target.
 * The card may hold more (training record, verification); only these fields are read.
 */
export interface ModelCard {
  path: string;
  /** [C, H, W] of one input. */
  input: [number, number, number];
  mean: number[];
  std: number[];
  classes: string[] | null;
  targetLayer: string | null;
}

function numbers(v: unknown, channels: number, what: string, path: string): number[] {
  const list = typeof v === 'number' ? new Array<number>(channels).fill(v) : Array.isArray(v) ? v : null;
  if (!list || list.length !== channels || list.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
    throw new InputError(`${path}: preprocessing.${what} must be a number or ${channels} numbers`);
  }
  return list as number[];
}

/** Reads and checks a model card; throws InputError naming the card and the field. */
export function parseModelCard(text: string, path: string): ModelCard {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  const input = raw.input as { shape?: unknown[] } | undefined;
  const shape = input?.shape;
  if (!Array.isArray(shape) || shape.length !== 4 || shape.slice(1).some((d) => typeof d !== 'number' || !(d > 0))) {
    throw new InputError(`${path}: input.shape must be [N, C, H, W] with numeric C, H, W`);
  }
  const [c, h, w] = shape.slice(1) as number[];
  const pre = raw.preprocessing as { mean?: unknown; std?: unknown } | undefined;
  if (!pre) throw new InputError(`${path}: no preprocessing section`);
  const std = numbers(pre.std, c, 'std', path);
  if (std.some((s) => !(s > 0))) throw new InputError(`${path}: preprocessing.std must be positive`);
  const classes = raw.classes;
  if (classes !== undefined && (!Array.isArray(classes) || classes.some((x) => typeof x !== 'string'))) {
    throw new InputError(`${path}: classes must be a list of names`);
  }
  const target = raw.targetLayer as { module?: unknown } | string | undefined;
  const targetLayer = typeof target === 'string' ? target : typeof target?.module === 'string' ? target.module : null;
  return { path, input: [c, h, w], mean: numbers(pre.mean, c, 'mean', path), std, classes: (classes as string[] | undefined) ?? null, targetLayer };
}

/**
 * The card beside a model (`x.onnx` → `x.json`), or null when there is none. A JSON file
 * there without a `preprocessing` section is something else (a test manifest) and is
 * ignored; one with it is a card and must be valid.
 */
export function readModelCardBeside(modelPath: string): ModelCard | null {
  const path = `${modelPath.replace(/\.onnx$/i, '')}.json`;
  if (path === modelPath || !existsSync(path)) return null;
  const text = readFileSync(path, 'utf8');
  let isCard = false;
  try {
    isCard = typeof (JSON.parse(text) as { preprocessing?: unknown }).preprocessing === 'object';
  } catch {
    isCard = /\.json$/.test(path);
  }
  return isCard ? parseModelCard(text, path) : null;
}

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseNpy, type NpyArray } from '../../src/io/npy.js';

export const FIXTURES = join(import.meta.dirname, '..', 'fixtures');

export function npy(path: string): NpyArray {
  return parseNpy(new Uint8Array(readFileSync(path)), path);
}

export interface TorchManifest {
  name: string;
  model: string;
  input: { name: string; file: string; shape: number[] };
  output: { name: string; file: string; shape: number[] };
  taps: { module?: string; node?: string; file: string; shape: number[]; onnx_value?: string }[];
  [k: string]: unknown;
}

export function torchManifest(dir: string, name: string): TorchManifest {
  return JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')) as TorchManifest;
}

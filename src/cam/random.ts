import type { Sym } from '../ops/graph.js';
import type { Tape } from '../ops/tape.js';

/**
 * Seeded values on the GPU for the methods that need them (Random-CAM's weights, noise):
 * counter-based, keyed by (seed, stream, image index), so the same seed gives the same
 * values for an image whatever batch or pass it is in, in Node and in the browser.
 */
export function uniformSigned(t: Tape, rows: Sym, k: number, seed: number, stream = 0): Sym {
  return t.random(rows, [rows.shape[0], k], { dist: 'uniform', seed: seed >>> 0, stream, a: -1, b: 1 });
}

/** N(mean, std²) noise of `shape` ([N, …]). */
export function gaussian(t: Tape, rows: Sym, shape: readonly number[], seed: number, stream: number, mean: number, std: number): Sym {
  return t.random(rows, shape, { dist: 'normal', seed: seed >>> 0, stream, a: mean, b: std });
}

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explain } from '../src/cam/explain.js';
import { pixabBoxes } from '../src/cam/sweeps.js';
import { Model } from '../src/model.js';
import { InputError } from '../src/runtime/errors.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { FIXTURES, npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { finishPgc, type Maps } from './reference/cam.js';
import { maxAbs, maxAbsDiff } from './helpers/compare.js';

/**
 * Pixab-CAM against a float64 reference of SPEC's row (seed 002 eq. 7–8), written from the
 * row independently of camgpu (tools/gen_pixab_fixtures.py: the torch module in float64, the
 * layer's output replaced by a hook): its raw map p before relu (relative to its largest
 * magnitude), its finished map, and every row's score.
 */
const DIR = join(FIXTURES, 'cam');
const REPO = join(import.meta.dirname, '..');
const TOL = 1e-4;

interface PixabMeta {
  layer: string;
  targets: number[];
  input: string;
}

describe('Pixab-CAM', () => {
  it('boxes: 1×1, 1×2, 2×1 and 2×2 at every position, clipped; every position covered by 4 to 9', () => {
    const b = pixabBoxes(3, 4);
    expect(b.length).toBe(4 * 12);
    expect(b[0]).toEqual([0, 1, 0, 1]);
    expect(b[12 + 3]).toEqual([0, 1, 3, 4]); // the 1×2 box at the right edge is clipped to 1×1
    const cover = new Array(12).fill(0);
    for (const [y0, y1, x0, x1] of b) for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) cover[y * 4 + x]++;
    expect(cover[0]).toBe(4);
    expect(cover[5]).toBe(9);
    expect(cover[11]).toBe(9); // the bottom-right corner: every clipped box lands there
  });

  it.each(['fashion-vgg', 'fashion-resnet'])('%s: matches the float64 reference of eq. 7–8, per-image classes', async (name) => {
    const ctx = await gpu();
    const m = JSON.parse(readFileSync(join(DIR, name, 'pixab.json'), 'utf8')) as PixabMeta;
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, `models/${name}.onnx`))));
    const input = npy(join(REPO, m.input));
    const x = Tensor.fromData(ctx, input.data, input.shape);
    try {
      const r = await explain(model, x, { methods: ['pixabcam'], layers: [m.layer], targets: m.targets });
      try {
        const [map, raw] = await readTensors(ctx, [r.methods[0].map, r.methods[0].raw]);
        const want = npy(join(DIR, name, 'PIXAB-raw.npy'));
        expect(maxAbsDiff(raw, want.data) / maxAbs(want.data), `${name}: p`).toBeLessThan(TOL);
        const wantMaps: Maps = { data: Float64Array.from(want.data), shape: want.shape as [number, number, number] };
        const [H, W] = input.shape.slice(2);
        expect(maxAbsDiff(map, finishPgc(wantMaps, H, W).data), `${name}: final map`).toBeLessThan(TOL);
      } finally {
        r.dispose();
      }
    } finally {
      x.dispose();
      await model.dispose();
    }
  });

  it('a layer the network cannot restart from is a typed error, and nothing is left on the GPU', async () => {
    const ctx = await gpu();
    const before = ctx.pool.getStats().inUseBytes;
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-resnet.onnx'))));
    const x = Tensor.fromData(ctx, new Float32Array(56 * 56).fill(0.3), [1, 1, 56, 56]);
    try {
      // Inside a residual block: the Add also reads the block's input.
      const run = explain(model, x, { methods: ['pixabcam'], layers: ['layer2.0.conv1'] });
      await expect(run).rejects.toBeInstanceOf(InputError);
      await expect(explain(model, x, { methods: ['pixabcam'], layers: ['layer2.0.conv1'] })).rejects.toThrow(/cannot run the network from/);
    } finally {
      x.dispose();
      await model.dispose();
    }
    // The shared pass's cached plan is the model's; once it is gone, nothing else may remain.
    expect(ctx.pool.getStats().inUseBytes).toBe(before);
  });
});

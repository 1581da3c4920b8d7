import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explain } from '../src/cam/explain.js';
import { Model } from '../src/model.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { FIXTURES, npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { relErr } from './helpers/compare.js';

/**
 * Score-CAM, IS-CAM and SS-CAM on the GPU with `sweepStyle: 'torchcam'` against torch-cam's
 * own outputs (test/fixtures/cam/<model>/TC-*, made by tools/gen_cam_fixtures_sweeps.py):
 * channel weights and raw maps Σ w_k A_k, relative to torch-cam's largest magnitude. SS-CAM
 * is fed the same noise (camgpu's counter-based generator, seed 0x55CA, stream = draw,
 * counters from channel k's block of the image's K·H·W values), so the comparison is exact.
 */
const DIR = join(FIXTURES, 'cam');
const REPO = join(import.meta.dirname, '..');
const TOL = 1e-4;

interface Sweeps {
  model: string;
  input: string;
  targets: number[];
  layer: { module: string };
}

// SS-CAM runs 35 copies per channel: on the models where that stays short.
const CASES: [string, string[]][] = [
  ['fashion-vgg', ['scorecam', 'iscam', 'sscam']],
  ['fashion-resnet', ['scorecam', 'iscam', 'sscam']],
  ['resnet18-w8', ['scorecam', 'iscam', 'sscam']],
  ['vgg16-w8', ['scorecam']],
];
const TC: Record<string, string> = { scorecam: 'TC-ScoreCAM', iscam: 'TC-ISCAM', sscam: 'TC-SSCAM' };

describe("sweeps in torch-cam's style match torch-cam", () => {
  it.each(CASES)('%s: %s, per-image classes', async (name, methods) => {
    const ctx = await gpu();
    const dir = join(DIR, name);
    const meta = JSON.parse(readFileSync(join(dir, 'sweeps.json'), 'utf8')) as Sweeps;
    const input = npy(join(REPO, meta.input));
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, meta.model))));
    // The narrowed ResNets declare 64×64; the fixtures run them at 128×128.
    if (model.graph.inputs[0].dims?.some((d, i) => i > 0 && d !== input.shape[i])) model.graph.inputs[0].dims = null;
    const x = Tensor.fromData(ctx, input.data, input.shape);
    try {
      const r = await explain(model, x, { methods, layers: [meta.layer.module], targets: meta.targets, sweepStyle: 'torchcam' });
      try {
        const read = await readTensors(ctx, r.methods.flatMap((m) => [m.weights!, m.raw]));
        methods.forEach((m, i) => {
          expect(relErr(read[2 * i], npy(join(dir, `${TC[m]}-weights.npy`)).data), `${name} ${m}: weights`).toBeLessThan(TOL);
          expect(relErr(read[2 * i + 1], npy(join(dir, `${TC[m]}-raw.npy`)).data), `${name} ${m}: raw map`).toBeLessThan(TOL);
        });
      } finally {
        r.dispose();
      }
      if (methods.includes('iscam')) {
        // SPEC's IS-CAM (coefficients i/n, scores summed) is another method: it must not match.
        const spec = await explain(model, x, { methods: ['iscam'], layers: [meta.layer.module], targets: meta.targets });
        const [w] = await readTensors(ctx, [spec.methods[0].weights!]);
        spec.dispose();
        expect(relErr(w, npy(join(dir, 'TC-ISCAM-weights.npy')).data)).toBeGreaterThan(1e-3);
      }
    } finally {
      x.dispose();
      await model.dispose();
    }
  }, 600_000);
});

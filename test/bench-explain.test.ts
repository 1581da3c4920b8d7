/**
 * `camgpu bench --explain` (issue 7's speed section) on a narrowed fixture model, one
 * iteration: the JSON it prints, the maps it writes, its usage errors; and the tfjs peer
 * (dist/bench-tfjs.js, built by `npm run build` when the devDependencies are installed) on
 * the same model and input, whose Grad-CAM map must be camgpu's.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { parseNpy } from '../src/io/npy.js';
import type { ExplainBench } from '../tools/bench.js';
import { main } from '../tools/cli.js';

const ROOT = join(import.meta.dirname, '..');
const MODEL = join(ROOT, 'test', 'fixtures', 'torch', 'resnet18-w8.onnx');
const tmp = mkdtempSync(join(tmpdir(), 'camgpu-bench-explain-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  try {
    const code = await main(argv);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

const readMap = (path: string) => parseNpy(new Uint8Array(readFileSync(path)), path);

describe('camgpu bench --explain', () => {
  const maps = join(tmp, 'camgpu');
  let bench: ExplainBench;

  it('times each method, all of them and the gradient CAMs together against the bare pass, as JSON', async () => {
    const r = await cli(['bench', '--explain', '--model', MODEL, '--layer', 'layer4', '--methods', 'gradcam,hirescam,eigencam', '--batch', '1,2', '--iters', '1', '--warmup', '1', '--json', '--maps-out', maps]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    bench = (JSON.parse(r.out) as { explain: ExplainBench }).explain;
    expect(bench.layer.requested).toBe('layer4');
    expect(bench.layer.tensor).toBe('/layer4/layer4.1/relu_1/Relu_output_0');
    expect(bench.batches.map((b) => b.batch)).toEqual([1, 2]);
    for (const b of bench.batches) {
      expect(b.entries.map((e) => e.name)).toEqual(['gradcam', 'hirescam', 'eigencam', 'all', 'gradient']);
      expect(b.entries.find((e) => e.name === 'all')!.methods).toEqual(['gradcam', 'hirescam', 'eigencam']);
      expect(b.entries.find((e) => e.name === 'gradient')!.methods).toEqual(['gradcam', 'hirescam']);
      for (const e of b.entries) {
        expect(e.explain.timesMs).toHaveLength(1);
        expect(e.bare.timesMs).toHaveLength(1);
        expect(e.explain.medianMs).toBeGreaterThan(0);
        expect(e.overBare).toBeCloseTo(e.explain.medianMs / e.bare.medianMs, 9);
      }
      expect(b.bare.timesMs).toHaveLength(b.entries.length);
      expect(b.targets).toHaveLength(b.batch);
    }
    const g = bench.goals[0];
    const e1 = bench.batches[0].entries;
    expect(g.camMathShare).toBeCloseTo(e1[0].overBare - 1, 9);
    expect(g.gradientOverGradcam).toBeCloseTo(e1[4].explain.medianMs / e1[0].explain.medianMs, 9);
  });

  it('writes the maps of each single method at the first batch size', () => {
    for (const m of ['gradcam', 'hirescam', 'eigencam']) {
      const a = readMap(join(maps, `${m}.npy`));
      expect(a.shape).toEqual([1, 64, 64]);
      expect(Math.min(...a.data)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...a.data)).toBeLessThanOrEqual(1);
      expect(Math.max(...a.data)).toBeGreaterThan(0.5);
    }
  });

  it('rejects bad combinations and unknown methods before any GPU work', async () => {
    expect((await cli(['bench', '--explain'])).code).toBe(2);
    expect((await cli(['bench', '--explain', '--model', MODEL, '--grad'])).code).toBe(2);
    const r = await cli(['bench', '--explain', '--model', MODEL, '--methods', 'gradcam,nosuchcam']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/INPUT.*nosuchcam/);
  });

  const tfjs = join(ROOT, 'dist', 'bench-tfjs.js');
  it.skipIf(!existsSync(tfjs))('the tfjs peer computes the same Grad-CAM map on the same model and input (dense layer split in chunks)', () => {
    const out = join(tmp, 'tfjs');
    // --max-binding 1024 splits the 64×10 classifier into 3 column chunks (the path VGG-16's 411 MB layer takes).
    const p = spawnSync(process.execPath, [tfjs, '--model', MODEL, '--layer', 'layer4', '--batch', '1', '--iters', '1', '--warmup', '0', '--json', '--maps-out', out, '--max-binding', '1024'], { encoding: 'utf8', timeout: 110_000 });
    expect(p.status, p.stderr).toBe(0);
    const res = JSON.parse(p.stdout.trim().split('\n').at(-1)!) as { layerTensor: string; summary: string; batches: { batch: number; leakedTensors: number; entries: { name: string }[] }[] };
    expect(res.layerTensor).toBe(bench.layer.tensor);
    expect(res.summary).toMatch(/1 dense layer\(s\) split/);
    expect(res.batches[0].entries[0].name).toBe('gradcam');
    expect(res.batches[0].leakedTensors).toBe(0);
    const a = readMap(join(out, 'gradcam.npy'));
    const b = readMap(join(maps, 'gradcam.npy'));
    expect(a.shape).toEqual(b.shape);
    let max = 0;
    for (let i = 0; i < a.data.length; i++) max = Math.max(max, Math.abs(a.data[i] - b.data[i]));
    expect(max).toBeLessThan(1e-4);
  });
});

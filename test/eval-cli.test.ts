/**
 * `camgpu eval` end to end on 20 Fashion-MNIST test images with 3 methods: the files it writes
 * (journal, summaries, curves, plots that decode), a run killed mid-way and resumed equals an
 * uninterrupted one, and every bad input of issue 10 gets a typed error naming the file and item.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it, vi } from 'vitest';
import { formatNpy, parseNpy } from '../src/io/npy.js';
import { main } from '../tools/cli.js';
import { findFashionMnist } from '../tools/fashion-mnist.js';
import type { MetricRecord } from '../src/metrics/records.js';

const ROOT = join(import.meta.dirname, '..');
const MODEL = join(ROOT, 'models', 'fashion-resnet.onnx');
const BIN = join(ROOT, 'bin', 'camgpu.js');
const tmp = mkdtempSync(join(tmpdir(), 'camgpu-eval-'));
const METHODS = 'gradcam,hirescam,gradcam++';
const METRICS = 'insertion,deletion,ad,ai,ag,drop25,compactness,sparseness,deadzone';
const ARGS = ['--model', MODEL, '--dataset', 'fashion-mnist:test:20', '--methods', METHODS, '--metrics', METRICS, '--batch-size', '4', '--seed', '3', '--no-progress'];

const records = (dir: string): MetricRecord[] => readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as MetricRecord);
const byKey = (rs: MetricRecord[]) => new Map(rs.map((r) => [JSON.stringify([r.image, r.method, r.metric]), r]));

/** Runs the CLI in this process: its exit code and what it printed to stderr. */
async function inProcess(args: string[]): Promise<{ code: number; stderr: string }> {
  const errors: string[] = [];
  const spy = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void errors.push(a.map(String).join(' ')));
  try {
    return { code: await main(args), stderr: errors.join('\n') };
  } finally {
    spy.mockRestore();
  }
}

function cli(args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code, signal) => resolve({ code, signal, stderr }));
  });
}

describe.skipIf(!findFashionMnist())('camgpu eval on Fashion-MNIST', () => {
  const full = join(tmp, 'full');
  it('writes the journal, summaries, curves and plots', async () => {
    const r = await inProcess(['eval', ...ARGS, '--out', full]);
    expect(r.code, r.stderr).toBe(0);
    const rs = records(full);
    expect(rs.length).toBe(20 * 3 * 9);
    for (const r of rs) {
      expect(typeof r.image).toBe('number');
      expect(METHODS.split(',')).toContain(r.method);
      expect(Number.isInteger(r.target)).toBe(true);
      expect(r.value === null ? r.undefined : Number.isFinite(r.value)).toBeTruthy();
    }
    const ins = rs.filter((r) => r.metric === 'insertion' && r.value !== null);
    expect(ins.every((r) => r.curve!.length === 224 && Math.abs(r.curve!.reduce((a, b) => a + b, 0) / 224 - r.value!) < 1e-5)).toBe(true);
    const summary = JSON.parse(readFileSync(join(full, 'summary.json'), 'utf8')) as { rows: { method: string; metric: string; n: number; mean: number }[] };
    expect(summary.rows.length).toBe(3 * 9);
    const csv = readFileSync(join(full, 'summary.csv'), 'utf8').trim().split('\n');
    expect(csv.length).toBe(1 + 27);
    for (const m of METHODS.split(',')) {
      const c = parseNpy(new Uint8Array(readFileSync(join(full, `curves-insertion-${m.replace(/[^A-Za-z0-9+_-]/g, '_')}.npy`))));
      expect(c.shape).toEqual([20, 224]);
    }
    for (const f of ['curves-insertion.png', 'curves-deletion.png', 'summary.png']) {
      const png = PNG.sync.read(readFileSync(join(full, f)));
      expect(png.width).toBeGreaterThan(200);
      expect(readFileSync(join(full, f.replace('.png', '.svg')), 'utf8')).toContain('<svg');
    }
  }, 240_000);

  it('a run killed mid-way and resumed gives the uninterrupted results', async () => {
    const dir = join(tmp, 'killed');
    const p = spawn(process.execPath, [BIN, 'eval', ...ARGS, '--out', dir], { stdio: 'ignore' });
    const journal = join(dir, 'results.jsonl');
    // Kill it once the first batches are in the journal, before the last.
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        const n = existsSync(journal) ? readFileSync(journal, 'utf8').split('\n').length - 1 : 0;
        if (n >= 4 * 27) {
          clearInterval(timer);
          p.kill('SIGKILL');
          resolve();
        }
      }, 20);
      p.on('exit', () => {
        clearInterval(timer);
        reject(new Error('the run finished before it could be killed'));
      });
    });
    await new Promise((r) => p.on('exit', r));
    const partial = records(dir).length;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(20 * 27);
    const resumed = await cli(['eval', ...ARGS, '--out', dir]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const a = byKey(records(full));
    const b = byKey(records(dir));
    expect(b.size).toBe(a.size);
    for (const [k, r] of a) expect(b.get(k), k).toEqual(r);
    expect(readFileSync(join(dir, 'summary.csv'), 'utf8')).toBe(readFileSync(join(full, 'summary.csv'), 'utf8'));
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
    // Re-running a finished journal evaluates nothing and rewrites the same report.
    const before = statSync(journal).size;
    const again = await cli(['eval', ...ARGS, '--out', dir]);
    expect(again.code).toBe(0);
    expect(statSync(journal).size).toBe(before);
  }, 300_000);
});

describe('camgpu eval: bad input is a typed error naming the file and item', () => {
  const run = async (args: string[]) => inProcess(['eval', '--model', MODEL, '--no-progress', '--out', join(tmp, `bad-${Math.random()}`), ...args]);
  const fails = async (args: string[], message: RegExp) => {
    const r = await run(args);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/camgpu: error \[[A-Z_]+\]/);
    expect(r.stderr).toMatch(message);
  };
  const npyFile = (name: string, data: Float32Array, shape: number[]) => {
    const f = join(tmp, name);
    writeFileSync(f, formatNpy(data, shape));
    return f;
  };
  const x = npyFile('x.npy', new Float32Array(2 * 56 * 56).map((_, i) => Math.sin(i)), [2, 1, 56, 56]);
  it('maps whose shape does not match the images', async () => {
    const maps = npyFile('maps-bad.npy', new Float32Array(3 * 56 * 56), [3, 56, 56]);
    await fails(['--input-npy', x, '--maps', maps, '--metrics', 'insertion'], /maps-bad\.npy: maps must be float32 \[2, 56, 56\].*got \[3,56,56\]/);
  });
  it('boxes outside the image, and a metric that needs boxes without them', async () => {
    const dir = join(ROOT, 'examples', 'fashion');
    const boxes = join(tmp, 'boxes.json');
    writeFileSync(boxes, JSON.stringify({ 'ankle-boot.png': [[0, 0, 10, 10]], 'bag.png': [[20, 20, 40, 12]] }));
    const images = ['--image', `${join(dir, 'ankle-boot.png')},${join(dir, 'bag.png')}`];
    await fails([...images, '--methods', 'gradcam', '--metrics', 'pointing', '--boxes', boxes], /boxes\.json: box 0 of bag\.png \[20,20,40,12\] is outside/);
    await fails([...images, '--methods', 'gradcam', '--metrics', 'pointing'], /metric 'pointing' needs ground-truth boxes/);
  });
  it('a labels file that does not match the images', async () => {
    const dir = join(ROOT, 'examples', 'fashion');
    const labels = join(tmp, 'labels.csv');
    writeFileSync(labels, 'file,label\nankle-boot.png,9\ntrouser.png,1\n');
    await fails(['--image', `${join(dir, 'ankle-boot.png')},${join(dir, 'bag.png')}`, '--labels', labels, '--methods', 'gradcam', '--metrics', 'compactness'], /labels\.csv: no label for bag\.png/);
  });
  it('constant and NaN maps are an explicit "undefined", not a crash', async () => {
    const data = new Float32Array(2 * 56 * 56);
    data.fill(0.5, 0, 56 * 56);
    data.fill(Number.NaN, 56 * 56 + 7, 56 * 56 + 9);
    const maps = npyFile('maps-const.npy', data, [2, 56, 56]);
    const out = join(tmp, 'const');
    const r = await inProcess(['eval', '--model', MODEL, '--no-progress', '--input-npy', x, '--maps', maps, '--metrics', 'insertion,ad,sparseness', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const rs = records(out);
    expect(rs.length).toBe(6);
    for (const r of rs) {
      expect(r.value).toBeNull();
      expect(r.undefined).toBe(r.image === 0 ? 'constant map' : 'NaN or infinity in the map');
    }
  }, 60_000);
});

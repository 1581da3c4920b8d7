/**
 * `camgpu explain` through the CLI entry (`main(argv)`): flags, every bad input, and what it
 * writes. The method math (src/cam/explain.ts) comes from another branch: the error tests
 * fail before explain() is called and use a stand-in module whose explain() throws; the
 * wiring tests use a small stand-in defined here (an activation map from model.run taps).
 * The last test runs the real module once src/cam/explain.ts exists.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { readImageFile } from '../src/io/image-node.js';
import { formatNpy, parseNpy } from '../src/io/npy.js';
import { overlay, resizeBilinear, rgbaToRgb } from '../src/io/overlay.js';
import { InputError } from '../src/runtime/errors.js';
import { Tensor } from '../src/runtime/tensor.js';
import { main } from '../tools/cli.js';
import { type ExplainModule, type ExplainOptions, type ExplainOutcome, setExplainModule } from '../tools/explain.js';

const ROOT = join(import.meta.dirname, '..');
const MODEL = join(ROOT, 'models', 'fashion-vgg.onnx');
const EXAMPLES = join(ROOT, 'examples', 'fashion');
const CLASSES = (JSON.parse(readFileSync(join(ROOT, 'models', 'fashion-vgg.json'), 'utf8')) as { classes: string[] }).classes;
const tmp = mkdtempSync(join(tmpdir(), 'camgpu-explain-'));
const img = (name: string) => join(EXAMPLES, `${name}.png`);
const THREE = [img('ankle-boot'), img('trouser'), img('bag')].join(',');

const NAMES = ['gradcam', 'hirescam', 'gradcam++'];
const TITLES: Record<string, string> = { gradcam: 'Grad-CAM', hirescam: 'HiResCAM', 'gradcam++': 'Grad-CAM++' };

/** A module whose explain() must never run: errors have to come before it. */
const untouchable: ExplainModule = {
  METHOD_NAMES: NAMES,
  explain: () => {
    throw new Error('explain() was called');
  },
};

interface Call {
  batch: number;
  options: ExplainOptions;
}

/**
 * A stand-in for src/cam/explain.ts, for the CLI's wiring only: the map of every method is
 * the channel mean of the first layer (u(up(mean_k A_k))), the rows are the targets asked for
 * with their logits. Not a CAM method.
 */
function standIn(calls: Call[], failOnCall?: number): ExplainModule {
  return {
    METHOD_NAMES: NAMES,
    explain: async (model, x, o): Promise<ExplainOutcome> => {
      calls.push({ batch: x.shape[0], options: o });
      if (calls.length === failOnCall) throw new InputError('stand-in failure');
      const layers = o.layers ?? ['auto'];
      const r = await model.run(x, { taps: layers });
      const logitsT = r.outputs.get(model.outputName)!;
      const logits = await logitsT.read();
      const tap = r.taps.get(layers[0])!;
      const a = await tap.value.read();
      const [N, K, h, w] = tap.value.shape;
      const [H, W] = x.shape.slice(2);
      const C = logitsT.shape[1];
      const order = (i: number) => Array.from({ length: C }, (_, c) => c).sort((p, q) => logits[i * C + q] - logits[i * C + p]);
      const t = o.targets ?? 'argmax';
      const rows: { image: number; target: number; score: number }[] = [];
      for (let i = 0; i < N; i++) {
        const classes = t === 'argmax' ? [order(i)[0]] : typeof t === 'number' ? [t] : Array.isArray(t) ? [t[i]] : order(i).slice(0, (t as { topK: number }).topK);
        for (const c of classes) rows.push({ image: i, target: c, score: logits[i * C + c] });
      }
      const M = rows.length;
      const raw = new Float32Array(M * h * w);
      const map = new Float32Array(M * H * W);
      rows.forEach((row, m) => {
        for (let k = 0; k < K; k++) for (let p = 0; p < h * w; p++) raw[m * h * w + p] += a[(row.image * K + k) * h * w + p] / K;
        const up = resizeBilinear(raw.subarray(m * h * w, (m + 1) * h * w), [h, w], [H, W]);
        let lo = Infinity;
        let hi = -Infinity;
        for (const v of up) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
        for (let p = 0; p < H * W; p++) map[m * H * W + p] = (up[p] - lo) / (hi - lo + 1e-8);
      });
      for (const v of r.outputs.values()) v.dispose();
      for (const v of r.taps.values()) v.value.dispose();
      const wanted = o.methods.includes('all') ? NAMES : o.methods.map((n) => n.toLowerCase().replace(/[-_ ]/g, ''));
      const methods = wanted.map((m) => ({
        method: m,
        title: TITLES[m],
        map: Tensor.fromData(model.ctx, map, [M, H, W]),
        raw: Tensor.fromData(model.ctx, raw, [M, h, w]),
        weights: m === 'hirescam' ? null : Tensor.fromData(model.ctx, Float32Array.from({ length: M * K }, (_, i) => i), [M, K]),
        attribution: null,
        gpuMs: null,
        wallMs: 1.5,
      }));
      return {
        rows: async () => rows,
        layers: layers.map((l) => ({ requested: l, tensor: r.taps.get(l)!.tensor, shape: [M, K, h, w] })),
        methods,
        dispose: () => methods.forEach((m) => [m.map, m.raw, m.weights].forEach((t) => t?.dispose())),
      };
    },
  };
}

let stderr: string[] = [];
let stdout: string[] = [];

async function cli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  stderr = [];
  stdout = [];
  const e = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void stderr.push(a.join(' ')));
  const l = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void stdout.push(a.join(' ')));
  try {
    const code = await main(args);
    return { code, stderr: stderr.join('\n'), stdout: stdout.join('\n') };
  } finally {
    e.mockRestore();
    l.mockRestore();
  }
}

const base = ['explain', '--model', MODEL, '--no-progress'];

afterEach(() => setExplainModule(null));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('explain: bad input fails before explain() with a typed one-line error', () => {
  const notImage = join(tmp, 'notes.txt');
  const fakePng = join(tmp, 'fake.png');
  const empty = join(tmp, 'empty');
  const badFolder = join(tmp, 'bad-folder');
  const aFile = join(tmp, 'a-file');
  beforeAll(() => {
    writeFileSync(notImage, 'not an image\n');
    writeFileSync(fakePng, 'PNG? no.');
    mkdirSync(empty);
    writeFileSync(join(empty, 'readme.txt'), 'no images here');
    mkdirSync(badFolder);
    writeFileSync(join(badFolder, 'a.png'), readFileSync(img('bag')));
    writeFileSync(join(badFolder, 'b.jpg'), 'not a jpeg');
    writeFileSync(aFile, 'x');
  });

  const cases: [string, string[], RegExp][] = [
    ['an unknown method, listing the known ones', ['--image', THREE, '--method', 'gradcam,nosuchcam'], /unknown method 'nosuchcam'; known methods: gradcam, hirescam, gradcam\+\+, all/],
    ['a file that is not an image', ['--image', notImage, '--method', 'gradcam'], /notes\.txt is neither a PNG nor a JPEG file/],
    ['a .png that is not a PNG', ['--image', fakePng, '--method', 'gradcam'], /fake\.png is neither a PNG nor a JPEG/],
    ['a folder with a broken image', ['--images', badFolder, '--method', 'gradcam'], /bad-folder\/b\.jpg is neither a PNG nor a JPEG file/],
    ['an empty folder', ['--images', empty, '--method', 'gradcam'], /empty holds no PNG or JPEG files/],
    ['a folder that does not exist', ['--images', join(tmp, 'nope'), '--method', 'gradcam'], /cannot read the folder .*nope/],
    ['a class list that does not match the batch', ['--image', THREE, '--method', 'gradcam', '--class', '1,2'], /--class gives 2 classes for 3 inputs/],
    ['a class list longer than the batch', ['--image', img('bag'), '--method', 'gradcam', '--class', '1,2'], /--class gives 2 classes for 1 input:/],
    ['a class the model does not have', ['--image', THREE, '--method', 'gradcam', '--class', '10'], /class 10 is not in \[0, 10\)/],
    ['a class that is not a number', ['--image', THREE, '--method', 'gradcam', '--class', 'cat'], /'cat' is not a class index/],
    ['top-K beyond the classes', ['--image', THREE, '--method', 'gradcam', '--class', 'top11'], /top11: the model has 10 classes/],
    ['--alpha above 1', ['--image', THREE, '--method', 'gradcam', '--alpha', '1.5'], /--alpha must be a number in \[0, 1\], got '1\.5'/],
    ['--alpha below 0', ['--image', THREE, '--method', 'gradcam', '--alpha', '-0.1'], /--alpha must be a number in \[0, 1\]/],
    ['--alpha not a number', ['--image', THREE, '--method', 'gradcam', '--alpha', 'half'], /--alpha must be a number in \[0, 1\], got 'half'/],
    ['an unknown colormap', ['--image', THREE, '--method', 'gradcam', '--colormap', 'rainbow'], /unknown colormap 'rainbow'; known colormaps: jet, turbo, viridis, inferno/],
    ['an unknown score', ['--image', THREE, '--method', 'gradcam', '--score', 'prob'], /--score must be logit or softmax/],
    ['--out that is a file', ['--image', THREE, '--method', 'gradcam', '--out', aFile], /--out .*a-file exists and is not a folder/],
    ['no method', ['--image', THREE], /give --method NAME/],
  ];
  for (const [what, args, message] of cases) {
    it(what, async () => {
      setExplainModule(untouchable);
      const r = await cli([...base, ...args]);
      expect(r.code, r.stderr).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^camgpu: error \[INPUT\]: /);
      expect(lines[0]).toMatch(message);
    });
  }

  it('two inputs at once is a usage error (exit 2)', async () => {
    setExplainModule(untouchable);
    const r = await cli([...base, '--image', img('bag'), '--images', EXAMPLES, '--method', 'gradcam']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/give either --image or --images, not both/);
  });

  it.skipIf(existsSync(join(ROOT, 'src', 'cam', 'explain.ts')))('a missing src/cam/explain.ts is a typed error, not a crash', async () => {
    const r = await cli([...base, '--image', img('bag'), '--method', 'gradcam']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^camgpu: error \[UNAVAILABLE\]: .*src\/cam\/explain\.ts is missing/);
  });

  it('nothing was written by the failed runs', () => {
    expect(readdirSync(tmp).filter((f) => f.includes('camgpu-tmp'))).toEqual([]);
  });
});

describe('explain: flags reach explain()', () => {
  it('methods, layers, score, seed; inputs in batches of --batch-size; per-input classes sliced per batch', async () => {
    const calls: Call[] = [];
    setExplainModule(standIn(calls));
    const r = await cli([...base, '--image', THREE, '--method', 'Grad-CAM,hirescam', '--layer', 'features.9', '--class', '3,1,4', '--score', 'softmax', '--seed', '7', '--batch-size', '2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(calls.map((c) => c.batch)).toEqual([2, 1]);
    expect(calls.map((c) => c.options.targets)).toEqual([[3, 1], [4]]);
    for (const c of calls) {
      expect(c.options).toMatchObject({ methods: ['Grad-CAM', 'hirescam'], layers: ['features.9'], score: 'softmax', seed: 7, batchSize: 2 });
    }
    const summary = JSON.parse(r.stdout);
    expect(summary.images.map((i: { class: number }) => i.class)).toEqual([3, 1, 4]);
    expect(summary.images.map((i: { className: string }) => i.className)).toEqual([CLASSES[3], CLASSES[1], CLASSES[4]]);
    expect(summary.out).toBeNull();
  });

  it("defaults: 'auto' layer, argmax, logit; one class for all; topK", async () => {
    const calls: Call[] = [];
    setExplainModule(standIn(calls));
    expect((await cli([...base, '--image', THREE, '--method', 'gradcam'])).code).toBe(0);
    // No --score: each method's SPEC default (the logit; RISE and Poly-CAM the softmax).
    expect(calls[0]).toMatchObject({ batch: 3, options: { layers: ['auto'], targets: 'argmax', score: undefined, polyNormalize: 'minmax', lnorm: true } });
    expect(calls[0].options.masks).toBeUndefined();
    expect((await cli([...base, '--image', THREE, '--method', 'gradcam', '--class', '5'])).code).toBe(0);
    expect(calls[1].options.targets).toBe(5);
    expect((await cli([...base, '--image', THREE, '--method', 'all', '--class', 'top3'])).code).toBe(0);
    expect(calls[2].options).toMatchObject({ targets: { topK: 3 }, methods: ['all'] });
  });

  it('sweep options: masks, iterations, learning rate, parity switches, Poly-CAM layers and normalization', async () => {
    const calls: Call[] = [];
    setExplainModule(standIn(calls));
    const args = ['--image', THREE, '--method', 'gradcam,hirescam', '--masks', '500', '--iters', '7', '--lr', '0.05', '--align-corners', '--score-baseline',
      '--poly-normalize', 'percentile', '--no-lnorm', '--sweep-style', 'torchcam', '--mask-space', 'raw', '--layer', 'features.1,features.6', '--score', 'softmax'];
    expect((await cli([...base, ...args])).code).toBe(0);
    expect(calls[0].options).toMatchObject({ masks: 500, iterations: 7, lr: 0.05, alignCorners: true, scoreBaseline: true, polyNormalize: 'percentile', lnorm: false, sweepStyle: 'torchcam', maskSpace: 'raw', layers: ['features.1', 'features.6'], score: 'softmax' });
    expect(calls[0].options.pixels).toEqual({ mean: [expect.any(Number)], std: [expect.any(Number)] });
    for (const bad of [['--masks', '0'], ['--iters', '0'], ['--lr', '-1'], ['--poly-normalize', 'median']]) {
      const r = await cli([...base, '--image', THREE, '--method', 'gradcam', ...bad]);
      if (bad[0] === '--poly-normalize') {
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/--poly-normalize must be minmax or percentile, got 'median'/);
      } else {
        expect(r.code, bad.join(' ')).not.toBe(0); // commander rejects the value (not a positive number) before anything runs
      }
    }
  });
});

describe('explain: what it writes', () => {
  it('a folder: npy maps, one overlay per (image, method) at the image size, a grid per image, summary.json', async () => {
    setExplainModule(standIn([]));
    const out = join(tmp, 'folder-out');
    const r = await cli([...base, '--images', EXAMPLES, '--method', 'gradcam,hirescam', '--out', out, '--colormap', 'viridis', '--alpha', '0.4', '--batch-size', '4']);
    expect(r.code, r.stderr).toBe(0);
    const stems = readdirSync(EXAMPLES).filter((f) => f.endsWith('.png')).sort().map((f) => f.replace(/\.png$/, ''));
    const files = readdirSync(out).sort();
    const expected = ['gradcam.npy', 'gradcam-raw.npy', 'gradcam-weights.npy', 'hirescam.npy', 'hirescam-raw.npy', 'summary.json',
      ...stems.flatMap((s) => [`${s}-gradcam.png`, `${s}-hirescam.png`, `${s}-grid.png`])].sort();
    expect(files).toEqual(expected);
    const map = parseNpy(new Uint8Array(readFileSync(join(out, 'gradcam.npy'))));
    expect(map.shape).toEqual([10, 56, 56]);
    expect(parseNpy(new Uint8Array(readFileSync(join(out, 'gradcam-raw.npy')))).shape.slice(0, 1)).toEqual([10]);
    expect(parseNpy(new Uint8Array(readFileSync(join(out, 'gradcam-weights.npy')))).shape[0]).toBe(10);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary.rows).toBe(10);
    expect(summary.input).toMatchObject({ kind: 'images', count: 10, size: [56, 56] });
    expect(summary.methods.map((m: { method: string; title: string }) => [m.method, m.title])).toEqual([['gradcam', 'Grad-CAM'], ['hirescam', 'HiResCAM']]);
    expect(summary.methods[0]).toMatchObject({ gpuMs: null, wallMs: 4.5, files: { map: 'gradcam.npy', raw: 'gradcam-raw.npy', weights: 'gradcam-weights.npy' } });
    expect(summary.methods[1].files.weights).toBeNull();
    expect(summary.layers).toEqual([{ requested: 'auto', tensor: expect.any(String), shape: [10, expect.any(Number), expect.any(Number), expect.any(Number)] }]);
    // Each overlay is the map row of its image, drawn over that image at its own size.
    for (const [i, s] of stems.entries()) {
      const entry = summary.images[i];
      expect(entry).toMatchObject({ index: i, name: `${s}.png`, width: 28, height: 28, grid: `${s}-grid.png`, className: CLASSES[entry.class] });
      expect(entry.layers).toEqual([summary.layers[0].tensor]);
      expect(entry.targets[0].overlays).toEqual({ gradcam: `${s}-gradcam.png`, hirescam: `${s}-hirescam.png` });
      const png = PNG.sync.read(readFileSync(join(out, `${s}-gradcam.png`)));
      expect([png.width, png.height]).toEqual([28, 28]);
      const want = overlay(rgbaToRgb(readImageFile(join(EXAMPLES, `${s}.png`))), map.data.subarray(i * 56 * 56, (i + 1) * 56 * 56), [56, 56], { colormap: 'viridis', alpha: 0.4 });
      expect(Buffer.from(png.data).equals(Buffer.from(want.rgba))).toBe(true);
      const grid = PNG.sync.read(readFileSync(join(out, `${s}-grid.png`)));
      expect(grid.width).toBeGreaterThan(3 * 224);
    }
    // Most Fashion-MNIST examples are classified right by our model; the stand-in explains the argmax.
    const right = stems.filter((s, i) => CLASSES[summary.images[i].class].toLowerCase().replace(/[^a-z]/g, '') === s.replace(/[^a-z]/g, '')).length;
    expect(right).toBeGreaterThanOrEqual(8);
  });

  it('topK: one map row per (image, class), overlays named with the class', async () => {
    setExplainModule(standIn([]));
    const out = join(tmp, 'topk-out');
    const r = await cli([...base, '--image', `${img('bag')},${img('sandal')}`, '--method', 'gradcam', '--class', 'top2', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'))).toEqual(summary);
    expect(parseNpy(new Uint8Array(readFileSync(join(out, 'gradcam.npy')))).shape).toEqual([4, 56, 56]);
    for (const [i, stem] of ['bag', 'sandal'].entries()) {
      const t = summary.images[i].targets;
      expect(t.map((x: { row: number }) => x.row)).toEqual([2 * i, 2 * i + 1]);
      expect(t[0].score).toBeGreaterThanOrEqual(t[1].score);
      for (const x of t) expect(existsSync(join(out, `${stem}-gradcam-${x.class}.png`))).toBe(true);
      expect(PNG.sync.read(readFileSync(join(out, `${stem}-grid.png`))).height).toBeGreaterThan(2 * 224);
    }
  });

  it('--input-npy: overlays over the de-normalized tensor', async () => {
    setExplainModule(standIn([]));
    const card = JSON.parse(readFileSync(join(ROOT, 'models', 'fashion-vgg.json'), 'utf8')) as { preprocessing: { mean: number; std: number } };
    const { mean, std } = card.preprocessing;
    const px = Float32Array.from({ length: 2 * 56 * 56 }, (_, i) => ((i % 56) / 55) * (i < 56 * 56 ? 1 : 0.5));
    const x = px.map((v) => (v - mean) / std);
    const npy = join(tmp, 'batch.npy');
    writeFileSync(npy, formatNpy(x, [2, 1, 56, 56]));
    const out = join(tmp, 'npy-out');
    const r = await cli([...base, '--input-npy', npy, '--method', 'gradcam', '--out', out, '--alpha', '0']);
    expect(r.code, r.stderr).toBe(0);
    // alpha 0: the picture alone, i.e. the tensor drawn back to pixels.
    const png = PNG.sync.read(readFileSync(join(out, 'batch-1-gradcam.png')));
    expect([png.width, png.height]).toEqual([56, 56]);
    // (float32 normalization there and back: within one level)
    for (const col of [0, 20, 55]) expect(Math.abs(png.data[(3 * 56 + col) * 4] - ((col / 55) * 0.5) * 255)).toBeLessThanOrEqual(1);
    expect(existsSync(join(out, 'batch-0-grid.png'))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).input).toMatchObject({ kind: 'npy', count: 2, preprocessing: { mean: [mean], std: [std] } });
  });

  it('a failing run leaves --out as it was; a good one adds its files and keeps the rest', async () => {
    const out = join(tmp, 'keep-out');
    mkdirSync(out);
    writeFileSync(join(out, 'keep.txt'), 'mine');
    setExplainModule(standIn([], 2));
    const r = await cli([...base, '--image', THREE, '--method', 'gradcam', '--out', out, '--batch-size', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^camgpu: error \[INPUT\]: stand-in failure$/);
    expect(readdirSync(out)).toEqual(['keep.txt']);
    expect(readdirSync(tmp).filter((f) => f.includes('camgpu-tmp'))).toEqual([]);
    const fresh = join(tmp, 'never-made');
    setExplainModule(standIn([], 2));
    expect((await cli([...base, '--image', THREE, '--method', 'gradcam', '--out', fresh, '--batch-size', '1'])).code).toBe(1);
    expect(existsSync(fresh)).toBe(false);
    setExplainModule(standIn([]));
    expect((await cli([...base, '--image', THREE, '--method', 'gradcam', '--out', out])).code).toBe(0);
    expect(readdirSync(out)).toContain('keep.txt');
    expect(readdirSync(out)).toContain('summary.json');
    expect(readFileSync(join(out, 'keep.txt'), 'utf8')).toBe('mine');
  });
});

// Turn on at merge: runs by itself once src/cam/explain.ts is in the tree.
describe('explain with src/cam/explain.ts', () => {
  it.skipIf(!existsSync(join(ROOT, 'src', 'cam', 'explain.ts')))('explain on the bundled model writes its files, PNGs decode, summary.json valid', async () => {
    setExplainModule(null);
    const out = join(tmp, 'real-out');
    const r = await cli([...base, '--images', EXAMPLES, '--method', 'gradcam,hirescam', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary.rows).toBe(10);
    expect(summary.methods.map((m: { method: string }) => m.method)).toEqual(['gradcam', 'hirescam']);
    for (const m of summary.methods) {
      expect(m.wallMs).toBeGreaterThan(0);
      const map = parseNpy(new Uint8Array(readFileSync(join(out, m.files.map))));
      expect(map.shape).toEqual([10, 56, 56]);
      expect(map.data.every((v) => v >= 0 && v <= 1)).toBe(true);
      expect(parseNpy(new Uint8Array(readFileSync(join(out, m.files.raw)))).shape[0]).toBe(10);
      if (m.files.weights) expect(parseNpy(new Uint8Array(readFileSync(join(out, m.files.weights)))).shape[0]).toBe(10);
    }
    expect(existsSync(join(out, 'gradcam-weights.npy'))).toBe(true);
    expect(summary.layers[0].tensor).toBeTruthy();
    for (const entry of summary.images) {
      expect(entry.class).toBeGreaterThanOrEqual(0);
      expect(entry.class).toBeLessThan(10);
      expect(entry.className).toBe(CLASSES[entry.class]);
      expect(Number.isFinite(entry.score)).toBe(true);
      expect(entry.layers).toHaveLength(1);
      for (const f of Object.values(entry.targets[0].overlays as Record<string, string>)) {
        const png = PNG.sync.read(readFileSync(join(out, f)));
        expect([png.width, png.height]).toEqual([28, 28]);
      }
      const grid = PNG.sync.read(readFileSync(join(out, entry.grid)));
      expect(grid.width).toBeGreaterThan(3 * 224);
    }
  });
});

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { Model } from '../src/model.js';
import { CamgpuError, OnnxFormatError } from '../src/runtime/errors.js';
import { Tensor } from '../src/runtime/tensor.js';
import type { PageRunResult } from '../web/main.js';
import { FIXTURES, npy, torchManifest } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { relError } from './helpers/random.js';
import { serveStatic, type StaticServer } from './helpers/static-server.js';

/**
 * The same library in a browser page: web/main.ts (bundled from src/index.ts by
 * tools/build-web.mjs) runs a torch fixture on headless Chromium's WebGPU (SwiftShader
 * here) and must agree with camgpu in Node and with PyTorch.
 */

const ROOT = join(import.meta.dirname, '..');
const CHROMIUM = process.env.CAMGPU_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless=new',
  // The one flag WebGPU needs on Linux; without it requestAdapter() returns null.
  '--enable-unsafe-webgpu',
  // Pin the adapter to SwiftShader (Vulkan on the CPU) so that results do not depend on the host's GPU.
  '--use-webgpu-adapter=swiftshader',
  '--use-angle=swiftshader',
  '--enable-features=Vulkan',
  '--no-sandbox',
  '--disable-gpu-sandbox',
  // The network is closed: keep Chromium from trying to reach Google services.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];
/** All torch fixtures: each takes a second or two on SwiftShader (resnet18-w8 first, and in the error check). */
const NAMES = ['resnet18-w8', 'resnet50-w8', 'vgg11_bn-w8', 'vgg16-w8'];
const TORCH = join(FIXTURES, 'torch');

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer from the page after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

describe('browser page (headless Chromium, WebGPU)', () => {
  let server: StaticServer;
  let browser: Browser;
  let page: Page;
  const pageLog: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium not found at ${CHROMIUM}: the browser test needs Debian's chromium package. ` +
          'Run `bash scripts/setup.sh` (it installs it), or point CAMGPU_CHROMIUM at a Chromium binary.',
      );
    }
    // Always test a fresh bundle of the current sources (esbuild takes well under a second).
    execFileSync(process.execPath, [join(ROOT, 'tools', 'build-web.mjs')], { cwd: ROOT, stdio: 'pipe' });
    server = await serveStatic({ '/': join(ROOT, 'web'), '/fixtures/': FIXTURES, '/models/': join(ROOT, 'models') });
    // chromium.launch gives every run a fresh temporary profile (its --user-data-dir).
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
    page = await browser.newPage();
    page.on('console', (m) => pageLog.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => pageLog.push(`requestfailed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
    await page.goto(`${server.origin}/index.html`);
    await page.waitForFunction(() => typeof window.camgpu === 'object', null, { timeout: 10_000 });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  const dumpOnFailure = () =>
    onTestFailed(() => {
      console.log(`page log:\n${pageLog.join('\n') || '(empty)'}\nserver log:\n${server.log.join('\n')}`);
    });

  it.each(NAMES)('runs %s in the page; logits match camgpu in Node and PyTorch within 1e-4', async (name) => {
    dumpOnFailure();
    const m = torchManifest(TORCH, name);
    const modelUrl = `/fixtures/torch/${m.model}`;
    const inputUrl = `/fixtures/torch/${m.input.file}`;

    const t0 = performance.now();
    const web: PageRunResult = await withTimeout(
      page.evaluate(([a, b]) => window.camgpu.runModel(a, b), [modelUrl, inputUrl] as const),
      60_000,
      'runModel in the page',
    );
    const browserMs = performance.now() - t0;

    const ctx = await gpu();
    const t1 = performance.now();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(TORCH, m.model))), { name: m.model });
    const input = npy(join(TORCH, m.input.file));
    const x = Tensor.fromData(ctx, input.data, input.shape);
    const r = await model.run(x);
    const y = r.outputs.get(m.output.name)!;
    const node = await y.read();
    const nodeMs = performance.now() - t1;
    y.dispose();
    x.dispose();
    await model.dispose();

    const golden = npy(join(TORCH, m.output.file));
    console.log(
      `${name}\nbrowser adapter: ${JSON.stringify(web.adapter)}\n` +
        `node adapter: ${JSON.stringify(ctx.adapterInfo)}\n` +
        `page timings (ms): ${JSON.stringify(web.timings, (_, v) => (typeof v === 'number' ? Math.round(v) : v))}; ` +
        `page round trip ${browserMs.toFixed(0)} ms; node import+run ${nodeMs.toFixed(0)} ms`,
    );
    expect(web.output).toBe(m.output.name);
    expect(web.shape).toEqual(m.output.shape);
    expect(web.adapter.vendor).toEqual(expect.any(String));
    const logits = Float32Array.from(web.logits);
    const vsNode = relError(logits, node);
    const vsTorch = relError(logits, golden.data);
    console.log(`relative error: page vs node ${vsNode.toExponential(2)}, page vs PyTorch ${vsTorch.toExponential(2)}`);
    expect(vsNode).toBeLessThanOrEqual(1e-4);
    expect(vsTorch).toBeLessThanOrEqual(1e-4);
  });

  it('Grad-CAM and Random-CAM in the page equal Node’s maps for the same inputs (seeded values included)', async () => {
    dumpOnFailure();
    const inputUrl = '/fixtures/cam/inputs/fashion-coat-shirt-sneaker-56x56.npy';
    const web = await withTimeout(
      page.evaluate(([a, b]) => window.camgpu.explainModel(a, b, ['gradcam', 'randomcam'], [4, 6, 9]), ['/models/fashion-vgg.onnx', inputUrl] as const),
      60_000,
      'explainModel',
    );
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(ROOT, 'models', 'fashion-vgg.onnx'))));
    const input = npy(join(FIXTURES, 'cam', 'inputs', 'fashion-coat-shirt-sneaker-56x56.npy'));
    const x = Tensor.fromData(ctx, input.data, input.shape);
    const { explain } = await import('../src/cam/explain.js');
    const r = await explain(model, x, { methods: ['gradcam', 'randomcam'], targets: [4, 6, 9] });
    const node = await Promise.all(r.methods.map((m) => m.map.read()));
    r.dispose();
    x.dispose();
    await model.dispose();
    expect(web.targets).toEqual([4, 6, 9]);
    expect(web.shape).toEqual([3, 56, 56]);
    ['gradcam', 'randomcam'].forEach((method, i) => {
      let err = 0;
      web.maps[method].forEach((v, j) => (err = Math.max(err, Math.abs(v - node[i][j]))));
      console.log(`${method}: page vs node max abs difference ${err.toExponential(2)}`);
      expect(err, method).toBeLessThanOrEqual(1e-4);
    });
  });

  it('seeded and many-pass sweeps in the page equal Node’s maps: RISE (64 seeded masks), SS-CAM, Poly-CAM±', async () => {
    dumpOnFailure();
    const inputUrl = '/fixtures/cam/inputs/fashion-coat-shirt-sneaker-56x56.npy';
    const methods = ['rise', 'sscam', 'polycam'];
    const options = { masks: 64, seed: 7 };
    const web = await withTimeout(
      page.evaluate(([a, b, m, o]) => window.camgpu.explainModel(a, b, m, [4, 6, 9], o), ['/models/fashion-resnet.onnx', inputUrl, methods, options] as const),
      240_000,
      'explainModel (sweeps)',
    );
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(ROOT, 'models', 'fashion-resnet.onnx'))));
    const input = npy(join(FIXTURES, 'cam', 'inputs', 'fashion-coat-shirt-sneaker-56x56.npy'));
    const x = Tensor.fromData(ctx, input.data, input.shape);
    const { explain } = await import('../src/cam/explain.js');
    const r = await explain(model, x, { methods, targets: [4, 6, 9], ...options });
    const node = await Promise.all(r.methods.map((m) => m.map.read()));
    r.dispose();
    x.dispose();
    await model.dispose();
    methods.forEach((method, i) => {
      let err = 0;
      web.maps[method].forEach((v, j) => (err = Math.max(err, Math.abs(v - node[i][j]))));
      console.log(`${method}: page vs node max abs difference ${err.toExponential(2)}`);
      // Masks and counters are integer-exact on both; what differs is float math, and for
      // SS-CAM Box–Muller's log and cos, whose accuracy WGSL leaves to the implementation
      // (measured: RISE 1.6e-6, SS-CAM 1.0e-5 between SwiftShader and lavapipe).
      expect(err, method).toBeLessThanOrEqual(method === 'sscam' ? 5e-5 : 1e-5);
    });
  });

  it("the page's own UI prints the adapter and PyTorch's top-5 classes", async () => {
    dumpOnFailure();
    const m = torchManifest(TORCH, NAMES[0]);
    const query = new URLSearchParams({ model: `/fixtures/torch/${m.model}`, input: `/fixtures/torch/${m.input.file}`, run: '1' });
    await page.goto(`${server.origin}/index.html?${query}`);
    await page.waitForFunction(() => /top-5|Error/.test(document.getElementById('out')?.textContent ?? ''), null, { timeout: 30_000 });
    const text = (await page.textContent('#out')) ?? '';
    expect(text).toMatch(/^adapter: /);
    const golden = npy(join(TORCH, m.output.file));
    const [n, classes] = golden.shape;
    for (let i = 0; i < n; i++) {
      const row = Array.from(golden.data.subarray(i * classes, (i + 1) * classes), (v, c): [number, number] => [c, v]);
      const want = row.sort((a, b) => b[1] - a[1]).slice(0, 5).map(([c]) => c);
      const line = new RegExp(`^image ${i} top-5 \\(class: logit\\): (.*)$`, 'm').exec(text)?.[1];
      expect(line, text).toBeDefined();
      expect(line!.split(', ').map((s) => Number(s.split(':')[0]))).toEqual(want);
    }
  });

  it("a truncated or garbage model rejects in the page with OnnxFormatError's message", async () => {
    dumpOnFailure();
    const m = torchManifest(TORCH, NAMES[0]);
    const inputUrl = `/fixtures/torch/${m.input.file}`;
    const full = readFileSync(join(TORCH, m.model));
    const cases: [string, Uint8Array][] = [
      ['/virtual/truncated.onnx', new Uint8Array(full.subarray(0, Math.floor(full.length / 2)))],
      ['/virtual/garbage.onnx', new TextEncoder().encode('<!doctype html><p>this is not an ONNX model</p>\n'.repeat(20))],
    ];
    const ctx = await gpu();
    for (const [url, bytes] of cases) {
      // What camgpu says in Node for the same bytes under the same name.
      let expected: CamgpuError | null = null;
      try {
        Model.fromBytes(ctx, bytes, { name: url });
      } catch (e) {
        expected = e as CamgpuError;
      }
      expect(expected, url).toBeInstanceOf(OnnxFormatError);

      // The static server stays read-only: the bad bytes are served by the browser's router.
      await page.route(`${server.origin}${url}`, (route) =>
        route.fulfill({ status: 200, contentType: 'application/octet-stream', body: Buffer.from(bytes) }),
      );

      // The error object, as the page sees it.
      const got = await withTimeout(
        page.evaluate(
          async ([a, b]) => {
            try {
              await window.camgpu.runModel(a, b);
              return null;
            } catch (e) {
              const err = e as Error & { code?: string };
              return { name: err.name, code: err.code, message: err.message };
            }
          },
          [url, inputUrl] as const,
        ),
        30_000,
        `runModel(${url}) in the page`,
      );
      expect(got, url).toEqual({ name: 'OnnxFormatError', code: 'ONNX_FORMAT', message: expected!.message });

      // And uncaught: the rejection crosses into the test instead of hanging.
      await expect(
        withTimeout(page.evaluate(([a, b]) => window.camgpu.runModel(a, b), [url, inputUrl] as const), 30_000, url),
      ).rejects.toThrow(expected!.message);

      // The page's own UI shows it too.
      await page.goto(`${server.origin}/index.html?${new URLSearchParams({ model: url, input: inputUrl, run: '1' })}`);
      await page.waitForSelector('#out.error', { timeout: 30_000 });
      expect(await page.textContent('#out')).toBe(`OnnxFormatError [ONNX_FORMAT]: ${expected!.message}`);
      console.log(`${url}: ${expected!.message}`);
    }
  });
});

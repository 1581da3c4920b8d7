/**
 * A minimal page for camgpu in the browser: fetches an ONNX model and an input .npy,
 * runs them on navigator.gpu and prints the top-5 logits per image. It also exposes
 * `window.camgpu` so that test/browser.test.ts can drive the same code path.
 * Imports only the platform-neutral entry point (never src/node.ts or `webgpu`).
 */
import { type AdapterDescription, CamgpuError, explain, type ExplainOptions, GpuContext, InputError, Model, parseNpy, readTensors, Tensor } from '../src/index.js';

export interface PageRunResult {
  /** Name of the graph output returned (the model's first output). */
  output: string;
  /** The output values, row-major. */
  logits: number[];
  shape: number[];
  adapter: AdapterDescription;
  /** Milliseconds: fetching both files, ONNX import, and run + readback (includes compiling the plan). */
  timings: { fetchMs: number; importMs: number; runMs: number };
}

export interface PageExplainResult {
  /** Per method: its final maps [N, H, W], row-major. */
  maps: Record<string, number[]>;
  targets: number[];
  shape: number[];
}

/** The explain options a page call may set (plain values: they cross from the test into the page). */
export type PageExplainOptions = Pick<ExplainOptions, 'masks' | 'seed' | 'polyLayers' | 'sweepStyle'>;

export interface CamgpuPageApi {
  runModel(modelUrl: string, inputNpyUrl: string): Promise<PageRunResult>;
  explainModel(modelUrl: string, inputNpyUrl: string, methods: string[], targets?: number[], options?: PageExplainOptions): Promise<PageExplainResult>;
  adapter(): Promise<AdapterDescription>;
}

declare global {
  interface Window {
    camgpu: CamgpuPageApi;
  }
}

let context: Promise<GpuContext> | null = null;

/** One device per page; a failed attempt is forgotten so that the next call retries. */
function gpu(): Promise<GpuContext> {
  if (!context) {
    context = GpuContext.create();
    context.catch(() => {
      context = null;
    });
  }
  return context;
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new InputError(`${url}: fetch failed: ${(e as Error).message}`);
  }
  if (!res.ok) throw new InputError(`${url}: HTTP ${res.status} ${res.statusText}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function runModel(modelUrl: string, inputNpyUrl: string): Promise<PageRunResult> {
  const ctx = await gpu();
  const t0 = performance.now();
  const [modelBytes, inputBytes] = await Promise.all([fetchBytes(modelUrl), fetchBytes(inputNpyUrl)]);
  const t1 = performance.now();
  // Models with external data files are not supported here (no readExternal): import says so.
  const model = Model.fromBytes(ctx, modelBytes, { name: modelUrl });
  const t2 = performance.now();
  const input = parseNpy(inputBytes, inputNpyUrl);
  const x = Tensor.fromData(ctx, input.data, input.shape);
  try {
    const r = await model.run(x);
    const output = model.graph.outputs[0].name;
    try {
      const y = r.outputs.get(output)!;
      const logits = await y.read();
      const t3 = performance.now();
      return {
        output,
        logits: Array.from(logits),
        shape: [...y.shape],
        adapter: ctx.adapterInfo,
        timings: { fetchMs: t1 - t0, importMs: t2 - t1, runMs: t3 - t2 },
      };
    } finally {
      for (const t of r.outputs.values()) t.dispose();
    }
  } finally {
    x.dispose();
    await model.dispose();
  }
}

function topK(row: ArrayLike<number>, k: number): [number, number][] {
  return Array.from(row, (v, i): [number, number] => [i, v])
    .sort((a, b) => b[1] - a[1])
    .slice(0, k);
}

function describeError(e: unknown): string {
  if (e instanceof CamgpuError) return `${e.name} [${e.code}]: ${e.message}`;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/** explain() in the page, as the CLI and the library run it in Node. */
async function explainModel(modelUrl: string, inputNpyUrl: string, methods: string[], targets?: number[], options: PageExplainOptions = {}): Promise<PageExplainResult> {
  const ctx = await gpu();
  const [modelBytes, inputBytes] = await Promise.all([fetchBytes(modelUrl), fetchBytes(inputNpyUrl)]);
  const model = Model.fromBytes(ctx, modelBytes, { name: modelUrl });
  const input = parseNpy(inputBytes, inputNpyUrl);
  const x = Tensor.fromData(ctx, input.data, input.shape);
  try {
    const r = await explain(model, x, { ...options, methods, targets });
    try {
      const maps = await readTensors(ctx, r.methods.map((m) => m.map));
      return {
        maps: Object.fromEntries(r.methods.map((m, i) => [m.method, Array.from(maps[i])])),
        targets: (await r.rows()).map((row) => row.target),
        shape: [...r.methods[0].map.shape],
      };
    } finally {
      r.dispose();
    }
  } finally {
    x.dispose();
    await model.dispose();
  }
}

window.camgpu = {
  runModel,
  explainModel,
  adapter: async () => (await gpu()).adapterInfo,
};

// --- the page itself -------------------------------------------------------------------

const out = document.getElementById('out') as HTMLPreElement | null;
const form = document.getElementById('form') as HTMLFormElement | null;

function show(text: string, isError = false): void {
  if (!out) return;
  out.textContent = text;
  out.className = isError ? 'error' : '';
}

async function runFromForm(): Promise<void> {
  const data = new FormData(form!);
  const modelUrl = String(data.get('model') ?? '');
  const inputUrl = String(data.get('input') ?? '');
  show(`running ${modelUrl} on ${inputUrl} ...`);
  try {
    const r = await runModel(modelUrl, inputUrl);
    const [n, classes] = r.shape.length === 2 ? r.shape : [1, r.logits.length];
    const lines = [
      `adapter: ${r.adapter.vendor} ${r.adapter.architecture} ${r.adapter.device} ${r.adapter.description}`.trimEnd() +
        (r.adapter.isSoftware ? ' (software)' : ''),
      `output '${r.output}' ${JSON.stringify(r.shape)}; fetch ${r.timings.fetchMs.toFixed(0)} ms, import ${r.timings.importMs.toFixed(0)} ms, run ${r.timings.runMs.toFixed(0)} ms`,
    ];
    for (let i = 0; i < n; i++) {
      const top = topK(r.logits.slice(i * classes, (i + 1) * classes), 5);
      lines.push(`image ${i} top-5 (class: logit): ${top.map(([c, v]) => `${c}: ${v.toFixed(4)}`).join(', ')}`);
    }
    show(lines.join('\n'));
  } catch (e) {
    show(describeError(e), true);
  }
}

if (form) {
  const params = new URLSearchParams(location.search);
  for (const key of ['model', 'input']) {
    const v = params.get(key);
    if (v) (form.elements.namedItem(key) as HTMLInputElement).value = v;
  }
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void runFromForm();
  });
  if (params.has('run')) void runFromForm();
  else show(navigator.gpu ? 'ready' : 'navigator.gpu is missing: this browser has no WebGPU (Chromium: --enable-unsafe-webgpu)', !navigator.gpu);
}

window.addEventListener('unhandledrejection', (ev) => show(`unhandled: ${describeError(ev.reason)}`, true));

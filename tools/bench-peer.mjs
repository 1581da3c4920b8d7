#!/usr/bin/env node
// Peer benchmark: onnxruntime-web's WebGPU execution provider on the same Dawn (npm `webgpu`)
// adapter camgpu uses, on the same ONNX models.
//
//   node tools/bench-peer.mjs --models resnet18,resnet50,vgg16 --batch 1[,8] --iters N [--json]
//
// Every model is timed in a fresh Node process (this script re-spawns itself with --child time),
// so the first InferenceSession.create of a process pays the whole cold cost (wasm compile, ORT
// init, adapter/device, weight upload, shader compiles) as it would for a user. Per model:
//   createMs      InferenceSession.create(model bytes, { executionProviders: ['webgpu'] })
//   firstRunMs    the first session.run of each batch size, outputs back on the CPU
//   median/p10/p90 of --iters warm runs after --warmup runs, each with output readback
// Unless --no-verify, a second process per model (--child verify) creates the session with
// verbose ORT logging and checks the node placement ("All nodes placed on
// [WebGpuExecutionProvider]"), and runs the golden input batch of the model's manifest; its
// logits are compared against torch's golden logits and against `camgpu run` on the same input.
//
// Output: a human summary, or with --json one JSON object per line on stdout (the summary then
// goes to stderr). Models are names in --models-dir (default .cache/models, made by
// `/usr/bin/python3 tools/gen_torch_fixtures.py --full .cache/models`) or paths to .onnx files.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const ORT_DIST = join(REPO, 'node_modules', 'onnxruntime-web', 'dist');
const RESULT = '@@PEER_RESULT ';

// ---------------------------------------------------------------------------------------------
// Small helpers

function parseArgs(argv) {
  const o = {
    models: ['resnet18', 'resnet50', 'vgg16'], modelsDir: join(REPO, '.cache', 'models'), batch: [1], iters: 10, warmup: 2,
    threads: 1, json: false, verify: true, settle: true, nodeFlags: [], camgpu: true, verbose: false, timeout: 1800, child: null, model: null, input: null, out: null,
  };
  const need = (i) => {
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  const posInt = (s, what) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${what}: '${s}' is not a positive integer`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--models': o.models = need(i).split(',').map((s) => s.trim()).filter(Boolean); i++; break;
      case '--models-dir': o.modelsDir = resolve(need(i)); i++; break;
      case '--batch': o.batch = need(i).split(',').map((s) => posInt(s.trim(), '--batch')); i++; break;
      case '--iters': o.iters = posInt(need(i), '--iters'); i++; break;
      case '--warmup': o.warmup = Number(need(i)); if (!Number.isInteger(o.warmup) || o.warmup < 0) throw new Error('--warmup: not an integer >= 0'); i++; break;
      case '--threads': o.threads = posInt(need(i), '--threads'); i++; break;
      case '--timeout': o.timeout = posInt(need(i), '--timeout'); i++; break;
      case '--json': o.json = true; break;
      case '--no-verify': case '--skip-verify': o.verify = false; break;
      case '--no-camgpu': o.camgpu = false; break;
      case '--no-settle': o.settle = false; break;
      case '--node-flags': o.nodeFlags = need(i).split(/\s+/).filter(Boolean); i++; break;
      case '--verbose': o.verbose = true; break;
      case '--child': o.child = need(i); i++; break;
      case '--model': o.model = need(i); i++; break;
      case '--input': o.input = need(i); i++; break;
      case '--out': o.out = need(i); i++; break;
      case '-h': case '--help':
        console.log(`usage: node tools/bench-peer.mjs [--models resnet18,resnet50,vgg16] [--batch 1[,8]] [--iters N] [--warmup N]
       [--threads 1] [--models-dir .cache/models] [--json] [--no-verify] [--no-camgpu] [--no-settle]
       [--node-flags "--liftoff-only"] [--timeout S] [--verbose]`);
        process.exit(0);
      default: throw new Error(`unknown argument '${a}'`);
    }
  }
  return o;
}

function quantile(sorted, q) {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** The same input camgpu's bench feeds (tools/bench.ts seededInput). */
function seededInput(n) {
  let s = 12345;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = (s / 4294967296) * 2 - 1;
  }
  return a;
}

/** Reads a little-endian float32 C-order .npy (v1/v2/v3). */
export function readNpy(path) {
  const buf = readFileSync(path);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${path}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hstart, hstart + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '').split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (descr !== '<f4' || fortran) throw new Error(`${path}: need little-endian float32 C-order, got ${descr}${fortran ? ' fortran' : ''}`);
  const off = hstart + hlen;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  new Uint8Array(data.buffer).set(buf.subarray(off, off + n * 4));
  return { data, shape };
}

function writeNpy(path, data, shape) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const h = Buffer.alloc(10);
  h.write('\x93NUMPY', 0, 'latin1');
  h[6] = 1;
  h[7] = 0;
  h.writeUInt16LE(header.length, 8);
  writeFileSync(path, Buffer.concat([h, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

/** Agreement of two logit arrays: relative L2 error, max |a-b| / max |b|, top-1 agreement per row. */
export function compareLogits(a, b, classes) {
  if (a.length !== b.length) return { error: `length ${a.length} vs ${b.length}` };
  let d2 = 0;
  let r2 = 0;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    d2 += d * d;
    r2 += b[i] * b[i];
    maxDiff = Math.max(maxDiff, Math.abs(d));
    maxRef = Math.max(maxRef, Math.abs(b[i]));
  }
  const argmax = (x, r) => {
    let best = r * classes;
    for (let i = r * classes; i < (r + 1) * classes; i++) if (x[i] > x[best]) best = i;
    return best - r * classes;
  };
  const rows = a.length / classes;
  let top1 = 0;
  for (let r = 0; r < rows; r++) if (argmax(a, r) === argmax(b, r)) top1++;
  return { relL2: Math.sqrt(d2 / (r2 || 1)), maxAbsDiff: maxDiff, relMax: maxDiff / (maxRef || 1), top1Agree: `${top1}/${rows}` };
}

// ---------------------------------------------------------------------------------------------
// Child: the ORT session, inside its own process

/** Dawn's globals + navigator.gpu for ORT, and the SharedArrayBuffer workaround for writeBuffer. */
export async function setupWebGpu() {
  if (!process.env.XDG_RUNTIME_DIR) {
    const { mkdirSync } = await import('node:fs');
    const dir = `${tmpdir()}/camgpu-xdg-${process.getuid?.() ?? 'user'}`;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const flags = (process.env.CAMGPU_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean);
  // Held for the whole process: Dawn crashes if the instance is garbage-collected under live devices.
  const gpu = create(flags);
  globalThis.__peerDawnInstance = gpu;
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });

  // ORT's wasm heap is a SharedArrayBuffer; dawn.node crashes in writeBuffer given a view on one.
  // Copy such data into a fresh ArrayBuffer (dataOffset/size are in elements for typed arrays,
  // in bytes for ArrayBuffer/DataView).
  const writeBuffer = GPUQueue.prototype.writeBuffer;
  GPUQueue.prototype.writeBuffer = function (buffer, bufferOffset, data, dataOffset, size) {
    const shared = typeof SharedArrayBuffer !== 'undefined' && (data instanceof SharedArrayBuffer || data?.buffer instanceof SharedArrayBuffer);
    if (!shared) return writeBuffer.call(this, buffer, bufferOffset, data, dataOffset, size);
    const isView = ArrayBuffer.isView(data);
    const bpe = isView && !(data instanceof DataView) ? data.BYTES_PER_ELEMENT : 1;
    const base = isView ? data.byteOffset : 0;
    const total = isView ? data.byteLength : data.byteLength;
    const start = (dataOffset ?? 0) * bpe;
    const len = size !== undefined ? size * bpe : total - start;
    if (start < 0 || len < 0 || start + len > total) throw new RangeError('writeBuffer: data range out of bounds');
    const copy = new Uint8Array(len);
    copy.set(new Uint8Array(isView ? data.buffer : data, base + start, len));
    return writeBuffer.call(this, buffer, bufferOffset, copy);
  };

  // Evidence that work really runs on the GPU: count compute dispatches and submits.
  const counters = { dispatches: 0, submits: 0 };
  const dispatch = GPUComputePassEncoder.prototype.dispatchWorkgroups;
  GPUComputePassEncoder.prototype.dispatchWorkgroups = function (...a) {
    counters.dispatches++;
    return dispatch.apply(this, a);
  };
  const dispatchIndirect = GPUComputePassEncoder.prototype.dispatchWorkgroupsIndirect;
  GPUComputePassEncoder.prototype.dispatchWorkgroupsIndirect = function (...a) {
    counters.dispatches++;
    return dispatchIndirect.apply(this, a);
  };
  const submit = GPUQueue.prototype.submit;
  GPUQueue.prototype.submit = function (...a) {
    counters.submits++;
    return submit.apply(this, a);
  };
  // The adapter ORT picks (for the report).
  const adapters = [];
  const requestAdapter = GPU.prototype.requestAdapter;
  GPU.prototype.requestAdapter = async function (...a) {
    const ad = await requestAdapter.apply(this, a);
    if (ad) adapters.push(ad.info ?? {});
    return ad;
  };
  return { counters, adapters };
}

const wasmWorkers = { count: 0 };

export async function importOrt(threads) {
  if (threads > 1) {
    // With threads the bundle cannot use its embedded wasm glue: it imports
    // ort-wasm-simd-threaded.asyncify.mjs (emscripten, Node-aware: pthreads on worker_threads),
    // and since a file: URL never has "the page's origin" it first "preloads" it:
    // fetch() -> blob -> URL.createObjectURL -> import(). Node can neither fetch file: URLs nor
    // import blob: URLs, so serve file: URLs from disk and hand back the file URL for the blob.
    const realFetch = globalThis.fetch;
    const blobUrl = new WeakMap();
    globalThis.fetch = async (input, init) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input?.url;
      if (typeof url === 'string' && url.startsWith('file:')) {
        const res = new Response(readFileSync(fileURLToPath(url)));
        const blob = res.blob.bind(res);
        res.blob = async () => {
          const b = await blob();
          blobUrl.set(b, url);
          return b;
        };
        return res;
      }
      return realFetch(input, init);
    };
    const createObjectURL = URL.createObjectURL;
    URL.createObjectURL = (obj) => blobUrl.get(obj) ?? createObjectURL(obj);
    const revokeObjectURL = URL.revokeObjectURL;
    URL.revokeObjectURL = (u) => (u.startsWith('file:') ? undefined : revokeObjectURL(u));
    // Count the pthread workers emscripten starts (it takes Worker from require('worker_threads')).
    const wt = createRequire(import.meta.url)('worker_threads');
    const Worker = wt.Worker;
    wt.Worker = class extends Worker {
      constructor(...a) {
        super(...a);
        wasmWorkers.count++;
      }
    };
  }
  const ort = await import('onnxruntime-web/webgpu');
  ort.env.wasm.numThreads = threads;
  if (threads > 1) {
    ort.env.wasm.wasmPaths = {
      mjs: pathToFileURL(join(ORT_DIST, 'ort-wasm-simd-threaded.asyncify.mjs')).href,
      wasm: join(ORT_DIST, 'ort-wasm-simd-threaded.asyncify.wasm'),
    };
  }
  return ort;
}

function adapterString(info) {
  if (!info) return 'unknown';
  return info.description || info.device || [info.vendor, info.architecture].filter(Boolean).join(' ') || 'unknown';
}

/**
 * V8 compiles ORT's 26 MB wasm in the background (Liftoff first, then TurboFan tier-up of hot
 * functions, tens of CPU-seconds on this machine), competing with lavapipe for the cores. Before
 * the warm runs, wait until this process is idle (< 10% of a core over 1 s; at most 300 s), so
 * the warm numbers are steady state. Returns how long that took and the CPU time burnt meanwhile.
 */
async function waitForIdle(maxMs = 300_000) {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (;;) {
    const a = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 1000));
    const b = process.cpuUsage(a);
    if ((b.user + b.system) / 1000 < 100 || performance.now() - t0 > maxMs) break;
  }
  const c = process.cpuUsage(c0);
  return { waitedMs: performance.now() - t0, backgroundCpuMs: (c.user + c.system) / 1000 };
}

async function childTime(o) {
  const tProc = performance.now();
  // Dawn settles promises (createComputePipelineAsync, mapAsync) from the event loop but does not
  // keep it alive; while ORT awaits one, Node would otherwise sit in DrainTasks until V8's
  // background wasm compilation finishes (tens of seconds). Browsers always run their loop.
  const keepAlive = setInterval(() => {}, 1000);
  const { counters, adapters } = await setupWebGpu();
  const tImport = performance.now();
  const ort = await importOrt(o.threads);
  const importMs = performance.now() - tImport;

  const t0 = performance.now();
  const bytes = readFileSync(o.model);
  const readMs = performance.now() - t0;
  const tCreate = performance.now();
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], graphOptimizationLevel: 'all' });
  const createMs = performance.now() - tCreate;
  const createDispatches = counters.dispatches;
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  const inMeta = session.inputMetadata?.find?.((m) => m.name === inputName);
  const dims = inMeta?.shape?.slice(1).map((d) => (typeof d === 'number' ? d : NaN));
  const inShape = dims && dims.length === 3 && dims.every((d) => Number.isFinite(d)) ? dims : [3, 224, 224];
  const per = inShape.reduce((a, b) => a * b, 1);

  let coldFirstResultMs = 0;
  let settle = null;
  const batches = [];
  for (const [bi, b] of o.batch.entries()) {
    const x = new ort.Tensor('float32', seededInput(b * per), [b, ...inShape]);
    const once = async () => {
      const d0 = counters.dispatches;
      const r = await session.run({ [inputName]: x });
      const out = r[outputName];
      if (out.location !== 'cpu') await out.getData(true);
      const data = out.data; // CPU copy of the logits (ORT downloads them before run() resolves)
      if (!(data instanceof Float32Array) || data.length !== b * (out.dims.at(-1) ?? 0)) throw new Error(`unexpected output ${out.type} ${out.dims}`);
      for (const t of Object.values(r)) t.dispose?.();
      return { dispatches: counters.dispatches - d0, sample: data[0] };
    };
    const tf = performance.now();
    const first = await once();
    const firstRunMs = performance.now() - tf;
    if (bi === 0) {
      coldFirstResultMs = performance.now() - t0;
      if (o.settle) settle = await waitForIdle();
    }
    for (let i = 0; i < o.warmup; i++) await once();
    const times = [];
    let dispatches = 0;
    for (let i = 0; i < o.iters; i++) {
      const t = performance.now();
      const r = await once();
      times.push(performance.now() - t);
      dispatches = r.dispatches;
      if (!Number.isFinite(r.sample)) throw new Error('non-finite output');
    }
    const sorted = [...times].sort((p, q) => p - q);
    const medianMs = quantile(sorted, 0.5);
    batches.push({ batch: b, firstRunMs, firstRunDispatches: first.dispatches, medianMs, p10Ms: quantile(sorted, 0.1), p90Ms: quantile(sorted, 0.9), imagesPerSec: (b * 1000) / medianMs, dispatchesPerRun: dispatches, timesMs: times });
  }
  await session.release();
  clearInterval(keepAlive);
  const result = {
    kind: 'peer', engine: `onnxruntime-web ${ort.env.versions?.web ?? '?'} (webgpu EP)`, model: o.model, adapter: adapterString(adapters[0]),
    adapterInfo: adapters[0] ? { vendor: adapters[0].vendor, architecture: adapters[0].architecture, device: adapters[0].device, description: adapters[0].description } : null,
    date: new Date().toISOString(), threads: ort.env.wasm.numThreads, wasmWorkers: wasmWorkers.count, importMs, readMs, createMs, createDispatches, coldFirstResultMs,
    processToFirstResultMs: coldFirstResultMs + (t0 - tProc), settle, execArgv: process.execArgv, submits: counters.submits, batches,
  };
  process.stdout.write(`\n${RESULT}${JSON.stringify(result)}\n`);
}

async function childVerify(o) {
  const keepAlive = setInterval(() => {}, 1000);
  const { counters } = await setupWebGpu();
  const ort = await importOrt(o.threads);
  // Session-level verbose logging prints ORT's node placement while the session is created.
  const session = await ort.InferenceSession.create(readFileSync(o.model), { executionProviders: ['webgpu'], logSeverityLevel: 0, logVerbosityLevel: 0 });
  const { data, shape } = readNpy(o.input);
  const x = new ort.Tensor('float32', data, shape);
  const d0 = counters.dispatches;
  const r = await session.run({ [session.inputNames[0]]: x }, { logSeverityLevel: 3 });
  const out = r[session.outputNames[0]];
  writeNpy(o.out, out.data, out.dims);
  await session.release();
  clearInterval(keepAlive);
  process.stdout.write(`\n${RESULT}${JSON.stringify({ dims: out.dims, dispatches: counters.dispatches - d0 })}\n`);
}

// ---------------------------------------------------------------------------------------------
// Parent

/** Runs a command to completion; resolves with its stdout, stderr and exit code. */
function runProcess(cmd, args, { timeoutS, passStderr = false } = {}) {
  return new Promise((res) => {
    const p = spawn(cmd, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
    const out = [];
    const err = [];
    p.stdout.on('data', (d) => out.push(d));
    p.stderr.on('data', (d) => {
      err.push(d);
      if (passStderr) process.stderr.write(d);
    });
    const timer = timeoutS ? setTimeout(() => p.kill('SIGKILL'), timeoutS * 1000) : null;
    p.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      res({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

function resultOf(r) {
  const line = r.stdout.split('\n').reverse().find((l) => l.startsWith(RESULT));
  return line ? JSON.parse(line.slice(RESULT.length)) : null;
}

function tail(s, n = 15) {
  return s.split('\n').filter((l) => l.trim() && !l.includes('artificially reduced')).slice(-n).join('\n');
}

function resolveModel(name, modelsDir) {
  if (name.endsWith('.onnx')) {
    const path = resolve(name);
    const manifest = path.replace(/\.onnx$/, '.json');
    return { name: basename(name, '.onnx'), path, manifest: existsSync(manifest) ? manifest : null, dir: dirname(path) };
  }
  const path = join(modelsDir, `${name}.onnx`);
  const manifest = join(modelsDir, `${name}.json`);
  return { name, path, manifest: existsSync(manifest) ? manifest : null, dir: modelsDir };
}

async function verifyModel(m, o, log) {
  const v = { placement: null, allOnWebGpu: false, goldenDispatches: null };
  if (!m.manifest) {
    v.error = 'no manifest next to the model: logits not checked';
    return v;
  }
  const man = JSON.parse(readFileSync(m.manifest, 'utf8'));
  const input = join(m.dir, man.input.file);
  const golden = join(m.dir, man.output.file);
  const tmp = mkdtempSync(join(tmpdir(), 'bench-peer-'));
  try {
    const peerOut = join(tmp, 'peer-logits.npy');
    // --liftoff-only: skip V8's TurboFan tier-up (numerics are the GPU's; saves ~30 s per process).
    const r = await runProcess(process.execPath, ['--liftoff-only', SELF, '--child', 'verify', '--model', m.path, '--input', input, '--out', peerOut, '--threads', String(o.threads)], { timeoutS: o.timeout });
    const text = r.stdout + r.stderr;
    const placed = /All nodes placed on \[([^\]]+)\]\. Number of nodes: (\d+)/.exec(text);
    const perEp = [...text.matchAll(/Node\(s\) placed on \[([^\]]+)\]\. Number of nodes: (\d+)/g)].map((x) => `${x[1]}: ${x[2]}`);
    v.placement = placed ? `all ${placed[2]} nodes on ${placed[1]}` : perEp.length ? perEp.join(', ') : 'not found in ORT log';
    v.allOnWebGpu = !!placed && placed[1] === 'WebGpuExecutionProvider';
    const res = resultOf(r);
    if (r.code !== 0 || !res) {
      v.error = `verify process failed (code ${r.code}${r.signal ? `, ${r.signal}` : ''}): ${tail(r.stderr || r.stdout, 8)}`;
      return v;
    }
    v.goldenDispatches = res.dispatches;
    const peer = readNpy(peerOut);
    const torch = readNpy(golden);
    const classes = torch.shape.at(-1);
    v.goldenInput = man.input.file;
    v.peerVsTorch = compareLogits(peer.data, torch.data, classes);
    if (o.camgpu) {
      const cliJs = join(REPO, 'dist', 'cli.js');
      if (!existsSync(cliJs)) {
        v.camgpuError = 'dist/cli.js missing: run `npm run build`';
      } else {
        const outDir = join(tmp, 'camgpu');
        const c = await runProcess(process.execPath, [join(REPO, 'bin', 'camgpu.js'), 'run', '--model', m.path, '--input-npy', input, '--out', outDir, '--json'], { timeoutS: o.timeout });
        if (c.code !== 0 || !existsSync(join(outDir, 'logits.npy'))) {
          v.camgpuError = `camgpu run failed (code ${c.code}): ${tail(c.stderr || c.stdout, 8)}`;
        } else {
          const cam = readNpy(join(outDir, 'logits.npy'));
          v.camgpuVsTorch = compareLogits(cam.data, torch.data, classes);
          v.peerVsCamgpu = compareLogits(peer.data, cam.data, classes);
        }
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  log(`  verify: ${v.placement}; ${v.goldenDispatches} dispatches for the golden batch`);
  return v;
}

const fmt = (x, d = 1) => (x === undefined || x === null || !Number.isFinite(x) ? '-' : x.toFixed(d));
const fmtCmp = (c) => (!c ? '-' : c.error ? c.error : `relL2 ${c.relL2.toExponential(2)}, max|d|/max|ref| ${c.relMax.toExponential(2)}, top-1 ${c.top1Agree}`);

async function parent(o) {
  const out = o.json ? (s) => process.stderr.write(`${s}\n`) : (s) => process.stdout.write(`${s}\n`);
  const all = [];
  for (const name of o.models) {
    const m = resolveModel(name, o.modelsDir);
    if (!existsSync(m.path)) {
      const rec = { kind: 'peer', model: m.path, error: `missing ${m.path} (generate with: /usr/bin/python3 tools/gen_torch_fixtures.py --full .cache/models --models ${m.name})` };
      all.push(rec);
      if (o.json) process.stdout.write(`${JSON.stringify(rec)}\n`);
      out(`${m.name}: ${rec.error}`);
      continue;
    }
    out(`${m.name}: timing onnxruntime-web (webgpu EP, ${o.threads} wasm thread${o.threads > 1 ? 's' : ''}) in a fresh process ...`);
    const args = [...o.nodeFlags, SELF, '--child', 'time', '--model', m.path, '--batch', o.batch.join(','), '--iters', String(o.iters), '--warmup', String(o.warmup), '--threads', String(o.threads), ...(o.settle ? [] : ['--no-settle'])];
    const r = await runProcess(process.execPath, args, { timeoutS: o.timeout, passStderr: o.verbose });
    let rec = resultOf(r);
    if (r.code !== 0 || !rec) {
      rec = { kind: 'peer', model: m.path, error: `peer process failed (code ${r.code}${r.signal ? `, ${r.signal}` : ''}): ${tail(r.stderr + r.stdout)}` };
    }
    rec.name = m.name;
    if (!rec.error) {
      out(`  create ${fmt(rec.createMs, 0)} ms, first result ${fmt(rec.coldFirstResultMs, 0)} ms (read+create+first run), ${rec.adapter}`);
      for (const b of rec.batches) {
        out(`  batch ${b.batch}: first run ${fmt(b.firstRunMs, 0)} ms, warm median ${fmt(b.medianMs)} ms (p10 ${fmt(b.p10Ms)}, p90 ${fmt(b.p90Ms)}), ${fmt(b.imagesPerSec, 2)} images/s, ${b.dispatchesPerRun} GPU dispatches/run`);
      }
      if (rec.batches.some((b) => !(b.dispatchesPerRun > 0))) rec.warning = 'a run issued no GPU dispatches: not running on WebGPU?';
      if (o.verify) {
        rec.verify = await verifyModel(m, o, out);
        const v = rec.verify;
        if (v.error) out(`  verify: ${v.error}`);
        if (v.peerVsTorch) out(`  logits peer vs torch:  ${fmtCmp(v.peerVsTorch)}`);
        if (v.camgpuVsTorch) out(`  logits camgpu vs torch: ${fmtCmp(v.camgpuVsTorch)}`);
        if (v.peerVsCamgpu) out(`  logits peer vs camgpu: ${fmtCmp(v.peerVsCamgpu)}`);
        if (v.camgpuError) out(`  camgpu: ${v.camgpuError}`);
      }
    } else {
      out(`  ${rec.error}`);
    }
    all.push(rec);
    if (o.json) process.stdout.write(`${JSON.stringify(rec)}\n`);
  }
  // Summary table
  out('');
  out(`onnxruntime-web webgpu EP, ${o.threads} wasm thread(s), ${cpus()[0]?.model ?? '?'} x${cpus().length}, iters ${o.iters}, warmup ${o.warmup}`);
  out('| model | batch | create ms | first run ms | warm median ms | p10 | p90 | img/s | on WebGPU | logits vs torch (relL2) |');
  out('|---|---:|---:|---:|---:|---:|---:|---:|---|---|');
  for (const r of all) {
    if (r.error) {
      out(`| ${r.name ?? basename(r.model)} | - | error | | | | | | | |`);
      continue;
    }
    for (const b of r.batches) {
      const gpu = r.verify ? (r.verify.allOnWebGpu ? `all nodes, ${b.dispatchesPerRun} disp.` : `${r.verify.placement}`) : `${b.dispatchesPerRun} disp.`;
      const rel = r.verify?.peerVsTorch?.relL2;
      out(`| ${r.name} | ${b.batch} | ${fmt(r.createMs, 0)} | ${fmt(b.firstRunMs, 0)} | ${fmt(b.medianMs)} | ${fmt(b.p10Ms)} | ${fmt(b.p90Ms)} | ${fmt(b.imagesPerSec, 2)} | ${gpu} | ${rel === undefined ? '-' : rel.toExponential(1)} |`);
    }
  }
  const failed = all.some((r) => r.error || (r.verify && (!r.verify.allOnWebGpu || r.verify.error)));
  return failed ? 1 : 0;
}

const isMain = process.argv[1] && resolve(process.argv[1]) === SELF;
if (isMain) {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`bench-peer: ${e.message}`);
    process.exit(2);
  }
  try {
    if (o.child === 'time') await childTime(o);
    else if (o.child === 'verify') await childVerify(o);
    else if (o.child) throw new Error(`unknown --child ${o.child}`);
    else process.exitCode = await parent(o);
  } catch (e) {
    console.error(`bench-peer: ${e?.stack ?? e}`);
    process.exitCode = 1;
  }
  // Dawn's instance can keep the process alive; leave explicitly once the work is done.
  process.exit(process.exitCode ?? 0);
}

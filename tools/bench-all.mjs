#!/usr/bin/env node
// `npm run bench`: camgpu vs onnxruntime-web's WebGPU EP on full-size torchvision models.
//
//   npm run bench [-- --models resnet18,resnet50,vgg16] [--batch 1,8] [--peer-batch 1]
//                 [--iters 10] [--warmup 2] [--matmul 1024] [--skip-peer] [--skip-verify]
//
// 1. Makes the models if missing: /usr/bin/python3 tools/gen_torch_fixtures.py --full .cache/models
//    (needs Debian's python3-torch, python3-torchvision, python3-onnx).
// 2. Runs, one process at a time (timings on a 2-core machine must not overlap):
//      node bin/camgpu.js bench --model M --batch 1,8 --iters N --json    per model
//      node bin/camgpu.js bench --matmul 1024 --iters N --json
//      node tools/bench-peer.mjs --models ... --batch 1 --iters N --json  (a fresh process per model)
// 3. Prints a markdown table for BENCHMARKS.md (stdout; progress goes to stderr) and writes the
//    raw JSON to .cache/bench-<date>.json (and the table next to it as .md).
//
// With --explain it runs the CAM benchmark instead (issue 7; see mainExplain below):
//
//   npm run bench -- --explain [--peers] [--models resnet50,vgg16] [--batch 1,8] [--iters 10] [--warmup 2]
//                    [--peer-iters 3] [--peer-warmup 1] [--skip-pgc] [--skip-tfjs] [--models-dir DIR] ...

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODELS_DIR = join(REPO, '.cache', 'models');
const PY = '/usr/bin/python3';
const log = (s) => process.stderr.write(`${s}\n`);
// Every timed process starts cold: Mesa's on-disk shader cache would otherwise turn the
// "first result" into a warm-cache number after the first run on a machine.
const CHILD_ENV = { ...process.env, MESA_SHADER_CACHE_DISABLE: 'true' };

function parseArgs(argv) {
  const o = { models: ['resnet18', 'resnet50', 'vgg16'], batch: [1, 8], peerBatch: [1], iters: 10, warmup: 2, matmul: 1024, skipPeer: false, verify: true, threads: 1, timeout: 3600 };
  const need = (i) => {
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  const ints = (s, what, min = 1) => s.split(',').map((x) => {
    const n = Number(x.trim());
    if (!Number.isInteger(n) || n < min) throw new Error(`${what}: '${x}' is not an integer >= ${min}`);
    return n;
  });
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case '--models': o.models = need(i).split(',').map((s) => s.trim()).filter(Boolean); i++; break;
      case '--batch': o.batch = ints(need(i), '--batch'); i++; break;
      case '--peer-batch': o.peerBatch = ints(need(i), '--peer-batch'); i++; break;
      case '--iters': [o.iters] = ints(need(i), '--iters'); i++; break;
      case '--warmup': [o.warmup] = ints(need(i), '--warmup'); i++; break;
      case '--matmul': [o.matmul] = ints(need(i), '--matmul', 0); i++; break;
      case '--threads': [o.threads] = ints(need(i), '--threads'); i++; break;
      case '--timeout': [o.timeout] = ints(need(i), '--timeout'); i++; break;
      case '--skip-peer': o.skipPeer = true; break;
      case '--skip-verify': case '--no-verify': o.verify = false; break;
      case '-h': case '--help':
        console.log(`usage: npm run bench -- [--models resnet18,resnet50,vgg16] [--batch 1,8] [--peer-batch 1] [--iters 10]
                       [--warmup 2] [--matmul 1024 (0: skip)] [--threads 1] [--skip-peer] [--skip-verify] [--timeout S]
       npm run bench -- --explain --help      (the CAM benchmark)`);
        process.exit(0);
      default: throw new Error(`unknown argument '${argv[i]}'`);
    }
  }
  return o;
}

/** Runs a command to completion, capturing its output (never two at a time: see the callers). */
function run(cmd, args, timeoutS) {
  return new Promise((res) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: CHILD_ENV });
    const out = [];
    const err = [];
    p.stdout.on('data', (d) => out.push(d));
    p.stderr.on('data', (d) => err.push(d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutS * 1000);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), wallS: (performance.now() - t0) / 1000 });
    });
  });
}

function tail(s, n = 12) {
  return s.split('\n').filter((l) => l.trim() && !l.includes('artificially reduced')).slice(-n).join('\n');
}

/** camgpu bench --json prints one (pretty-printed) JSON object on stdout. */
function parseCamgpuJson(stdout) {
  const i = stdout.search(/^\{/m);
  if (i < 0) return null;
  try {
    return JSON.parse(stdout.slice(i));
  } catch {
    return null;
  }
}

function ensureModels(models) {
  const missing = models.filter((m) => !existsSync(join(MODELS_DIR, `${m}.onnx`)) || !existsSync(join(MODELS_DIR, `${m}.json`)));
  if (!missing.length) return;
  log(`missing full-size models: ${missing.join(', ')}; generating them with ${PY} tools/gen_torch_fixtures.py`);
  const probe = existsSync(PY) ? spawnSync(PY, ['-c', 'import torch, torchvision, onnx'], { encoding: 'utf8' }) : { status: 1, stderr: `${PY} not found` };
  if (probe.status !== 0) {
    log(`error: ${PY} cannot import torch/torchvision/onnx (${tail(probe.stderr ?? '', 1)}).`);
    log('Install Debian\'s packages, then rerun `npm run bench`:');
    log('    sudo apt-get install python3-torch python3-torchvision python3-onnx');
    log(`or generate the models elsewhere: ${PY} tools/gen_torch_fixtures.py --full .cache/models --models ${missing.join(',')}`);
    process.exit(3);
  }
  const g = spawnSync(PY, ['tools/gen_torch_fixtures.py', '--full', '.cache/models', '--models', missing.join(',')], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
  if (g.status !== 0) {
    log(`error: tools/gen_torch_fixtures.py failed (exit ${g.status})`);
    process.exit(3);
  }
}

function machine() {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu;
  } catch {}
  const v = (p) => {
    try {
      return JSON.parse(readFileSync(join(REPO, 'node_modules', p, 'package.json'), 'utf8')).version;
    } catch {
      return '?';
    }
  };
  return { cpu, cores: cpus().length, node: process.version, webgpu: v('webgpu'), onnxruntimeWeb: v('onnxruntime-web'), platform: `${process.platform}-${process.arch}` };
}

const f = (x, d = 0) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(d));
const e = (x) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toExponential(1));

function markdown(res) {
  const m = res.machine;
  const lines = [];
  const date = res.date.slice(0, 10);
  lines.push(`### ${date}: camgpu vs onnxruntime-web ${m.onnxruntimeWeb} (WebGPU EP)`);
  lines.push('');
  lines.push(`Machine: adapter \`${res.adapter ?? '?'}\` (Dawn, npm webgpu ${m.webgpu}); CPU ${m.cpu}, ${m.cores} cores; Node ${m.node}; ${res.date}.`);
  lines.push(`Warm runs: median (p10–p90) of ${res.options.iters} after ${res.options.warmup} warm-ups, each a forward pass plus readback of the logits; every model in a fresh process, one process at a time. ` +
    `Inputs: camgpu's are already on the GPU, the peer's are uploaded in each run (as ORT's API takes CPU tensors). ` +
    `Peer: ${res.options.threads} wasm thread(s); warm runs start once V8's background compilation of ORT's wasm has finished.`);
  lines.push('');
  lines.push('| model | batch | GFLOP/pass | camgpu warm ms | peer warm ms | speedup | camgpu first result ms | peer first result ms | camgpu GFLOP/s | peer GFLOP/s |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const name of res.options.models) {
    const c = res.camgpu[name];
    const p = res.peer.find((r) => r.name === name);
    const batches = [...new Set([...(c?.batches ?? []).map((b) => b.batch), ...(p?.batches ?? []).map((b) => b.batch)])].sort((a, b) => a - b);
    if (!batches.length) lines.push(`| ${name} | – | – | ${c?.error ? 'error' : '–'} | ${p?.error ? 'error' : '–'} | – | – | – | – | – |`);
    for (const b of batches) {
      const cb = c?.batches?.find((x) => x.batch === b);
      const pb = p?.batches?.find((x) => x.batch === b);
      const gflop = cb?.gflopPerPass;
      const range = (x) => (x ? `${f(x.medianMs)} (${f(x.p10Ms)}–${f(x.p90Ms)})` : '–');
      const speedup = cb && pb ? `${(pb.medianMs / cb.medianMs).toFixed(2)}×` : '–';
      const cFirst = c && c.batches?.[0]?.batch === b ? f(c.coldFirstResultMs) : '–';
      const pFirst = p && p.batches?.[0]?.batch === b ? f(p.coldFirstResultMs) : '–';
      const pGflops = pb && gflop ? f(gflop / (pb.medianMs / 1000), 1) : '–';
      lines.push(`| ${name} | ${b} | ${f(gflop, 2)} | ${range(cb)} | ${range(pb)} | ${speedup} | ${cFirst} | ${pFirst} | ${f(cb?.gflops, 1)} | ${pGflops} |`);
    }
  }
  lines.push('');
  lines.push('Speedup: peer warm median / camgpu warm median. First result: camgpu from GPU context creation (device, model import, pipeline compilation, first pass, readback); ' +
    'peer from reading the model file through InferenceSession.create (ORT wasm init, device, weight upload) and the first run with readback. GFLOP/s: camgpu\'s FLOP count of the pass / warm median.');
  if (res.matmul && !res.matmul.error) lines.push(`\nMatmul core (camgpu) ${res.matmul.n}×${res.matmul.n}×${res.matmul.n}: ${f(res.matmul.medianMs, 1)} ms, ${f(res.matmul.gflops, 1)} GFLOP/s.`);
  // Convolution layers' rate from the profiled pass (GPU timestamps), Winograd transforms and weight packing included.
  const convRates = [];
  for (const [name, r] of Object.entries(res.camgpu ?? {})) {
    for (const b of r?.batches ?? []) {
      const conv = (b.byOp ?? []).filter((o) => o.opType.startsWith('Conv'));
      const ms = conv.reduce((t, o) => t + o.ms, 0);
      if (!ms) continue;
      const gflop = conv.reduce((t, o) => t + o.gflops * o.ms * 1e6, 0);
      const rate = gflop / (ms * 1e6);
      const share = res.matmul?.gflops ? ` = ${f((100 * rate) / res.matmul.gflops, 0)} % of the matmul core` : '';
      convRates.push(`- ${name} batch ${b.batch}: ${f(rate, 1)} GFLOP/s over ${f(ms, 1)} ms of convolution${share}`);
    }
  }
  if (convRates.length) lines.push('', 'Convolution layers (GPU timestamps of one profiled pass; Winograd transforms included, FLOPs counted as direct convolution):', ...convRates);
  const cold = res.options.models.map((name) => {
    const c = res.camgpu[name];
    const p = res.peer.find((r) => r.name === name);
    const parts = [];
    if (c && !c.error) parts.push(`camgpu import ${f(c.importMs)} ms, ${c.pipelines} pipelines compiled in ${f(c.pipelineCompileMs)} ms`);
    if (p && !p.error) parts.push(`peer session create ${f(p.createMs)} ms, first run ${f(p.batches?.[0]?.firstRunMs)} ms, then ${f((p.settle?.backgroundCpuMs ?? NaN) / 1000, 0)} CPU-s of background wasm compilation`);
    return parts.length ? `- ${name}: ${parts.join('; ')}` : null;
  }).filter(Boolean);
  if (cold.length) lines.push('', 'Cold start:', ...cold);
  const agree = res.peer.filter((p) => p.verify && !p.verify.error).map((p) => {
    const v = p.verify;
    return `- ${p.name}: ${v.placement}; peer vs torch ${e(v.peerVsTorch?.relL2)}, camgpu vs torch ${e(v.camgpuVsTorch?.relL2)}, peer vs camgpu ${e(v.peerVsCamgpu?.relL2)} (top-1 ${v.peerVsCamgpu?.top1Agree ?? v.peerVsTorch?.top1Agree ?? '–'})`;
  });
  if (agree.length) lines.push('', `Logits on the golden input (relative L2 error; ORT node placement from its verbose log):`, ...agree);
  const errs = [...Object.entries(res.camgpu).filter(([, c]) => c.error).map(([n, c]) => `- camgpu ${n}: ${c.error.split('\n')[0]}`), ...res.peer.filter((p) => p.error).map((p) => `- peer ${p.name}: ${p.error.split('\n')[0]}`)];
  if (res.matmul?.error) errs.push(`- camgpu matmul: ${res.matmul.error.split('\n')[0]}`);
  if (errs.length) lines.push('', 'Errors:', ...errs);
  return lines.join('\n');
}

async function main() {
  if (process.argv.includes('--explain')) {
    return mainExplain(process.argv.slice(2).filter((a) => a !== '--explain'));
  }
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (err) {
    log(`bench-all: ${err.message}`);
    return 2;
  }
  if (!existsSync(join(REPO, 'dist', 'cli.js'))) {
    log('bench-all: dist/cli.js is missing; run `npm run build` first (npm run bench does)');
    return 2;
  }
  ensureModels(o.models);
  const started = new Date();
  const res = { date: started.toISOString(), machine: machine(), options: o, adapter: null, camgpu: {}, matmul: null, peer: [] };
  const camgpu = join(REPO, 'bin', 'camgpu.js');

  for (const name of o.models) {
    const path = join('.cache', 'models', `${name}.onnx`);
    log(`camgpu ${name} batch ${o.batch.join(',')} ...`);
    const r = await run(process.execPath, [camgpu, 'bench', '--model', path, '--batch', o.batch.join(','), '--iters', String(o.iters), '--warmup', String(o.warmup), '--json'], o.timeout);
    const j = r.code === 0 ? parseCamgpuJson(r.stdout) : null;
    if (j?.model) {
      res.camgpu[name] = j.model;
      res.adapter ??= j.model.adapter;
      log(`  ${j.model.batches.map((b) => `batch ${b.batch}: ${f(b.medianMs, 1)} ms, ${f(b.gflops, 1)} GFLOP/s`).join('; ')}; first result ${f(j.model.coldFirstResultMs)} ms (${r.wallS.toFixed(0)} s)`);
    } else {
      res.camgpu[name] = { error: `camgpu bench failed (code ${r.code}${r.signal ? `, ${r.signal}` : ''}): ${tail(r.stderr || r.stdout)}` };
      log(`  ${res.camgpu[name].error}`);
    }
  }
  if (o.matmul > 0) {
    log(`camgpu matmul ${o.matmul} ...`);
    const r = await run(process.execPath, [camgpu, 'bench', '--matmul', String(o.matmul), '--iters', String(o.iters), '--warmup', String(o.warmup), '--json'], o.timeout);
    const j = r.code === 0 ? parseCamgpuJson(r.stdout) : null;
    res.matmul = j?.matmul ?? { error: `camgpu bench --matmul failed (code ${r.code}): ${tail(r.stderr || r.stdout)}` };
    res.adapter ??= j?.matmul?.adapter;
    log(`  ${res.matmul.error ?? `${f(res.matmul.medianMs, 1)} ms, ${f(res.matmul.gflops, 1)} GFLOP/s`}`);
  }
  if (!o.skipPeer) {
    log(`onnxruntime-web webgpu EP, batch ${o.peerBatch.join(',')} (a fresh process per model) ...`);
    const args = [join(REPO, 'tools', 'bench-peer.mjs'), '--json', '--models', o.models.join(','), '--batch', o.peerBatch.join(','), '--iters', String(o.iters), '--warmup', String(o.warmup), '--threads', String(o.threads), '--timeout', String(o.timeout)];
    if (!o.verify) args.push('--no-verify');
    // bench-peer runs its per-model processes one after another itself; its summary goes to stderr.
    const r = await new Promise((resolveRun) => {
      const p = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'], env: CHILD_ENV });
      const out = [];
      p.stdout.on('data', (d) => out.push(d));
      p.on('close', (code) => resolveRun({ code, stdout: Buffer.concat(out).toString() }));
    });
    for (const line of r.stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        res.peer.push(JSON.parse(line));
      } catch {}
    }
    if (!res.peer.length) res.peer.push({ name: '(all)', error: `bench-peer produced no results (code ${r.code})` });
  }
  res.finished = new Date().toISOString();

  const md = markdown(res);
  mkdirSync(join(REPO, '.cache'), { recursive: true });
  const stamp = started.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const jsonPath = join(REPO, '.cache', `bench-${stamp}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(res, null, 2)}\n`);
  writeFileSync(jsonPath.replace(/\.json$/, '.md'), `${md}\n`);
  log(`\nraw results: ${jsonPath}\n`);
  process.stdout.write(`${md}\n`);
  const failed = Object.values(res.camgpu).some((c) => c.error) || res.matmul?.error || res.peer.some((p) => p.error);
  return failed ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// --explain: the CAM benchmark (issue 7's speed section)
//
// Per model, each in a fresh process, one process at a time:
//   node bin/camgpu.js bench --explain --model M --layer L --batch 1,8 --iters N --warmup W --json --maps-out DIR
// and with --peers, also per model in fresh processes:
//   PGC_PATH=... /usr/bin/python3 tools/bench_pgc.py --model M --layer L --batch 1,8 --iters Np --warmup Wp --threads 2 --maps-out DIR
//   node dist/bench-tfjs.js --model M --layer L --batch 1,8 --iters N --warmup W --json --maps-out DIR
// then prints the markdown for BENCHMARKS.md and writes .cache/bench-explain-<date>.{json,md}.

/** Default target layer per model name (issue 7: ResNet layer4, VGG-16 features.29). */
function defaultLayer(name) {
  const base = name.replace(/-w\d+$/, '');
  if (base.startsWith('resnet')) return 'layer4';
  if (base === 'vgg16') return 'features.29';
  if (base === 'vgg11_bn') return 'features.27';
  return 'auto';
}

function parseExplainArgs(argv) {
  const o = {
    models: ['resnet50', 'vgg16'], modelsDir: MODELS_DIR, batch: [1, 8], iters: 10, warmup: 2, peerIters: 3, peerWarmup: 1,
    peers: false, pgc: true, tfjs: true, pgcThreads: 2, methods: null, layer: null, profile: true, measureAll: false, timeout: 7200,
  };
  const need = (i) => {
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  const ints = (s, what, min = 1) => s.split(',').map((x) => {
    const n = Number(x.trim());
    if (!Number.isInteger(n) || n < min) throw new Error(`${what}: '${x}' is not an integer >= ${min}`);
    return n;
  });
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case '--models': o.models = need(i).split(',').map((x) => x.trim()).filter(Boolean); i++; break;
      case '--models-dir': o.modelsDir = resolve(need(i)); i++; break;
      case '--batch': o.batch = ints(need(i), '--batch'); i++; break;
      case '--iters': [o.iters] = ints(need(i), '--iters'); i++; break;
      case '--warmup': [o.warmup] = ints(need(i), '--warmup'); i++; break;
      case '--peer-iters': [o.peerIters] = ints(need(i), '--peer-iters'); i++; break;
      case '--peer-warmup': [o.peerWarmup] = ints(need(i), '--peer-warmup', 0); i++; break;
      case '--pgc-threads': [o.pgcThreads] = ints(need(i), '--pgc-threads'); i++; break;
      case '--methods': o.methods = need(i); i++; break;
      case '--layer': o.layer = need(i); i++; break;
      case '--timeout': [o.timeout] = ints(need(i), '--timeout'); i++; break;
      case '--peers': o.peers = true; break;
      case '--skip-pgc': o.pgc = false; break;
      case '--skip-tfjs': o.tfjs = false; break;
      case '--measure-all': o.measureAll = true; break;
      case '--no-profile': o.profile = false; break;
      case '-h': case '--help':
        console.log(`usage: npm run bench -- --explain [--peers] [--models resnet50,vgg16] [--models-dir .cache/models] [--batch 1,8]
                       [--iters 10] [--warmup 2] [--peer-iters 3] [--peer-warmup 1] [--pgc-threads 2] [--skip-pgc] [--skip-tfjs]
                       [--methods gradcam,...] [--layer L (default: layer4 for ResNets, features.29 for VGG-16)]
                       [--measure-all] [--no-profile] [--timeout S]
  --peers       also time pytorch-grad-cam (needs PGC_PATH, see tools/bench_pgc.py) and tfjs' WebGPU backend
  --peer-iters  timed iterations (and --peer-warmup warm-ups) of each peer call: pytorch-grad-cam and tfjs are slow here
  --measure-all time pytorch-grad-cam's 'all' and 'gradient' as call sequences (default: sums of the single medians)`);
        process.exit(0);
      default: throw new Error(`unknown argument '${argv[i]}'`);
    }
  }
  return o;
}

function parseJsonLine(stdout) {
  for (const line of stdout.split('\n').reverse()) {
    if (!line.startsWith('{')) continue;
    try {
      return JSON.parse(line);
    } catch {}
  }
  return null;
}

/** Reads a little-endian float32 .npy (what the three benchmarks write). */
function readNpyF32(path) {
  const buf = readFileSync(path);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hstart, hstart + hlen);
  if (!/'descr':\s*'<f4'/.test(header)) throw new Error(`${path}: not little-endian float32`);
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '').split(',').map((x) => x.trim()).filter(Boolean).map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  new Uint8Array(data.buffer).set(buf.subarray(hstart + hlen, hstart + hlen + n * 4));
  return { data, shape };
}

/** max |a − b| and Pearson r of two maps files (null when either is missing). */
function compareMaps(a, b) {
  if (!existsSync(a) || !existsSync(b)) return null;
  const x = readNpyF32(a);
  const y = readNpyF32(b);
  if (x.data.length !== y.data.length) return { error: `shapes ${x.shape} vs ${y.shape}` };
  let max = 0;
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < x.data.length; i++) {
    max = Math.max(max, Math.abs(x.data[i] - y.data[i]));
    sx += x.data[i];
    sy += y.data[i];
  }
  const mx = sx / x.data.length;
  const my = sy / y.data.length;
  let cxy = 0;
  let cxx = 0;
  let cyy = 0;
  for (let i = 0; i < x.data.length; i++) {
    const dx = x.data[i] - mx;
    const dy = y.data[i] - my;
    cxy += dx * dy;
    cxx += dx * dx;
    cyy += dy * dy;
  }
  return { maxAbs: max, r: cxy / Math.sqrt(cxx * cyy || 1) };
}

const EXPLAIN_ROWS = ['gradcam', 'gradcam++', 'xgradcam', 'hirescam', 'gradcamelementwise', 'layercam', 'eigencam', 'eigengradcam', 'kpcacam', 'fem', 'finercam', 'activationcam', 'all', 'gradient'];

function explainMarkdown(res) {
  const m = res.machine;
  const L = [];
  const pgcAny = Object.values(res.pgc).find((p) => p && !p.error);
  const tfjsAny = Object.values(res.tfjs).find((p) => p && !p.error);
  const peersTitle = [pgcAny ? `pytorch-grad-cam ${pgcAny.pgc?.version ?? '?'} (PyTorch ${pgcAny.torch}, CPU)` : null, tfjsAny ? `tfjs ${tfjsAny.engine.match(/[\d.]+/)?.[0] ?? '?'} (WebGPU backend)` : null].filter(Boolean);
  L.push(`### ${res.date.slice(0, 10)}: camgpu explain${peersTitle.length ? ` vs ${peersTitle.join(' and ')}` : ''}`);
  L.push('');
  L.push(`Command: \`${res.command}\`.`);
  L.push(`Machine: adapter \`${res.adapter ?? '?'}\` (Dawn, npm webgpu ${m.webgpu}); CPU ${m.cpu}, ${m.cores} cores; Node ${m.node}${pgcAny ? `; Python ${pgcAny.python}, PyTorch ${pgcAny.torch} with ${pgcAny.threads} threads` : ''}; ${res.date} – ${res.finished}.`);
  L.push(`camgpu: median (p10–p90) of ${res.options.iters} explain() calls after ${res.options.warmup} warm-ups, each including the readback of every map it made; ` +
    `"÷ bare" divides it by the bare forward+backward pass (Model.grad to the same layer, ∂ top-class logit, with the readback of that gradient) timed alternately with it in the same process. ` +
    `Targets: each image's argmax class. Input: tools/bench.ts's seeded batch (the same for every engine). "all" = the ${EXPLAIN_ROWS.length - 2} methods in one explain() call; "gradient" = the gradient CAMs (${res.gradientCams.join(', ')}) in one call.`);
  if (pgcAny) {
    L.push(`pytorch-grad-cam: median (p10–p90) of ${res.options.peerIters} calls after ${res.options.peerWarmup} warm-up(s), \`cam(input_tensor=x, targets=None)\` per method on the same torchvision module and weights (rebuilt by tools/gen_torch_fixtures.py's code, checked bit for bit against the ONNX file), maps as NumPy at input size; ` +
      `its "all" and "gradient" are ${pgcAny.batches?.[0]?.entries?.find((e) => e.name === 'all')?.measured ? 'timed call sequences' : 'sums of the single-method medians (each PGC call runs its own forward and backward)'} (Σ). Activation-CAM is a BaseCAM subclass with w = 1 (PGC has none). Its bare row is torch's forward + autograd.grad to the layer.`);
  }
  if (tfjsAny) {
    L.push(`tfjs: one Grad-CAM = forward to the layer, tf.grad of the top-class logit through the rest of the network, spatial-mean weights, relu of the weighted sum, normalize, bilinear resize, normalize, and \`await data()\`, on the same ONNX weights converted to tfjs ops (BatchNorm folded, fused conv/dense + ReLU, NHWC); median (p10–p90) of ${res.options.peerIters} after ${res.options.peerWarmup} warm-up(s); bare = forward + tf.grad with the readback of the gradient. Dawn's readback polling: ${tfjsAny.dawnPoll === 'timer' ? '1 ms timer while waiting, as camgpu does' : 'setImmediate'}.`);
  }
  L.push('');
  const range = (t) => (t ? (t.p10Ms === null || t.p10Ms === undefined ? `${f(t.medianMs)} (Σ)` : `${f(t.medianMs)} (${f(t.p10Ms)}–${f(t.p90Ms)})`) : '–');
  for (const name of res.options.models) {
    const c = res.camgpu[name];
    const p = res.pgc[name];
    const t = res.tfjs[name];
    L.push(`**${name}**, layer \`${c?.layer?.requested ?? res.layers[name]}\`${c?.layer ? ` (${c.layer.tensor}, ${c.layer.shape.join('×')})` : ''}, input ${c?.input?.join('×') ?? '?'}`);
    L.push('');
    L.push('| method | batch | camgpu ms | ÷ bare | pytorch-grad-cam ms | speedup vs PGC | tfjs ms | speedup vs tfjs |');
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    if (c?.error) L.push(`| (camgpu failed) | – | – | – | – | – | – | – |`);
    const batches = [...new Set([...(c?.batches ?? []).map((b) => b.batch), ...(p?.batches ?? []).map((b) => b.batch), ...(t?.batches ?? []).map((b) => b.batch)])].sort((a, b) => a - b);
    for (const b of batches) {
      const cb = c?.batches?.find((x) => x.batch === b);
      const pb = p?.batches?.find((x) => x.batch === b);
      const tb = t?.batches?.find((x) => x.batch === b);
      const ratio = (peer, mine) => (peer && mine ? `${(peer.medianMs / mine.medianMs).toFixed(1)}×` : '–');
      L.push(`| bare fwd+bwd | ${b} | ${range(cb?.bare)} | 1 | ${range(pb?.bare)} | ${ratio(pb?.bare, cb?.bare)} | ${range(tb?.bare)} | ${ratio(tb?.bare, cb?.bare)} |`);
      for (const row of EXPLAIN_ROWS) {
        const ce = cb?.entries?.find((e) => e.name === row);
        const pe = pb?.entries?.find((e) => e.name === row);
        const te = tb?.entries?.find((e) => e.name === row);
        if (!ce && !pe && !te) continue;
        const label = row === 'all' ? `all ${res.methodCount} together` : row === 'gradient' ? `gradient CAMs (${res.gradientCams.length}) together` : row;
        L.push(`| ${label} | ${b} | ${range(ce?.explain)} | ${ce ? ce.overBare.toFixed(3) : '–'} | ${range(pe?.explain)} | ${ratio(pe?.explain, ce?.explain)} | ${range(te?.explain)} | ${ratio(te?.explain, ce?.explain)} |`);
      }
    }
    L.push('');
    for (const g of c?.goals ?? []) {
      const share = g.camMathShare === null ? '–' : `${(100 * g.camMathShare).toFixed(1)} %`;
      L.push(`- batch ${g.batch}: CAM math share = explain(gradcam) / bare − 1 = ${share} (goal ≤ 10 %); gradient CAMs together / one Grad-CAM = ${g.gradientOverGradcam?.toFixed(2) ?? '–'}× (goal ≤ 1.3×${g.batch === 1 ? ', one image' : ''}); all ${res.methodCount} together / one Grad-CAM = ${g.allOverGradcam?.toFixed(2) ?? '–'}×`);
    }
    for (const cb of c?.batches ?? []) {
      if (!cb.profile) continue;
      const top = [...cb.profile.methods].sort((a, b) => b.gpuMs - a.gpuMs).map((x) => `${x.method} ${f(x.gpuMs, 1)}`).join(', ');
      L.push(`- batch ${cb.batch}, one profiled call of all ${cb.profile.methods.length} (GPU timestamps): shared forward/backward ${f(cb.profile.passGpuMs, 1)} ms; each method's own launches: ${top} ms`);
    }
    const agree = res.agreement[name];
    if (agree) {
      const parts = Object.entries(agree.pgc ?? {}).map(([k, v]) => `${k} ${v ? (v.error ?? `${e(v.maxAbs)}${v.maxAbs > 1e-3 ? ` (r ${v.r.toFixed(2)})` : ''}`) : '–'}`);
      if (parts.length) L.push(`- maps at batch ${agree.batch}, camgpu vs pytorch-grad-cam, max |Δ|: ${parts.join(', ')}`);
      if (agree.tfjs) L.push(`- Grad-CAM map at batch ${agree.batch}, camgpu vs tfjs, max |Δ|: ${agree.tfjs.error ?? e(agree.tfjs.maxAbs)}`);
      if (agree.targets) L.push(`- targets (argmax) at batch ${agree.batch}: ${agree.targets}`);
    }
    L.push('');
  }
  const errs = [];
  for (const [kind, rec] of [['camgpu', res.camgpu], ['pytorch-grad-cam', res.pgc], ['tfjs', res.tfjs]]) {
    for (const [n, r] of Object.entries(rec)) if (r?.error) errs.push(`- ${kind} ${n}: ${r.error.split('\n').slice(0, 3).join(' / ')}`);
  }
  if (errs.length) L.push('Errors:', ...errs, '');
  L.push('EigenCAM / EigenGrad-CAM / KPCA-CAM maps depend on the sign an eigen-solver picks for the principal direction (PGC takes LAPACK\'s); a large |Δ| with negative r there is that sign, not a timing matter.');
  return L.join('\n');
}

async function mainExplain(argv) {
  let o;
  try {
    o = parseExplainArgs(argv);
  } catch (err) {
    log(`bench-all --explain: ${err.message}`);
    return 2;
  }
  if (!existsSync(join(REPO, 'dist', 'cli.js'))) {
    log('bench-all: dist/cli.js is missing; run `npm run build` first (npm run bench does)');
    return 2;
  }
  if (o.modelsDir === MODELS_DIR) ensureModels(o.models);
  const started = new Date();
  const stamp = started.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const mapsDir = join(REPO, '.cache', `bench-explain-${stamp}-maps`);
  const command = `npm run bench -- --explain ${argv.join(' ')}`.trim();
  const methodList = o.methods ? o.methods.split(',').map((x) => x.trim()).filter(Boolean) : EXPLAIN_ROWS.slice(0, -2);
  const gradientCams = ['gradcam', 'gradcam++', 'xgradcam', 'hirescam', 'gradcamelementwise', 'layercam', 'eigengradcam', 'finercam'].filter((x) => methodList.includes(x));
  const res = {
    date: started.toISOString(), command, machine: machine(), options: o, adapter: null, methodCount: methodList.length, gradientCams,
    layers: {}, camgpu: {}, pgc: {}, tfjs: {}, agreement: {}, mapsDir,
  };
  const camgpu = join(REPO, 'bin', 'camgpu.js');
  const modelPath = (name) => (name.endsWith('.onnx') ? resolve(name) : join(o.modelsDir, `${name}.onnx`));
  const keyOf = (name) => basename(name, '.onnx');
  for (const name of o.models) {
    const key = keyOf(name);
    const layer = o.layer ?? defaultLayer(key);
    res.layers[key] = layer;
    const args = [camgpu, 'bench', '--explain', '--model', modelPath(name), '--layer', layer, '--batch', o.batch.join(','), '--iters', String(o.iters), '--warmup', String(o.warmup), '--json', '--maps-out', join(mapsDir, 'camgpu', key)];
    if (o.methods) args.push('--methods', o.methods);
    if (!o.profile) args.push('--no-profile');
    log(`camgpu explain ${key} (${layer}) batch ${o.batch.join(',')} ...`);
    const r = await run(process.execPath, args, o.timeout);
    const j = r.code === 0 ? parseCamgpuJson(r.stdout) : null;
    if (j?.explain) {
      res.camgpu[key] = j.explain;
      res.adapter ??= j.explain.adapter;
      for (const g of j.explain.goals) log(`  batch ${g.batch}: CAM math share ${g.camMathShare === null ? '–' : `${(100 * g.camMathShare).toFixed(1)} %`}, gradient/gradcam ${f(g.gradientOverGradcam, 2)}×, all/gradcam ${f(g.allOverGradcam, 2)}× (${r.wallS.toFixed(0)} s)`);
    } else {
      res.camgpu[key] = { error: `camgpu bench --explain failed (code ${r.code}${r.signal ? `, ${r.signal}` : ''}): ${tail(r.stderr || r.stdout)}` };
      log(`  ${res.camgpu[key].error}`);
    }
  }
  if (o.peers && o.pgc) {
    const pgcPath = process.env.PGC_PATH;
    for (const name of o.models) {
      const key = keyOf(name);
      if (!pgcPath) {
        res.pgc[key] = { error: 'PGC_PATH is not set: point it at a checkout of jacobgil/pytorch-grad-cam (see tools/bench_pgc.py)' };
        log(`pytorch-grad-cam ${key}: ${res.pgc[key].error}`);
        continue;
      }
      const args = ['tools/bench_pgc.py', '--model', key, '--models-dir', name.endsWith('.onnx') ? dirname(resolve(name)) : o.modelsDir, '--layer', res.layers[key], '--batch', o.batch.join(','),
        '--iters', String(o.peerIters), '--warmup', String(o.peerWarmup), '--threads', String(o.pgcThreads), '--maps-out', join(mapsDir, 'pgc', key)];
      if (o.methods) args.push('--methods', o.methods);
      if (o.measureAll) args.push('--measure-all');
      log(`pytorch-grad-cam ${key} (${res.layers[key]}, ${o.pgcThreads} threads) batch ${o.batch.join(',')} ...`);
      const r = await run(PY, args, o.timeout);
      const j = r.code === 0 ? parseJsonLine(r.stdout) : null;
      res.pgc[key] = j ?? { error: `tools/bench_pgc.py failed (code ${r.code}${r.signal ? `, ${r.signal}` : ''}): ${tail(r.stderr || r.stdout)}` };
      log(`  ${j ? j.batches.map((b) => `batch ${b.batch}: gradcam ${f(b.entries.find((x) => x.name === 'gradcam')?.explain.medianMs, 1)} ms, bare ${f(b.bare.medianMs, 1)} ms`).join('; ') : res.pgc[key].error} (${r.wallS.toFixed(0)} s)`);
    }
  }
  if (o.peers && o.tfjs) {
    const script = join(REPO, 'dist', 'bench-tfjs.js');
    for (const name of o.models) {
      const key = keyOf(name);
      if (!existsSync(script)) {
        res.tfjs[key] = { error: 'dist/bench-tfjs.js is missing: install the devDependencies (@tensorflow/tfjs-core, @tensorflow/tfjs-backend-webgpu) and npm run build' };
        continue;
      }
      log(`tfjs webgpu Grad-CAM ${key} (${res.layers[key]}) batch ${o.batch.join(',')} ...`);
      const r = await run(process.execPath, [script, '--model', modelPath(name), '--layer', res.layers[key], '--batch', o.batch.join(','), '--iters', String(o.peerIters), '--warmup', String(o.peerWarmup), '--json', '--maps-out', join(mapsDir, 'tfjs', key)], o.timeout);
      const j = r.code === 0 ? parseJsonLine(r.stdout) : null;
      res.tfjs[key] = j ?? { error: `bench-tfjs failed (code ${r.code}${r.signal ? `, ${r.signal}` : ''}): ${tail(r.stderr || r.stdout)}` };
      log(`  ${j ? j.batches.map((b) => `batch ${b.batch}: gradcam ${f(b.entries[0].explain.medianMs, 1)} ms, bare ${f(b.bare.medianMs, 1)} ms`).join('; ') : res.tfjs[key].error} (${r.wallS.toFixed(0)} s)`);
    }
  }
  // The maps of the first batch size: the same input, weights and targets should give the same maps.
  for (const name of o.models) {
    const key = keyOf(name);
    const mine = (m) => join(mapsDir, 'camgpu', key, `${m}.npy`);
    const a = { batch: o.batch[0], pgc: {}, tfjs: null, targets: null };
    if (res.pgc[key] && !res.pgc[key].error) {
      for (const m of methodList) a.pgc[m] = compareMaps(mine(m), join(mapsDir, 'pgc', key, `${m}.npy`));
      const ct = res.camgpu[key]?.batches?.[0]?.targets;
      const pt = res.pgc[key].batches?.[0]?.targets;
      a.targets = `camgpu ${JSON.stringify(ct ?? null)}, pytorch-grad-cam ${JSON.stringify(pt ?? null)}`;
    }
    if (res.tfjs[key] && !res.tfjs[key].error) a.tfjs = compareMaps(mine('gradcam'), join(mapsDir, 'tfjs', key, 'gradcam.npy'));
    res.agreement[key] = a;
  }
  res.finished = new Date().toISOString();
  const md = explainMarkdown(res);
  mkdirSync(join(REPO, '.cache'), { recursive: true });
  const jsonPath = join(REPO, '.cache', `bench-explain-${stamp}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(res, null, 2)}\n`);
  writeFileSync(jsonPath.replace(/\.json$/, '.md'), `${md}\n`);
  log(`\nraw results: ${jsonPath}; maps under ${mapsDir}\n`);
  process.stdout.write(`${md}\n`);
  const failed = [res.camgpu, res.pgc, res.tfjs].some((rec) => Object.values(rec).some((r) => r?.error));
  return failed ? 1 : 0;
}

process.exitCode = await main();

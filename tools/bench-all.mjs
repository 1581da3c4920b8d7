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

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
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
                       [--warmup 2] [--matmul 1024 (0: skip)] [--threads 1] [--skip-peer] [--skip-verify] [--timeout S]`);
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

process.exitCode = await main();

// Peer benchmark for `camgpu bench --explain`: Grad-CAM the way a JavaScript user would write it
// today, with TensorFlow.js' WebGPU backend and tf.grad, on the same Dawn (npm `webgpu`) adapter.
//
//   node dist/bench-tfjs.js --model .cache/models/resnet50.onnx --layer layer4 --batch 1,8 --iters N [--warmup N]
//        [--json] [--maps-out DIR] [--dawn-poll timer|immediate] [--max-binding BYTES]
//
// Bundled by tools/build.mjs into dist/bench-tfjs.js (with tfjs-core and tfjs-backend-webgpu,
// devDependencies, taken from their ES modules so that one copy of tfjs-core holds the
// kernels and the gradients; `webgpu` stays external) when @tensorflow/tfjs-core is installed.
//
// The network: the same ONNX file camgpu runs (so the same torchvision architecture and the
// same random weights), turned into tfjs ops at load time as a converter would: NHWC
// activations, BatchNormalization folded into the preceding convolution, convolution / dense
// + bias + ReLU as tf.fused ops, the first dense layer's rows permuted for the NHWC flatten.
// The graph is split at the target layer: stage 1 (input → layer) runs outside any tape,
// stage 2 (layer → logits) inside tf.grad, which is how tfjs gives a gradient with respect to
// an intermediate tensor.
//
// One Grad-CAM (timed, with the readback of the map):
//   A = stage1(x); g = tf.grad(a => Σ_i logits_i[argmax_i] of stage2(a))(A)   (argmax on the GPU)
//   w = mean_ij g; M = relu(Σ_k w_k A_k); map = u(up(u(M))) (bilinear, half-pixel centers; u = min-max
//   with PGC's 1e-7), i.e. the same finishing camgpu's maps have; await map.data().
// 'bare' is stage 1 + tf.grad of stage 2 with the readback of g: tfjs' own forward+backward to the layer.

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { importOnnx } from '../src/onnx/import.js';
import { resolveTap } from '../src/onnx/resolve.js';
import { attrInts, attrNumber, attrString, type IrNode } from '../src/onnx/ir.js';
import { formatNpy } from '../src/io/npy.js';
import type { HostTensor } from '../src/runtime/host-tensor.js';

type Tf = typeof import('@tensorflow/tfjs-core');
type T = import('@tensorflow/tfjs-core').Tensor;

interface Options {
  model: string;
  layer: string;
  batch: number[];
  iters: number;
  warmup: number;
  json: boolean;
  mapsOut?: string;
  poll: 'timer' | 'immediate';
  /** Cap on the bytes of one dense weight chunk (default: the device's maxStorageBufferBindingSize); tests force splits with it. */
  maxBinding?: number;
}

function parseArgs(argv: string[]): Options {
  const o: Partial<Options> & { batch: number[]; iters: number; warmup: number; json: boolean; poll: 'timer' | 'immediate' } = { batch: [1], iters: 10, warmup: 2, json: false, poll: 'timer', layer: 'auto' };
  const need = (i: number) => {
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  const int = (s: string, what: string, min: number) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min) throw new Error(`${what}: '${s}' is not an integer >= ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case '--model': o.model = need(i); i++; break;
      case '--layer': o.layer = need(i); i++; break;
      case '--batch': o.batch = need(i).split(',').map((s) => int(s.trim(), '--batch', 1)); i++; break;
      case '--iters': o.iters = int(need(i), '--iters', 1); i++; break;
      case '--warmup': o.warmup = int(need(i), '--warmup', 0); i++; break;
      case '--maps-out': o.mapsOut = need(i); i++; break;
      case '--max-binding': o.maxBinding = int(need(i), '--max-binding', 16); i++; break;
      case '--dawn-poll': {
        const v = need(i);
        if (v !== 'timer' && v !== 'immediate') throw new Error('--dawn-poll: timer or immediate');
        o.poll = v;
        i++;
        break;
      }
      case '--json': o.json = true; break;
      case '-h': case '--help':
        console.log('usage: node dist/bench-tfjs.js --model M.onnx --layer layer4 [--batch 1,8] [--iters 10] [--warmup 2] [--json] [--maps-out DIR] [--dawn-poll timer|immediate] [--max-binding BYTES]');
        process.exit(0);
      default: throw new Error(`unknown argument '${argv[i]}'`);
    }
  }
  if (!o.model) throw new Error('--model is required');
  return o as Options;
}

/** tools/bench.ts seededInput. */
function seededInput(n: number): Float32Array {
  let s = 12345;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = (s / 4294967296) * 2 - 1;
  }
  return a;
}

function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function timed(times: number[], firstMs: number) {
  const s = [...times].sort((p, q) => p - q);
  return { medianMs: quantile(s, 0.5), p10Ms: quantile(s, 0.1), p90Ms: quantile(s, 0.9), firstMs, timesMs: times };
}

// ---------------------------------------------------------------------------------------------
// ONNX → tfjs ops

type Step = (env: Map<string, T>) => void;

interface Net {
  stage1: Step[];
  stage2: Step[];
  input: string;
  layer: string;
  logits: string;
  classes: number;
  /** Every weight tensor (kept for the whole run). */
  weights: T[];
  /** One image's NCHW shape. */
  image: number[];
  /** ONNX node count and what the converter fused, for the report. */
  summary: string;
}

function f32(h: HostTensor): Float32Array {
  return h.data instanceof Float32Array ? h.data : Float32Array.from(h.data);
}

/** OIHW → HWIO (tfjs conv2d filters). */
function toHwio(w: Float32Array, [o, i, kh, kw]: number[]): Float32Array {
  const out = new Float32Array(w.length);
  for (let a = 0; a < o; a++) for (let b = 0; b < i; b++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
    out[((y * kw + x) * i + b) * o + a] = w[((a * i + b) * kh + y) * kw + x];
  }
  return out;
}

function buildNet(tf: Tf, path: string, layerName: string, maxBinding: number): Net {
  const g = importOnnx(new Uint8Array(readFileSync(path)), { name: path });
  const init = g.initializers;
  const layer = resolveTap(g, layerName).tensor;
  const consumers = new Map<string, IrNode[]>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  const only = (t: string, op: string): IrNode | null => {
    if (t === layer) return null; // never fuse past the target layer
    const c = consumers.get(t) ?? [];
    return c.length === 1 && c[0].opType === op ? c[0] : null;
  };
  const weights: T[] = [];
  const keep = <X extends T>(t: X): X => {
    weights.push(t);
    return t;
  };
  /** NCHW-order flatten of an NHWC tensor: the dense layer that reads it gets its rows permuted. */
  const flatFrom = new Map<string, { c: number; h: number; w: number }>();
  const shapes = new Map<string, number[]>();
  const steps: { step: Step; outputs: string[]; reads: string[] }[] = [];
  const done = new Set<string>();
  let fused = 0;
  let split = 0;
  const input = g.inputs[0].name;
  const inDims = g.inputs[0].dims!;
  shapes.set(input, [1, inDims[2] as number, inDims[3] as number, inDims[1] as number]);
  for (const n of g.nodes) {
    if (done.has(n.name)) continue;
    done.add(n.name);
    const x = n.inputs[0];
    const xs = shapes.get(x);
    switch (n.opType) {
      case 'Conv': {
        const wt = init.get(n.inputs[1]);
        if (!wt || !xs) throw new Error(`Conv ${n.name}: weights must be initializers`);
        if (attrNumber(n, 'group', 1) !== 1) throw new Error(`Conv ${n.name}: groups are not supported by this converter`);
        const [o, ci, kh, kw] = wt.dims;
        let w = f32(wt).slice();
        let b = n.inputs[2] ? f32(init.get(n.inputs[2])!).slice() : new Float32Array(o);
        let out = n.outputs[0];
        const bn = only(out, 'BatchNormalization');
        if (bn) {
          const [gamma, beta, mean, v] = bn.inputs.slice(1).map((s) => f32(init.get(s)!));
          const eps = attrNumber(bn, 'epsilon', 1e-5);
          const per = ci * kh * kw;
          for (let c = 0; c < o; c++) {
            const s = gamma[c] / Math.sqrt(v[c] + eps);
            for (let j = 0; j < per; j++) w[c * per + j] *= s;
            b[c] = (b[c] - mean[c]) * s + beta[c];
          }
          done.add(bn.name);
          out = bn.outputs[0];
          fused++;
        }
        const relu = only(out, 'Relu');
        if (relu) {
          done.add(relu.name);
          out = relu.outputs[0];
          fused++;
        }
        const filter = keep(tf.tensor4d(toHwio(w, wt.dims), [kh, kw, ci, o]));
        const bias = keep(tf.tensor1d(b));
        const [sh, sw] = attrInts(n, 'strides', [1, 1])!;
        const dil = attrInts(n, 'dilations', [1, 1])! as [number, number];
        const [pt, pl, pb, pr] = attrInts(n, 'pads', [0, 0, 0, 0])!;
        if (attrString(n, 'auto_pad', 'NOTSET') !== 'NOTSET') throw new Error(`Conv ${n.name}: auto_pad is not supported`);
        const pad = pt + pl + pb + pr === 0 ? 'valid' as const : [[0, 0], [pt, pb], [pl, pr], [0, 0]] as [[number, number], [number, number], [number, number], [number, number]];
        const ho = Math.floor((xs[1] + pt + pb - dil[0] * (kh - 1) - 1) / sh) + 1;
        const wo = Math.floor((xs[2] + pl + pr - dil[1] * (kw - 1) - 1) / sw) + 1;
        shapes.set(out, [xs[0], ho, wo, o]);
        const activation = relu ? 'relu' as const : 'linear' as const;
        steps.push({ reads: [x], outputs: [out], step: (env) => env.set(out, tf.fused.conv2d({ x: env.get(x) as import('@tensorflow/tfjs-core').Tensor4D, filter, strides: [sh, sw], pad, dilations: dil, bias, activation })) });
        break;
      }
      case 'BatchNormalization': throw new Error(`BatchNormalization ${n.name} not after a Conv: not supported by this converter`);
      case 'Relu': {
        const out = n.outputs[0];
        shapes.set(out, xs!);
        steps.push({ reads: [x], outputs: [out], step: (env) => env.set(out, tf.relu(env.get(x)!)) });
        break;
      }
      case 'Add': {
        const [a, b] = n.inputs;
        const out = n.outputs[0];
        shapes.set(out, shapes.get(a)!);
        const relu = only(out, 'Relu');
        if (relu) {
          done.add(relu.name);
          shapes.set(relu.outputs[0], shapes.get(a)!);
        }
        const o2 = relu ? relu.outputs[0] : out;
        steps.push({ reads: [a, b], outputs: [o2], step: relu ? (env) => env.set(o2, tf.relu(tf.add(env.get(a)!, env.get(b)!))) : (env) => env.set(o2, tf.add(env.get(a)!, env.get(b)!)) });
        break;
      }
      case 'MaxPool':
      case 'AveragePool': {
        const [kh, kw] = attrInts(n, 'kernel_shape', null)!;
        const [sh, sw] = attrInts(n, 'strides', [1, 1])!;
        const [pt, pl, pb, pr] = attrInts(n, 'pads', [0, 0, 0, 0])!;
        if (attrNumber(n, 'ceil_mode', 0) !== 0) throw new Error(`${n.opType} ${n.name}: ceil_mode is not supported`);
        if (pt !== pb || pl !== pr || pt !== pl) throw new Error(`${n.opType} ${n.name}: only equal pads are supported`);
        if (n.opType === 'AveragePool' && pt > 0 && attrNumber(n, 'count_include_pad', 0) !== 0) throw new Error(`AveragePool ${n.name}: count_include_pad with pads is not supported`);
        const pad = pt === 0 ? 'valid' as const : pt;
        const out = n.outputs[0];
        shapes.set(out, [xs![0], Math.floor((xs![1] + 2 * pt - kh) / sh) + 1, Math.floor((xs![2] + 2 * pl - kw) / sw) + 1, xs![3]]);
        const max = n.opType === 'MaxPool';
        steps.push({ reads: [x], outputs: [out], step: (env) => env.set(out, (max ? tf.maxPool : tf.avgPool)(env.get(x) as import('@tensorflow/tfjs-core').Tensor4D, [kh, kw], [sh, sw], pad)) });
        break;
      }
      case 'GlobalAveragePool': {
        const out = n.outputs[0];
        shapes.set(out, [xs![0], 1, 1, xs![3]]);
        steps.push({ reads: [x], outputs: [out], step: (env) => env.set(out, tf.mean(env.get(x)!, [1, 2], true)) });
        break;
      }
      case 'Flatten': {
        if (attrNumber(n, 'axis', 1) !== 1 || xs!.length !== 4) throw new Error(`Flatten ${n.name}: only axis 1 of a 4-D tensor`);
        const out = n.outputs[0];
        const [, h, w, c] = xs!;
        if (h * w > 1) flatFrom.set(out, { c, h, w });
        shapes.set(out, [xs![0], h * w * c]);
        steps.push({ reads: [x], outputs: [out], step: (env) => env.set(out, tf.reshape(env.get(x)!, [-1, h * w * c])) });
        break;
      }
      case 'Gemm': {
        const bt = init.get(n.inputs[1]);
        if (!bt) throw new Error(`Gemm ${n.name}: weights must be an initializer`);
        if (attrNumber(n, 'transA', 0) !== 0 || attrNumber(n, 'alpha', 1) !== 1 || attrNumber(n, 'beta', 1) !== 1) throw new Error(`Gemm ${n.name}: only transA = 0, alpha = beta = 1`);
        const transB = attrNumber(n, 'transB', 0) === 1;
        const [r, c] = bt.dims;
        const [k, m] = transB ? [c, r] : [r, c];
        const src = f32(bt);
        const flat = flatFrom.get(x);
        // W [K, M]; with an NHWC flatten, row (h, w, c) takes NCHW row (c, h, w).
        const w = new Float32Array(k * m);
        for (let kk = 0; kk < k; kk++) {
          let from = kk;
          if (flat) {
            const cc = kk % flat.c;
            const hw = Math.floor(kk / flat.c);
            from = cc * flat.h * flat.w + hw;
          }
          for (let j = 0; j < m; j++) w[kk * m + j] = transB ? src[j * k + from] : src[from * m + j];
        }
        const bias = n.inputs[2] ? f32(init.get(n.inputs[2])!) : new Float32Array(m);
        let out = n.outputs[0];
        const relu = only(out, 'Relu');
        if (relu) {
          done.add(relu.name);
          out = relu.outputs[0];
          fused++;
        }
        shapes.set(out, [xs![0], m]);
        const activation = relu ? 'relu' as const : 'linear' as const;
        // A weight over one storage binding (VGG-16's first dense layer is 411 MB; lavapipe binds
        // 128 MB) cannot be bound whole: split by output columns, concatenate the outputs.
        const parts = Math.ceil((k * m * 4) / maxBinding);
        const cols = Math.ceil(m / parts);
        const chunks: { w: import('@tensorflow/tfjs-core').Tensor2D; b: import('@tensorflow/tfjs-core').Tensor1D }[] = [];
        for (let c0 = 0; c0 < m; c0 += cols) {
          const c1 = Math.min(m, c0 + cols);
          const wc = new Float32Array(k * (c1 - c0));
          for (let kk = 0; kk < k; kk++) wc.set(w.subarray(kk * m + c0, kk * m + c1), kk * (c1 - c0));
          chunks.push({ w: keep(tf.tensor2d(wc, [k, c1 - c0])), b: keep(tf.tensor1d(bias.slice(c0, c1))) });
        }
        if (chunks.length > 1) split++;
        steps.push({
          reads: [x], outputs: [out], step: (env) => {
            const a = env.get(x) as import('@tensorflow/tfjs-core').Tensor2D;
            const ys = chunks.map((c) => tf.fused.matMul({ a, b: c.w, bias: c.b, activation }));
            env.set(out, ys.length === 1 ? ys[0] : tf.concat(ys, 1));
          },
        });
        break;
      }
      case 'Dropout':
      case 'Identity': {
        const out = n.outputs[0];
        shapes.set(out, xs!);
        steps.push({ reads: [x], outputs: [out], step: (env) => env.set(out, env.get(x)!) });
        break;
      }
      default:
        throw new Error(`${n.opType} (${n.name}): not supported by this converter`);
    }
  }
  const cut = steps.findIndex((s) => s.outputs.includes(layer));
  if (cut < 0) throw new Error(`layer '${layerName}' (tensor ${layer}) is not the output of a converted step`);
  const stage1 = steps.slice(0, cut + 1);
  const stage2 = steps.slice(cut + 1);
  const made1 = new Set(stage1.flatMap((s) => s.outputs));
  const made2 = new Set<string>();
  for (const s of stage2) {
    for (const r of s.reads) if (r !== layer && !made2.has(r) && made1.has(r)) throw new Error(`the network after '${layerName}' reads ${r} from before it: cannot split there`);
    for (const o of s.outputs) made2.add(o);
  }
  const logits = g.outputs[0].name;
  const classes = shapes.get(logits)?.at(-1);
  if (!classes) throw new Error(`output ${logits} was not produced`);
  return {
    stage1: stage1.map((s) => s.step), stage2: stage2.map((s) => s.step), input, layer, logits, classes, weights, image: inDims.slice(1) as number[],
    summary: `${g.nodes.length} ONNX nodes → ${steps.length} tfjs steps (${fused} BatchNormalization/ReLU folded into conv/dense${split ? `, ${split} dense layer(s) split by columns to fit a ${maxBinding}-byte binding` : ''}), split at ${layer}`,
  };
}

function runStage(steps: Step[], from: string, x: T, to: string): T {
  const env = new Map<string, T>([[from, x]]);
  for (const s of steps) s(env);
  return env.get(to)!;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const out = (s: string) => (o.json ? process.stderr : process.stdout).write(`${s}\n`);
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = `${tmpdir()}/camgpu-xdg-${process.getuid?.() ?? 'user'}`;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  const keepAlive = setInterval(() => {}, 1000);
  const tProc = performance.now();
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create((process.env.CAMGPU_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean));
  // Held for the whole process: Dawn crashes if the instance is collected under live devices.
  (globalThis as Record<string, unknown>).__tfjsPeerDawn = gpu;
  const adapters: GPUAdapterInfo[] = [];
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  (gpu as { requestAdapter: typeof requestAdapter }).requestAdapter = async (opts?: GPURequestAdapterOptions) => {
    const a = await requestAdapter(opts);
    if (a) adapters.push(a.info);
    return a;
  };
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  const tf: Tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-core/dist/register_all_gradients');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not initialize');
  await tf.ready();
  const initMs = performance.now() - tProc;

  // While a readback is awaited dawn.node re-polls with setImmediate, spinning a core that
  // lavapipe needs; camgpu turns that into a 1 ms timer while it waits (src/node-provider.ts).
  // --dawn-poll timer (default) gives tfjs the same treatment for the whole timed call.
  const origImmediate = globalThis.setImmediate;
  const polled = ((fn: (...a: unknown[]) => void, ...args: unknown[]) => setTimeout(fn, 1, ...args)) as unknown as typeof setImmediate;
  const hooked = async <R>(f: () => Promise<R>): Promise<R> => {
    if (o.poll === 'immediate') return f();
    globalThis.setImmediate = polled;
    try {
      return await f();
    } finally {
      globalThis.setImmediate = origImmediate;
    }
  };

  const tLoad = performance.now();
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  const net = buildNet(tf, o.model, o.layer, Math.min(device.limits.maxStorageBufferBindingSize, o.maxBinding ?? Infinity));
  const loadMs = performance.now() - tLoad;
  out(`tfjs ${tf.version_core} webgpu on ${adapters[0]?.description || adapters[0]?.device || '?'}: ${net.summary} (${loadMs.toFixed(0)} ms)`);

  const dims = net.image;
  if (dims.length !== 3 || dims.some((d) => typeof d !== 'number')) throw new Error(`input shape ${dims}: need a fixed C×H×W`);
  const per = dims.reduce((a, b) => a * b, 1);
  const norm = (m: T) => {
    const lo = tf.min(m, [1, 2], true);
    const s = tf.sub(m, lo);
    return tf.div(s, tf.add(tf.max(s, [1, 2], true), 1e-7));
  };
  const objective = (a: T) => {
    const logits = runStage(net.stage2, net.layer, a, net.logits);
    const onehot = tf.cast(tf.oneHot(tf.argMax(logits, 1), net.classes), 'float32');
    return tf.sum(tf.mul(logits, onehot));
  };
  const gradOf = tf.grad(objective);
  const batches = [];
  let mapsWritten = false;
  for (const b of o.batch) {
    const x = tf.tidy(() => tf.transpose(tf.tensor4d(seededInput(b * per), [b, dims[0], dims[1], dims[2]]), [0, 2, 3, 1]));
    const gradcam = () => tf.tidy(() => {
      const a = runStage(net.stage1, net.input, x, net.layer);
      const gr = gradOf(a);
      const w = tf.mean(gr, [1, 2], true);
      const cam = tf.relu(tf.sum(tf.mul(a, w), 3, true)); // [b, h, w, 1]
      const up = tf.image.resizeBilinear(norm(cam) as import('@tensorflow/tfjs-core').Tensor4D, [dims[1], dims[2]], false, true);
      return tf.reshape(norm(up), [b, dims[1], dims[2]]);
    });
    const bareOnce = () => hooked(async () => {
      const t0 = performance.now();
      const gr = tf.tidy(() => gradOf(runStage(net.stage1, net.input, x, net.layer)));
      await gr.data();
      const ms = performance.now() - t0;
      gr.dispose();
      return ms;
    });
    const camOnce = (keep = false) => hooked(async () => {
      const t0 = performance.now();
      const m = gradcam();
      const data = (await m.data()) as Float32Array;
      const ms = performance.now() - t0;
      m.dispose();
      return { ms, data: keep ? data : null };
    });
    const tensors0 = tf.memory().numTensors;
    const bFirst = await bareOnce();
    const first = await camOnce(!!o.mapsOut && !mapsWritten);
    if (first.data && o.mapsOut) {
      mkdirSync(o.mapsOut, { recursive: true });
      writeFileSync(join(o.mapsOut, 'gradcam.npy'), formatNpy(first.data, [b, dims[1], dims[2]]));
      mapsWritten = true;
    }
    for (let i = 0; i < o.warmup; i++) {
      await bareOnce();
      await camOnce();
    }
    const bt: number[] = [];
    const ct: number[] = [];
    for (let i = 0; i < o.iters; i++) {
      bt.push(await bareOnce());
      ct.push((await camOnce()).ms);
    }
    const leaked = tf.memory().numTensors - tensors0;
    const bare = timed(bt, bFirst);
    const cam = timed(ct, first.ms);
    batches.push({ batch: b, bare, entries: [{ name: 'gradcam', methods: ['gradcam'], explain: cam, overBare: cam.medianMs / bare.medianMs }], leakedTensors: leaked });
    out(`batch ${b}: Grad-CAM ${cam.medianMs.toFixed(1)} ms (p10 ${cam.p10Ms.toFixed(1)}, p90 ${cam.p90Ms.toFixed(1)}; first ${cam.firstMs.toFixed(0)} ms); bare fwd+bwd ${bare.medianMs.toFixed(1)} ms${leaked ? `; ${leaked} tensors leaked` : ''}`);
    x.dispose();
  }
  const info = adapters[0];
  const res = {
    kind: 'tfjs', engine: `tfjs-core ${tf.version_core} + tfjs-backend-webgpu (tf.grad)`, model: o.model, layer: o.layer, layerTensor: net.layer, input: dims,
    adapter: info ? info.description || info.device || info.vendor : '?', cpu: cpus()[0]?.model, initMs, loadMs, summary: net.summary, dawnPoll: o.poll,
    flags: tf.env().getFlags(), date: new Date().toISOString(), batches,
    call: 'stage1 (input → layer, fused conv+bias+relu) outside the tape; tf.grad of the top-class logit through stage2 at the layer; w = spatial mean; relu(Σ w A); u(up(u(·))); await data()',
    bare: 'stage1 + tf.grad of stage2 at the layer, with await g.data()',
  };
  for (const t of net.weights) t.dispose();
  clearInterval(keepAlive);
  if (o.json) process.stdout.write(`${JSON.stringify(res)}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`bench-tfjs: ${(e as Error)?.stack ?? e}`);
    process.exit(1);
  },
);

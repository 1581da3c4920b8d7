import { describe, expect, it } from 'vitest';
import { Model } from '../src/model.js';
import { type Activation, activateCpu } from '../src/ops/activation.js';
import { gradients } from '../src/ops/autodiff.js';
import type { GraphOp, OpGraph } from '../src/ops/graph.js';
import { Tape } from '../src/ops/tape.js';
import { hostTensor } from '../src/runtime/host-tensor.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { gpu } from './helpers/gpu.js';
import { buildModel } from './helpers/onnx-build.js';
import { randomArray, relError, rng } from './helpers/random.js';
import { bilinearRef, conv2dRef, gemmRef, globalPoolRef, pool2dRef } from './reference/cpu.js';

/**
 * A float64 interpreter of the op graphs this test builds (conv, pools, gemm, activations,
 * reshape): the independent reference the composed objective is differentiated against.
 */
function runGraphRef(g: OpGraph, feeds: Map<string, Float64Array>): Map<string, Float64Array> {
  const v = new Map<string, Float64Array>(feeds);
  for (const [name, t] of g.constants) v.set(name, Float64Array.from(t.data));
  const get = (n: string) => v.get(n)!;
  const shape = (n: string) => g.shapes.get(n)!;
  const act = (x: Float64Array, a: Activation) => x.map((q) => activateCpu(a, q));
  for (const op of g.ops as GraphOp[]) {
    let out: Float64Array;
    switch (op.kind) {
      case 'conv':
        out = act(conv2dRef(get(op.inputs[0]), shape(op.inputs[0]), get(op.inputs[1]), shape(op.inputs[1]), op.inputs[2] ? get(op.inputs[2]) : null, op.attrs).data, op.attrs.activation);
        break;
      case 'pool':
        out = pool2dRef(op.pool, get(op.inputs[0]), shape(op.inputs[0]), op.attrs).data;
        break;
      case 'global_pool':
        out = globalPoolRef(op.pool, get(op.inputs[0]), shape(op.inputs[0])).data;
        break;
      case 'gemm': {
        const [M, N] = shape(op.output);
        const K = op.attrs.transA ? shape(op.inputs[0])[0] : shape(op.inputs[0])[1];
        const c = op.inputs[2] ? get(op.inputs[2]) : null;
        out = act(gemmRef(get(op.inputs[0]), get(op.inputs[1]), c, op.inputs[2] ? shape(op.inputs[2]) : [], M, N, K, op.attrs.transA, op.attrs.transB, op.attrs.alpha, op.attrs.beta), op.attrs.activation);
        break;
      }
      case 'unary':
        out = act(get(op.inputs[0]), op.activation);
        break;
      case 'alias':
        out = get(op.inputs[0]);
        break;
      default:
        throw new Error(`reference interpreter: no ${op.kind}`);
    }
    v.set(op.output, out);
  }
  return v;
}

/** A small CNN: conv-relu, max-pool, conv-relu (the CAM layer), global average pool, dense. */
function smallCnn(rand: () => number) {
  return buildModel({
    nodes: [
      { op: 'Conv', inputs: ['x', 'w1', 'b1'], outputs: ['c1'], name: '/features/features.0/Conv', attrs: { pads: [1, 1, 1, 1] } },
      { op: 'Relu', inputs: ['c1'], outputs: ['r1'], name: '/features/features.1/Relu' },
      { op: 'MaxPool', inputs: ['r1'], outputs: ['p1'], name: '/features/features.2/MaxPool', attrs: { kernel_shape: [2, 2], strides: [2, 2] } },
      { op: 'Conv', inputs: ['p1', 'w2', 'b2'], outputs: ['c2'], name: '/features/features.3/Conv', attrs: { pads: [1, 1, 1, 1] } },
      { op: 'Relu', inputs: ['c2'], outputs: ['r2'], name: '/features/features.4/Relu' },
      { op: 'GlobalAveragePool', inputs: ['r2'], outputs: ['g'], name: '/avgpool/GlobalAveragePool' },
      { op: 'Flatten', inputs: ['g'], outputs: ['f'], name: '/Flatten' },
      { op: 'Gemm', inputs: ['f', 'wf', 'bf'], outputs: ['logits'], name: '/fc/Gemm', attrs: { transB: 1 } },
    ],
    inputs: [{ name: 'x', dims: ['N', 3, 16, 16] }],
    outputs: [{ name: 'logits' }],
    initializers: [
      { name: 'w1', dims: [6, 3, 3, 3], data: randomArray(162, rand, 0.4) },
      { name: 'b1', dims: [6], data: randomArray(6, rand, 0.1) },
      { name: 'w2', dims: [8, 6, 3, 3], data: randomArray(432, rand, 0.3) },
      { name: 'b2', dims: [8], data: randomArray(8, rand, 0.1) },
      { name: 'wf', dims: [5, 8], data: randomArray(40, rand, 0.5) },
      { name: 'bf', dims: [5], data: randomArray(5, rand, 0.1) },
    ],
  });
}

describe('a composed objective: Opti-CAM through upsample, normalize, mask and the network', () => {
  it('its gradient with respect to the channel weights matches central finite differences in float64', async () => {
    const ctx = await gpu();
    const rand = rng(5);
    const model = Model.fromBytes(ctx, smallCnn(rand), { name: 'small-cnn' });
    const N = 2;
    const [C, H, W] = [3, 16, 16];
    const [K, h, w] = [8, 8, 8];
    const target = [3, 1];
    const x = randomArray(N * C * H * W, rand);
    // A: the CAM layer's activations for x (fixed while u is optimized), taken from the model.
    const xt = Tensor.fromData(ctx, x, [N, C, H, W]);
    const fwd = await model.run(xt, { taps: ['features.4'] });
    const A = await fwd.taps.get('features.4')!.value.read();
    const u0 = randomArray(N * K, rand);
    // The tape: S = Σ_k softmax(u)_k relu(A_k); M = norm(up(S)); x' = x ⊙ M; y = Σ_i logit_i[c_i](x').
    const net = model.analyze(new Map([['x', [N, C, H, W]]]), new Set());
    const tape = new Tape();
    const u = tape.input('u', [N, K]);
    const a = tape.input('A', [N, K, h, w]);
    const xin = tape.input('x', [N, C, H, W]);
    const weights = tape.reshape(tape.softmax(u, 1), [N, 1, K]);
    const s = tape.reshape(tape.matmul(weights, tape.reshape(tape.activation(a, { kind: 'relu' }), [N, K, h * w])), [N, 1, h, w]);
    const up = tape.resize(s, [H, W], { alignCorners: false });
    const lo = tape.reduce('min', up, [2, 3]);
    const hi = tape.reduce('max', up, [2, 3]);
    const mask = tape.div(tape.sub(up, lo), tape.add(tape.sub(hi, lo), tape.scalar(1e-8)));
    const masked = tape.mul(xin, mask);
    const out = tape.include(net, new Map([['x', masked]]), 'net/');
    const logits = out.get(net.outputs[0])!;
    const seed = tape.constant(hostTensor('float32', [N, 5], Array.from({ length: N * 5 }, (_, i) => (i % 5 === target[Math.floor(i / 5)] ? 1 : 0))));
    const grads = gradients(tape, new Map([[logits.name, seed]]), ['u']);
    const gu = grads.get('u')!;
    // Through the model's runner: the network's constants are the model's, the tape's own (the seed, ε) private to the program.
    const feeds = new Map([['u', Tensor.fromData(ctx, u0, [N, K])], ['A', Tensor.fromData(ctx, A, [N, K, h, w])], ['x', xt]]);
    const run = await model.runProgram({
      key: 'opti-cam-objective', batch: N, split: false,
      build: () => ({ graph: tape.graph, names: new Map([['grad', gu.name], ['logits', logits.name]]) }),
      feeds: new Map([...feeds].map(([name, t]) => [name, { tensor: t, batchAxis: 0 as const }])),
      results: { grad: { batchAxis: 0 }, logits: { batchAxis: 0 } },
    });
    const [gpuGrad] = await readTensors(ctx, [run.results.get('grad')!]);

    // The same objective in float64 on the CPU.
    const objective = (uv: Float64Array): number => {
      let total = 0;
      const xm = new Float64Array(N * C * H * W);
      for (let i = 0; i < N; i++) {
        const row = Array.from(uv.subarray(i * K, (i + 1) * K));
        const mx = Math.max(...row);
        const e = row.map((q) => Math.exp(q - mx));
        const sum = e.reduce((p, q) => p + q, 0);
        const sMap = new Float64Array(h * w);
        for (let k = 0; k < K; k++) for (let j = 0; j < h * w; j++) sMap[j] += (e[k] / sum) * Math.max(A[(i * K + k) * h * w + j], 0);
        const upMap = bilinearRef(sMap, [1, 1, h, w], H, W, { alignCorners: false }).data;
        let lo2 = Infinity;
        let hi2 = -Infinity;
        for (const q of upMap) {
          lo2 = Math.min(lo2, q);
          hi2 = Math.max(hi2, q);
        }
        for (let c = 0; c < C; c++) for (let j = 0; j < H * W; j++) xm[(i * C + c) * H * W + j] = x[(i * C + c) * H * W + j] * ((upMap[j] - lo2) / (hi2 - lo2 + 1e-8));
      }
      const r = runGraphRef(net, new Map([['x', xm]]));
      const lg = r.get(net.outputs[0])!;
      for (let i = 0; i < N; i++) total += lg[i * 5 + target[i]];
      return total;
    };
    const base = Float64Array.from(u0);
    const fd = new Float64Array(N * K);
    const eps = 1e-5;
    for (let j = 0; j < N * K; j++) {
      const p = Float64Array.from(base);
      const m = Float64Array.from(base);
      p[j] += eps;
      m[j] -= eps;
      fd[j] = (objective(p) - objective(m)) / (2 * eps);
    }
    expect(Math.max(...Array.from(fd, Math.abs))).toBeGreaterThan(1e-3);
    expect(relError(gpuGrad, fd)).toBeLessThan(1e-3);
    for (const t of [...run.results.values(), ...feeds.values()]) t.dispose();
    await model.dispose();
  });
});

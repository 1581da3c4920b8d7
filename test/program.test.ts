import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import '../src/node-provider.js';
import { Model } from '../src/model.js';
import { type ProgramGraph, ProgramRunner, type ProgramSpec, type RunRequest } from '../src/ops/program.js';
import { Tape } from '../src/ops/tape.js';
import { GpuContext } from '../src/runtime/device.js';
import { InputError, LimitError, ShapeError } from '../src/runtime/errors.js';
import { Recorder } from '../src/runtime/recorder.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { WeightStore } from '../src/runtime/weights.js';
import { FIXTURES } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { randomArray, relError, rng } from './helpers/random.js';
import { bilinearRef } from './reference/cpu.js';

/**
 * The program runner: explicit batch axes (nothing inferred from shapes), batches split into
 * chunks in one encoder, results owned by the caller, nothing kept after a throw; and model
 * tapes with ops appended (a Grad-CAM) run through it.
 */

const MODEL = join(FIXTURES, 'torch', 'resnet18-w8.onnx');
const IMAGE = [3, 64, 64];
const PER_IMAGE = 3 * 64 * 64;
/** A cap of 128 KiB per binding: two 64×64 images per pass (the 48 KiB input is the largest tensor of one). */
const CAP = 128 * 1024;

let capped: GpuContext;
beforeAll(async () => {
  capped = await GpuContext.create({ activationBindingLimit: CAP });
});

const inUse = (ctx: GpuContext) => ctx.pool.getStats().inUseBytes;

/** y = 3·x (batched, 16 Ki floats = 64 KiB per image) and q = p + p of a [2, 3] feed given whole to every pass. */
function toySpec(key = 'toy'): ProgramSpec {
  return {
    key,
    build: (nb) => {
      const tape = new Tape();
      const x = tape.input('x', [nb, 16384]);
      const p = tape.input('p', [2, 3]);
      const y = tape.mul(x, tape.scalar(3));
      const q = tape.add(p, p);
      return { graph: tape.graph, names: new Map([['y', y.name], ['q', q.name]]) };
    },
  };
}

describe('ProgramRunner: batch axes are declared, not inferred', () => {
  it('a result of shape [chunk, …] declared unbatched is neither split nor concatenated', async () => {
    const runner = new ProgramRunner(capped, new WeightStore(capped));
    const rand = rng(1);
    for (const batch of [4, 5]) {
      const xv = randomArray(batch * 16384, rand);
      const pv = randomArray(6, rand);
      const x = Tensor.fromData(capped, xv, [batch, 16384]);
      const p = Tensor.fromData(capped, pv, [2, 3]);
      const r = await runner.run({ ...toySpec(), batch, feeds: { x: { tensor: x, batchAxis: 0 }, p: { tensor: p, batchAxis: null } }, results: { y: { batchAxis: 0 }, q: { batchAxis: null } } });
      // Chunks of 2: q's [2, 3] has the chunk size as its first dimension, and is still one result.
      expect(r.chunk).toBe(2);
      expect(r.passes).toBe(Math.ceil(batch / 2));
      const q = r.results.get('q')!;
      const y = r.results.get('y')!;
      expect(q.shape).toEqual([2, 3]);
      expect(y.shape).toEqual([batch, 16384]);
      const [qv, yv] = await readTensors(capped, [q, y]);
      expect(Array.from(qv)).toEqual(Array.from(pv, (v) => v + v));
      expect(relError(yv, Array.from(xv, (v) => 3 * v))).toBeLessThan(1e-7);
      for (const t of [x, p, q, y]) t.dispose();
    }
    await runner.dispose();
  });

  it('a declaration the program contradicts fails instead of guessing', async () => {
    const before = inUse(capped);
    const runner = new ProgramRunner(capped, new WeightStore(capped));
    const x = Tensor.fromData(capped, new Float32Array(5 * 16384), [5, 16384]);
    const p = Tensor.fromData(capped, new Float32Array(6), [2, 3]);
    const req = (results: RunRequest['results']): RunRequest => ({ ...toySpec(), batch: 5, feeds: { x: { tensor: x, batchAxis: 0 }, p: { tensor: p, batchAxis: null } }, results });
    // y declared unbatched: its shape follows the chunk size (2, then 1).
    await expect(runner.run(req({ y: { batchAxis: null } }))).rejects.toThrow(/result 'y'.*changes shape with the chunk size/);
    // q declared batched: a pass of 1 image still produces [2, 3].
    await expect(runner.run(req({ q: { batchAxis: 0 } }))).rejects.toThrow(ShapeError);
    // A batched feed whose batch is not the run's.
    await expect(runner.run({ ...req({ y: { batchAxis: 0 } }), batch: 4 })).rejects.toThrow(/input 'x'.*expects \[4, 16384\] \(batched\), got \[5, 16384\]/);
    await expect(runner.run(req({ nothing: { batchAxis: 0 } }))).rejects.toThrow(/has no result 'nothing'/);
    for (const t of [x, p]) t.dispose();
    // What the failed runs compiled is cached (and freed with the runner); nothing else stayed.
    expect(runner.cachedPrograms).toBeGreaterThan(0);
    await runner.dispose();
    expect(inUse(capped)).toBe(before);
  });
});

describe('ProgramRunner: chunking past an analysis cap', () => {
  it('a whole batch that trips a size cap of its analysis (LimitError) is measured per image and split', async () => {
    const runner = new ProgramRunner(capped, new WeightStore(capped));
    // A build that refuses more than 3 images at once, as the pool-reads cap does for a big sweep.
    const spec: ProgramSpec = {
      key: 'capped-analysis',
      build: (nb) => {
        if (nb > 3) throw new LimitError(`toy: ${nb} images is over the cap`);
        return toySpec().build(nb);
      },
    };
    expect(runner.chunkSize(spec, 5)).toBe(2);
    // One image over the cap is still an error.
    const none: ProgramSpec = { key: 'capped-always', build: () => { throw new LimitError('toy: never'); } };
    expect(() => runner.chunkSize(none, 5)).toThrow(LimitError);
    await runner.dispose();
  });
});

describe('ProgramRunner: ownership and errors', () => {
  it('tape constants are private to their program: two tapes naming different scalars const#0 do not collide', async () => {
    const ctx = await gpu();
    const runner = new ProgramRunner(ctx, new WeightStore(ctx));
    const x = Tensor.fromData(ctx, Float32Array.from([1, 2, 3]), [3]);
    const scaled = (k: number): RunRequest => ({
      key: `scale-${k}`, batch: 1, split: false,
      build: () => {
        const tape = new Tape();
        const y = tape.mul(tape.input('x', [3]), tape.scalar(k));
        return { graph: tape.graph, names: new Map([['y', y.name]]) };
      },
      feeds: { x: { tensor: x, batchAxis: null } },
      results: { y: { batchAxis: null } },
    });
    const a = await runner.run(scaled(2));
    const b = await runner.run(scaled(5));
    expect(Array.from(await a.results.get('y')!.read())).toEqual([2, 4, 6]);
    expect(Array.from(await b.results.get('y')!.read())).toEqual([5, 10, 15]);
    for (const t of [x, ...a.results.values(), ...b.results.values()]) t.dispose();
    await runner.dispose();
  });

  it('an evicted program that an unsubmitted recorder still records is freed only after the submit', async () => {
    const ctx = await gpu();
    const runner = new ProgramRunner(ctx, new WeightStore(ctx), { cacheSize: 1 });
    const x = Tensor.fromData(ctx, randomArray(2 * 16384, rng(3)), [2, 16384]);
    const p = Tensor.fromData(ctx, Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    const feeds = { x: { tensor: x, batchAxis: 0 as const }, p: { tensor: p, batchAxis: null } };
    const results = { y: { batchAxis: 0 as const }, q: { batchAxis: null } };
    const a = await runner.compile(toySpec('a'), 2, ['y', 'q']);
    const rec = new Recorder(ctx);
    const ra = await runner.record(rec, { ...toySpec('a'), batch: 2, feeds, results });
    // Program b evicts a (cache of one) while rec still records a.
    const rb = await runner.run({ ...toySpec('b'), batch: 2, feeds, results });
    expect(runner.cachedPrograms).toBe(1);
    const pending = inUse(ctx);
    rec.submit();
    expect(a.plan.arenaBytes).toBeGreaterThan(0);
    expect(pending - inUse(ctx)).toBe(a.plan.arenaBytes);
    // Had a's buffers gone back to the pool before its pass ran, b's results could sit in them.
    const want = await x.read();
    for (const r of [ra, rb]) {
      expect(relError(await r.results.get('y')!.read(), Array.from(want, (v) => 3 * v))).toBeLessThan(1e-7);
      expect(Array.from(await r.results.get('q')!.read())).toEqual([2, 4, 6, 8, 10, 12]);
    }
    for (const t of [x, p, ...ra.results.values(), ...rb.results.values()]) t.dispose();
    await runner.dispose();
  });

  it('a throw mid-run returns everything the run took, and a failed compilation is not kept', async () => {
    const start = inUse(capped);
    const runner = new ProgramRunner(capped, new WeightStore(capped));
    let builds = 0;
    const spec: ProgramSpec = {
      key: 'fails-for-one',
      build: (nb) => {
        builds++;
        const b = toySpec().build(nb) as ProgramGraph;
        // For one image, a result named after a tensor the graph lacks: its compilation fails.
        return nb === 1 ? { ...b, names: new Map([...b.names!, ['y', 'no-such-tensor']]) } : b;
      },
    };
    const x = Tensor.fromData(capped, new Float32Array(5 * 16384), [5, 16384]);
    const p = Tensor.fromData(capped, new Float32Array(6), [2, 3]);
    const feeds = { x: { tensor: x, batchAxis: 0 as const }, p: { tensor: p, batchAxis: null } };
    const results = { y: { batchAxis: 0 as const }, q: { batchAxis: null } };
    // Warm the two-image program (batch 4: two passes of 2) so that what follows takes nothing new.
    const x4 = Tensor.fromData(capped, new Float32Array(4 * 16384), [4, 16384]);
    const warm = await runner.run({ ...spec, batch: 4, feeds: { ...feeds, x: { tensor: x4, batchAxis: 0 } }, results });
    expect(warm.passes).toBe(2);
    for (const t of [x4, ...warm.results.values()]) t.dispose();
    const before = inUse(capped);
    // Batch 5: passes of 2, 2 and 1; the one-image program fails to build after the two-image one is pinned.
    await expect(runner.run({ ...spec, batch: 5, feeds, results })).rejects.toThrow(/names result 'y' as tensor 'no-such-tensor'/);
    expect(inUse(capped)).toBe(before);
    const n = builds;
    await expect(runner.run({ ...spec, batch: 5, feeds, results })).rejects.toThrow(/names result 'y' as tensor 'no-such-tensor'/);
    expect(builds).toBeGreaterThan(n); // built again: the failure was not cached

    // A program whose compilation fails returns the buffers its builder handed over.
    const owned = capped.pool.acquire(4096);
    const tooBig: ProgramSpec = {
      key: 'too-big', split: false,
      build: (): ProgramGraph => {
        const tape = new Tape();
        const big = tape.input('big', [2 * CAP]); // 8× the binding cap: compilePlan throws before taking anything
        tape.add(big, big);
        return { graph: tape.graph, owned: new Map([['scratch', owned]]) };
      },
    };
    const big = Tensor.fromData(capped, new Float32Array(2 * CAP), [2 * CAP]);
    const beforeBig = inUse(capped);
    await expect(runner.run({ ...tooBig, batch: 1, feeds: { big: { tensor: big, batchAxis: null } }, results: {} })).rejects.toThrow(LimitError);
    expect(beforeBig - inUse(capped)).toBe(4096);

    // Recording into a caller's encoder (its programs cached): a bad feed throws before anything is recorded or allocated.
    const rec = new Recorder(capped);
    const x4b = Tensor.fromData(capped, new Float32Array(4 * 16384), [4, 16384]);
    p.dispose();
    const beforeRec = inUse(capped);
    await expect(runner.record(rec, { ...spec, batch: 4, feeds: { ...feeds, x: { tensor: x4b, batchAxis: 0 } }, results })).rejects.toThrow(/used after dispose/);
    expect(inUse(capped)).toBe(beforeRec);
    rec.discard();
    for (const t of [x, x4b, big]) t.dispose();
    await runner.dispose();
    expect(inUse(capped)).toBe(start);
  });
});

/** Grad-CAM at `layer`: relu(Σ_k mean_hw(∂y/∂A_k) · A_k), upsampled to the input (bilinear, half-pixel). */
function gradCam(model: Model, layer: string): ProgramSpec {
  return {
    key: `grad-cam|${layer}`,
    build: (nb) => {
      const t = model.tape(nb, { image: IMAGE, taps: [layer], wrt: [layer], target: { weights: 'feed' } });
      const { tape } = t;
      const A = t.taps.get(layer)!;
      const alpha = tape.reduce('mean', t.gradients.get(layer)!, [2, 3]);
      const map = tape.activation(tape.reduce('sum', tape.mul(A, alpha), [1]), { kind: 'relu' });
      const cam = tape.resize(map, [64, 64], { alignCorners: false });
      return { graph: tape.graph, names: new Map([['cam', cam.name], ['alpha', alpha.name], ['logits', t.logits.name]]) };
    },
  };
}

function onehot(ctx: GpuContext, classes: number[]): Tensor {
  const w = new Float32Array(classes.length * 10);
  classes.forEach((c, i) => (w[i * 10 + c] = 1));
  return Tensor.fromData(ctx, w, [classes.length, 10]);
}

describe('model programs through the runner', () => {
  const N = 5;
  const classes = [3, 0, 7, 7, 1];
  const xs = randomArray(N * PER_IMAGE, rng(11));

  it('a batch split into chunks gives each image what one pass gives it: forward, taps and gradients', async () => {
    const whole = await gpu();
    const results = await Promise.all([whole, capped].map(async (ctx) => {
      const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(MODEL)), { name: 'resnet18-w8' });
      const x = Tensor.fromData(ctx, xs, [N, ...IMAGE]);
      const f = await model.run(x, { taps: ['layer2', 'relu'] });
      const g = await model.grad(x, { target: { classes }, wrt: ['input', 'layer3'], taps: ['layer3'] });
      const tensors = [f.outputs.get('logits')!, f.taps.get('layer2')!.value, f.taps.get('relu')!.value, g.gradients.get('input')!.value, g.gradients.get('layer3')!.value, g.taps.get('layer3')!.value];
      const values = await readTensors(ctx, tensors);
      for (const t of [x, ...tensors, ...g.outputs.values()]) t.dispose();
      await model.dispose();
      return { chunks: [f.chunk, g.chunk], values, shapes: tensors.map((t) => t.shape) };
    }));
    const [one, split] = results;
    expect(one.chunks).toEqual([N, N]);
    expect(split.chunks).toEqual([2, 2]);
    expect(split.shapes).toEqual(one.shapes);
    one.values.forEach((v, k) => {
      const per = v.length / N;
      for (let i = 0; i < N; i++) expect(relError(split.values[k].subarray(i * per, (i + 1) * per), v.subarray(i * per, (i + 1) * per)), `result ${k}, image ${i}`).toBeLessThan(1e-4);
    });
  });

  it('a Grad-CAM appended to the model tape, split into chunks, matches float64 from the model\'s activations and gradients', async () => {
    const model = Model.fromBytes(capped, new Uint8Array(readFileSync(MODEL)), { name: 'resnet18-w8' });
    const x = Tensor.fromData(capped, xs, [N, ...IMAGE]);
    const w = onehot(capped, classes);
    const r = await model.runProgram({
      ...gradCam(model, 'layer3'), batch: N,
      feeds: { [model.inputName]: { tensor: x, batchAxis: 0 }, [Model.targetInput]: { tensor: w, batchAxis: 0 } },
      results: { cam: { batchAxis: 0 }, alpha: { batchAxis: 0 }, logits: { batchAxis: 0 } },
    });
    expect(r.chunk).toBe(2);
    expect(r.passes).toBe(3);
    expect(r.results.get('cam')!.shape).toEqual([N, 1, 64, 64]);
    const [cam, alpha, logits] = await readTensors(capped, ['cam', 'alpha', 'logits'].map((k) => r.results.get(k)!));
    // The reference: the model's own activations and gradients at layer3 (Model.grad, in one pass on an
    // uncapped device), then the CAM in float64.
    const whole = await gpu();
    const ref = Model.fromBytes(whole, new Uint8Array(readFileSync(MODEL)), { name: 'resnet18-w8' });
    const xw = Tensor.fromData(whole, xs, [N, ...IMAGE]);
    const g = await ref.grad(xw, { target: { classes }, wrt: ['layer3'], taps: ['layer3'] });
    expect(g.chunk).toBe(N);
    const [A, G, z] = await readTensors(whole, [g.taps.get('layer3')!.value, g.gradients.get('layer3')!.value, g.outputs.get('logits')!]);
    const [K, h, wd] = g.taps.get('layer3')!.value.shape.slice(1);
    expect(relError(logits, z)).toBeLessThan(1e-5);
    const wantAlpha = new Float64Array(N * K);
    const wantCam = new Float64Array(N * 64 * 64);
    for (let n = 0; n < N; n++) {
      const s = new Float64Array(h * wd);
      for (let k = 0; k < K; k++) {
        const base = (n * K + k) * h * wd;
        let m = 0;
        for (let j = 0; j < h * wd; j++) m += G[base + j];
        m /= h * wd;
        wantAlpha[n * K + k] = m;
        for (let j = 0; j < h * wd; j++) s[j] += m * A[base + j];
      }
      const up = bilinearRef(s.map((v) => Math.max(v, 0)), [1, 1, h, wd], 64, 64, { alignCorners: false }).data;
      wantCam.set(up, n * 64 * 64);
    }
    expect(Math.max(...wantCam)).toBeGreaterThan(0);
    expect(relError(alpha, wantAlpha)).toBeLessThan(1e-5);
    expect(relError(cam, wantCam)).toBeLessThan(1e-4);
    for (const t of [x, xw, w, ...r.results.values(), ...g.outputs.values(), ...[...g.taps.values(), ...g.gradients.values()].map((v) => v.value)]) t.dispose();
    await model.dispose();
    await ref.dispose();
  });

  it('results belong to the caller: later runs leave them alone, and disposing them returns the pool to its level', async () => {
    const ctx = await gpu();
    const start = inUse(ctx);
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(MODEL)), { name: 'resnet18-w8' });
    const spec = gradCam(model, 'layer3');
    const x = Tensor.fromData(ctx, xs.subarray(0, 2 * PER_IMAGE), [2, ...IMAGE]);
    const y = Tensor.fromData(ctx, xs.subarray(3 * PER_IMAGE), [2, ...IMAGE]);
    const w = onehot(ctx, [3, 0]);
    const run = (input: Tensor) => model.runProgram({ ...spec, batch: 2, feeds: { [model.inputName]: { tensor: input, batchAxis: 0 }, [Model.targetInput]: { tensor: w, batchAxis: 0 } }, results: { cam: { batchAxis: 0 } } });
    const first = await run(x);
    const camX = await first.results.get('cam')!.read();
    const level = inUse(ctx); // the program is compiled and cached now; `first` holds one result
    const second = await run(y);
    const created = ctx.pool.getStats().created;
    expect(inUse(ctx)).toBeGreaterThan(level);
    const camY = await second.results.get('cam')!.read();
    expect(relError(camY, camX)).toBeGreaterThan(1e-2); // different images, different maps
    expect(Array.from(await first.results.get('cam')!.read())).toEqual(Array.from(camX));
    second.results.get('cam')!.dispose();
    expect(inUse(ctx)).toBe(level);
    for (let i = 0; i < 20; i++) {
      const r = await run(i % 2 ? x : y);
      await readTensors(ctx, [...r.results.values()]);
      for (const t of r.results.values()) t.dispose();
      expect(inUse(ctx)).toBe(level);
    }
    expect(ctx.pool.getStats().created).toBe(created);
    for (const t of [x, y, w, first.results.get('cam')!]) t.dispose();
    await model.dispose();
    expect(inUse(ctx)).toBe(start);
  });

  it('a model program that fails mid-run (a result its graph lacks) leaks nothing', async () => {
    const ctx = await gpu();
    const start = inUse(ctx);
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(MODEL)), { name: 'resnet18-w8' });
    const x = Tensor.fromData(ctx, xs.subarray(0, 2 * PER_IMAGE), [2, ...IMAGE]);
    const w = onehot(ctx, [1, 2]);
    const feeds = { [model.inputName]: { tensor: x, batchAxis: 0 as const }, [Model.targetInput]: { tensor: w, batchAxis: 0 as const } };
    const ok = await model.runProgram({ ...gradCam(model, 'layer3'), batch: 2, feeds, results: { cam: { batchAxis: 0 } } });
    for (const t of ok.results.values()) t.dispose();
    const level = inUse(ctx);
    // The target weights not fed: found once the (cached) program is at hand, before anything is allocated.
    await expect(model.runProgram({ ...gradCam(model, 'layer3'), batch: 2, feeds: { [model.inputName]: feeds[model.inputName] }, results: { cam: { batchAxis: 0 } } })).rejects.toThrow(/no value given for input 'camgpu:target-weights'/);
    expect(inUse(ctx)).toBe(level);
    // A result the graph lacks: its program (another result set) compiles, is cached, then the run fails.
    await expect(model.runProgram({ ...gradCam(model, 'layer3'), batch: 2, feeds, results: { cam: { batchAxis: 0 }, heatmap: { batchAxis: 0 } } })).rejects.toThrow(/has no result 'heatmap'/);
    // A result the caller would have to free, had the run allocated it: none is left once the model is gone.
    for (const t of [x, w]) t.dispose();
    await model.dispose();
    expect(inUse(ctx)).toBe(start);
  });
});

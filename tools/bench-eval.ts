/**
 * `camgpu bench --eval`: insertion + deletion (every step, batched) of one image against the
 * same number of bare forward passes at the same pass size, in the same run (issue 10's
 * speed section). The timed eval runs after an untimed one, so both sides are warm: compiled
 * pipelines and cached plans; the first (cold) run is reported too.
 */
import { GpuContext, loadModel, readTensors, Tensor } from '../src/node.js';
import { causalPasses, type CausalPresetName, insertionDeletion } from '../src/metrics/causal.js';
import { seededInput } from './bench.js';

export interface EvalBenchOptions {
  preset: CausalPresetName;
  /** Rows per pass for both the eval and the bare passes. */
  batch: number;
  iters: number;
  json: boolean;
}

export interface EvalBench {
  model: string;
  adapter: string;
  date: string;
  preset: CausalPresetName;
  passes: number;
  batch: number;
  coldMs: number;
  evalMs: number[];
  bareMs: number[];
  evalPassesPerSec: number;
  barePassesPerSec: number;
  ratio: number;
}

const median = (v: readonly number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

export async function runEvalBench(path: string, o: EvalBenchOptions): Promise<EvalBench> {
  const ctx = await GpuContext.create();
  const model = loadModel(ctx, path);
  const log = (s: string) => {
    if (!o.json) console.log(s);
  };
  try {
    const image = model.defaultInputShape(1).slice(1);
    const [C, H, W] = image;
    const per = C * H * W;
    const adapter = ctx.adapterInfo.description || ctx.adapterInfo.device;
    const x = Tensor.fromData(ctx, seededInput(per), [1, C, H, W], 'bench-x');
    // A tie-free map with structure: a smooth bump plus a per-pixel ramp far below its steps.
    const map = Float32Array.from({ length: H * W }, (_, i) => {
      const [y, xx] = [Math.floor(i / W) / H - 0.4, (i % W) / W - 0.6];
      return Math.exp(-8 * (y * y + xx * xx)) * 0.999 + (i / (H * W)) * 1e-3;
    });
    const maps = Tensor.fromData(ctx, map, [1, H, W], 'bench-map');
    const probe = model.tape(1, { image });
    const classes = probe.logits.shape.at(-1)!;
    const seedHost = new Float32Array(classes);
    seedHost[0] = 1;
    const seed = Tensor.fromData(ctx, seedHost, [1, classes], 'bench-seed');
    const passes = causalPasses(H, W, { preset: o.preset });
    const evalOnce = async () => {
      const t0 = performance.now();
      const r = await insertionDeletion(model, { x, maps, seed, image: [0] }, { preset: o.preset, maxChunk: o.batch });
      const tensors = [...r.curves.values()].flatMap((c) => [c.curve, c.auc]);
      await readTensors(ctx, tensors);
      const ms = performance.now() - t0;
      for (const t of tensors) t.dispose();
      return ms;
    };
    // Bare: the same number of forward passes, `batch` images per pass, one readback at the end.
    const xb = Tensor.fromData(ctx, seededInput(o.batch * per), [o.batch, C, H, W], 'bench-bare');
    const rounds = Math.ceil(passes / o.batch);
    const bareOnce = async () => {
      const t0 = performance.now();
      let last: Tensor[] = [];
      for (let i = 0; i < rounds; i++) {
        for (const t of last) t.dispose();
        last = [...(await model.run(xb)).outputs.values()];
      }
      await readTensors(ctx, last);
      for (const t of last) t.dispose();
      return ((performance.now() - t0) * passes) / (rounds * o.batch);
    };
    log(`eval bench: ${path} on ${adapter}; insertion+deletion (${o.preset}) = ${passes} forward passes of one ${H}×${W} image, ${o.batch} rows per pass`);
    const coldMs = await evalOnce();
    log(`  cold (first) insertion+deletion: ${(coldMs / 1000).toFixed(2)} s`);
    await bareOnce();
    const evalMs: number[] = [];
    const bareMs: number[] = [];
    // Alternate, so that drifts of a shared machine fall on both sides.
    for (let i = 0; i < o.iters; i++) {
      bareMs.push(await bareOnce());
      evalMs.push(await evalOnce());
      log(`  round ${i + 1}: bare ${(bareMs[i] / 1000).toFixed(2)} s, insertion+deletion ${(evalMs[i] / 1000).toFixed(2)} s`);
    }
    for (const t of [x, maps, seed, xb]) t.dispose();
    const e = median(evalMs);
    const b = median(bareMs);
    const out: EvalBench = {
      model: path, adapter, date: new Date().toISOString(), preset: o.preset, passes, batch: o.batch, coldMs, evalMs, bareMs,
      evalPassesPerSec: (passes * 1000) / e, barePassesPerSec: (passes * 1000) / b, ratio: e / b,
    };
    log(`  median: insertion+deletion ${(e / 1000).toFixed(2)} s (${out.evalPassesPerSec.toFixed(1)} passes/s), bare ${(b / 1000).toFixed(2)} s (${out.barePassesPerSec.toFixed(1)} passes/s); ratio ${out.ratio.toFixed(3)}`);
    return out;
  } finally {
    await model.dispose();
    ctx.destroy();
  }
}

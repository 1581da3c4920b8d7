import { GpuContext } from '../src/runtime/device.js';
import { GpuImageSet, type HostImageSet } from '../src/train/data.js';
import { Rng } from '../src/train/rng.js';
import { TrainingSession } from '../src/train/session.js';
import { findFashionMnist, loadFashionMnist, pixelStats } from './fashion-mnist.js';
import { type ArchName, optimizerOptions, RECIPES } from './train.js';

export interface TrainBench {
  arch: string;
  adapter: string;
  batch: number;
  optimizer: string;
  data: string;
  steps: number;
  medianStepMs: number;
  imagesPerSec: number;
  gflopPerStep: number;
  gflops: number;
  date: string;
}

/** Deterministic stand-in images when Fashion-MNIST is not installed: throughput does not depend on pixel values. */
function syntheticSet(count: number): HostImageSet {
  const rng = new Rng(12345);
  const images = Uint8Array.from({ length: count * 784 }, () => rng.int(256));
  const labels = Uint8Array.from({ length: count }, () => rng.int(10));
  return { images, labels, count, rows: 28, cols: 28 };
}

/**
 * Measured training throughput: full steps (batch gather, forward, backward, optimizer) as
 * `camgpu train` runs them, timed one by one after `warmup` untimed ones, each waited for.
 * images/s = batch / median step time.
 */
export async function runTrainBench(name: ArchName, o: { batch?: number; iters: number; warmup: number; optimizer?: 'sgd' | 'adam'; json: boolean }): Promise<TrainBench> {
  const recipe = RECIPES[name];
  const batch = o.batch ?? recipe.batch;
  const optimizer = o.optimizer ?? recipe.optimizer;
  const dir = findFashionMnist();
  const host = dir ? loadFashionMnist(dir).train : syntheticSet(4 * batch);
  const { mean, std } = dir ? pixelStats(host) : { mean: 0.5, std: 0.25 };
  const ctx = await GpuContext.create();
  const set = GpuImageSet.upload(ctx, host, 'bench');
  const session = await TrainingSession.create(ctx, recipe.arch, set, { batch, evalBatch: batch, mean, std, seed: 1, optimizer: optimizerOptions(optimizer, recipe.lr[optimizer]) });
  const order = Uint32Array.from({ length: host.count }, (_, i) => i);
  new Rng(1).shuffle(order);
  const perEpoch = session.beginEpoch(order);
  const times: number[] = [];
  let k = 0;
  const step = async () => {
    if (k === perEpoch) {
      session.beginEpoch(order);
      k = 0;
    }
    await session.step(recipe.lr[optimizer]);
    await session.sync();
    k++;
  };
  for (let i = 0; i < o.warmup; i++) await step();
  for (let i = 0; i < o.iters; i++) {
    const t0 = performance.now();
    await step();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  const r: TrainBench = {
    arch: recipe.arch.name, adapter: ctx.adapterInfo.description || ctx.adapterInfo.device, batch, optimizer,
    data: dir ? `Fashion-MNIST (${dir})` : 'synthetic images (Fashion-MNIST not installed)', steps: o.iters,
    medianStepMs: median, imagesPerSec: (batch * 1000) / median, gflopPerStep: session.flopsPerStep / 1e9, gflops: session.flopsPerStep / (median * 1e6),
    date: new Date().toISOString(),
  };
  if (!o.json) {
    console.log(`training ${r.arch} on ${r.adapter}: batch ${batch}, ${optimizer}, ${r.data}`);
    console.log(`  median step ${median.toFixed(1)} ms over ${o.iters} steps (after ${o.warmup} warm-up): ${r.imagesPerSec.toFixed(0)} images/s, ${r.gflopPerStep.toFixed(2)} GFLOP/step, ${r.gflops.toFixed(1)} GFLOP/s`);
  }
  session.dispose();
  set.dispose();
  ctx.destroy();
  return r;
}

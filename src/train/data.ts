import type { GpuContext } from '../runtime/device.js';
import { InputError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { Recorder } from '../runtime/recorder.js';
import { StepLaunches } from '../runtime/step-launches.js';
import { readTensors, Tensor, writeFloats } from '../runtime/tensor.js';
import { cdiv } from '../ops/types.js';
import { classifyKernel, gatherImagesKernel, gatherLabelsKernel, TRAIN_WG, tallyFoldKernel, tallyKernel } from '../shaders/train.js';

/** Grayscale uint8 images with integer labels, as a dataset reader returns them. */
export interface HostImageSet {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  rows: number;
  cols: number;
}

const u32 = (ctx: GpuContext, words: Uint32Array, label: string): GPUBuffer => {
  const b = ctx.pool.acquire(Math.max(4, words.byteLength), undefined, label);
  writeFloats(ctx.device.queue, b, 0, words);
  return b;
};

/**
 * A labelled image set uploaded once: pixels as bytes packed four to a u32 (a quarter of
 * float32's memory; 47 MB for Fashion-MNIST's training split), labels one per u32.
 */
export class GpuImageSet {
  readonly ctx: GpuContext;
  readonly count: number;
  readonly rows: number;
  readonly cols: number;
  readonly data: GPUBuffer;
  readonly labels: GPUBuffer;
  readonly labelValues: Uint8Array;

  private constructor(ctx: GpuContext, set: HostImageSet, data: GPUBuffer, labels: GPUBuffer) {
    this.ctx = ctx;
    this.count = set.count;
    this.rows = set.rows;
    this.cols = set.cols;
    this.data = data;
    this.labels = labels;
    this.labelValues = set.labels;
  }

  static upload(ctx: GpuContext, set: HostImageSet, label = 'dataset'): GpuImageSet {
    const pixels = set.rows * set.cols;
    if (pixels % 4 !== 0) throw new InputError(`${label}: images of ${set.rows}×${set.cols} pixels cannot be packed four to a word`);
    if (set.images.length !== set.count * pixels || set.labels.length !== set.count) throw new InputError(`${label}: ${set.images.length} pixels and ${set.labels.length} labels for ${set.count} images of ${pixels}`);
    const bytes = new Uint8Array(set.images.length);
    bytes.set(set.images);
    const data = u32(ctx, new Uint32Array(bytes.buffer), `${label}/pixels`);
    const labels = u32(ctx, Uint32Array.from(set.labels), `${label}/labels`);
    return new GpuImageSet(ctx, set, data, labels);
  }

  get pixels(): number {
    return this.rows * this.cols;
  }

  dispose(): void {
    this.ctx.pool.release(this.data);
    this.ctx.pool.release(this.labels);
  }
}

/** An order of items (an epoch's shuffle, a validation subset), padded to whole batches with its first item. */
export class IndexBuffer {
  readonly buffer: GPUBuffer;
  readonly capacity: number;
  private n = 0;
  private readonly ctx: GpuContext;

  constructor(ctx: GpuContext, capacity: number, label = 'index') {
    this.ctx = ctx;
    this.capacity = capacity;
    this.buffer = ctx.pool.acquire(Math.max(4, capacity * 4), undefined, label);
  }

  /** The items to visit, in order; `batch` pads them to a multiple (the padding is never counted). */
  write(indices: Uint32Array, batch: number): number {
    const padded = cdiv(indices.length, batch) * batch;
    if (padded > this.capacity) throw new InputError(`${indices.length} items (${padded} padded) exceed the index buffer's ${this.capacity}`);
    const words = new Uint32Array(padded).fill(indices[0] ?? 0);
    words.set(indices);
    writeFloats(this.ctx.device.queue, this.buffer, 0, words);
    this.n = indices.length;
    return padded / batch;
  }

  get length(): number {
    return this.n;
  }

  dispose(): void {
    this.ctx.pool.release(this.buffer);
  }
}

/** Where a batch lands: the program's bound input buffers. */
export interface BatchTargets {
  images: GPUBufferBinding;
  seed: GPUBufferBinding;
  labels: GPUBufferBinding;
}

/**
 * Gathers batch k of an index order on the GPU: the normalized images (what the program
 * then resizes), the loss seed −onehot/batch and the batch's labels. `offset` (k·batch)
 * is the only per-step value.
 */
export async function batchGather(set: GpuImageSet, index: IndexBuffer, batch: number, classes: number, targets: BatchTargets, mean: number, std: number): Promise<StepLaunches> {
  const words = set.pixels / 4;
  return StepLaunches.create(set.ctx, [
    {
      kernel: gatherImagesKernel(),
      values: { n: batch * words, words, offset: 0, mean, inv_std: 1 / std },
      buffers: [{ buffer: set.data }, { buffer: index.buffer }, targets.images],
      workgroups: grid1d(cdiv(batch * words, TRAIN_WG)),
      label: 'gather images',
    },
    {
      kernel: gatherLabelsKernel(),
      values: { batch, classes, offset: 0, scale: -1 / batch },
      buffers: [{ buffer: set.labels }, { buffer: index.buffer }, targets.seed, targets.labels],
      workgroups: grid1d(cdiv(batch * classes, TRAIN_WG)),
      label: 'gather labels',
    },
  ], 'gather-uniforms');
}

/** Correct predictions and mean loss over the items of an order. */
export interface Tally {
  count: number;
  correct: number;
  accuracy: number;
  loss: number;
}

/**
 * Per-item predictions and losses of a pass over an index order, written batch by batch
 * into buffers of the order's length, then counted on the GPU: one readback of two numbers
 * per evaluation, none per batch.
 */
export class Scoreboard {
  readonly ctx: GpuContext;
  readonly capacity: number;
  readonly pred: GPUBuffer;
  readonly loss: GPUBuffer;
  private readonly partial: GPUBuffer;
  private readonly out: GPUBuffer;
  private classify: StepLaunches | null = null;
  private readonly parts: number;
  private readonly chunk: number;

  constructor(ctx: GpuContext, capacity: number, label = 'scores') {
    this.ctx = ctx;
    this.capacity = capacity;
    this.pred = ctx.pool.acquire(Math.max(4, capacity * 4), undefined, `${label}/pred`);
    this.loss = ctx.pool.acquire(Math.max(4, capacity * 4), undefined, `${label}/loss`);
    this.chunk = 256;
    this.parts = Math.max(1, cdiv(capacity, this.chunk));
    this.partial = ctx.pool.acquire(this.parts * 8, undefined, `${label}/partial`);
    this.out = ctx.pool.acquire(8, undefined, `${label}/out`);
  }

  /** Prepares the per-batch launch that scores a program's log-probabilities [batch, classes]. */
  async bind(logp: GPUBufferBinding, batchLabels: GPUBufferBinding, batch: number, classes: number): Promise<void> {
    this.classify?.dispose();
    this.classify = await StepLaunches.create(this.ctx, [{
      kernel: classifyKernel(),
      values: { batch, classes, offset: 0 },
      buffers: [logp, batchLabels, { buffer: this.pred }, { buffer: this.loss }],
      workgroups: [cdiv(batch, 64), 1, 1],
      label: 'classify',
    }], 'classify-uniforms');
  }

  /** Records the scoring of the batch whose first item is entry `offset` of the order. */
  encode(rec: Recorder, offset: number): void {
    if (!this.classify) throw new Error('Scoreboard.encode before bind');
    this.classify.encode(rec, { offset });
  }

  /** Counts the first `count` items of `index` (one submission, one readback). */
  async tally(set: GpuImageSet, index: IndexBuffer, count: number): Promise<Tally> {
    if (count > this.capacity) throw new InputError(`cannot tally ${count} items in a scoreboard of ${this.capacity}`);
    const parts = Math.max(1, cdiv(count, this.chunk));
    const launches = await StepLaunches.create(this.ctx, [
      {
        kernel: tallyKernel(),
        values: { count, chunk: this.chunk, parts },
        buffers: [{ buffer: this.pred }, { buffer: this.loss }, { buffer: index.buffer }, { buffer: set.labels }, { buffer: this.partial }],
        workgroups: [cdiv(parts, 64), 1, 1],
        label: 'tally',
      },
      { kernel: tallyFoldKernel(), values: { count, chunk: this.chunk, parts }, buffers: [{ buffer: this.partial }, { buffer: this.out, offset: 0, size: 8 }], workgroups: [1, 1, 1], label: 'tally fold' },
    ], 'tally-uniforms');
    const rec = new Recorder(this.ctx, { label: 'tally' });
    launches.encode(rec);
    rec.submit();
    const [out] = await readTensors(this.ctx, [new Tensor(this.ctx, [2], this.out)]);
    launches.dispose();
    return { count, correct: out[0], accuracy: count > 0 ? out[0] / count : 0, loss: count > 0 ? out[1] / count : 0 };
  }

  /** The predicted class of each of the first `count` items (for comparisons with other runtimes). */
  async predictions(count: number): Promise<Uint32Array> {
    const [v] = await readTensors(this.ctx, [new Tensor(this.ctx, [count], this.pred)]);
    return new Uint32Array(v.buffer, v.byteOffset, count);
  }

  dispose(): void {
    this.classify?.dispose();
    for (const b of [this.pred, this.loss, this.partial, this.out]) this.ctx.pool.release(b);
  }
}

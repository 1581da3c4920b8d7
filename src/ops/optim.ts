import type { GpuContext } from '../runtime/device.js';
import { InputError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import type { Recorder } from '../runtime/recorder.js';
import { formatShape, sizeOf } from '../runtime/shape.js';
import { type StepLaunch, StepLaunches } from '../runtime/step-launches.js';
import { readTensors, Tensor, writeFloats } from '../runtime/tensor.js';
import { adamKernel, OPTIM_WG, sgdKernel } from '../shaders/optim.js';
import { cdiv } from './types.js';

/** One tensor of a model's state on the GPU: a trainable parameter, or a buffer (running statistics). */
export interface StoredParam {
  readonly name: string;
  readonly shape: readonly number[];
  readonly buffer: GPUBuffer;
  /** Updated by the optimizer (else written by the program itself, as running statistics are). */
  readonly trainable: boolean;
  /** Takes weight decay (convolution and dense weights; not biases or normalization parameters). */
  readonly decay: boolean;
  /** Optimizer state of the same shape (SGD: velocity; Adam: first and second moments), zero-initialized. */
  readonly state: GPUBuffer[];
}

/**
 * A model's parameters and buffers in GPU buffers that programs read in place (compilePlan's
 * `bound`) and optimizers update in place, with their optimizer state; host copies are made
 * on demand with one submission for all of them.
 */
export class ParameterStore {
  readonly ctx: GpuContext;
  private readonly params = new Map<string, StoredParam>();

  constructor(ctx: GpuContext) {
    this.ctx = ctx;
  }

  add(name: string, shape: readonly number[], data: Float32Array, options: { trainable?: boolean; decay?: boolean } = {}): StoredParam {
    if (this.params.has(name)) throw new InputError(`parameter '${name}' is already stored`);
    if (data.length !== sizeOf(shape)) throw new InputError(`parameter '${name}': ${data.length} values for shape ${formatShape(shape)}`);
    const buffer = this.ctx.pool.acquire(Math.max(4, data.length * 4), undefined, name);
    writeFloats(this.ctx.device.queue, buffer, 0, data);
    const p: StoredParam = { name, shape: [...shape], buffer, trainable: options.trainable ?? true, decay: options.decay ?? false, state: [] };
    this.params.set(name, p);
    return p;
  }

  get(name: string): StoredParam {
    const p = this.params.get(name);
    if (!p) throw new InputError(`no parameter '${name}' (stored: ${[...this.params.keys()].join(', ')})`);
    return p;
  }

  has(name: string): boolean {
    return this.params.has(name);
  }

  all(): StoredParam[] {
    return [...this.params.values()];
  }

  trainable(): StoredParam[] {
    return this.all().filter((p) => p.trainable);
  }

  /** Parameter buffers by name, for compilePlan's `bound`. */
  buffers(): Map<string, GPUBuffer> {
    return new Map(this.all().map((p) => [p.name, p.buffer]));
  }

  binding(name: string): GPUBufferBinding {
    const p = this.get(name);
    return { buffer: p.buffer, offset: 0, size: Math.max(4, sizeOf(p.shape) * 4) };
  }

  /** `count` zero-filled state buffers of the parameter's size (made once). */
  stateOf(name: string, count: number): GPUBuffer[] {
    const p = this.get(name);
    while (p.state.length < count) {
      const n = sizeOf(p.shape);
      const b = this.ctx.pool.acquire(Math.max(4, n * 4), undefined, `${name}/state${p.state.length}`);
      writeFloats(this.ctx.device.queue, b, 0, new Float32Array(Math.max(n, 1)));
      p.state.push(b);
    }
    return p.state.slice(0, count);
  }

  write(name: string, data: Float32Array): void {
    const p = this.get(name);
    if (data.length !== sizeOf(p.shape)) throw new InputError(`parameter '${name}': ${data.length} values for shape ${formatShape(p.shape)}`);
    writeFloats(this.ctx.device.queue, p.buffer, 0, data);
  }

  /** Host copies of the named parameters (default: all), read with one submission after all queued work. */
  async read(names: readonly string[] = [...this.params.keys()]): Promise<Map<string, Float32Array>> {
    const ps = names.map((n) => this.get(n));
    const values = await readTensors(this.ctx, ps.map((p) => new Tensor(this.ctx, p.shape, p.buffer)));
    return new Map(ps.map((p, i) => [p.name, values[i]]));
  }

  dispose(): void {
    for (const p of this.params.values()) for (const b of [p.buffer, ...p.state]) this.ctx.pool.release(b);
    this.params.clear();
  }
}

export interface SgdOptions {
  kind: 'sgd';
  lr: number;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
}

export interface AdamOptions {
  kind: 'adam';
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** AdamW: weight decay shrinks the weights directly instead of joining the gradient. */
  decoupled: boolean;
}

export type OptimizerOptions = SgdOptions | AdamOptions;

export const SGD_DEFAULTS: SgdOptions = { kind: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 5e-4, nesterov: true };
export const ADAM_DEFAULTS: AdamOptions = { kind: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false };

/**
 * Updates every trainable parameter of a store in place from its gradient buffer: one
 * launch per parameter, prepared once, recorded into the training step's own encoder right
 * after the program's pass. The step count (Adam's bias corrections) and the learning rate
 * are uniforms written per step, so nothing is read back between steps.
 */
export class Optimizer {
  readonly options: OptimizerOptions;
  private readonly launches: StepLaunches;
  private steps = 0;

  private constructor(options: OptimizerOptions, launches: StepLaunches) {
    this.options = options;
    this.launches = launches;
  }

  /** `grads`: each trainable parameter's gradient (a binding of its size), as the training program leaves it. */
  static async create(store: ParameterStore, options: OptimizerOptions, grads: ReadonlyMap<string, GPUBufferBinding>): Promise<Optimizer> {
    const list: StepLaunch[] = [];
    for (const p of store.trainable()) {
      const g = grads.get(p.name);
      if (!g) throw new InputError(`optimizer: no gradient for parameter '${p.name}'`);
      const n = sizeOf(p.shape);
      const wd = p.decay ? options.weightDecay : 0;
      const param = store.binding(p.name);
      const bind = (b: GPUBuffer): GPUBufferBinding => ({ buffer: b, offset: 0, size: param.size });
      if (options.kind === 'sgd') {
        const [v] = store.stateOf(p.name, 1);
        list.push({
          kernel: sgdKernel(options.nesterov),
          values: { n, lr: options.lr, momentum: options.momentum, weight_decay: wd },
          buffers: [g, param, bind(v)],
          workgroups: grid1d(cdiv(n, OPTIM_WG)),
          label: `sgd ${p.name}`,
          flops: 5 * n,
        });
      } else {
        const [m, v] = store.stateOf(p.name, 2);
        list.push({
          kernel: adamKernel(options.decoupled),
          values: { n, step: 1, lr: options.lr, beta1: options.beta1, beta2: options.beta2, eps: options.eps, weight_decay: wd },
          buffers: [g, param, bind(m), bind(v)],
          workgroups: grid1d(cdiv(n, OPTIM_WG)),
          label: `adam ${p.name}`,
          flops: 12 * n,
        });
      }
    }
    return new Optimizer(options, await StepLaunches.create(store.ctx, list, 'optimizer'));
  }

  /** Updates applied so far. */
  get stepCount(): number {
    return this.steps;
  }

  /** Records one update of every parameter with learning rate `lr` (default: the configured one). */
  encode(rec: Recorder, lr = this.options.lr): void {
    this.steps++;
    this.launches.encode(rec, { lr, step: this.steps });
  }

  dispose(): void {
    this.launches.dispose();
  }
}

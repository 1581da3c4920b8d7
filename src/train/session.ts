import { gradients } from '../ops/autodiff.js';

/** Model FLOPs per image (convolutions and dense layers), by the op registry's rules. */
export { graphFlops } from '../ops/registry.js';
import { runningStatsUpdate } from '../ops/batchnorm.js';
import { compilePlan } from '../ops/compile.js';
import type { OpGraph } from '../ops/graph.js';
import { type OptimizerOptions, Optimizer, ParameterStore } from '../ops/optim.js';
import { foldAffineIntoConv, removeDeadOps } from '../ops/passes.js';
import { graphFlops } from '../ops/registry.js';
import { type Sym, Tape } from '../ops/tape.js';
import type { GpuContext } from '../runtime/device.js';
import { InputError } from '../runtime/errors.js';
import type { ExecutionPlan, PlanSlot } from '../runtime/plan.js';
import { Recorder } from '../runtime/recorder.js';
import { type StepLaunch, StepLaunches } from '../runtime/step-launches.js';
import { WeightStore } from '../runtime/weights.js';
import { sizeOf } from '../runtime/shape.js';
import { batchGather, type GpuImageSet, IndexBuffer, Scoreboard, type Tally } from './data.js';
import { initialValues, Net, type ParamDecl } from './net.js';
import { Rng } from './rng.js';

/** A network definition: one function of a Net gives the training, evaluation and export graphs. */
export interface Architecture {
  name: string;
  /** Side of the square model input; images are resized to it (bilinear, half-pixel) inside the programs. */
  inputSize: number;
  channels: number;
  classes: number;
  /** Module path of the last convolutional block (the CAM target layer). */
  targetLayer: string;
  /** Records the network on x ([N, channels, inputSize, inputSize]) and returns the logits, named 'logits'. */
  build(net: Net, x: Sym): Sym;
}

export interface SessionOptions {
  batch: number;
  /** Images per evaluation pass. */
  evalBatch: number;
  /** Pixel normalization: (p/255 − mean)/std, applied before the resize. */
  mean: number;
  std: number;
  seed: number;
  optimizer: OptimizerOptions;
}

const IMAGES = 'camgpu:images';
const SEED = 'camgpu:seed';
const gradName = (p: string) => `camgpu:grad:${p}`;

/** Buffers a program reads (its inputs, bound) and its log-probabilities. */
interface Program {
  plan: ExecutionPlan;
  images: GPUBuffer;
  imageBytes: number;
  seed: GPUBuffer;
  labels: GPUBuffer;
  logp: PlanSlot;
  batch: number;
}

function slotBinding(s: PlanSlot): GPUBufferBinding {
  return { buffer: s.buffer, offset: 0, size: Math.max(4, s.bytes) };
}

/**
 * Training on the GPU with no readback per step: each step gathers its shuffled batch from
 * the uploaded dataset, runs the forward and backward program (resize, network, log-softmax,
 * the VJPs of the mean cross-entropy), scores the batch into per-epoch buffers, updates the
 * batch normalizations' running statistics and applies the optimizer, all recorded into one
 * command encoder and submitted once. Evaluation runs the network with running statistics.
 */
export class TrainingSession {
  readonly ctx: GpuContext;
  readonly arch: Architecture;
  readonly options: SessionOptions;
  readonly store: ParameterStore;
  readonly decls: ParamDecl[];
  readonly trainSet: GpuImageSet;
  /** FLOPs of one training step's program (forward and backward), as the kernels count them. */
  readonly flopsPerStep: number;
  /** FLOPs of the network's forward pass on one image. */
  readonly forwardFlopsPerImage: number;
  private readonly weights: WeightStore;
  private readonly program: Program;
  private readonly order: IndexBuffer;
  private readonly scores: Scoreboard;
  private readonly gather: StepLaunches;
  private readonly after: StepLaunches;
  private readonly optimizer: Optimizer;
  private readonly inflight: Promise<unknown>[] = [];
  private evalPrograms = new Map<number, Program>();
  private stepInEpoch = 0;
  private epochItems = 0;

  private constructor(init: {
    ctx: GpuContext; arch: Architecture; options: SessionOptions; store: ParameterStore; decls: ParamDecl[]; trainSet: GpuImageSet; weights: WeightStore;
    program: Program; order: IndexBuffer; scores: Scoreboard; gather: StepLaunches; after: StepLaunches; optimizer: Optimizer; forwardFlopsPerImage: number;
  }) {
    this.ctx = init.ctx;
    this.arch = init.arch;
    this.options = init.options;
    this.store = init.store;
    this.decls = init.decls;
    this.trainSet = init.trainSet;
    this.weights = init.weights;
    this.program = init.program;
    this.order = init.order;
    this.scores = init.scores;
    this.gather = init.gather;
    this.after = init.after;
    this.optimizer = init.optimizer;
    this.forwardFlopsPerImage = init.forwardFlopsPerImage;
    this.flopsPerStep = init.program.plan.flops;
  }

  static async create(ctx: GpuContext, arch: Architecture, trainSet: GpuImageSet, options: SessionOptions): Promise<TrainingSession> {
    const B = options.batch;
    const tape = new Tape();
    const net = new Net(tape, 'train');
    const x = networkInput(tape, arch, B, trainSet);
    const logits = net.tape.sym(arch.build(net, x).name);
    if (logits.shape.length !== 2 || logits.shape[1] !== arch.classes) throw new InputError(`${arch.name}: logits of shape [${logits.shape}], expected [${B}, ${arch.classes}]`);
    const logp = tape.softmax(logits, -1, true);
    const seed = tape.input(SEED, [B, arch.classes]);
    const decls = [...net.params.values()];
    const trainable = decls.filter((d) => d.trainable).map((d) => d.name);
    const grads = gradients(tape, new Map([[logp.name, seed]]), trainable);
    const keep = new Set([logp.name, ...net.batchNorms.map((b) => b.stats.name)]);
    for (const p of trainable) {
      const g = grads.get(p);
      if (!g) throw new InputError(`${arch.name}: the loss does not depend on parameter '${p}'`);
      tape.record({ kind: 'alias', inputs: [g.name] }, g.shape, { name: gradName(p), opType: 'Identity' }, gradName(p));
      keep.add(gradName(p));
    }
    // Parameters, initialized in declaration order from the seed: the same seed gives the same network.
    const store = new ParameterStore(ctx);
    const rng = Rng.derive(options.seed, 'init');
    for (const d of decls) store.add(d.name, d.shape, initialValues(d, rng), { trainable: d.trainable, decay: d.decay });
    const weights = new WeightStore(ctx);
    const program = await compileProgram(ctx, tape, weights, store, keep, logp.name, B, arch.classes, trainSet);
    const order = new IndexBuffer(ctx, Math.ceil(trainSet.count / B) * B, 'train order');
    const scores = new Scoreboard(ctx, order.capacity, 'train scores');
    await scores.bind(slotBinding(program.logp), { buffer: program.labels, offset: 0, size: B * 4 }, B, arch.classes);
    const gather = await batchGather(trainSet, order, B, arch.classes, programTargets(program, arch.classes), options.mean, options.std);
    const running: StepLaunch[] = net.batchNorms.map((site) =>
      runningStatsUpdate(`running ${site.path}`, slotBinding(program.plan.results.get(site.stats.name)!), store.binding(site.running), site.channels, site.perChannel));
    const after = await StepLaunches.create(ctx, running, 'running-stats');
    const gradBindings = new Map(trainable.map((p) => [p, slotBinding(program.plan.results.get(gradName(p))!)]));
    const optimizer = await Optimizer.create(store, options.optimizer, gradBindings);
    const forwardFlopsPerImage = graphFlops(exportGraph(arch, new Map(decls.map((d) => [d.name, initialValues(d, new Rng(0))]))));
    return new TrainingSession({ ctx, arch, options, store, decls, trainSet, weights, program, order, scores, gather, after, optimizer, forwardFlopsPerImage });
  }

  get batch(): number {
    return this.options.batch;
  }

  get stepsTaken(): number {
    return this.optimizer.stepCount;
  }

  /** Starts an epoch over `indices` of the training set (whole batches only: the remainder is left out). */
  beginEpoch(indices: Uint32Array): number {
    const steps = Math.floor(indices.length / this.batch);
    if (steps === 0) throw new InputError(`an epoch of ${indices.length} items has no whole batch of ${this.batch}`);
    this.order.write(indices.subarray(0, steps * this.batch), this.batch);
    this.stepInEpoch = 0;
    this.epochItems = steps * this.batch;
    return steps;
  }

  /** Submits the next training step with learning rate `lr`; waits only to keep at most two steps queued. */
  async step(lr: number): Promise<void> {
    const offset = this.stepInEpoch * this.batch;
    if (offset + this.batch > this.epochItems) throw new InputError('the epoch has no batch left; call beginEpoch');
    const rec = new Recorder(this.ctx, { label: 'train step' });
    this.gather.encode(rec, { offset });
    this.program.plan.encode(rec);
    this.scores.encode(rec, offset);
    this.after.encode(rec);
    this.optimizer.encode(rec, lr);
    rec.submit();
    this.stepInEpoch++;
    this.inflight.push(this.ctx.device.queue.onSubmittedWorkDone());
    while (this.inflight.length > 2) await this.ctx.guard(this.inflight.shift()!);
  }

  /** Waits for every submitted step. */
  async sync(): Promise<void> {
    this.inflight.length = 0;
    await this.ctx.sync();
  }

  /** Mean loss and accuracy of the steps taken so far in this epoch (as the network was at each step). */
  async epochMetrics(): Promise<Tally> {
    await this.sync();
    return this.scores.tally(this.trainSet, this.order, this.stepInEpoch * this.batch);
  }

  /** Accuracy and mean loss of the network (running statistics) on `indices` of `set`; with `predictions`, each item's class too. */
  async evaluate(set: GpuImageSet, indices: Uint32Array, options: { predictions?: boolean } = {}): Promise<Tally & { predictions?: Uint32Array }> {
    const B = this.options.evalBatch;
    const program = await this.evalProgram(B, set);
    const order = new IndexBuffer(this.ctx, Math.ceil(indices.length / B) * B, 'eval order');
    const scores = new Scoreboard(this.ctx, order.capacity, 'eval scores');
    try {
      const batches = order.write(indices, B);
      await scores.bind(slotBinding(program.logp), { buffer: program.labels, offset: 0, size: B * 4 }, B, this.arch.classes);
      const gather = await batchGather(set, order, B, this.arch.classes, programTargets(program, this.arch.classes), this.options.mean, this.options.std);
      for (let k = 0; k < batches; k++) {
        const rec = new Recorder(this.ctx, { label: 'eval batch' });
        gather.encode(rec, { offset: k * B });
        program.plan.encode(rec);
        scores.encode(rec, k * B);
        rec.submit();
        // Per-step uniforms are rewritten per batch, so batches are submitted one by one; two may be queued.
        if (k % 2 === 1) await this.ctx.sync();
      }
      gather.dispose();
      const t = await scores.tally(set, order, indices.length);
      return options.predictions ? { ...t, predictions: await scores.predictions(indices.length) } : t;
    } finally {
      scores.dispose();
      order.dispose();
    }
  }

  private async evalProgram(B: number, set: GpuImageSet): Promise<Program> {
    const known = this.evalPrograms.get(B);
    if (known) return known;
    const tape = new Tape();
    const net = new Net(tape, 'eval');
    const x = networkInput(tape, this.arch, B, set);
    const logp = tape.softmax(this.arch.build(net, x), -1, true);
    tape.input(SEED, [B, this.arch.classes]);
    const p = await compileProgram(this.ctx, tape, this.weights, this.store, new Set([logp.name]), logp.name, B, this.arch.classes, set);
    this.evalPrograms.set(B, p);
    return p;
  }

  /** Host copies of every parameter and buffer (running statistics included). */
  async parameters(): Promise<Map<string, Float32Array>> {
    await this.sync();
    return this.store.read();
  }

  /**
   * The inference graph for export: input 'input' [1, channels, size, size] (already resized
   * and normalized), output 'logits', batch normalizations folded into their convolutions.
   */
  async exportGraph(): Promise<OpGraph> {
    return exportGraph(this.arch, await this.parameters());
  }

  dispose(): void {
    for (const p of [this.program, ...this.evalPrograms.values()]) disposeProgram(this.ctx, p);
    this.evalPrograms.clear();
    this.gather.dispose();
    this.after.dispose();
    this.optimizer.dispose();
    this.scores.dispose();
    this.order.dispose();
    this.weights.dispose();
    this.store.dispose();
  }
}

/** The graph to export from parameter values (see TrainingSession.exportGraph). */
export function exportGraph(arch: Architecture, values: ReadonlyMap<string, Float32Array>): OpGraph {
  const tape = new Tape();
  const net = new Net(tape, 'export', values);
  const x = tape.input('input', [1, arch.channels, arch.inputSize, arch.inputSize]);
  const logits = arch.build(net, x);
  if (logits.name !== 'logits') throw new InputError(`${arch.name}: the network's output must be named 'logits', got '${logits.name}'`);
  tape.graph.outputs.push(logits.name);
  const keep = new Set<string>();
  return removeDeadOps(foldAffineIntoConv(tape.graph, keep), keep);
}

/** The program input: a batch of dataset images, resized to the architecture's input size. */
function networkInput(tape: Tape, arch: Architecture, batch: number, set: GpuImageSet): Sym {
  const raw = tape.input(IMAGES, [batch, arch.channels, set.rows, set.cols]);
  if (arch.channels !== 1) throw new InputError(`${arch.name}: the dataset is grayscale; the architecture wants ${arch.channels} channels`);
  if (set.rows === arch.inputSize && set.cols === arch.inputSize) return raw;
  return tape.resize(raw, [arch.inputSize, arch.inputSize], { alignCorners: false });
}

async function compileProgram(ctx: GpuContext, tape: Tape, weights: WeightStore, store: ParameterStore, keep: Set<string>, logp: string, batch: number, classes: number, set: GpuImageSet): Promise<Program> {
  const images = ctx.pool.acquire(batch * set.pixels * 4, undefined, 'batch images');
  const seed = ctx.pool.acquire(batch * classes * 4, undefined, 'batch seed');
  const labels = ctx.pool.acquire(batch * 4, undefined, 'batch labels');
  const bound = new Map([...store.buffers(), [IMAGES, images], [SEED, seed]]);
  const plan = await compilePlan(ctx, tape.graph, weights, keep, bound);
  if (plan.inputs.size > 0) throw new Error(`internal: unbound program inputs ${[...plan.inputs.keys()].join(', ')}`);
  return { plan, images, imageBytes: batch * set.pixels * 4, seed, labels, logp: plan.results.get(logp)!, batch };
}

function programTargets(p: Program, classes: number) {
  return {
    images: { buffer: p.images, offset: 0, size: p.imageBytes },
    seed: { buffer: p.seed, offset: 0, size: p.batch * classes * 4 },
    labels: { buffer: p.labels, offset: 0, size: p.batch * 4 },
  };
}

function disposeProgram(ctx: GpuContext, p: Program): void {
  p.plan.dispose();
  for (const b of [p.images, p.seed, p.labels]) ctx.pool.release(b);
}

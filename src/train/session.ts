import { gradients } from '../ops/autodiff.js';

/** Model FLOPs per image (convolutions and dense layers), by the op registry's rules. */
export { graphFlops } from '../ops/registry.js';
import { runningStatsUpdate } from '../ops/batchnorm.js';
import type { OpGraph } from '../ops/graph.js';
import { type OptimizerOptions, Optimizer, ParameterStore } from '../ops/optim.js';
import { foldAffineIntoConv, removeDeadOps } from '../ops/passes.js';
import { type CompiledProgram, ProgramRunner, type ProgramSpec, type RunRequest } from '../ops/program.js';
import { graphFlops } from '../ops/registry.js';
import { type Sym, Tape } from '../ops/tape.js';
import type { GpuContext } from '../runtime/device.js';
import { InputError } from '../runtime/errors.js';
import type { PlanSlot } from '../runtime/plan.js';
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
const LABELS = 'camgpu:labels';
/** Result name of a parameter's gradient (read in place by the optimizer). */
const gradName = (p: string) => `grad:${p}`;

/**
 * A compiled program (owned by the session's runner) and the buffers it reads in place:
 * the batch's images and seed (bound inputs, written by the gather launches), its labels.
 */
interface Program {
  compiled: CompiledProgram;
  /** What each step records through the runner: nothing fed, nothing copied out (results are read in place). */
  run: RunRequest;
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
  /** Compiles and caches the session's programs (never evicted: launches bind their slots) and records them. */
  private readonly runner: ProgramRunner;
  private readonly program: Program;
  private readonly order: IndexBuffer;
  private readonly scores: Scoreboard;
  private readonly gather: StepLaunches;
  private readonly after: StepLaunches;
  private readonly optimizer: Optimizer;
  private readonly inflight: Promise<unknown>[] = [];
  private stepInEpoch = 0;
  private epochItems = 0;

  private constructor(init: {
    ctx: GpuContext; arch: Architecture; options: SessionOptions; store: ParameterStore; decls: ParamDecl[]; trainSet: GpuImageSet; weights: WeightStore;
    runner: ProgramRunner; program: Program; order: IndexBuffer; scores: Scoreboard; gather: StepLaunches; after: StepLaunches; optimizer: Optimizer; forwardFlopsPerImage: number;
  }) {
    this.ctx = init.ctx;
    this.arch = init.arch;
    this.options = init.options;
    this.store = init.store;
    this.decls = init.decls;
    this.trainSet = init.trainSet;
    this.weights = init.weights;
    this.runner = init.runner;
    this.program = init.program;
    this.order = init.order;
    this.scores = init.scores;
    this.gather = init.gather;
    this.after = init.after;
    this.optimizer = init.optimizer;
    this.forwardFlopsPerImage = init.forwardFlopsPerImage;
    this.flopsPerStep = init.program.compiled.plan.flops;
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
    const keep = [logp.name, ...net.batchNorms.map((b) => b.stats.name)];
    const names = new Map<string, string>();
    for (const p of trainable) {
      const g = grads.get(p);
      if (!g) throw new InputError(`${arch.name}: the loss does not depend on parameter '${p}'`);
      names.set(gradName(p), g.name);
      keep.push(gradName(p));
    }
    // Parameters, initialized in declaration order from the seed: the same seed gives the same network.
    const store = new ParameterStore(ctx);
    const rng = Rng.derive(options.seed, 'init');
    for (const d of decls) store.add(d.name, d.shape, initialValues(d, rng), { trainable: d.trainable, decay: d.decay });
    const weights = new WeightStore(ctx);
    const runner = new ProgramRunner(ctx, weights, { cacheSize: Infinity, label: arch.name });
    let program: Program;
    try {
      program = await compileProgram(runner, 'train', () => ({ graph: tape.graph, keep, names }), store, logp.name, B, arch.classes, trainSet);
    } catch (e) {
      await runner.dispose();
      weights.dispose();
      store.dispose();
      throw e;
    }
    const order = new IndexBuffer(ctx, Math.ceil(trainSet.count / B) * B, 'train order');
    const scores = new Scoreboard(ctx, order.capacity, 'train scores');
    await scores.bind(slotBinding(program.logp), { buffer: program.labels, offset: 0, size: B * 4 }, B, arch.classes);
    const gather = await batchGather(trainSet, order, B, arch.classes, programTargets(program, arch.classes), options.mean, options.std);
    const running: StepLaunch[] = net.batchNorms.map((site) =>
      runningStatsUpdate(`running ${site.path}`, slotBinding(program.compiled.slot(site.stats.name)), store.binding(site.running), site.channels, site.perChannel));
    const after = await StepLaunches.create(ctx, running, 'running-stats');
    const gradBindings = new Map(trainable.map((p) => [p, slotBinding(program.compiled.slot(gradName(p)))]));
    const optimizer = await Optimizer.create(store, options.optimizer, gradBindings);
    const forwardFlopsPerImage = graphFlops(exportGraph(arch, new Map(decls.map((d) => [d.name, initialValues(d, new Rng(0))]))));
    return new TrainingSession({ ctx, arch, options, store, decls, trainSet, weights, runner, program, order, scores, gather, after, optimizer, forwardFlopsPerImage });
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
    try {
      // Synchronous from the gather's per-step uniforms to the submit: nothing else may rewrite them in between.
      this.runner.recordSync(rec, this.program.run);
    } catch (e) {
      rec.discard();
      throw e;
    }
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
        try {
          this.runner.recordSync(rec, program.run);
        } catch (e) {
          rec.discard();
          throw e;
        }
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

  /** The evaluation program for batches of B images of `set`'s size (compiled once, kept by the runner). */
  private evalProgram(B: number, set: GpuImageSet): Promise<Program> {
    const LOGP = 'logp';
    const make = () => {
      const tape = new Tape();
      const net = new Net(tape, 'eval');
      const x = networkInput(tape, this.arch, B, set);
      const logp = tape.softmax(this.arch.build(net, x), -1, true);
      tape.input(SEED, [B, this.arch.classes]);
      return { graph: tape.graph, keep: [LOGP], names: new Map([[LOGP, logp.name]]) };
    };
    return compileProgram(this.runner, `eval|${set.rows}x${set.cols}`, make, this.store, LOGP, B, this.arch.classes, set);
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
    // Compiled programs are freed right away (none is pending once create() returned and no step records).
    void this.runner.dispose();
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

/**
 * A session program through the runner: the graph of `make` with the parameters, the batch
 * images and the seed bound in place (the gather launches write the latter two), compiled
 * once per (key, batch) and never split (batch statistics are over the whole batch).
 */
async function compileProgram(runner: ProgramRunner, key: string, make: () => { graph: OpGraph; keep: string[]; names: ReadonlyMap<string, string> }, store: ParameterStore, logp: string, batch: number, classes: number, set: GpuImageSet): Promise<Program> {
  const ctx = runner.ctx;
  const spec: ProgramSpec = {
    key: `${key}|${set.pixels}`,
    split: false,
    build: () => {
      const { graph, keep, names } = make();
      const images = ctx.pool.acquire(batch * set.pixels * 4, undefined, 'batch images');
      const seed = ctx.pool.acquire(batch * classes * 4, undefined, 'batch seed');
      const labels = ctx.pool.acquire(batch * 4, undefined, 'batch labels');
      const bound = new Map([...store.buffers(), [IMAGES, images], [SEED, seed]]);
      return { graph, keep, names, bound, owned: new Map([[IMAGES, images], [SEED, seed], [LABELS, labels]]) };
    },
  };
  const compiled = await runner.compile(spec, batch);
  if (compiled.plan.inputs.size > 0) throw new Error(`internal: unbound program inputs ${[...compiled.plan.inputs.keys()].join(', ')}`);
  return {
    compiled,
    run: { ...spec, batch, feeds: {}, results: {} },
    images: compiled.owned.get(IMAGES)!,
    imageBytes: batch * set.pixels * 4,
    seed: compiled.owned.get(SEED)!,
    labels: compiled.owned.get(LABELS)!,
    logp: compiled.slot(logp),
    batch,
  };
}

function programTargets(p: Program, classes: number) {
  return {
    images: { buffer: p.images, offset: 0, size: p.imageBytes },
    seed: { buffer: p.seed, offset: 0, size: p.batch * classes * 4 },
    labels: { buffer: p.labels, offset: 0, size: p.batch * 4 },
  };
}



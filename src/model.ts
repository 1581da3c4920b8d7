import { analyze } from './onnx/analyze.js';
import { importOnnx, type ImportOptions } from './onnx/import.js';
import type { IrGraph } from './onnx/ir.js';
import { autoTargetLayer, type ResolvedTap, resolveTap } from './onnx/resolve.js';
import { gradients } from './ops/autodiff.js';
import { compilePlan, largestActivationBytes } from './ops/compile.js';
import type { OpGraph } from './ops/graph.js';
import { optimize } from './ops/passes.js';
import { Tape } from './ops/tape.js';
import type { GpuContext } from './runtime/device.js';
import { InputError, LimitError, ShapeError } from './runtime/errors.js';
import type { HostTensor } from './runtime/host-tensor.js';
import type { ExecutionPlan } from './runtime/plan.js';
import { type OpTiming, Recorder } from './runtime/recorder.js';
import { formatShape } from './runtime/shape.js';
import { Tensor } from './runtime/tensor.js';
import { WeightStore } from './runtime/weights.js';

export interface RunOptions {
  /** Layers to return besides the outputs: tensor names, node names, torch module paths, or 'auto'. */
  taps?: readonly string[];
  /** Per-launch GPU times via timestamp queries (when the adapter has them). */
  profile?: boolean;
  /** Values of graph inputs an op needs at plan time (shape or parameter inputs). */
  inputValues?: ReadonlyMap<string, HostTensor>;
}

export interface TapResult extends ResolvedTap {
  value: Tensor;
}

export interface RunResult {
  /** Graph outputs by name. */
  outputs: Map<string, Tensor>;
  /** Requested taps by the name they were requested with. */
  taps: Map<string, TapResult>;
  /** Per-launch GPU times of every pass, when profiling. */
  timings: Promise<OpTiming[]> | null;
  /** Images per pass (the batch is split when it would exceed binding limits). */
  chunk: number;
  flops: number;
}

/**
 * What to differentiate: y = Σ_i Σ_c w[i, c] · f(logits)[i, c], with f the identity
 * ('logit') or softmax ('softmax'), and w one-hot at each image's class (`classes`:
 * 'argmax' of the logits, one class for all, or one per image) or given (`weights`, [N, C]).
 */
export interface GradTarget {
  of?: 'logit' | 'softmax';
  classes?: 'argmax' | number | readonly number[];
  weights?: Tensor;
}

export interface GradOptions {
  target?: GradTarget;
  /** Where gradients are wanted: 'input' and/or layer names (as taps). Default ['input']. */
  wrt?: readonly string[];
  /** Layers whose activations to return as well. */
  taps?: readonly string[];
  profile?: boolean;
}

export interface GradResult extends RunResult {
  /** ∂y/∂(tensor) for each requested `wrt` name (absent when y does not depend on it). */
  gradients: Map<string, TapResult>;
}

/** A compiled program: its plan, its graph, the tensors it returns. */
interface Program {
  plan: ExecutionPlan;
  graph: OpGraph;
}

/** Builds the graph of a program for a chunk of `nb` images; `keep` are the tensors it returns. */
type ProgramBuilder = (nb: number) => { graph: OpGraph; keep: Set<string> };

const PLAN_CACHE_SIZE = 4;
const TARGET_INPUT = 'camgpu:target-weights';

/**
 * An ONNX model ready to run on one device: its graph, its constants on the GPU, and
 * compiled programs (forward, or forward and backward) per (batch, taps, …). A pass
 * encodes into one command encoder and reads nothing back; results are GPU tensors that
 * the caller reads and disposes.
 */
export class Model {
  readonly ctx: GpuContext;
  readonly graph: IrGraph;
  readonly weights: WeightStore;
  private readonly programs = new Map<string, Promise<Program>>();
  /** Images per pass by program and batch (the analysis behind it runs once). */
  private readonly chunks = new Map<string, number>();
  /** Output shape at batch 1 by input shape: analysis folds BatchNorm into every conv, far too slow per call. */
  private readonly outputShapes = new Map<string, number[]>();

  constructor(ctx: GpuContext, graph: IrGraph) {
    this.ctx = ctx;
    this.graph = graph;
    this.weights = new WeightStore(ctx);
  }

  static fromBytes(ctx: GpuContext, bytes: Uint8Array, options: ImportOptions = {}): Model {
    return new Model(ctx, importOnnx(bytes, options));
  }

  get inputName(): string {
    if (this.graph.inputs.length === 0) throw new InputError(`${this.graph.file}: the graph has no inputs`);
    return this.graph.inputs[0].name;
  }

  get outputName(): string {
    return this.graph.outputs[0].name;
  }

  /** Declared input dims (symbolic dims as strings or null). */
  get inputDims(): (number | string | null)[] | null {
    return this.graph.inputs[0]?.dims ?? null;
  }

  private validateInput(name: string, shape: readonly number[]): void {
    const decl = this.graph.inputs.find((i) => i.name === name);
    if (!decl) throw new InputError(`${this.graph.file}: no graph input '${name}' (inputs: ${this.graph.inputs.map((i) => i.name).join(', ')})`);
    if (!decl.dims) return;
    const bad = decl.dims.length !== shape.length || decl.dims.some((d, i) => typeof d === 'number' && i > 0 && d !== shape[i]);
    if (bad) {
      const want = `[${decl.dims.map((d) => (typeof d === 'number' ? d : d ?? '?')).join(', ')}]`;
      throw new ShapeError(`${this.graph.file}: input '${name}'`, `expects shape ${want}, got ${formatShape(shape)}`);
    }
  }

  /** Static analysis (shapes, folding, fusion) for the given input shapes. */
  analyze(shapes: ReadonlyMap<string, number[]>, keep: ReadonlySet<string>, inputValues?: ReadonlyMap<string, HostTensor>): OpGraph {
    const a = analyze(this.graph, shapes, { keep, inputValues });
    return optimize(a, new Set([...keep, ...a.outputs]));
  }

  /** Resolves layer names against this graph ('auto' needs shapes, so it uses those of `shapes`). */
  resolveTaps(names: readonly string[], shapes?: ReadonlyMap<string, number[]>): ResolvedTap[] {
    return names.map((n) => {
      if (n !== 'auto') return resolveTap(this.graph, n);
      const s = shapes ?? new Map([[this.inputName, this.defaultInputShape(1)]]);
      return autoTargetLayer(this.graph, analyze(this.graph, s, { keep: new Set() }).shapes);
    });
  }

  /** The declared input shape with the batch set to `batch`. */
  defaultInputShape(batch: number): number[] {
    const dims = this.inputDims;
    if (!dims || dims.slice(1).some((d) => typeof d !== 'number')) {
      throw new InputError(`${this.graph.file}: input '${this.inputName}' has no fixed shape; pass an input tensor`);
    }
    return [batch, ...(dims.slice(1) as number[])];
  }

  private program(key: string, nb: number, build: ProgramBuilder): Promise<Program> {
    const k = `${key}|${nb}`;
    let p = this.programs.get(k);
    if (p) {
      this.programs.delete(k);
      this.programs.set(k, p); // most recently used last
      return p;
    }
    p = (async () => {
      const { graph, keep } = build(nb);
      return { plan: await compilePlan(this.ctx, graph, this.weights, keep), graph };
    })();
    this.programs.set(k, p);
    p.catch(() => this.programs.delete(k));
    while (this.programs.size > PLAN_CACHE_SIZE) {
      const [oldKey, old] = this.programs.entries().next().value as [string, Promise<Program>];
      this.programs.delete(oldKey);
      old.then((c) => c.plan.dispose(), () => undefined);
    }
    return p;
  }

  /**
   * Images per pass such that no tensor exceeds the activation binding limit: the whole
   * batch when it fits (graphs with fixed shapes have no valid analysis at batch 1).
   */
  private chunkSize(key: string, batch: number, build: ProgramBuilder): number {
    const k = `${key}|${batch}`;
    const known = this.chunks.get(k);
    if (known !== undefined) return known;
    const limit = this.ctx.activationBindingLimit;
    let chunk = batch;
    if (largestActivationBytes(build(batch).graph) > limit) {
      const perImage = largestActivationBytes(build(1).graph);
      if (perImage > limit) throw new LimitError(`${this.graph.file}: one image needs a ${perImage}-byte tensor, over the activation binding limit ${limit}`);
      chunk = Math.max(1, Math.min(batch, Math.floor(limit / perImage)));
    }
    this.chunks.set(k, chunk);
    return chunk;
  }

  /**
   * Runs a program over a batch, split into passes of `chunk` images recorded into one
   * command encoder: each pass copies its slice of every batch-major feed in, runs, and
   * copies its slice of every kept tensor out into batch-sized result tensors.
   */
  private async execute(key: string, build: ProgramBuilder, feeds: ReadonlyMap<string, Tensor>, batch: number, profile?: boolean): Promise<{ results: Map<string, Tensor>; timings: Promise<OpTiming[]> | null; chunk: number; flops: number }> {
    const chunk = this.chunkSize(key, batch, build);
    const rec = new Recorder(this.ctx, { profile, label: key.split('|')[0] });
    const results = new Map<string, Tensor>();
    let flops = 0;
    try {
      for (let b0 = 0; b0 < batch; b0 += chunk) {
        const nb = Math.min(chunk, batch - b0);
        const { plan } = await this.program(key, nb, build);
        for (const [name, slot] of plan.inputs) {
          const t = feeds.get(name);
          if (!t) throw new InputError(`${this.graph.file}: no value given for input '${name}'`);
          const per = slot.bytes / nb;
          rec.copy(t.buffer, t.byteOffset + b0 * per, slot.buffer, 0, slot.bytes);
        }
        plan.encode(rec);
        for (const [name, slot] of plan.results) {
          const batched = slot.shape.length > 0 && slot.shape[0] === nb;
          if (!results.has(name)) results.set(name, Tensor.empty(this.ctx, batched ? [batch, ...slot.shape.slice(1)] : slot.shape, name));
          if (!batched && b0 > 0) continue;
          rec.copy(slot.buffer, 0, results.get(name)!.buffer, batched ? b0 * (slot.bytes / nb) : 0, slot.bytes);
        }
        flops += plan.flops;
      }
    } catch (e) {
      for (const t of results.values()) t.dispose();
      throw e;
    }
    return { results, timings: rec.submit(), chunk, flops };
  }

  private outputShape(rest: readonly number[]): number[] {
    const key = rest.join(',');
    let shape = this.outputShapes.get(key);
    if (!shape) {
      const g = analyze(this.graph, new Map([[this.inputName, [1, ...rest]]]), { keep: new Set() });
      shape = g.shapes.get(this.resolvedName(this.outputName))!;
      this.outputShapes.set(key, shape);
    }
    return shape;
  }

  private checkBatchInput(x: Tensor, name = this.inputName): number {
    x.assertAlive();
    this.validateInput(name, x.shape);
    const batch = x.shape[0];
    if (!Number.isInteger(batch) || batch < 1) throw new ShapeError(`input '${name}'`, `batch must be >= 1, got ${formatShape(x.shape)}`);
    return batch;
  }

  /**
   * Runs the model on a batch. Taps cost no extra pass: they are kept alive in the same
   * pass and copied out with the outputs.
   */
  async run(input: Tensor | ReadonlyMap<string, Tensor>, options: RunOptions = {}): Promise<RunResult> {
    const feeds = input instanceof Tensor ? new Map([[this.inputName, input]]) : new Map(input);
    if (feeds.size !== 1 || options.inputValues) return this.runOnce(feeds, options);
    const [[name, x]] = [...feeds];
    if (x.shape.length === 0 || x.shape[0] === 0) return this.runOnce(feeds, options);
    const batch = this.checkBatchInput(x, name);
    const rest = x.shape.slice(1);
    const taps = this.resolveTaps(options.taps ?? [], new Map([[name, [1, ...rest]]]));
    const keep = new Set(taps.map((t) => t.tensor));
    const key = `forward|${name}:${rest}|${[...keep].sort().join(',')}`;
    const build: ProgramBuilder = (nb) => {
      const graph = this.analyze(new Map([[name, [nb, ...rest]]]), keep);
      return { graph, keep: new Set([...keep, ...graph.outputs]) };
    };
    const r = await this.execute(key, build, feeds, batch, options.profile);
    return this.package(r.results, taps, r.timings, r.chunk, r.flops);
  }

  /**
   * One pass with every feed as given (several graph inputs, scalar or empty inputs, or
   * inputs whose values shape the graph). Plans built from bound values are not cached:
   * constants folded from them change between calls under the same names.
   */
  private async runOnce(feeds: Map<string, Tensor>, options: RunOptions): Promise<RunResult> {
    const shapes = new Map<string, number[]>();
    for (const [n, t] of feeds) {
      t.assertAlive();
      this.validateInput(n, t.shape);
      shapes.set(n, [...t.shape]);
    }
    const taps = this.resolveTaps(options.taps ?? [], shapes);
    const keep = new Set(taps.map((t) => t.tensor));
    const graph = this.analyze(shapes, keep, options.inputValues);
    const weights = options.inputValues ? new WeightStore(this.ctx) : this.weights;
    const plan = await compilePlan(this.ctx, graph, weights, new Set([...keep, ...graph.outputs]));
    const rec = new Recorder(this.ctx, { profile: options.profile, label: 'forward' });
    const results = new Map<string, Tensor>();
    try {
      for (const [n, slot] of plan.inputs) {
        const t = feeds.get(n);
        if (!t) throw new InputError(`${this.graph.file}: missing value for graph input '${n}'`);
        rec.copy(t.buffer, t.byteOffset, slot.buffer, 0, slot.bytes);
      }
      plan.encode(rec);
      for (const [r, slot] of plan.results) {
        const t = Tensor.empty(this.ctx, slot.shape, r);
        rec.copy(slot.buffer, 0, t.buffer, 0, slot.bytes);
        results.set(r, t);
      }
    } catch (e) {
      for (const t of results.values()) t.dispose();
      plan.dispose();
      if (weights !== this.weights) weights.dispose();
      throw e;
    }
    const timings = rec.submit();
    // Safe right after submit: later writes to these buffers are queue-ordered after this pass.
    plan.dispose();
    if (weights !== this.weights) weights.dispose();
    return this.package(results, taps, timings, shapes.values().next().value?.[0] ?? 1, plan.flops);
  }

  /**
   * Forward and backward in one pass: the activations at `taps` and the gradients of the
   * target (GradTarget) at every `wrt` layer and/or the input, for a batch with a target per
   * image. No readback happens in between; batches split as in run().
   */
  async grad(x: Tensor, options: GradOptions = {}): Promise<GradResult> {
    const name = this.inputName;
    const batch = this.checkBatchInput(x, name);
    const rest = x.shape.slice(1);
    const shapes1 = new Map([[name, [1, ...rest]]]);
    const taps = this.resolveTaps(options.taps ?? [], shapes1);
    const wrtNames = options.wrt ?? ['input'];
    const wrt = wrtNames.map((n): ResolvedTap => (n === 'input' ? { requested: 'input', tensor: name, how: 'tensor' } : this.resolveTaps([n], shapes1)[0]));
    const target = options.target ?? {};
    const of = target.of ?? 'logit';
    const numClasses = this.outputShape(rest).at(-1)!;
    const feeds = new Map([[name, x]]);
    let weights: Tensor | null = null;
    if (target.weights) {
      if (formatShape(target.weights.shape) !== formatShape([batch, numClasses])) {
        throw new ShapeError('grad target weights', `expects [${batch}, ${numClasses}], got ${formatShape(target.weights.shape)}`);
      }
      feeds.set(TARGET_INPUT, target.weights);
    } else if (target.classes !== undefined && target.classes !== 'argmax') {
      const classes = typeof target.classes === 'number' ? new Array<number>(batch).fill(target.classes) : [...target.classes];
      if (classes.length !== batch) throw new InputError(`grad: ${classes.length} target classes for a batch of ${batch}; give one per image (batches are never truncated)`);
      const data = new Float32Array(batch * numClasses);
      classes.forEach((c, i) => {
        if (!Number.isInteger(c) || c < 0 || c >= numClasses) throw new InputError(`grad: class ${c} of image ${i} is not in [0, ${numClasses})`);
        data[i * numClasses + c] = 1;
      });
      weights = Tensor.fromData(this.ctx, data, [batch, numClasses], 'target');
      feeds.set(TARGET_INPUT, weights);
    }
    const argmax = !feeds.has(TARGET_INPUT);
    const keepFwd = new Set([...taps, ...wrt].map((t) => t.tensor));
    const key = `grad|${name}:${rest}|${of}|${argmax ? 'argmax' : 'weights'}|${[...keepFwd].sort().join(',')}|${wrt.map((w) => w.tensor).join(',')}`;
    const gradName = (t: string) => `camgpu:grad:${t}`;
    const build: ProgramBuilder = (nb) => {
      const fwd = this.analyze(new Map([[name, [nb, ...rest]]]), keepFwd);
      const tape = new Tape();
      const input = tape.input(name, [nb, ...rest]);
      const syms = tape.include(fwd, new Map([[name, input]]), '');
      const logits = syms.get(fwd.outputs[0])!;
      const scored = of === 'softmax' ? tape.softmax(logits, -1) : logits;
      const w = argmax ? tape.onehotArgmax(logits) : tape.input(TARGET_INPUT, [nb, numClasses]);
      const grads = gradients(tape, new Map([[scored.name, w]]), wrt.map((t) => t.tensor));
      const keep = new Set([...keepFwd, ...fwd.outputs]);
      for (const [t, g] of grads) {
        // A stable name per gradient, so every chunk's result lands in the same tensor.
        tape.record({ kind: 'alias', inputs: [g.name] }, g.shape, { name: gradName(t), opType: 'Identity' }, gradName(t));
        keep.add(gradName(t));
      }
      tape.graph.outputs.push(...fwd.outputs);
      return { graph: tape.graph, keep };
    };
    try {
      const r = await this.execute(key, build, feeds, batch, options.profile);
      const result = this.package(r.results, taps, r.timings, r.chunk, r.flops) as GradResult;
      result.gradients = new Map();
      for (const w of wrt) {
        const g = r.results.get(gradName(w.tensor));
        if (g) result.gradients.set(w.requested, { ...w, value: g });
      }
      return result;
    } finally {
      weights?.dispose();
    }
  }

  private package(results: Map<string, Tensor>, taps: ResolvedTap[], timings: Promise<OpTiming[]> | null, chunk: number, flops: number): RunResult {
    const outputs = new Map<string, Tensor>();
    for (const o of this.graph.outputs) outputs.set(o.name, results.get(this.resolvedName(o.name))!);
    const owned = new Set<Tensor>(outputs.values());
    const tapMap = new Map<string, TapResult>();
    for (const t of taps) {
      let v = results.get(t.tensor)!;
      // The same tensor requested twice (or a tap that is also an output): each owner gets its own.
      if (owned.has(v)) v = cloneTensor(v);
      owned.add(v);
      tapMap.set(t.requested, { ...t, value: v });
    }
    for (const [name, t] of results) {
      if (!owned.has(t) && !name.startsWith('camgpu:grad:')) t.dispose();
    }
    return { outputs, taps: tapMap, timings, chunk, flops };
  }

  private resolvedName(name: string): string {
    let cur = name;
    while (this.graph.aliases.has(cur)) cur = this.graph.aliases.get(cur)!;
    return cur;
  }

  /** Releases every program (their buffers return to the pool) and the model's constants. */
  async dispose(): Promise<void> {
    const programs = [...this.programs.values()];
    this.programs.clear();
    for (const p of programs) {
      try {
        (await p).plan.dispose();
      } catch {
        // a program that failed to build holds nothing
      }
    }
    this.weights.dispose();
  }
}

function cloneTensor(t: Tensor): Tensor {
  const c = Tensor.empty(t.ctx, t.shape);
  const enc = t.ctx.device.createCommandEncoder();
  enc.copyBufferToBuffer(t.buffer, t.byteOffset, c.buffer, 0, t.byteLength);
  t.ctx.device.queue.submit([enc.finish()]);
  return c;
}


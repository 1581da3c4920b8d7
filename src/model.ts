import { analyze } from './onnx/analyze.js';
import { importOnnx, type ImportOptions } from './onnx/import.js';
import type { IrGraph } from './onnx/ir.js';
import { autoTargetLayer, type ResolvedTap, resolveTap } from './onnx/resolve.js';
import { gradients } from './ops/autodiff.js';
import type { OpGraph } from './ops/graph.js';
import { optimize } from './ops/passes.js';
import { type BatchAxis, type ProgramFeed, type ProgramGraph, type ProgramResultSpec, type ProgramRun, ProgramRunner, type ProgramSpec, type RunRequest } from './ops/program.js';
import { type Sym, Tape } from './ops/tape.js';
import type { GpuContext } from './runtime/device.js';
import { InputError, ShapeError, typedAsync } from './runtime/errors.js';
import type { HostTensor } from './runtime/host-tensor.js';
import type { OpTiming } from './runtime/recorder.js';
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

/** What a model tape differentiates (GradTarget's host-side forms become a fed weight tensor). */
export interface TapeTarget {
  of?: 'logit' | 'softmax';
  /**
   * 'argmax': one-hot at each image's top logit, computed on the GPU; 'feed': weights [N, C]
   * fed as `targetInput`; a function: weights recorded on the tape from the logits (topK
   * targets, Finer-CAM's comparison weights).
   */
  weights?: 'argmax' | 'feed' | ((tape: Tape, logits: Sym) => Sym);
}

export interface TapeOptions {
  /** One image's shape (the input shape without its batch); default the declared input shape. */
  image?: readonly number[];
  /** Layers whose activations to expose (and keep from fusion): tensor names, node names, torch module paths, or 'auto'. */
  taps?: readonly string[];
  /** Where the target's gradients are wanted: 'input' and/or layer names. None: no backward ops are recorded. */
  wrt?: readonly string[];
  /** The objective whose gradients `wrt` asks for: y = Σ w ⊙ f(logits). Default { of: 'logit', weights: 'argmax' }. */
  target?: TapeTarget;
  /**
   * Record onto an existing tape, reading `input` (e.g. noisy or interpolated copies of the
   * images, computed on that tape) with the model's tensors renamed under `prefix`.
   */
  onto?: { tape: Tape; input: Sym; prefix: string };
  /** Gradients through ReLUs pass only where the incoming gradient is positive too (Guided Backprop). */
  guided?: boolean;
}

/**
 * A model's forward pass (and, with `wrt`, the backward pass of a target) recorded on a tape
 * for a chunk of `batch` images, for callers to append their own ops to and run with
 * Model.runProgram. Names are the ones requested.
 */
export interface ModelTape {
  tape: Tape;
  batch: number;
  input: Sym;
  /** The first graph output. */
  logits: Sym;
  /** Every graph output by its ONNX name. */
  outputs: Map<string, Sym>;
  /** f(logits), the tensor the seed w weights: y = Σ w ⊙ f(logits) (present when a target or `wrt` was given). */
  score: Sym | null;
  /** The seed w of the score ([N, C]). */
  seed: Sym | null;
  /** The feed that takes the target weights ([N, C], batched) when target.weights is 'feed'. */
  targetInput: string | null;
  taps: Map<string, Sym>;
  /** ∂y/∂(layer) per requested `wrt` name (absent when y does not depend on it). */
  gradients: Map<string, Sym>;
  resolved: { taps: Map<string, ResolvedTap>; wrt: Map<string, ResolvedTap> };
}

const PLAN_CACHE_SIZE = 4;
/** Analyses kept per model (BN folding over every weight is slow enough to matter per call). */
const ANALYSIS_CACHE_SIZE = 16;
const TARGET_INPUT = 'camgpu:target-weights';
const INPUT_TAP = (name: string): ResolvedTap => ({ requested: 'input', tensor: name, how: 'tensor' });

/**
 * An ONNX model ready to run on one device: its graph, its constants on the GPU, and
 * compiled programs (forward, or forward and backward, or a caller's tape program) per
 * (batch, taps, …), run by a ProgramRunner. A pass encodes into one command encoder and
 * reads nothing back; results are GPU tensors that the caller reads and disposes.
 */
export class Model {
  /** The feed a tape's target weights go in ([N, C], batched) when TapeTarget.weights is 'feed'. */
  static readonly targetInput = TARGET_INPUT;
  readonly ctx: GpuContext;
  readonly graph: IrGraph;
  readonly weights: WeightStore;
  private readonly analyses = new Map<string, OpGraph>();
  /** Compiles, caches and runs this model's programs (constants of its analyses are shared through `weights`). */
  readonly runner: ProgramRunner;
  /**
   * The graph output's shape for ONE image ([1, …]), by image shape (the input shape without
   * its batch). Model.grad reads the class count from it on every call, and an analysis
   * (which folds BatchNorm into every conv) is far too slow to repeat per call.
   */
  private readonly outputShapes = new Map<string, number[]>();
  /** Names of the constants the model's analyses produce: they identify their content, so programs share them. */
  private readonly constantNames = new Set<string>();
  /** 'auto' target layers by image shape (resolving one runs an analysis). */
  private readonly autoTaps = new Map<string, ResolvedTap>();

  constructor(ctx: GpuContext, graph: IrGraph) {
    this.ctx = ctx;
    this.graph = graph;
    this.weights = new WeightStore(ctx);
    this.runner = new ProgramRunner(ctx, this.weights, { cacheSize: PLAN_CACHE_SIZE, label: graph.file });
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
    const key = inputValues ? null : `${[...shapes].map(([n, s]) => `${n}:${s}`).join(';')}|${[...keep].sort().join(',')}`;
    const known = key ? this.analyses.get(key) : undefined;
    if (known) return known;
    const a = analyze(this.graph, shapes, { keep, inputValues });
    const g = optimize(a, new Set([...keep, ...a.outputs]));
    if (key) {
      for (const c of g.constants.keys()) this.constantNames.add(c);
      // Analyses are pure functions of (shapes, keep); tapes copy their ops, never mutate them.
      this.analyses.set(key, g);
      if (this.analyses.size > ANALYSIS_CACHE_SIZE) this.analyses.delete(this.analyses.keys().next().value!);
    }
    return g;
  }

  /** Whether a constant name is one of this model's (shared by every program of the model). */
  isModelConstant(name: string): boolean {
    return this.constantNames.has(name);
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

  /** Layer names (or 'input') resolved for images of shape `rest`; 'auto' resolved once per image shape. */
  private resolveLayers(names: readonly string[], rest: readonly number[]): ResolvedTap[] {
    return names.map((n) => {
      if (n === 'input') return INPUT_TAP(this.inputName);
      if (n !== 'auto') return this.resolveTaps([n])[0];
      const k = rest.join(',');
      let t = this.autoTaps.get(k);
      if (!t) this.autoTaps.set(k, (t = this.resolveTaps(['auto'], new Map([[this.inputName, [1, ...rest]]]))[0]));
      return t;
    });
  }

  /**
   * The model's forward pass for a chunk of `batch` images on a new tape, with the requested
   * layers kept (no fusion hides them) and exposed; with `wrt`, also the backward pass of
   * the target y = Σ w ⊙ f(logits) (gradients() routes it exactly: no Winograd F(4×4) in the
   * forward convs). Append ops to `tape` and run the result with runProgram.
   */
  tape(batch: number, options: TapeOptions = {}): ModelTape {
    const rest = options.image ?? this.defaultInputShape(1).slice(1);
    const taps = this.resolveLayers(options.taps ?? [], rest);
    const wrt = this.resolveLayers(options.wrt ?? [], rest);
    const target = options.target ?? (wrt.length > 0 ? {} : undefined);
    return this.buildTape(batch, rest, taps, wrt, target, options);
  }

  /**
   * The model from a layer onward, recorded on `tape` with `value` in place of the layer's
   * tensor (Ablation-CAM and Pixab-CAM re-run the network's suffix on edited activations,
   * batched). The layer must cut the network: every op after it reads only the layer, what
   * is computed from it, or constants; otherwise the suffix cannot restart from it.
   * Returns the logits (the first graph output).
   */
  suffix(nb: number, layer: string, tape: Tape, value: Sym, prefix: string, image?: readonly number[]): Sym {
    const rest = image ?? this.defaultInputShape(1).slice(1);
    const [resolved] = this.resolveLayers([layer], rest);
    const fwd = this.analyze(new Map([[this.inputName, [nb, ...rest]]]), new Set([resolved.tensor]));
    const start = fwd.ops.findIndex((o) => o.output === resolved.tensor);
    if (start < 0) throw new InputError(`${this.graph.file}: layer '${layer}' (tensor '${resolved.tensor}') is not computed by the analyzed graph`);
    const want = fwd.shapes.get(resolved.tensor)!;
    if (formatShape(want) !== formatShape(value.shape)) throw new ShapeError(`${this.graph.file}: suffix from '${layer}'`, `the replacement must be ${formatShape(want)}, got ${formatShape(value.shape)}`);
    const downstream = new Set([resolved.tensor]);
    const ops = [];
    for (const op of fwd.ops.slice(start + 1)) {
      if (!op.inputs.some((i) => downstream.has(i))) continue;
      for (const i of op.inputs) {
        if (!downstream.has(i) && !fwd.constants.has(i)) {
          throw new InputError(`${this.graph.file}: cannot run the network from '${layer}' (tensor '${resolved.tensor}'): '${op.node.name}' (${op.node.opType}) also reads '${i}', computed before it; pick a layer that cuts the network (e.g. the output of a whole block)`);
        }
      }
      ops.push(op);
      downstream.add(op.output);
    }
    const out = fwd.outputs[0];
    if (!downstream.has(out)) throw new InputError(`${this.graph.file}: the output '${out}' does not depend on '${layer}'`);
    const graph: OpGraph = { ops, shapes: fwd.shapes, constants: fwd.constants, inputs: [resolved.tensor], outputs: [out] };
    const syms = tape.include(graph, new Map([[resolved.tensor, value]]), prefix);
    return syms.get(out)!;
  }

  /**
   * The tensors that cut the forward pass for images of shape `image`, in order: after each,
   * no later op reads anything computed before it except through it (constants aside). The
   * output of a whole block is one; a tensor inside a residual block is not. Suffix runs
   * restart from these, and Poly-CAM's automatic layer list is chosen among them.
   */
  cutTensors(image?: readonly number[]): { tensor: string; node: string; shape: number[] }[] {
    const rest = image ?? this.defaultInputShape(1).slice(1);
    const g = this.analyze(new Map([[this.inputName, [1, ...rest]]]), new Set());
    const lastUse = new Map<string, number>();
    g.ops.forEach((op, i) => {
      for (const x of op.inputs) if (!g.constants.has(x)) lastUse.set(x, i);
    });
    for (const o of g.outputs) lastUse.set(o, Infinity);
    const live = new Set<string>(g.inputs.filter((x) => lastUse.has(x)));
    const cuts: { tensor: string; node: string; shape: number[] }[] = [];
    g.ops.forEach((op, i) => {
      for (const x of op.inputs) if (lastUse.get(x) === i) live.delete(x);
      if ((lastUse.get(op.output) ?? -1) > i) live.add(op.output);
      if (live.size === 1 && live.has(op.output)) cuts.push({ tensor: op.output, node: op.node.name, shape: g.shapes.get(op.output)! });
    });
    return cuts;
  }

  private buildTape(nb: number, rest: readonly number[], taps: readonly ResolvedTap[], wrt: readonly ResolvedTap[], target: TapeTarget | undefined, options: Pick<TapeOptions, 'onto' | 'guided'> = {}): ModelTape {
    const name = this.inputName;
    const keep = new Set([...taps, ...wrt].map((t) => t.tensor));
    const fwd = this.analyze(new Map([[name, [nb, ...rest]]]), keep);
    const tape = options.onto?.tape ?? new Tape();
    const input = options.onto?.input ?? tape.input(name, [nb, ...rest]);
    const syms = tape.include(fwd, new Map([[name, input]]), options.onto?.prefix ?? '');
    const outputs = new Map(this.graph.outputs.map((o) => [o.name, syms.get(this.resolvedName(o.name))!]));
    const logits = syms.get(fwd.outputs[0])!;
    const sym = (t: ResolvedTap) => {
      const s = syms.get(t.tensor);
      if (!s) throw new InputError(`${this.graph.file}: layer '${t.requested}' (tensor '${t.tensor}') is not computed by the analyzed graph`);
      return s;
    };
    const result: ModelTape = {
      tape, batch: nb, input, logits, outputs, score: null, seed: null, targetInput: null,
      taps: new Map(taps.map((t) => [t.requested, sym(t)])),
      gradients: new Map(),
      resolved: { taps: new Map(taps.map((t) => [t.requested, t])), wrt: new Map(wrt.map((t) => [t.requested, t])) },
    };
    if (!target) return result;
    if (logits.shape.length !== 2) throw new ShapeError(`${this.graph.file}: a gradient target`, `needs logits [N, C], got ${formatShape(logits.shape)}`);
    const score = target.of === 'softmax' ? tape.softmax(logits, -1) : logits;
    const feed = target.weights === 'feed';
    const seed = typeof target.weights === 'function' ? target.weights(tape, logits) : feed ? tape.input(TARGET_INPUT, logits.shape) : tape.onehotArgmax(logits);
    if (formatShape(seed.shape) !== formatShape(logits.shape)) throw new ShapeError(`${this.graph.file}: target weights`, `must be ${formatShape(logits.shape)}, got ${formatShape(seed.shape)}`);
    Object.assign(result, { score, seed, targetInput: feed ? TARGET_INPUT : null });
    if (wrt.length === 0) return result;
    const grads = gradients(tape, new Map([[score.name, seed]]), wrt.map((t) => sym(t).name), { guided: options.guided });
    for (const t of wrt) {
      const g = grads.get(sym(t).name);
      if (g) result.gradients.set(t.requested, g);
    }
    return result;
  }

  /**
   * Runs a caller's program (typically a model tape with ops appended) over a batch through
   * the model's runner: split into chunks by the binding limits, one submit. The model's
   * constants are shared with its other programs; the tape's own constants are private to
   * the program. `key` must identify everything `build` depends on.
   */
  runProgram(req: RunRequest): Promise<ProgramRun> {
    return this.runner.run({
      ...req,
      key: `program|${req.key}`,
      build: (nb) => {
        const b = req.build(nb);
        const built: ProgramGraph = 'graph' in b ? b : { graph: b };
        return { ...built, shared: built.shared ?? ((n: string) => this.constantNames.has(n)) };
      },
    });
  }

  /**
   * Runs the model on a batch. Taps cost no extra pass: they are kept alive in the same
   * pass and copied out with the outputs.
   */
  run(input: Tensor | ReadonlyMap<string, Tensor>, options: RunOptions = {}): Promise<RunResult> {
    return typedAsync('run', () => this.runTyped(input, options));
  }

  private async runTyped(input: Tensor | ReadonlyMap<string, Tensor>, options: RunOptions): Promise<RunResult> {
    const feeds = input instanceof Tensor ? new Map([[this.inputName, input]]) : new Map(input);
    if (feeds.size !== 1 || options.inputValues) return this.runOnce(feeds, options);
    const [[name, x]] = [...feeds];
    if (x.shape.length === 0 || x.shape[0] === 0) return this.runOnce(feeds, options);
    const batch = this.checkBatchInput(x, name);
    const rest = x.shape.slice(1);
    const taps = this.resolveTaps(options.taps ?? [], new Map([[name, [1, ...rest]]]));
    const keep = new Set(taps.map((t) => t.tensor));
    const names = new Map<string, string>([
      ...this.graph.outputs.map((o): [string, string] => [`output:${o.name}`, this.resolvedName(o.name)]),
      ...taps.map((t): [string, string] => [`tap:${t.requested}`, t.tensor]),
    ]);
    const spec: ProgramSpec = {
      key: `forward|${name}:${rest}|${[...keep].sort().join(',')}`,
      build: (nb) => ({ graph: this.analyze(new Map([[name, [nb, ...rest]]]), keep), names, shared: true }),
    };
    // In one pass every result is the whole batch's as it stands. Split, the outputs and taps
    // are per image along axis 0 (a model maps a batch of images to a batch of results); the
    // runner checks that every pass agrees and fails instead of guessing.
    const axis: BatchAxis = this.runner.chunkSize(spec, batch) < batch ? 0 : null;
    const r = await this.runner.run({ ...spec, batch, feeds: new Map([[name, { tensor: x, batchAxis: 0 as BatchAxis }]]), results: new Map([...names.keys()].map((k) => [k, { batchAxis: axis }])), profile: options.profile });
    return this.package(r, taps);
  }

  /**
   * One pass with every feed as given (several graph inputs, scalar or empty inputs, or
   * inputs whose values shape the graph). Plans built from bound values are not cached:
   * constants folded from them change between calls under the same names, so they are private
   * to their program.
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
    const names = new Map<string, string>([
      ...this.graph.outputs.map((o): [string, string] => [`output:${o.name}`, this.resolvedName(o.name)]),
      ...taps.map((t): [string, string] => [`tap:${t.requested}`, t.tensor]),
    ]);
    const values = options.inputValues;
    const r = await this.runner.run({
      key: `once|${[...shapes].map(([n, s]) => `${n}:${formatShape(s)}`).join(';')}|${[...keep].sort().join(',')}`,
      build: () => ({ graph: this.analyze(shapes, keep, values), names, shared: !values }),
      cache: !values,
      split: false,
      batch: 1,
      feeds: new Map([...feeds].map(([n, t]) => [n, { tensor: t, batchAxis: null }])),
      results: new Map([...names.keys()].map((k) => [k, { batchAxis: null }])),
      profile: options.profile,
      label: 'forward',
    });
    return this.package({ ...r, chunk: shapes.values().next().value?.[0] ?? 1 }, taps);
  }

  /**
   * Forward and backward in one pass: the activations at `taps` and the gradients of the
   * target (GradTarget) at every `wrt` layer and/or the input, for a batch with a target per
   * image. No readback happens in between; batches split as in run().
   */
  grad(x: Tensor, options: GradOptions = {}): Promise<GradResult> {
    return typedAsync('gradient run', () => this.gradTyped(x, options));
  }

  private async gradTyped(x: Tensor, options: GradOptions): Promise<GradResult> {
    const name = this.inputName;
    const batch = this.checkBatchInput(x, name);
    const rest = x.shape.slice(1);
    const taps = this.resolveLayers(options.taps ?? [], rest);
    const wrt = this.resolveLayers(options.wrt ?? ['input'], rest);
    const target = options.target ?? {};
    const of = target.of ?? 'logit';
    const numClasses = this.outputShape(rest).at(-1)!;
    const feeds = new Map<string, ProgramFeed>([[name, { tensor: x, batchAxis: 0 }]]);
    let weights: Tensor | null = null;
    if (target.weights) {
      if (formatShape(target.weights.shape) !== formatShape([batch, numClasses])) {
        throw new ShapeError('grad target weights', `expects [${batch}, ${numClasses}], got ${formatShape(target.weights.shape)}`);
      }
      feeds.set(TARGET_INPUT, { tensor: target.weights, batchAxis: 0 });
    } else if (target.classes !== undefined && target.classes !== 'argmax') {
      const classes = typeof target.classes === 'number' ? new Array<number>(batch).fill(target.classes) : [...target.classes];
      if (classes.length !== batch) throw new InputError(`grad: ${classes.length} target classes for a batch of ${batch}; give one per image (batches are never truncated)`);
      const data = new Float32Array(batch * numClasses);
      classes.forEach((c, i) => {
        if (!Number.isInteger(c) || c < 0 || c >= numClasses) throw new InputError(`grad: class ${c} of image ${i} is not in [0, ${numClasses})`);
        data[i * numClasses + c] = 1;
      });
      weights = Tensor.fromData(this.ctx, data, [batch, numClasses], 'target');
      feeds.set(TARGET_INPUT, { tensor: weights, batchAxis: 0 });
    }
    const argmax = !feeds.has(TARGET_INPUT);
    const keepFwd = [...taps, ...wrt].map((t) => t.tensor);
    const key = `grad|${name}:${rest}|${of}|${argmax ? 'argmax' : 'weights'}|${[...new Set(keepFwd)].sort().join(',')}|${wrt.map((w) => w.tensor).join(',')}`;
    const tapeTarget: TapeTarget = { of, weights: argmax ? 'argmax' : 'feed' };
    // Every result is per image: the tape's logits are [N, C] and its layers N-major.
    const results = new Map<string, ProgramResultSpec>([
      ...this.graph.outputs.map((o): [string, ProgramResultSpec] => [`output:${o.name}`, { batchAxis: 0 }]),
      ...taps.map((t): [string, ProgramResultSpec] => [`tap:${t.requested}`, { batchAxis: 0 }]),
      ...wrt.map((t): [string, ProgramResultSpec] => [`grad:${t.requested}`, { batchAxis: 0, optional: true }]),
    ]);
    const build = (nb: number): ProgramGraph => {
      const t = this.buildTape(nb, rest, taps, wrt, tapeTarget);
      const names = new Map<string, string>();
      for (const [o, s] of t.outputs) names.set(`output:${o}`, s.name);
      for (const [req, s] of t.taps) names.set(`tap:${req}`, s.name);
      for (const [req, s] of t.gradients) names.set(`grad:${req}`, s.name);
      return { graph: t.tape.graph, names, shared: (n) => this.constantNames.has(n) };
    };
    try {
      const r = await this.runner.run({ key, build, batch, feeds, results, profile: options.profile });
      const result = this.package(r, taps) as GradResult;
      result.gradients = new Map();
      for (const w of wrt) {
        const g = r.results.get(`grad:${w.requested}`);
        if (g) result.gradients.set(w.requested, { ...w, value: g });
      }
      return result;
    } finally {
      weights?.dispose();
    }
  }

  /** Outputs and taps of a run, by ONNX output name and requested tap name; each tensor is the caller's. */
  private package(r: ProgramRun, taps: readonly ResolvedTap[]): RunResult {
    const outputs = new Map<string, Tensor>();
    for (const o of this.graph.outputs) outputs.set(o.name, r.results.get(`output:${o.name}`)!);
    const tapMap = new Map<string, TapResult>();
    for (const t of taps) tapMap.set(t.requested, { ...t, value: r.results.get(`tap:${t.requested}`)! });
    return { outputs, taps: tapMap, timings: r.timings, chunk: r.chunk, flops: r.flops };
  }

  private resolvedName(name: string): string {
    let cur = name;
    while (this.graph.aliases.has(cur)) cur = this.graph.aliases.get(cur)!;
    return cur;
  }

  /** Releases every program (their buffers return to the pool) and the model's constants. */
  async dispose(): Promise<void> {
    await this.runner.dispose();
    this.weights.dispose();
  }
}

import { type Analysis, analyze } from './onnx/analyze.js';
import { compilePlan, largestActivationBytes } from './ops/compile.js';
import type { HostTensor } from './runtime/host-tensor.js';
import { importOnnx, type ImportOptions } from './onnx/import.js';
import type { IrGraph } from './onnx/ir.js';
import { optimize } from './ops/passes.js';
import { autoTargetLayer, type ResolvedTap, resolveTap } from './onnx/resolve.js';
import { WeightStore } from './runtime/weights.js';
import type { GpuContext } from './runtime/device.js';
import { InputError, LimitError, ShapeError } from './runtime/errors.js';
import type { ExecutionPlan } from './runtime/plan.js';
import { type OpTiming, Recorder } from './runtime/recorder.js';
import { formatShape, sizeOf } from './runtime/shape.js';
import { Tensor } from './runtime/tensor.js';

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
  /** Per-launch GPU times summed over batch chunks, when profiling. */
  timings: Promise<OpTiming[]> | null;
  /** Images per pass (the batch is split when it would exceed binding limits). */
  chunk: number;
  flops: number;
}

interface CachedPlan {
  plan: ExecutionPlan;
  analysis: Analysis;
  /** The plan's own constants, for plans built with bound input values. */
  weights?: WeightStore;
}

/** Releases a plan built with bound input values; safe once its work is submitted. */
function releaseTransient(c: CachedPlan): void {
  c.plan.dispose();
  c.weights?.dispose();
}

const PLAN_CACHE_SIZE = 4;

/**
 * An ONNX model ready to run on one device: its graph, its constants on the GPU, and
 * compiled plans per (batch, taps). Forward passes encode into one command encoder and
 * read nothing back; results come back as tensors that the caller reads and disposes.
 */
export class Model {
  readonly ctx: GpuContext;
  readonly graph: IrGraph;
  readonly weights: WeightStore;
  private readonly plans = new Map<string, Promise<CachedPlan>>();
  /** Images per pass, by input shape and taps (the analysis behind it runs once). */
  private readonly chunks = new Map<string, number>();

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
  analyze(shapes: ReadonlyMap<string, number[]>, keep: ReadonlySet<string>, inputValues?: ReadonlyMap<string, HostTensor>): Analysis {
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

  private plan(inputShapes: Map<string, number[]>, keep: ReadonlySet<string>, inputValues?: ReadonlyMap<string, HostTensor>): Promise<CachedPlan> {
    if (inputValues) {
      // Constants folded from bound values change between runs under the same names: such
      // a plan is not cached and uploads its constants to a store of its own.
      return (async () => {
        const weights = new WeightStore(this.ctx);
        try {
          const analysis = this.analyze(inputShapes, keep, inputValues);
          return { plan: await compilePlan(this.ctx, analysis, weights, keep), analysis, weights };
        } catch (e) {
          weights.dispose();
          throw e;
        }
      })();
    }
    const key = `${[...inputShapes].map(([k, v]) => `${k}:${v}`).join(';')}|${[...keep].sort().join(',')}`;
    let p = this.plans.get(key);
    if (p) {
      this.plans.delete(key);
      this.plans.set(key, p); // most recently used last
      return p;
    }
    p = (async () => {
      const analysis = this.analyze(inputShapes, keep);
      const plan = await compilePlan(this.ctx, analysis, this.weights, keep);
      return { plan, analysis };
    })();
    this.plans.set(key, p);
    p.catch(() => this.plans.delete(key));
    while (this.plans.size > PLAN_CACHE_SIZE) {
      const [oldKey, old] = this.plans.entries().next().value as [string, Promise<CachedPlan>];
      this.plans.delete(oldKey);
      old.then((c) => c.plan.dispose(), () => undefined);
    }
    return p;
  }

  /** Images per pass such that no tensor exceeds a storage binding. */
  chunkSize(shape: readonly number[], keep: ReadonlySet<string>, inputValues?: ReadonlyMap<string, HostTensor>, name = this.inputName): number {
    const key = `${name}:${shape}|${[...keep].sort().join(',')}`;
    const known = inputValues ? undefined : this.chunks.get(key);
    if (known !== undefined) return known;
    const chunk = this.computeChunk(shape, keep, inputValues, name);
    if (!inputValues) this.chunks.set(key, chunk);
    return chunk;
  }

  private computeChunk(shape: readonly number[], keep: ReadonlySet<string>, inputValues: ReadonlyMap<string, HostTensor> | undefined, name: string): number {
    const limit = this.ctx.activationBindingLimit;
    // Split only when the whole batch does not fit: graphs with fixed shapes (a constant
    // Reshape target, a full-size Gemm C) have no valid analysis at batch 1.
    if (largestActivationBytes(this.analyze(new Map([[name, [...shape]]]), keep, inputValues)) <= limit) return shape[0];
    const one = new Map([[name, [1, ...shape.slice(1)]]]);
    const perImage = largestActivationBytes(this.analyze(one, keep, inputValues));
    if (perImage > limit) throw new LimitError(`${this.graph.file}: one image needs a ${perImage}-byte tensor, over the storage binding limit ${limit}`);
    return Math.max(1, Math.min(shape[0], Math.floor(limit / perImage)));
  }

  /**
   * Runs the model on a batch. Taps cost no extra pass: they are kept alive in the same
   * pass and copied out with the outputs. Batches that would exceed binding limits are
   * split into passes recorded into the same command encoder.
   */
  async run(input: Tensor | ReadonlyMap<string, Tensor>, options: RunOptions = {}): Promise<RunResult> {
    const feeds = input instanceof Tensor ? new Map([[this.inputName, input]]) : new Map(input);
    if (feeds.size !== 1) {
      return this.runMulti(feeds, options);
    }
    const [[name, x]] = [...feeds];
    // Scalars and empty batches have no images to split into passes.
    if (x.shape.length === 0 || x.shape[0] === 0) return this.runMulti(feeds, options);
    x.assertAlive();
    this.validateInput(name, x.shape);
    const batch = x.shape[0];
    if (!Number.isInteger(batch) || batch < 1) throw new ShapeError(`input '${name}'`, `batch must be >= 1, got ${formatShape(x.shape)}`);
    const taps = this.resolveTaps(options.taps ?? [], new Map([[name, [1, ...x.shape.slice(1)]]]));
    const keep = new Set(taps.map((t) => t.tensor));
    const chunk = this.chunkSize(x.shape, keep, options.inputValues, name);
    const rec = new Recorder(this.ctx, { profile: options.profile, label: 'forward' });
    const perImageIn = sizeOf(x.shape.slice(1)) * 4;
    let results: Map<string, Tensor> | null = null;
    let flops = 0;
    const created: Tensor[] = [];
    const transient: CachedPlan[] = [];
    try {
      for (let b0 = 0; b0 < batch; b0 += chunk) {
        const nb = Math.min(chunk, batch - b0);
        const cached = await this.plan(new Map([[name, [nb, ...x.shape.slice(1)]]]), keep, options.inputValues);
        if (options.inputValues) transient.push(cached);
        const { plan, analysis } = cached;
        if (!results) {
          results = new Map();
          for (const [r, slot] of plan.results) {
            const full = slot.shape.length > 0 && slot.shape[0] === nb ? [batch, ...slot.shape.slice(1)] : slot.shape;
            const t = Tensor.empty(this.ctx, full, r);
            created.push(t);
            results.set(r, t);
          }
        }
        const inSlot = plan.inputs.get(name)!;
        rec.copy(x.buffer, x.byteOffset + b0 * perImageIn, inSlot.buffer, 0, nb * perImageIn);
        plan.encode(rec);
        for (const [r, slot] of plan.results) {
          const dst = results.get(r)!;
          const batched = dst.shape[0] === batch && slot.shape[0] === nb;
          if (!batched && b0 > 0) continue;
          const per = batched ? slot.bytes / nb : 0;
          rec.copy(slot.buffer, 0, dst.buffer, batched ? b0 * per : 0, slot.bytes);
        }
        flops += plan.flops;
        void analysis;
      }
    } catch (e) {
      for (const t of created) t.dispose();
      transient.forEach(releaseTransient);
      throw e;
    }
    const timings = rec.submit();
    transient.forEach(releaseTransient);
    return this.package(results!, taps, timings, chunk, flops);
  }

  private async runMulti(feeds: Map<string, Tensor>, options: RunOptions): Promise<RunResult> {
    const shapes = new Map<string, number[]>();
    for (const [n, t] of feeds) {
      t.assertAlive();
      this.validateInput(n, t.shape);
      shapes.set(n, [...t.shape]);
    }
    const taps = this.resolveTaps(options.taps ?? [], shapes);
    const keep = new Set(taps.map((t) => t.tensor));
    const cached = await this.plan(shapes, keep, options.inputValues);
    const { plan } = cached;
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
      if (options.inputValues) releaseTransient(cached);
      throw e;
    }
    const timings = rec.submit();
    if (options.inputValues) releaseTransient(cached);
    return this.package(results, taps, timings, shapes.values().next().value?.[0] ?? 1, plan.flops);
  }

  private package(results: Map<string, Tensor>, taps: ResolvedTap[], timings: Promise<OpTiming[]> | null, chunk: number, flops: number): RunResult {
    const outputs = new Map<string, Tensor>();
    const outNames = this.graph.outputs.map((o) => o.name);
    const tapMap = new Map<string, TapResult>();
    const resolvedOut = new Map(outNames.map((o) => [o, results.get(this.resolvedName(o))!]));
    for (const [o, t] of resolvedOut) outputs.set(o, t);
    const used = new Set<Tensor>(outputs.values());
    for (const t of taps) {
      let v = results.get(t.tensor)!;
      if (used.has(v)) {
        // The same tensor requested twice (or a tap that is also an output): give each owner its own copy.
        v = cloneTensor(v);
      }
      used.add(v);
      tapMap.set(t.requested, { ...t, value: v });
    }
    for (const [name, t] of results) {
      if (!used.has(t) && ![...outputs.values()].includes(t)) {
        void name;
        t.dispose();
      }
    }
    return { outputs, taps: tapMap, timings, chunk, flops };
  }

  private resolvedName(name: string): string {
    let cur = name;
    while (this.graph.aliases.has(cur)) cur = this.graph.aliases.get(cur)!;
    return cur;
  }

  /** Releases every plan (their buffers return to the pool) and the model's constants. */
  async dispose(): Promise<void> {
    const plans = [...this.plans.values()];
    this.plans.clear();
    for (const p of plans) {
      try {
        (await p).plan.dispose();
      } catch {
        // a plan that failed to build holds nothing
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

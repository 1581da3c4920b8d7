import type { GpuContext } from '../runtime/device.js';
import { InputError, LimitError, ShapeError, typedAsync, typedSync } from '../runtime/errors.js';
import type { HostTensor } from '../runtime/host-tensor.js';
import type { ExecutionPlan, PlanSlot } from '../runtime/plan.js';
import { type Dispatch, type OpTiming, Recorder } from '../runtime/recorder.js';
import { formatShape } from '../runtime/shape.js';
import { Tensor } from '../runtime/tensor.js';
import { type WeightChunk, WeightStore } from '../runtime/weights.js';
import { compilePlan, largestActivationBytes } from './compile.js';
import type { OpGraph } from './graph.js';

/**
 * Where a feed or result holds its images: 0 = the leading axis (a chunk gets, or produces,
 * its slice of it); null = not batched (a feed given whole to every chunk, a result that the
 * first chunk produces once).
 */
export type BatchAxis = 0 | null;

export interface ProgramFeed {
  tensor: Tensor;
  batchAxis: BatchAxis;
}

export interface ProgramResultSpec {
  batchAxis: BatchAxis;
  /** The program may lack this result (a gradient of something the objective does not depend on): absent from the output then. */
  optional?: boolean;
}

/** What a builder returns for one chunk size: the graph and how the runner should treat it. */
export interface ProgramGraph {
  graph: OpGraph;
  /** Result names → tensors of `graph`; a result not named here is the tensor of that name. */
  names?: ReadonlyMap<string, string>;
  /**
   * Results (or tensor names) kept alive to the end of the pass and read in place through
   * CompiledProgram.slot by launches recorded after the program (no copy): a trainer's
   * gradients, read by its optimizer.
   */
  keep?: Iterable<string>;
  /** Graph inputs read in place from these buffers instead of being fed: a trainer's parameters. */
  bound?: ReadonlyMap<string, GPUBuffer>;
  /** Pool buffers the compiled program owns, by name: released with it (or when compiling fails). */
  owned?: ReadonlyMap<string, GPUBuffer>;
  /**
   * Constants shared with other programs through the runner's weight store, by name: true
   * (all: every constant's name identifies its content, as in one model's analyses), or a
   * predicate. Every other constant is private to the program (tapes name their constants
   * `const#0`, `const#1`, … whatever their values): uploaded for it and freed with it.
   * Default: none shared.
   */
  shared?: boolean | ((name: string) => boolean);
}

/** Builds a program's graph for a chunk of `nb` images. */
export type ProgramBuilder = (nb: number) => ProgramGraph | OpGraph;

export interface ProgramSpec {
  /** Identifies what build() returns for a chunk size: programs are cached per (key, chunk size, requested results). */
  key: string;
  build: ProgramBuilder;
  /** Whether the batch may be split into chunks (default true). false: one pass, e.g. for batch statistics. */
  split?: boolean;
  /** At most this many images per pass (a caller's --batch-size); the binding limits may split further. */
  maxChunk?: number;
  /** Keep the compiled programs for later runs (default true); false: compiled for this run and freed after its submit. */
  cache?: boolean;
}

type NamedMap<T> = ReadonlyMap<string, T> | Readonly<Record<string, T>>;

export interface RunRequest extends ProgramSpec {
  /** Images in the batch: the length of every feed's and result's batch axis. */
  batch: number;
  /** Values of the graph's inputs, by input name (bound inputs excepted). */
  feeds: NamedMap<ProgramFeed>;
  /** What to return, by result name (see ProgramGraph.names). */
  results: NamedMap<ProgramResultSpec>;
  profile?: boolean;
  /** Label of the command encoder (profiles, GPU errors). */
  label?: string;
}

/** Results recorded into a caller's Recorder. */
export interface RecordedRun {
  /** Every requested result (an optional one may be absent), owned by the caller: dispose each. Valid once the recorder is submitted. */
  results: Map<string, Tensor>;
  /** Images per pass. */
  chunk: number;
  /** Passes recorded. */
  passes: number;
  flops: number;
}

export interface ProgramRun extends RecordedRun {
  /** Per-launch GPU times when profiling. */
  timings: Promise<OpTiming[]> | null;
}

/** A compiled program for one chunk size. */
export interface CompiledProgram {
  readonly key: string;
  /** Images per pass it was compiled for. */
  readonly batch: number;
  readonly plan: ExecutionPlan;
  readonly graph: OpGraph;
  /** Result name → tensor, for every requested or kept result the graph has. */
  readonly results: ReadonlyMap<string, string>;
  readonly bound: ReadonlyMap<string, GPUBuffer>;
  readonly owned: ReadonlyMap<string, GPUBuffer>;
  /** The plan slot of a result (by result name or tensor name); throws when it was neither requested nor kept. */
  slot(name: string): PlanSlot;
}

export interface RunnerOptions {
  /** Compiled programs kept (least recently used evicted); default 4. Infinity for programs that long-lived launches bind. */
  cacheSize?: number;
  /** Prefix of error messages (a model's file name). */
  label?: string;
}

interface Entry {
  promise: Promise<CompiledProgram>;
  program: CompiledProgram | null;
  /** Runs recorded but not yet submitted that use it. */
  users: number;
  /** Out of the cache: freed once no run uses it. */
  evicted: boolean;
  freed: boolean;
  /** Frees what compiling took, once (the plan, its private constants, owned buffers). */
  free: () => void;
}

function entries<T>(m: NamedMap<T>): [string, T][] {
  return m instanceof Map ? [...m] : Object.entries(m as Record<string, T>);
}

function normalize(b: ProgramGraph | OpGraph): ProgramGraph {
  return 'graph' in b ? b : { graph: b };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return formatShape(a) === formatShape(b);
}

/**
 * Constants split between a shared store (by name, across programs) and the program's own
 * store, which is freed with the program.
 */
class ProgramWeights extends WeightStore {
  private readonly parent: WeightStore;
  private readonly isShared: (name: string) => boolean;

  constructor(ctx: GpuContext, parent: WeightStore, isShared: (name: string) => boolean) {
    super(ctx);
    this.parent = parent;
    this.isShared = isShared;
  }

  override chunked(name: string, t: HostTensor, where: string): WeightChunk[] {
    return this.isShared(name) ? this.parent.chunked(name, t, where) : super.chunked(name, t, where);
  }

  override derived(key: string, bytes: number, make: (dst: GPUBuffer) => Dispatch[]): GPUBuffer {
    // Derived keys are `${constant}|${what}` (nested for derived of derived): shared when their constant is.
    for (let i = key.indexOf('|'); i >= 0; i = key.indexOf('|', i + 1)) {
      if (this.isShared(key.slice(0, i))) return this.parent.derived(key, bytes, make);
    }
    return super.derived(key, bytes, make);
  }
}

/**
 * Compiles programs (op graphs built per chunk size) and runs batches through them: the
 * batch split into chunks that fit the device's binding limits, every chunk recorded into
 * one command encoder (feeds copied in by their batch axis, the plan encoded, requested
 * results copied out into tensors the caller owns), one submit. Compiled programs are
 * cached (LRU); a program is freed only when evicted and no unsubmitted run records it.
 * On a throw, everything the runner took for the run (result tensors, a failed compilation's
 * buffers) is returned.
 */
export class ProgramRunner {
  readonly ctx: GpuContext;
  /** Constants shared by name across this runner's programs (ProgramGraph.shared). */
  readonly weights: WeightStore;
  readonly label: string;
  private readonly cacheSize: number;
  private readonly cache = new Map<string, Entry>();
  private readonly chunks = new Map<string, number>();
  private disposed = false;

  constructor(ctx: GpuContext, weights: WeightStore, options: RunnerOptions = {}) {
    this.ctx = ctx;
    this.weights = weights;
    this.label = options.label ?? 'program';
    this.cacheSize = Math.max(1, options.cacheSize ?? 4);
  }

  /** Programs in the cache. */
  get cachedPrograms(): number {
    return this.cache.size;
  }

  /**
   * Images per pass: the whole batch when every tensor of the program built for it fits
   * ctx.activationBindingLimit (or when the spec does not split), else as many as fit by the
   * per-image size. Cached per (key, batch).
   */
  chunkSize(spec: ProgramSpec, batch: number): number {
    return typedSync('analysis', () => this.measureChunk(spec, batch));
  }

  private measureChunk(spec: ProgramSpec, batch: number): number {
    this.checkBatch(batch);
    if (spec.split === false) return batch;
    if (spec.maxChunk !== undefined && !(Number.isInteger(spec.maxChunk) && spec.maxChunk >= 1)) {
      throw new InputError(`${this.label}: batch size must be a whole number ≥ 1, got ${spec.maxChunk}`);
    }
    const cap = Math.min(batch, spec.maxChunk ?? batch);
    const k = `${spec.key}|${batch}|${cap}`;
    const known = this.chunks.get(k);
    if (known !== undefined) return known;
    const limit = this.ctx.activationBindingLimit;
    const measure = (nb: number) => {
      const built = normalize(spec.build(nb));
      for (const b of built.owned?.values() ?? []) this.ctx.pool.release(b);
      return largestActivationBytes(built.graph);
    };
    let chunk = cap;
    // Graphs with fixed shapes have no valid analysis at batch 1: that one is built only when needed.
    // A whole batch past a size cap of the analysis (e.g. a pool's reads) is measured per image too.
    let whole: number;
    try {
      whole = measure(cap);
    } catch (e) {
      if (!(e instanceof LimitError) || cap === 1) throw e;
      whole = Infinity;
    }
    if (whole > limit) {
      const perImage = measure(1);
      if (perImage > limit) throw new LimitError(`${this.label}: one image needs a ${perImage}-byte tensor, over the activation binding limit ${limit}`);
      chunk = Math.max(1, Math.min(cap, Math.floor(limit / perImage)));
    }
    if (spec.cache !== false) this.chunks.set(k, chunk);
    return chunk;
  }

  /**
   * The program for chunks of `nb` images, compiled once per (key, nb, results): `results`
   * are the result names it must return (besides what the builder keeps). The cache may
   * evict it later; launches that bind its slots for good need a runner whose cacheSize is
   * Infinity.
   */
  compile(spec: ProgramSpec, nb: number, results: Iterable<string> = []): Promise<CompiledProgram> {
    if (spec.cache === false) return Promise.reject(new InputError(`${this.label}: program '${spec.key}' is not cached; run it instead`));
    return typedAsync('plan compilation', () => this.entry(spec, nb, [...results]).promise);
  }

  private cacheKey(spec: ProgramSpec, nb: number, results: readonly string[]): string {
    return `${spec.key}|${nb}|${JSON.stringify([...new Set(results)].sort())}`;
  }

  private entry(spec: ProgramSpec, nb: number, results: readonly string[]): Entry {
    if (this.disposed) throw new InputError(`${this.label}: the program runner was disposed`);
    const k = this.cacheKey(spec, nb, results);
    const hit = spec.cache === false ? undefined : this.cache.get(k);
    if (hit) {
      this.cache.delete(k);
      this.cache.set(k, hit); // most recently used last
      return hit;
    }
    const e: Entry = { promise: null as unknown as Promise<CompiledProgram>, program: null, users: 0, evicted: spec.cache === false, freed: false, free: () => undefined };
    e.promise = this.build(spec, nb, results, e);
    e.promise.then((p) => (e.program = p), () => {
      if (this.cache.get(k) === e) this.cache.delete(k); // a failed compilation is not kept
      e.freed = true;
    });
    if (spec.cache !== false) {
      this.cache.set(k, e);
      while (this.cache.size > this.cacheSize) {
        const [oldKey, old] = this.cache.entries().next().value as [string, Entry];
        this.cache.delete(oldKey);
        this.evict(old);
      }
    }
    return e;
  }

  private async build(spec: ProgramSpec, nb: number, results: readonly string[], e: Entry): Promise<CompiledProgram> {
    const built = normalize(spec.build(nb));
    const owned = built.owned ?? new Map<string, GPUBuffer>();
    const shared = built.shared ?? false;
    const store = shared === true ? this.weights : new ProgramWeights(this.ctx, this.weights, shared === false ? () => false : shared);
    const releaseOwned = () => {
      if (store !== this.weights) store.dispose();
      for (const b of owned.values()) this.ctx.pool.release(b);
    };
    try {
      const g = built.graph;
      const has = (t: string) => g.shapes.has(t) || g.constants.has(t);
      const names = new Map<string, string>();
      for (const r of [...results, ...(built.keep ?? [])]) {
        const t = built.names?.get(r) ?? r;
        if (has(t)) names.set(r, t);
        else if (built.names?.has(r)) throw new InputError(`${this.label}: program '${spec.key}' names result '${r}' as tensor '${t}', which its graph lacks`);
      }
      const plan = await compilePlan(this.ctx, g, store, new Set(names.values()), built.bound);
      e.free = () => {
        plan.dispose();
        releaseOwned();
      };
      const tensorOf = (name: string) => names.get(name) ?? (plan.results.has(name) ? name : undefined);
      return {
        key: spec.key,
        batch: nb,
        plan,
        graph: g,
        results: names,
        bound: built.bound ?? new Map(),
        owned,
        slot: (name: string) => {
          const t = tensorOf(name);
          const s = t === undefined ? undefined : plan.results.get(t);
          if (!s) throw new InputError(`${this.label}: program '${spec.key}' has no result '${name}' (not requested or kept)`);
          return s;
        },
      };
    } catch (err) {
      releaseOwned();
      throw err;
    }
  }

  private evict(e: Entry): void {
    e.evicted = true;
    if (e.users === 0) this.free(e);
  }

  private release(e: Entry): void {
    e.users--;
    if (e.users === 0 && e.evicted) this.free(e);
  }

  private free(e: Entry): void {
    e.promise.then(() => {
      if (e.freed) return;
      e.freed = true;
      e.free();
    }, () => undefined);
    if (e.program && !e.freed) {
      // Already compiled: free now, so the pool is back where it was when this returns.
      e.freed = true;
      e.free();
    }
  }

  private checkBatch(batch: number): void {
    if (!Number.isInteger(batch) || batch < 1) throw new InputError(`${this.label}: a batch must be a whole number of images >= 1, got ${batch}`);
  }

  /**
   * Records a run into `rec` (the caller submits it, with whatever else it records before or
   * after): compiles what is missing, checks every feed and result against the programs,
   * then records each chunk. The result tensors belong to the caller once this returns;
   * on a throw nothing is recorded and nothing is kept.
   */
  record(rec: Recorder, req: RunRequest): Promise<RecordedRun> {
    return typedAsync('run', () => this.recordUntyped(rec, req));
  }

  private async recordUntyped(rec: Recorder, req: RunRequest): Promise<RecordedRun> {
    const chunk = this.chunkSize(req, req.batch);
    const pinned = this.pin(req, chunk);
    let programs: Map<number, CompiledProgram>;
    try {
      programs = new Map(await Promise.all(pinned.map(async ([nb, e]): Promise<[number, CompiledProgram]> => [nb, await e.promise])));
    } catch (e) {
      for (const [, entry] of pinned) this.release(entry);
      throw e;
    }
    return this.recordPinned(rec, req, chunk, programs, pinned.map(([, e]) => e));
  }

  /**
   * record() for a run whose programs are compiled already (compile() them first), with no
   * await in between: for callers that write per-step uniforms around it and submit at once.
   */
  recordSync(rec: Recorder, req: RunRequest): RecordedRun {
    return typedSync('run', () => this.recordSyncUntyped(rec, req));
  }

  private recordSyncUntyped(rec: Recorder, req: RunRequest): RecordedRun {
    const chunk = this.chunkSize(req, req.batch);
    const pinned = this.pin(req, chunk);
    const programs = new Map<number, CompiledProgram>();
    for (const [nb, e] of pinned) if (e.program) programs.set(nb, e.program);
    if (programs.size !== pinned.length) {
      for (const [, e] of pinned) this.release(e);
      throw new InputError(`${this.label}: program '${req.key}' is not compiled yet (compile() it first, or use record())`);
    }
    return this.recordPinned(rec, req, chunk, programs, pinned.map(([, e]) => e));
  }

  /** The cache entries of every chunk size of a run, each marked in use until the run is submitted. */
  private pin(req: RunRequest, chunk: number): [number, Entry][] {
    const sizes = [...new Set([chunk, req.batch % chunk || chunk])];
    const keys = entries(req.results).map(([r]) => r);
    const pinned: [number, Entry][] = [];
    try {
      for (const nb of sizes) {
        const e = this.entry(req, nb, keys);
        e.users++;
        pinned.push([nb, e]);
      }
    } catch (err) {
      for (const [, e] of pinned) this.release(e);
      throw err;
    }
    return pinned;
  }

  private recordPinned(rec: Recorder, req: RunRequest, chunk: number, programs: Map<number, CompiledProgram>, pinned: Entry[]): RecordedRun {
    const { batch } = req;
    const feeds = entries(req.feeds);
    const wanted = entries(req.results);
    const out = new Map<string, Tensor>();
    const unpin = () => {
      for (const e of pinned.splice(0)) this.release(e);
    };
    try {
      const first = programs.get(chunk)!;
      const where = `${this.label}: program '${req.key}'`;
      // Feeds: every unbound input fed, each with its batch axis's shape.
      const feedMap = new Map(feeds);
      for (const [name, f] of feeds) {
        if (!first.graph.inputs.includes(name)) throw new InputError(`${where} has no input '${name}' (inputs: ${first.graph.inputs.join(', ')})`);
        if (first.bound.has(name)) throw new InputError(`${where}: input '${name}' is bound in place; it takes no feed`);
        f.tensor.assertAlive();
      }
      for (const [nb, p] of programs) {
        for (const [name, slot] of p.plan.inputs) {
          const f = feedMap.get(name);
          if (!f) throw new InputError(`${where}: no value given for input '${name}'`);
          if (f.batchAxis === 0 && (slot.shape.length === 0 || slot.shape[0] !== nb)) {
            throw new ShapeError(`${where}: input '${name}'`, `is fed batched along axis 0, but a pass of ${nb} images takes ${formatShape(slot.shape)}`);
          }
          const want = f.batchAxis === 0 ? [batch, ...slot.shape.slice(1)] : slot.shape;
          if (!sameShape(f.tensor.shape, want)) throw new ShapeError(`${where}: input '${name}'`, `expects ${formatShape(want)}${f.batchAxis === 0 ? ' (batched)' : ''}, got ${formatShape(f.tensor.shape)}`);
        }
      }
      // Results: each as declared in every chunk's program.
      const slots = new Map<string, [ProgramResultSpec, Map<number, PlanSlot>]>();
      for (const [name, spec] of wanted) {
        const per = new Map<number, PlanSlot>();
        for (const [nb, p] of programs) {
          const t = p.results.get(name);
          if (t === undefined) continue;
          const slot = p.plan.results.get(t)!;
          if (spec.batchAxis === 0 && (slot.shape.length === 0 || slot.shape[0] !== nb)) {
            throw new ShapeError(`${where}: result '${name}'`, `is declared batched along axis 0, but a pass of ${nb} images produces ${formatShape(slot.shape)}`);
          }
          per.set(nb, slot);
        }
        if (per.size === 0) {
          if (spec.optional) continue;
          throw new InputError(`${where} has no result '${name}'`);
        }
        if (per.size !== programs.size) throw new InputError(`${where}: result '${name}' exists for some chunk sizes only`);
        const shapes = [...per.values()].map((s) => (spec.batchAxis === 0 ? s.shape.slice(1) : s.shape));
        if (shapes.some((s) => !sameShape(s, shapes[0]))) {
          throw new ShapeError(`${where}: result '${name}'`, `changes shape with the chunk size (${[...per.values()].map((s) => formatShape(s.shape)).join(' vs ')}); declare its batch axis`);
        }
        slots.set(name, [spec, per]);
      }
      for (const [name, [spec, per]] of slots) {
        const s = per.get(chunk)!;
        out.set(name, Tensor.empty(this.ctx, spec.batchAxis === 0 ? [batch, ...s.shape.slice(1)] : s.shape, name));
      }
      // Nothing below throws: record every chunk.
      let flops = 0;
      let passes = 0;
      for (let b0 = 0; b0 < batch; b0 += chunk) {
        const nb = Math.min(chunk, batch - b0);
        const p = programs.get(nb)!;
        for (const [name, slot] of p.plan.inputs) {
          const f = feedMap.get(name)!;
          const off = f.batchAxis === 0 ? b0 * (slot.bytes / nb) : 0;
          rec.copy(f.tensor.buffer, f.tensor.byteOffset + off, slot.buffer, 0, slot.bytes);
        }
        p.plan.encode(rec);
        for (const [name, [spec, per]] of slots) {
          const slot = per.get(nb)!;
          if (spec.batchAxis === null && b0 > 0) continue;
          const t = out.get(name)!;
          rec.copy(slot.buffer, 0, t.buffer, t.byteOffset + (spec.batchAxis === 0 ? b0 * (slot.bytes / nb) : 0), slot.bytes);
        }
        flops += p.plan.flops;
        passes++;
      }
      rec.defer(unpin);
      return { results: out, chunk, passes, flops };
    } catch (e) {
      for (const t of out.values()) t.dispose();
      unpin();
      throw e;
    }
  }

  /** Records a run into a command encoder of its own and submits it. */
  run(req: RunRequest): Promise<ProgramRun> {
    return typedAsync('run', () => this.runUntyped(req));
  }

  private async runUntyped(req: RunRequest): Promise<ProgramRun> {
    const rec = new Recorder(this.ctx, { profile: req.profile, label: req.label ?? req.key.split('|')[0] });
    let r: RecordedRun;
    try {
      r = await this.record(rec, req);
    } catch (e) {
      rec.discard();
      throw e;
    }
    try {
      return { ...r, timings: rec.submit() };
    } catch (e) {
      for (const t of r.results.values()) t.dispose();
      throw e;
    }
  }

  /** Frees every cached program (those an unsubmitted run records, after its submit); the weight store is the caller's. */
  async dispose(): Promise<void> {
    this.disposed = true;
    const all = [...this.cache.values()];
    this.cache.clear();
    this.chunks.clear();
    for (const e of all) this.evict(e);
    await Promise.allSettled(all.map((e) => e.promise));
  }
}

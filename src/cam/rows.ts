import type { Model } from '../model.js';
import type { Sym } from '../ops/graph.js';
import { Tape } from '../ops/tape.js';
import { InputError, ShapeError } from '../runtime/errors.js';
import type { OpTiming } from '../runtime/recorder.js';
import { Tensor } from '../runtime/tensor.js';

/**
 * A row sweep: many forward passes of the same model whose inputs are built on the GPU, one
 * per row, from tensors every row shares (the images, maps, ranks, …) and a few numbers per
 * row (which image, which step, …). Rows are the batch of one program: the runner splits
 * them into passes that fit the device, recorded into one encoder, and each row's score
 * stays on the GPU. Sweep methods and metrics build on it.
 */
export interface RowSweep {
  /** Cache key of the program: everything that changes the graph except the chunk size. */
  key: string;
  label: string;
  rows: number;
  /** Per-row numbers (whole numbers are exact as f32 up to 2²⁴), each of length `rows`. */
  fields: Readonly<Record<string, Float32Array>>;
  /** Tensors every row reads (not split). */
  shared: Readonly<Record<string, Tensor>>;
  maxChunk?: number;
  /** Records one chunk's work: from its rows' fields ([nb] each) and the shared tensors, the rows' scores [nb]. */
  build(t: Tape, nb: number, row: Readonly<Record<string, Sym>>, shared: Readonly<Record<string, Sym>>): Sym;
  /** Called with the number of rows the GPU has just finished; the rows then run in groups, one submit each. */
  progress?: (rows: number) => void;
  /** Submits when progress is reported (default 20). */
  groups?: number;
  /** Per-launch GPU timestamps of the passes (slower: one compute pass per launch), handed over when they resolve. */
  onTimings?: (timings: Promise<OpTiming[]>) => void;
}

/** Runs a row sweep: the scores of every row, [rows], owned by the caller. Nothing is read back. */
export async function runRowSweep(model: Model, s: RowSweep): Promise<Tensor> {
  const ctx = model.ctx;
  if (!(Number.isInteger(s.rows) && s.rows >= 1)) throw new InputError(`${s.label}: a sweep needs at least one row, got ${s.rows}`);
  for (const [name, f] of Object.entries(s.fields)) {
    if (f.length !== s.rows) throw new ShapeError(`${s.label}: row field '${name}'`, `has ${f.length} values for ${s.rows} rows`);
  }
  const sharedShapes = Object.entries(s.shared).map(([name, t]) => [name, t.shape] as const);
  const runRows = async (from: number, to: number): Promise<Tensor> => {
    const owned = Object.entries(s.fields).map(([name, f]) => [name, Tensor.fromData(ctx, f.subarray(from, to), [to - from], `${s.label}-${name}`)] as const);
    try {
      const run = await model.runProgram({
        key: `rows|${s.key}|${sharedShapes.map(([n, sh]) => `${n}:${sh}`).join(',')}|${Object.keys(s.fields)}`,
        batch: to - from,
        maxChunk: s.maxChunk,
        build: (nb) => {
          const t = new Tape();
          const shared: Record<string, Sym> = {};
          for (const [name, shape] of sharedShapes) shared[name] = t.input(`shared_${name}`, shape);
          const row: Record<string, Sym> = {};
          for (const name of Object.keys(s.fields)) row[name] = t.input(`row_${name}`, [nb]);
          const score = s.build(t, nb, row, shared);
          if (score.shape.length !== 1 || score.shape[0] !== nb) throw new ShapeError(`${s.label}: row scores`, `must be [${nb}], got [${score.shape}]`);
          return { graph: t.graph, names: new Map([['score', score.name]]), shared: (n: string) => model.isModelConstant(n) };
        },
        feeds: Object.fromEntries([
          ...Object.entries(s.shared).map(([name, tensor]) => [`shared_${name}`, { tensor, batchAxis: null }] as const),
          ...owned.map(([name, tensor]) => [`row_${name}`, { tensor, batchAxis: 0 as const }] as const),
        ]),
        results: { score: { batchAxis: 0 } },
        label: s.label,
        profile: !!s.onTimings,
      });
      if (s.onTimings && run.timings) s.onTimings(run.timings);
      return run.results.get('score')!;
    } finally {
      for (const [, t] of owned) t.dispose();
    }
  };
  if (!s.progress) return runRows(0, s.rows);
  // Progress comes from the queue finishing each group's submit (onSubmittedWorkDone), never
  // from reading results; the groups' scores are then copied into one tensor.
  const group = Math.max(1, Math.ceil(s.rows / (s.groups ?? 20)));
  const parts: { from: number; t: Tensor }[] = [];
  try {
    for (let from = 0; from < s.rows; from += group) {
      const to = Math.min(s.rows, from + group);
      parts.push({ from, t: await runRows(from, to) });
      const report = s.progress;
      void ctx.device.queue.onSubmittedWorkDone().then(() => report(to - from), () => undefined);
    }
    const out = Tensor.empty(ctx, [s.rows], `${s.label}-scores`);
    const enc = ctx.device.createCommandEncoder({ label: `${s.label}-scores` });
    for (const p of parts) enc.copyBufferToBuffer(p.t.buffer, p.t.byteOffset, out.buffer, out.byteOffset + p.from * 4, p.t.byteLength);
    ctx.device.queue.submit([enc.finish()]);
    return out;
  } finally {
    for (const p of parts) p.t.dispose();
  }
}

/** y_c of each row: Σ_c seed_c · f(logits)_c, f the softmax or the identity ([nb, classes] → [nb]). */
export function targetScore(t: Tape, logits: Sym, seed: Sym, of: 'logit' | 'softmax'): Sym {
  const nb = logits.shape[0];
  const scored = of === 'softmax' ? t.softmax(logits, -1) : logits;
  return t.reshape(t.reduce('sum', t.mul(scored, seed), [1]), [nb]);
}

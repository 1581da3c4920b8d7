import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { SUPPORTED_OPS } from '../../src/onnx/analyze.js';
import { type Base, buildCase, caseAt, listBases, planSteps, repoRoot, type Step } from './mutate.js';
import type { CaseRequest, Outcome, SoakSample, Status } from './worker.js';

/**
 * The fuzzer's parent: generates cases (test/fuzz/mutate.ts), runs each in a child process
 * (test/fuzz/worker.ts, bundled with esbuild) under a per-case wall-clock budget, kills the
 * child on a hang and starts a new one, and counts how every case ended: ok, a typed error
 * (by code), or a failure — crash (the child died), hang (over budget), untyped error
 * (InternalError or a non-camgpu error), leak (pool bytes still checked out), gpu (a GPU
 * validation error or lost device: camgpu submitted work it should have refused). Failures
 * are minimized (mutations removed while the failure stays) and written as reproducers.
 */

const REPO = repoRoot();
const WORKER_BUNDLE = join(REPO, 'dist', 'fuzz-worker.mjs');

export const FAILURES: readonly Status[] = ['crash', 'hang', 'untyped', 'leak', 'gpu'];

let bundled: Promise<string> | null = null;

/** Bundles the worker (packages stay external, resolved from the repository's node_modules). */
export function workerBundle(): Promise<string> {
  bundled ??= build({
    entryPoints: [join(REPO, 'test', 'fuzz', 'worker.ts')], outfile: WORKER_BUNDLE, bundle: true, platform: 'node', format: 'esm',
    target: 'node20', packages: 'external', sourcemap: 'inline', logLevel: 'warning',
  }).then(() => WORKER_BUNDLE);
  return bundled;
}

type Reply = { id: number; outcome?: Outcome; samples?: SoakSample[] };

/** One child process; restarted by the caller when it dies or is killed. */
class Worker {
  private child: ChildProcess;
  readonly ready: Promise<void>;
  private pending: { id: number; resolve: (r: Reply | { died: string }) => void } | null = null;
  private stderr = '';
  dead = false;

  constructor(bundle: string, heapMB: number) {
    this.child = fork(bundle, [], {
      execArgv: [`--max-old-space-size=${heapMB}`, '--enable-source-maps'],
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    this.ready = new Promise((resolve, reject) => {
      const onMsg = (m: { ready?: boolean }) => {
        if (m.ready) {
          this.child.off('message', onMsg);
          resolve();
        }
      };
      this.child.on('message', onMsg);
      this.child.once('exit', (code, signal) => reject(new Error(`fuzz worker exited before it was ready (${code ?? signal}): ${this.stderr}`)));
    });
    this.ready.catch(() => undefined);
    this.child.on('message', (m: Reply) => {
      if (this.pending && m.id === this.pending.id) {
        const p = this.pending;
        this.pending = null;
        p.resolve(m);
      }
    });
    this.child.on('exit', (code, signal) => {
      this.dead = true;
      const p = this.pending;
      this.pending = null;
      p?.resolve({ died: `exit ${code ?? ''}${signal ? ` signal ${signal}` : ''}; stderr: ${this.stderr.split('\n').filter((l) => !/artificially reduced/.test(l)).join('\n').trim().slice(-1500)}` });
    });
  }

  /** Sends a request; resolves with the reply, or `died` when the child exits, or `timeout`. */
  request(msg: { id: number } & Record<string, unknown>, timeoutMs: number): Promise<Reply | { died: string } | { timeout: true }> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending = null;
        this.kill();
        resolve({ timeout: true });
      }, timeoutMs);
      this.pending = {
        id: msg.id,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      this.child.send(msg);
    });
  }

  kill(): void {
    if (!this.dead) this.child.kill('SIGKILL');
    this.dead = true;
  }

  async close(): Promise<void> {
    if (this.dead) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.send({ kind: 'exit' });
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    this.kill();
  }
}

export interface CampaignOptions {
  seed: number;
  /** Stop after this many cases … */
  cases?: number;
  /** … or after this much wall time (whichever comes first). */
  maxMs?: number;
  /** A case over this wall time is a hang (the child is killed). */
  caseBudgetMs?: number;
  /** Heap of the child process (a runaway allocation crashes it fast). */
  heapMB?: number;
  /** Minimize failures and write reproducers here. */
  out?: string;
  log?: (line: string) => void;
}

export interface Failure {
  index: number;
  base: string;
  seed: number;
  status: Status;
  message: string;
  mutations: string[];
  steps: Step[];
  reproducer?: string;
}

export interface CampaignResult {
  seed: number;
  cases: number;
  wallMs: number;
  statuses: Record<Status, number>;
  typedCodes: Record<string, number>;
  failures: Failure[];
  /** Child processes started (1 + one per crash or hang). */
  workers: number;
  slowestMs: number;
  /** Cases by the kind of their first mutation (structure, attribute, …; 'none' for clean). */
  kinds: Record<string, number>;
}

/** A child process ready for cases; a new one replaces a dead one. */
class Pool {
  private w: Worker | null = null;
  started = 0;
  constructor(private readonly bundle: string, private readonly heapMB: number) {}

  async get(): Promise<Worker> {
    if (!this.w || this.w.dead) {
      this.w = new Worker(this.bundle, this.heapMB);
      this.started++;
      await this.w.ready;
    }
    return this.w;
  }

  async close(): Promise<void> {
    await this.w?.close();
  }
}

let nextId = 1;

async function runCase(pool: Pool, base: Base, seed: number, steps: Step[] | undefined, budget: number): Promise<Outcome> {
  const w = await pool.get();
  const req: CaseRequest = { kind: 'case', id: nextId++, base: base.name, seed, steps };
  const t0 = performance.now();
  const r = await w.request({ ...req }, budget);
  if ('timeout' in r) return { status: 'hang', message: `no result within ${budget} ms`, ms: performance.now() - t0 };
  if ('died' in r) return { status: 'crash', message: r.died, ms: performance.now() - t0 };
  return r.outcome!;
}

/** Runs a campaign (see the file comment). Deterministic in `seed` for a given case count. */
export async function runCampaign(o: CampaignOptions): Promise<CampaignResult> {
  const log = o.log ?? (() => undefined);
  const budget = o.caseBudgetMs ?? 30_000;
  const bases = listBases(new Set(SUPPORTED_OPS));
  if (bases.length === 0) throw new Error('no base models found');
  const pool = new Pool(await workerBundle(), o.heapMB ?? 1536);
  const statuses = Object.fromEntries(['ok', 'typed', ...FAILURES].map((s) => [s, 0])) as Record<Status, number>;
  const typedCodes: Record<string, number> = {};
  const kinds: Record<string, number> = {};
  const failures: Failure[] = [];
  const t0 = performance.now();
  let cases = 0;
  let slowest = 0;
  try {
    for (let i = 0; i < (o.cases ?? Infinity) && performance.now() - t0 < (o.maxMs ?? Infinity); i++) {
      const { base, seed } = caseAt(bases, o.seed, i);
      const steps = planSteps(seed);
      const out = await runCase(pool, base, seed, undefined, budget);
      cases++;
      slowest = Math.max(slowest, out.ms);
      statuses[out.status]++;
      if (out.status === 'typed') typedCodes[out.code!] = (typedCodes[out.code!] ?? 0) + 1;
      const kind = (out.mutations?.[0] ?? 'none').split('.')[0];
      kinds[kind] = (kinds[kind] ?? 0) + 1;
      if (FAILURES.includes(out.status)) {
        const mutations = out.mutations ?? buildCase(base, seed, steps).mutations;
        const f: Failure = { index: i, base: base.name, seed, status: out.status, message: out.message ?? '', mutations, steps };
        log(`FAIL ${out.status} case ${i} (${base.name}, seed ${seed}): ${f.message.split('\n')[0]}\n  ${mutations.join('\n  ')}${out.stack ? `\n  ${out.stack.split('\n').slice(0, 6).join('\n  ')}` : ''}`);
        if (o.out) {
          await minimize(pool, base, f, budget, log);
          f.reproducer = writeReproducer(o.out, f, base);
          log(`  reproducer: ${f.reproducer} (${f.steps.length} mutation${f.steps.length === 1 ? '' : 's'})`);
        }
        failures.push(f);
      }
      if ((i + 1) % 250 === 0) log(`${i + 1} cases, ${((performance.now() - t0) / 1000).toFixed(0)} s: ${JSON.stringify(statuses)}`);
    }
  } finally {
    await pool.close();
  }
  return { seed: o.seed, cases, wallMs: performance.now() - t0, statuses, typedCodes, failures, workers: pool.started, slowestMs: slowest, kinds };
}

/** Drops mutations one at a time while the case still fails the same way. */
async function minimize(pool: Pool, base: Base, f: Failure, budget: number, log: (l: string) => void): Promise<void> {
  let steps = [...f.steps];
  for (let k = steps.length - 1; k >= 0 && steps.length > 1; k--) {
    const candidate = steps.filter((_, j) => j !== k);
    const o = await runCase(pool, base, f.seed, candidate, budget);
    if (o.status === f.status) {
      steps = candidate;
      log(`  minimized: mutation ${k} is not needed`);
    }
  }
  f.steps = steps;
  f.mutations = buildCase(base, f.seed, steps).mutations;
}

/** A failure's model, its files and a case.json (base, seed, steps, mutations, outcome) in `out/<status>-<index>/`. */
function writeReproducer(out: string, f: Failure, base: Base): string {
  const c = buildCase(base, f.seed, f.steps);
  const dir = join(out, `${f.status}-${f.index}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const d of c.dirs) mkdirSync(join(dir, d), { recursive: true });
  for (const file of c.files) writeFileSync(join(dir, file.name), file.bytes);
  for (const s of c.symlinks) symlinkSync(s.target, join(dir, s.name));
  writeFileSync(join(dir, 'model.onnx'), c.bytes);
  writeFileSync(join(dir, 'case.json'), `${JSON.stringify({ base: f.base, seed: f.seed, steps: f.steps, mutations: c.mutations, feedEdits: c.feedEdits, grad: c.grad, status: f.status, message: f.message }, null, 2)}\n`);
  return dir;
}

/** `loads` cases in one child process, sampling pool bytes and RSS (the memory check). */
export async function runSoak(seed: number, loads: number, sampleEvery: number, timeoutMs: number, heapMB = 4096): Promise<SoakSample[]> {
  const pool = new Pool(await workerBundle(), heapMB);
  try {
    const w = await pool.get();
    const r = await w.request({ kind: 'soak', id: nextId++, seed, loads, sampleEvery }, timeoutMs);
    if ('timeout' in r) throw new Error(`soak did not finish within ${timeoutMs} ms`);
    if ('died' in r) throw new Error(`soak worker died: ${r.died}`);
    return r.samples!;
  } finally {
    await pool.close();
  }
}

/** A one-paragraph account of a campaign. */
export function summarize(r: CampaignResult): string {
  const codes = Object.entries(r.typedCodes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  const kinds = Object.entries(r.kinds).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  return [
    `fuzz seed ${r.seed}: ${r.cases} cases in ${(r.wallMs / 1000).toFixed(1)} s (slowest ${(r.slowestMs / 1000).toFixed(1)} s, ${r.workers} worker process${r.workers === 1 ? '' : 'es'})`,
    `  ok ${r.statuses.ok}, typed errors ${r.statuses.typed} (${codes})`,
    `  crashes ${r.statuses.crash}, hangs ${r.statuses.hang}, untyped ${r.statuses.untyped}, leaks ${r.statuses.leak}, gpu errors ${r.statuses.gpu}`,
    `  first mutation kinds: ${kinds}`,
  ].join('\n');
}

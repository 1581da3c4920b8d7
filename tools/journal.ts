/**
 * The resumable journal of `camgpu eval`: DIR/results.jsonl, one MetricRecord per line.
 *
 * Durability: `append` writes whole lines (each ends in '\n') and fsyncs before it returns,
 * so a run killed at any moment has lost no line it appended, and can have left at most one
 * incomplete line at the end (a write cut short). `Journal.open` drops that line, truncating
 * the file to its last '\n', so a resumed run continues from the last complete record.
 *
 * Concurrency: one writer per directory. `open` takes DIR/results.jsonl.lock (created
 * exclusively, holding the writer's pid and host); a second open while that process lives
 * is an InputError naming the pid. A lock whose process is gone on this host (a killed run)
 * is taken over; one from another host (a shared file system) cannot be checked and is an
 * error that says to remove it.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { type MetricRecord, recordKey } from '../src/metrics/records.js';
import { InputError } from '../src/runtime/errors.js';

// ---------------------------------------------------------------------------------------
// Durable writes, shared with the report (tools/report.ts); this module loads no plotting code.

let tempCounter = 0;

/** Writes `data` to `path` through a temporary sibling, fsynced, then renamed over `path`. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${tempCounter++}.tmp`);
  try {
    const fd = openSync(temp, 'wx', 0o644);
    try {
      for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (e) {
    rmSync(temp, { force: true });
    throw e;
  }
  fsyncDirectory(dir);
}

/** Makes a rename or a new file in `dir` durable (Linux; a no-op where directories cannot be fsynced). */
export function fsyncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    // Windows and some network file systems refuse fsync on a directory.
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------

export const JOURNAL_FILE = 'results.jsonl';
export const LOCK_FILE = `${JOURNAL_FILE}.lock`;

interface LockContent {
  pid: number;
  host: string;
  since: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isFiniteNumberArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isFinite(x));
}

/** The problem with `v` as a MetricRecord, or null when it is one. */
export function recordProblem(v: unknown): string | null {
  if (!isObject(v)) return 'not a JSON object';
  if (!(typeof v.image === 'string' || (typeof v.image === 'number' && Number.isFinite(v.image)))) return '`image` is not a file name or an index';
  if (typeof v.method !== 'string' || v.method === '') return '`method` is not a non-empty string';
  if (typeof v.metric !== 'string' || v.metric === '') return '`metric` is not a non-empty string';
  if (typeof v.target !== 'number' || !Number.isInteger(v.target)) return '`target` is not a whole number';
  if (!(v.value === null || (typeof v.value === 'number' && Number.isFinite(v.value)))) return '`value` is neither a finite number nor null';
  if (v.undefined !== undefined && typeof v.undefined !== 'string') return '`undefined` is not a string';
  if (v.curve !== undefined && !isFiniteNumberArray(v.curve)) return '`curve` is not an array of finite numbers';
  if (v.curveX !== undefined && !isFiniteNumberArray(v.curveX)) return '`curveX` is not an array of finite numbers';
  if (v.extra !== undefined) {
    if (!isObject(v.extra)) return '`extra` is not an object';
    for (const [k, x] of Object.entries(v.extra)) {
      if (!(x === null || typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x)))) return `\`extra.${k}\` is not a finite number, string, boolean or null`;
    }
  }
  return null;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, owned by someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function takeLock(dir: string): string {
  const path = join(dir, LOCK_FILE);
  const mine: LockContent = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${JSON.stringify(mine)}\n`, { flag: 'wx' });
      return path;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let held: Partial<LockContent> = {};
    try {
      const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
      if (isObject(parsed)) held = parsed as Partial<LockContent>;
    } catch {
      // An unreadable lock is one a killed writer left half-written: nobody holds it.
    }
    if (typeof held.pid === 'number' && held.host !== undefined && held.host !== mine.host) {
      throw new InputError(`${dir}: another camgpu eval (pid ${held.pid} on host ${held.host}) holds ${path}; if none is running, remove that file`);
    }
    if (typeof held.pid === 'number' && processAlive(held.pid)) {
      throw new InputError(`${dir}: another camgpu eval (pid ${held.pid}, since ${held.since ?? '?'}) is writing this directory; one writer per --out directory`);
    }
    rmSync(path, { force: true });
  }
  throw new InputError(`${dir}: could not take ${path}: another process keeps recreating it`);
}

export interface JournalOptions {
  /** Take the directory's lock (default true). */
  lock?: boolean;
}

export class Journal {
  readonly dir: string;
  readonly path: string;
  /** Bytes of a partial last line dropped when the journal was opened (0 when none). */
  readonly droppedBytes: number;
  private fd: number | null;
  private size: number;
  private readonly lockPath: string | null;
  private readonly byKey = new Map<string, MetricRecord>();
  private readonly ordered: MetricRecord[] = [];

  private constructor(dir: string, fd: number, size: number, droppedBytes: number, lockPath: string | null, records: MetricRecord[]) {
    this.dir = dir;
    this.path = join(dir, JOURNAL_FILE);
    this.fd = fd;
    this.size = size;
    this.droppedBytes = droppedBytes;
    this.lockPath = lockPath;
    for (const r of records) {
      this.byKey.set(recordKey(r), r);
      this.ordered.push(r);
    }
  }

  /**
   * Opens (creating when missing) DIR/results.jsonl: takes the lock, reads every complete
   * line, drops and truncates away a trailing partial one. A complete line that is not a
   * record, or a second line with a record's key, is an InputError naming the file and the
   * line: that is not what a killed run leaves, so nothing is silently thrown away.
   */
  static open(dir: string, options: JournalOptions = {}): Journal {
    mkdirSync(dir, { recursive: true });
    const lockPath = options.lock === false ? null : takeLock(dir);
    const path = join(dir, JOURNAL_FILE);
    let fd: number | null = null;
    try {
      const existed = existsSync(path);
      fd = openSync(path, 'a+');
      if (!existed) fsyncDirectory(dir);
      const size = fstatSync(fd).size;
      const bytes = new Uint8Array(size);
      for (let done = 0; done < size;) {
        const n = readSync(fd, bytes, done, size - done, done);
        if (n === 0) break;
        done += n;
      }
      const end = bytes.lastIndexOf(0x0a) + 1;
      if (end < size) {
        ftruncateSync(fd, end);
        fsyncSync(fd);
      }
      const records: MetricRecord[] = [];
      const seen = new Map<string, number>();
      const lines = new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(0, end)).split('\n');
      lines.pop();
      lines.forEach((line, i) => {
        if (line.trim() === '') return;
        let parsed: unknown;
        try {
          parsed = JSON.parse(line);
        } catch {
          throw new InputError(`${path}:${i + 1}: not a JSON line; the journal is damaged (a killed run leaves only its last line incomplete)`);
        }
        const problem = recordProblem(parsed);
        if (problem) throw new InputError(`${path}:${i + 1}: not a metric record: ${problem}`);
        const r = parsed as MetricRecord;
        const key = recordKey(r);
        const prev = seen.get(key);
        if (prev !== undefined) throw new InputError(`${path}:${i + 1}: repeats line ${prev} (image ${JSON.stringify(r.image)}, method '${r.method}', metric '${r.metric}', target ${r.target})`);
        seen.set(key, i + 1);
        records.push(r);
      });
      return new Journal(dir, fd, end, size - end, lockPath, records);
    } catch (e) {
      if (fd !== null) closeSync(fd);
      if (lockPath) rmSync(lockPath, { force: true });
      throw e;
    }
  }

  /** Whether the journal holds a record with this (image, method, metric, target). */
  has(r: Pick<MetricRecord, 'image' | 'method' | 'metric' | 'target'>): boolean {
    return this.byKey.has(recordKey(r));
  }

  /** The record with this key, if the journal holds one. */
  get(r: Pick<MetricRecord, 'image' | 'method' | 'metric' | 'target'>): MetricRecord | undefined {
    return this.byKey.get(recordKey(r));
  }

  /** Every record, in the order of the file. */
  records(): MetricRecord[] {
    return [...this.ordered];
  }

  /**
   * Appends the records as complete lines in one write and fsyncs before returning. Every
   * record is checked first (a malformed record, or one whose key the journal or the batch
   * already holds, is an InputError and nothing is written). A failed write (disk full) is
   * cut back to the last complete line before the error leaves.
   */
  append(records: readonly MetricRecord[]): void {
    if (this.fd === null) throw new InputError(`${this.path}: the journal is closed`);
    if (records.length === 0) return;
    const keys = new Set<string>();
    let text = '';
    for (const r of records) {
      const problem = recordProblem(r);
      if (problem) throw new InputError(`${this.path}: cannot append image ${JSON.stringify(r.image)}, method '${r.method}', metric '${r.metric}': ${problem}`);
      const key = recordKey(r);
      if (this.byKey.has(key) || keys.has(key)) throw new InputError(`${this.path}: already holds image ${JSON.stringify(r.image)}, method '${r.method}', metric '${r.metric}', target ${r.target}`);
      keys.add(key);
      text += `${JSON.stringify(r)}\n`;
    }
    const bytes = new TextEncoder().encode(text);
    try {
      for (let done = 0; done < bytes.length;) done += writeSync(this.fd, bytes, done, bytes.length - done);
      fsyncSync(this.fd);
    } catch (e) {
      try {
        ftruncateSync(this.fd, this.size);
      } catch {
        // The next open drops whatever partial line is left.
      }
      throw e;
    }
    this.size += bytes.length;
    for (const r of records) {
      const copy = JSON.parse(JSON.stringify(r)) as MetricRecord;
      this.byKey.set(recordKey(copy), copy);
      this.ordered.push(copy);
    }
  }

  /** Closes the file and releases the lock. */
  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
    if (this.lockPath) rmSync(this.lockPath, { force: true });
  }
}

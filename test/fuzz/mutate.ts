import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type AttributeProto, type ModelProto, type NodeProto, onnx, type TensorProto } from '../../src/onnx/proto.js';

/**
 * Structure-aware mutation of ONNX models: a base model is decoded, fields of the kinds that
 * malformed files get wrong are changed (structure, attributes, initializers, header, value
 * infos, external data, plan-time input values), and the model is encoded again. Every case
 * is a pure function of (base, case seed), so a crash in a child process can be regenerated
 * and minimized in the parent.
 */

/** Seeded PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

export interface Base {
  /** Short name (file or node-test folder). */
  name: string;
  path: string;
  /** The node test's first data set, for feeds (node tests only). */
  dataDir?: string;
  /** Relative weight when picking bases. */
  weight: number;
}

/** The repository root (this file runs from test/fuzz/ under vitest and from dist/ when bundled). */
export function repoRoot(): string {
  let d = import.meta.dirname;
  while (!existsSync(join(d, 'package.json')) && dirname(d) !== d) d = dirname(d);
  return d;
}

const REPO = repoRoot();
export const ONNX_NODE_DIR = process.env.ONNX_NODE_TESTDATA ?? '/usr/share/libonnx-testdata/data/node';

/**
 * The models the fuzzer mutates: ours (models/*.onnx, the torch fixtures) and every ONNX
 * node test whose ops camgpu supports (`supported`), each with its first data set.
 */
export function listBases(supported: ReadonlySet<string>): Base[] {
  const out: Base[] = [];
  for (const dir of [join(REPO, 'models'), join(REPO, 'test', 'fixtures', 'torch')]) {
    for (const f of readdirSync(dir).filter((q) => q.endsWith('.onnx')).sort()) out.push({ name: f, path: join(dir, f), weight: 6 });
  }
  if (existsSync(ONNX_NODE_DIR)) {
    for (const name of readdirSync(ONNX_NODE_DIR).sort()) {
      const path = join(ONNX_NODE_DIR, name, 'model.onnx');
      if (!existsSync(path)) continue;
      let ops: string[];
      try {
        ops = (onnx.ModelProto.decode(readFileSync(path)).graph?.node ?? []).map((n) => n.opType ?? '');
      } catch {
        continue;
      }
      if (ops.length === 0 || !ops.every((o) => supported.has(o))) continue;
      const data = join(ONNX_NODE_DIR, name, 'test_data_set_0');
      out.push({ name, path, dataDir: existsSync(data) ? data : undefined, weight: 1 });
    }
  }
  return out;
}

/** A weighted pick of a base. */
export function pickBase(bases: readonly Base[], r: Rand): Base {
  const total = bases.reduce((s, b) => s + b.weight, 0);
  let x = r() * total;
  for (const b of bases) if ((x -= b.weight) < 0) return b;
  return bases[bases.length - 1];
}

/** An edit of a node test's plan-time input values (inputValues): element `index` of input `input`. */
export interface FeedEdit {
  input: number;
  index: number;
  value: number;
}

export interface FuzzCase {
  base: string;
  seed: number;
  /** What each applied mutation did, in order. */
  mutations: string[];
  bytes: Uint8Array;
  /** Files beside the model (external data), symbolic links (name → target) and folders. */
  files: { name: string; bytes: Uint8Array }[];
  symlinks: { name: string; target: string }[];
  dirs: string[];
  feedEdits: FeedEdit[];
  /** Also run a gradient pass (models with [N, C] logits). */
  grad: boolean;
}

interface MutationContext {
  files: FuzzCase['files'];
  symlinks: FuzzCase['symlinks'];
  dirs: string[];
  feedEdits: FeedEdit[];
  feedCount: number;
}

type Mutator = (m: ModelProto, r: Rand, c: MutationContext) => string | null;

const INT_EDGES = [0, -1, -2, 1, 2, 3, 7, 1e6, 1e9, -1e9, 2 ** 31 - 1, 2 ** 31, 2 ** 32, -(2 ** 31), 2 ** 53, 2 ** 62, -(2 ** 62)];
const FLOAT_EDGES = [NaN, Infinity, -Infinity, -1, 0, 1e38, 1e-45, 0.5, -0, 3];
const STRINGS = ['', 'NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID', 'constant', 'reflect', 'edge', 'wrap', 'bogus', '__proto__', 'constructor'];
const OP_TYPES = ['constructor', '__proto__', 'valueOf', 'toString', 'hasOwnProperty', 'isPrototypeOf', 'Conv', 'Relu', 'Reshape', 'Slice', 'Range',
  'Unsqueeze', 'Squeeze', 'Transpose', 'Gather', 'Concat', 'Constant', 'ConstantOfShape', 'Expand', 'Pad', 'MaxPool', 'Gemm', 'Hardmax', 'If', '', 'conv'];
const ATTR_NAMES = ['bogus', '__proto__', 'constructor', 'axis', 'axes', 'perm', 'kernel_shape', 'strides', 'pads', 'dilations', 'group', 'alpha', 'to', 'value'];

const graph = (m: ModelProto) => m.graph!;
const nodes = (m: ModelProto) => graph(m).node ?? [];
const inits = (m: ModelProto) => graph(m).initializer ?? [];
const num = (v: unknown) => (typeof v === 'number' ? v : Number((v as { toString(): string }).toString()));

/** Every tensor name the graph defines. */
function tensorNames(m: ModelProto): string[] {
  const g = graph(m);
  return [...(g.input ?? []).map((i) => i.name ?? ''), ...inits(m).map((t) => t.name ?? ''), ...nodes(m).flatMap((n) => n.output ?? [])].filter(Boolean);
}

function pickNode(m: ModelProto, r: Rand, filter: (n: NodeProto) => boolean = () => true) {
  const ns = nodes(m).filter(filter);
  return ns.length ? pick(r, ns) : null;
}

function label(n: NodeProto): string {
  return `node '${n.name ?? ''}' (${n.opType})`;
}

/** The bytes of an int64 (or int32) tensor's values, as numbers; null when it has none. */
function intValues(t: TensorProto): number[] | null {
  if (t.dataType === 7) {
    if (t.rawData && t.rawData.length % 8 === 0 && t.rawData.length) {
      const b = new Uint8Array(t.rawData);
      return Array.from(new BigInt64Array(b.buffer, 0, b.length / 8), (v) => Number(v));
    }
    if (t.int64Data?.length) return t.int64Data.map(num);
  }
  if (t.dataType === 6 && t.int32Data?.length) return [...t.int32Data];
  return null;
}

function setIntValues(t: TensorProto, v: number[]): void {
  if (t.dataType === 7) {
    const a = BigInt64Array.from(v, (x) => BigInt(Math.trunc(Math.max(Math.min(x, 2 ** 63 - 1024), -(2 ** 63)))));
    t.rawData = new Uint8Array(a.buffer);
    t.int64Data = [];
  } else {
    t.int32Data = v.map((x) => x | 0);
    t.rawData = new Uint8Array(0);
  }
}

const STRUCTURE: Record<string, Mutator> = {
  dupWriter: (m, r) => {
    const ns = nodes(m).filter((n) => n.output?.length);
    if (ns.length < 2) return null;
    const a = pick(r, ns);
    const b = pick(r, ns.filter((n) => n !== a));
    b.output![0] = a.output![0];
    return `${label(b)} also writes '${a.output![0]}'`;
  },
  outputEmpty: (m, r) => {
    const o = pick(r, graph(m).output ?? []);
    if (!o) return null;
    o.name = '';
    return 'a graph output named \'\'';
  },
  outputUnknown: (m, r) => {
    const o = pick(r, graph(m).output ?? []);
    if (!o) return null;
    o.name = `nowhere_${int(r, 0, 99)}`;
    return `graph output '${o.name}'`;
  },
  outputDup: (m) => {
    const o = (graph(m).output ?? [])[0];
    if (!o) return null;
    graph(m).output!.push(onnx.ValueInfoProto.create(o));
    return `graph output '${o.name}' listed twice`;
  },
  initShadow: (m, r) => {
    const n = pickNode(m, r, (q) => !!q.output?.length);
    const t = pick(r, inits(m));
    if (!n || !t) return null;
    n.output![0] = t.name ?? '';
    return `${label(n)} writes initializer '${t.name}'`;
  },
  inputDup: (m, r) => {
    const i = pick(r, graph(m).input ?? []);
    if (!i) return null;
    graph(m).input!.push(onnx.ValueInfoProto.create(i));
    return `graph input '${i.name}' declared twice`;
  },
  writesInput: (m, r) => {
    const n = pickNode(m, r, (q) => !!q.output?.length);
    const i = pick(r, graph(m).input ?? []);
    if (!n || !i) return null;
    n.output![0] = i.name ?? '';
    return `${label(n)} writes graph input '${i.name}'`;
  },
  initDup: (m, r) => {
    const t = pick(r, inits(m));
    if (!t) return null;
    const copy = onnx.TensorProto.create(t);
    if (r() < 0.5) copy.dims = [1];
    inits(m).push(copy);
    return `initializer '${t.name}' defined twice`;
  },
  nodeDup: (m, r) => {
    const ns = nodes(m);
    if (!ns.length) return null;
    const k = int(r, 0, ns.length - 1);
    ns.splice(k + 1, 0, onnx.NodeProto.create(ns[k]));
    return `${label(ns[k])} duplicated`;
  },
  nodeSwap: (m, r) => {
    const ns = nodes(m);
    if (ns.length < 2) return null;
    const a = int(r, 0, ns.length - 1);
    const b = int(r, 0, ns.length - 1);
    [ns[a], ns[b]] = [ns[b], ns[a]];
    return `nodes ${a} and ${b} swapped`;
  },
  cycle: (m, r) => {
    const ns = nodes(m);
    if (ns.length < 2) return null;
    const i = int(r, 0, ns.length - 2);
    const j = int(r, i + 1, ns.length - 1);
    if (!ns[i].input?.length || !ns[j].output?.length) return null;
    ns[i].input![0] = ns[j].output![0];
    return `${label(ns[i])} reads '${ns[j].output![0]}' of later ${label(ns[j])}`;
  },
  selfLoop: (m, r) => {
    const n = pickNode(m, r, (q) => !!q.input?.length && !!q.output?.length);
    if (!n) return null;
    n.input![0] = n.output![0];
    return `${label(n)} reads its own output`;
  },
  inputAdd: (m, r) => {
    const n = pickNode(m, r);
    const names = tensorNames(m);
    if (!n || !names.length) return null;
    (n.input ??= []).push(pick(r, names));
    return `${label(n)} gets an extra input`;
  },
  inputDrop: (m, r) => {
    const n = pickNode(m, r, (q) => !!q.input?.length);
    if (!n) return null;
    n.input!.splice(int(r, 0, n.input!.length - 1), 1);
    return `${label(n)} loses an input`;
  },
  inputEmpty: (m, r) => {
    const n = pickNode(m, r, (q) => !!q.input?.length);
    if (!n) return null;
    n.input![int(r, 0, n.input!.length - 1)] = '';
    return `${label(n)} has an empty input`;
  },
  inputGhost: (m, r) => {
    const n = pickNode(m, r, (q) => !!q.input?.length);
    if (!n) return null;
    n.input![int(r, 0, n.input!.length - 1)] = 'ghost';
    return `${label(n)} reads 'ghost'`;
  },
  outputAdd: (m, r) => {
    const n = pickNode(m, r);
    if (!n) return null;
    (n.output ??= []).push(r() < 0.5 ? '' : `extra_${int(r, 0, 9)}`);
    return `${label(n)} gets an extra output`;
  },
  outputDrop: (m, r) => {
    const n = pickNode(m, r, (q) => !!q.output?.length);
    if (!n) return null;
    if (r() < 0.5) n.output!.pop();
    else n.output![0] = '';
    return `${label(n)} loses its output`;
  },
  opType: (m, r) => {
    const n = pickNode(m, r);
    if (!n) return null;
    const was = n.opType;
    n.opType = pick(r, OP_TYPES);
    return `node '${n.name}' op_type ${was} → '${n.opType}'`;
  },
  domain: (m, r) => {
    const n = pickNode(m, r);
    if (!n) return null;
    n.domain = pick(r, ['com.microsoft', 'ai.onnx', 'ai.onnx.ml', '', 'constructor']);
    return `${label(n)} domain '${n.domain}'`;
  },
  nodeDelete: (m, r) => {
    const ns = nodes(m);
    if (!ns.length) return null;
    const [n] = ns.splice(int(r, 0, ns.length - 1), 1);
    return `${label(n)} deleted`;
  },
  nodeName: (m, r) => {
    const ns = nodes(m);
    if (ns.length < 2) return null;
    const a = pick(r, ns);
    a.name = r() < 0.5 ? '' : pick(r, ns).name ?? '';
    return `node named '${a.name}'`;
  },
};

function attrsOf(m: ModelProto, r: Rand, filter: (a: AttributeProto) => boolean) {
  const cands = nodes(m).flatMap((n) => (n.attribute ?? []).filter(filter).map((a) => [n, a] as const));
  return cands.length ? pick(r, cands) : null;
}

const ATTRIBUTES: Record<string, Mutator> = {
  attrIntEdge: (m, r) => {
    const hit = attrsOf(m, r, (a) => a.type === 2 || a.type === 7);
    if (!hit) return null;
    const [n, a] = hit;
    const v = pick(r, INT_EDGES);
    if (a.type === 2) a.i = v;
    else if (a.ints?.length) a.ints[int(r, 0, a.ints.length - 1)] = v;
    else a.ints = [v];
    return `${label(n)} ${a.name} ← ${v}`;
  },
  attrType: (m, r) => {
    const hit = attrsOf(m, r, () => true);
    if (!hit) return null;
    const [n, a] = hit;
    const was = a.type;
    if (a.type === 7 && r() < 0.6) {
      a.type = 6;
      a.floats = (a.ints ?? []).map((v) => num(v));
      a.ints = [];
    } else if (a.type === 2 && r() < 0.6) {
      a.type = 1;
      a.f = num(a.i);
      delete (a as { i?: unknown }).i;
    } else {
      a.type = pick(r, [0, 1, 2, 3, 4, 6, 7, 8, 15, 99]) as AttributeProto['type'];
    }
    return `${label(n)} ${a.name} type ${was} → ${a.type}`;
  },
  attrListLen: (m, r) => {
    const hit = attrsOf(m, r, (a) => a.type === 7 || a.type === 6);
    if (!hit) return null;
    const [n, a] = hit;
    const key = a.type === 7 ? 'ints' : 'floats';
    const list = (a[key] ?? []) as number[];
    const how = pick(r, ['empty', 'drop', 'append', 'edge', 'long', 'huge']);
    if (how === 'empty') a[key] = [];
    else if (how === 'drop') list.pop();
    else if (how === 'append') list.push(list[0] ?? 1);
    else if (how === 'edge') list.push(pick(r, INT_EDGES));
    else if (how === 'long') a[key] = Array.from({ length: 1000 }, (_, i) => i % 7);
    else if (r() < 0.3) a[key] = Array.from({ length: 1_000_000 }, (_, i) => i);
    else return null;
    return `${label(n)} ${a.name} list ${how}`;
  },
  attrFloatEdge: (m, r) => {
    const hit = attrsOf(m, r, (a) => a.type === 1 || a.type === 6);
    if (!hit) return null;
    const [n, a] = hit;
    const v = pick(r, FLOAT_EDGES);
    if (a.type === 1) a.f = v;
    else a.floats = [v];
    return `${label(n)} ${a.name} ← ${v}`;
  },
  attrUnknown: (m, r) => {
    const n = pickNode(m, r);
    if (!n) return null;
    const name = pick(r, ATTR_NAMES);
    const kind = int(r, 0, 3);
    const a = kind === 0 ? { name, type: 2, i: pick(r, INT_EDGES) } : kind === 1 ? { name, type: 7, ints: [int(r, -3, 3), int(r, -3, 3)] } : kind === 2 ? { name, type: 1, f: pick(r, FLOAT_EDGES) } : { name, type: 3, s: new TextEncoder().encode(pick(r, STRINGS)) };
    (n.attribute ??= []).push(onnx.AttributeProto.create(a));
    return `${label(n)} gets attribute '${name}'`;
  },
  attrDelete: (m, r) => {
    const n = pickNode(m, r, (q) => !!q.attribute?.length);
    if (!n) return null;
    const [a] = n.attribute!.splice(int(r, 0, n.attribute!.length - 1), 1);
    return `${label(n)} loses ${a.name}`;
  },
  attrDup: (m, r) => {
    const n = pickNode(m, r, (q) => !!q.attribute?.length);
    if (!n) return null;
    const a = pick(r, n.attribute!);
    n.attribute!.push(onnx.AttributeProto.create(a));
    return `${label(n)} ${a.name} twice`;
  },
  attrString: (m, r) => {
    const hit = attrsOf(m, r, (a) => a.type === 3);
    if (!hit) return null;
    const [n, a] = hit;
    const v = pick(r, STRINGS);
    a.s = new TextEncoder().encode(v);
    return `${label(n)} ${a.name} ← '${v}'`;
  },
  perm: (m, r) => {
    const n = pickNode(m, r, (q) => q.opType === 'Transpose');
    if (!n) return null;
    const perm = pick(r, [[0], [1, 0], [0, 0, 1], [5, 1, 0], [-1, 0, 1], [0, 1, 2, 3, 4, 5, 6], []]);
    n.attribute = [onnx.AttributeProto.create({ name: 'perm', type: 7, ints: perm })];
    return `${label(n)} perm [${perm}]`;
  },
};

const INITIALIZERS: Record<string, Mutator> = {
  initDims: (m, r) => {
    const t = pick(r, inits(m));
    if (!t) return null;
    const dims = (t.dims ?? []).map(num);
    const how = pick(r, ['inc', 'dec', 'zero', 'neg', 'huge', 'append', 'drop', 'half']);
    const k = dims.length ? int(r, 0, dims.length - 1) : 0;
    if (how === 'inc' && dims.length) dims[k]++;
    else if (how === 'dec' && dims.length) dims[k]--;
    else if (how === 'zero' && dims.length) dims[k] = 0;
    else if (how === 'neg' && dims.length) dims[k] = -dims[k] || -1;
    else if (how === 'huge' && dims.length) dims[k] = pick(r, [1e9, 2 ** 40, 2 ** 62]);
    else if (how === 'append') dims.push(pick(r, [1, 2, 1e9]));
    else if (how === 'drop' && dims.length) dims.pop();
    else if (how === 'half' && dims.length && dims[k] % 2 === 0) dims.splice(k, 1, dims[k] / 2, 2);
    else return null;
    t.dims = dims;
    return `initializer '${t.name}' dims [${dims}] (${how})`;
  },
  initDtype: (m, r) => {
    const t = pick(r, inits(m));
    if (!t) return null;
    const was = t.dataType;
    t.dataType = pick(r, [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 99, -1]);
    return `initializer '${t.name}' data_type ${was} → ${t.dataType}`;
  },
  initData: (m, r) => {
    const t = pick(r, inits(m).filter((q) => (q.rawData?.length ?? 0) > 0 || (q.floatData?.length ?? 0) > 0));
    if (!t) return null;
    const how = pick(r, ['trim1', 'trim4', 'extend1', 'extend8', 'half', 'toFloat', 'both', 'clear']);
    const raw = t.rawData && t.rawData.length ? new Uint8Array(t.rawData) : new Uint8Array(new Float32Array(t.floatData ?? []).buffer);
    if (how === 'trim1') t.rawData = raw.subarray(0, raw.length - 1);
    else if (how === 'trim4') t.rawData = raw.subarray(0, Math.max(0, raw.length - 4));
    else if (how === 'extend1') t.rawData = Uint8Array.from([...raw, 0]);
    else if (how === 'extend8') t.rawData = Uint8Array.from([...raw, 0, 0, 0, 0, 0, 0, 0, 0]);
    else if (how === 'half') t.rawData = raw.subarray(0, raw.length >> 1);
    else if (how === 'toFloat') {
      t.floatData = Array.from(new Float32Array(raw.buffer, 0, raw.length >> 2));
      t.rawData = new Uint8Array(0);
    } else if (how === 'both') {
      t.rawData = raw;
      t.floatData = [1, 2, 3];
    } else {
      t.rawData = new Uint8Array(0);
      t.floatData = [];
    }
    if (how !== 'toFloat' && how !== 'both') t.floatData = [];
    return `initializer '${t.name}' data ${how}`;
  },
  initIntValue: (m, r) => {
    const ts = inits(m).filter((t) => intValues(t));
    const consts = nodes(m).flatMap((n) => (n.attribute ?? []).filter((a) => a.t && intValues(a.t)).map((a) => a.t!));
    const t = pick(r, [...ts, ...consts]);
    if (!t) return null;
    const v = intValues(t)!;
    const k = int(r, 0, v.length - 1);
    v[k] = pick(r, INT_EDGES);
    setIntValues(t, v);
    return `int tensor '${t.name ?? 'Constant value'}' [${k}] ← ${v[k]}`;
  },
  initLong: (m, r) => {
    const ts = inits(m).filter((t) => intValues(t) && (t.dims?.length ?? 0) <= 1);
    const t = pick(r, ts);
    if (!t) return null;
    const n = pick(r, [1000, 100_000, 1_000_000]);
    setIntValues(t, Array.from({ length: n }, (_, i) => (r() < 0.5 ? i : -1)));
    t.dims = [n];
    return `int tensor '${t.name}' with ${n} values`;
  },
  constValue: (m, r) => {
    const n = pickNode(m, r, (q) => q.opType === 'Constant');
    if (!n) return null;
    const kind = pick(r, ['ints', 'huge', 'float', 'empty']);
    const a = kind === 'ints' ? { name: 'value_ints', type: 7, ints: [pick(r, INT_EDGES), pick(r, INT_EDGES)] }
      : kind === 'huge' ? { name: 'value', type: 4, t: { dims: [1], dataType: 7, int64Data: [pick(r, INT_EDGES)] } }
      : kind === 'float' ? { name: 'value_float', type: 1, f: pick(r, FLOAT_EDGES) }
      : { name: 'value', type: 4, t: { dims: [0], dataType: 7 } };
    n.attribute = [onnx.AttributeProto.create(a)];
    return `${label(n)} value ${kind}`;
  },
  initExternal: (m, r, c) => {
    const t = pick(r, inits(m).filter((q) => (q.rawData?.length ?? 0) > 0));
    if (!t) return null;
    const raw = new Uint8Array(t.rawData!);
    const prefix = r() < 0.5 ? 16 : 0;
    const blob = new Uint8Array(prefix + raw.length + (r() < 0.3 ? 8 : 0));
    blob.set(raw, prefix);
    if (!c.files.some((f) => f.name === 'weights.bin')) c.files.push({ name: 'weights.bin', bytes: blob });
    const location = pick(r, ['weights.bin', 'weights.bin', '../weights.bin', '/etc/passwd', 'link.bin', 'inlink.bin', 'missing.bin', 'sub', '', './weights.bin', 'sub/../weights.bin']);
    if (location === 'link.bin' && !c.symlinks.some((s) => s.name === 'link.bin')) c.symlinks.push({ name: 'link.bin', target: '/etc/passwd' });
    if (location === 'inlink.bin' && !c.symlinks.some((s) => s.name === 'inlink.bin')) c.symlinks.push({ name: 'inlink.bin', target: 'weights.bin' });
    if (location === 'sub' && !c.dirs.includes('sub')) c.dirs.push('sub');
    const offset = pick(r, [String(prefix), String(prefix), '-1', '1.5', '1e3', '99999999', ` ${prefix}`, '0x10', String(2 ** 60)]);
    const length = pick(r, [String(raw.length), String(raw.length), null, '-1', String(raw.length + 1), String(raw.length - 1), '1e9', 'abc']);
    const entries = [{ key: 'location', value: location }, { key: 'offset', value: offset }];
    if (length !== null) entries.push({ key: 'length', value: length });
    const extra = r();
    if (extra < 0.1) entries.push({ key: 'checksum', value: 'abc' });
    else if (extra < 0.15) entries.push({ key: 'bogus', value: '1' });
    else if (extra < 0.2) entries.push({ key: 'location', value: 'weights.bin' });
    t.dataLocation = 1;
    t.externalData = entries.map((e) => onnx.StringStringEntryProto.create(e));
    t.rawData = new Uint8Array(0);
    return `initializer '${t.name}' external ${location} offset ${offset} length ${length}`;
  },
};

const HEADER: Record<string, Mutator> = {
  irVersion: (m, r) => {
    const v = pick(r, [0, -1, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 100, 2 ** 40, null]);
    if (v === null) delete (m as { irVersion?: unknown }).irVersion;
    else m.irVersion = v;
    return `ir_version ${v}`;
  },
  opset: (m, r) => {
    const how = pick(r, ['remove', 'dupDefault', 'aiOnnx', 'version', 'domain', 'extraDomain']);
    const list = (m.opsetImport ??= []);
    if (how === 'remove') m.opsetImport = [];
    else if (how === 'dupDefault') list.push(onnx.OperatorSetIdProto.create({ domain: '', version: pick(r, [7, 13, 17]) }));
    else if (how === 'aiOnnx') list.push(onnx.OperatorSetIdProto.create({ domain: 'ai.onnx', version: pick(r, [11, 17]) }));
    else if (how === 'version' && list[0]) list[0].version = pick(r, [0, -1, 1, 6, 7, 9, 10, 11, 12, 13, 14, 17, 18, 19, 21, 22, 1000, 2 ** 40]);
    else if (how === 'domain' && list[0]) list[0].domain = pick(r, ['com.microsoft', 'ai.onnx', 'ai.onnx.ml', '']);
    else if (how === 'extraDomain') list.push(onnx.OperatorSetIdProto.create({ domain: 'com.microsoft', version: 1 }));
    else return null;
    return `opset_import ${how}`;
  },
};

const VALUE_INFOS: Record<string, Mutator> = {
  inputDims: (m, r) => {
    const i = pick(r, (graph(m).input ?? []).filter((q) => q.type?.tensorType?.shape?.dim?.length));
    if (!i) return null;
    const dims = i.type!.tensorType!.shape!.dim!;
    const d = pick(r, dims);
    const v = pick(r, [-1, -2, 0, 1, 2, 1e9, 2 ** 40, 2 ** 62, 'param', 'empty']);
    if (v === 'param') Object.assign(d, { dimParam: 'Q', dimValue: undefined });
    else if (v === 'empty') Object.assign(d, { dimParam: '', dimValue: undefined });
    else Object.assign(d, { dimValue: v, dimParam: undefined });
    // The oneof: protobufjs encodes whichever field is set.
    if (typeof v === 'number') delete (d as { dimParam?: unknown }).dimParam;
    else delete (d as { dimValue?: unknown }).dimValue;
    return `graph input '${i.name}' dim ← ${v}`;
  },
  inputRank: (m, r) => {
    const i = pick(r, (graph(m).input ?? []).filter((q) => q.type?.tensorType?.shape?.dim));
    if (!i) return null;
    const dims = i.type!.tensorType!.shape!.dim!;
    if (r() < 0.5) dims.pop();
    else dims.push(onnx.TensorShapeProto.Dimension.create({ dimValue: 1 }));
    return `graph input '${i.name}' rank ${dims.length}`;
  },
  inputElemType: (m, r) => {
    const i = pick(r, (graph(m).input ?? []).filter((q) => q.type?.tensorType));
    if (!i) return null;
    i.type!.tensorType!.elemType = pick(r, [0, 1, 6, 7, 8, 9, 11, 99]);
    return `graph input '${i.name}' elem_type ${i.type!.tensorType!.elemType}`;
  },
  inputDrop: (m, r) => {
    const ins = graph(m).input ?? [];
    if (!ins.length) return null;
    const [i] = ins.splice(int(r, 0, ins.length - 1), 1);
    return `graph input '${i.name}' removed`;
  },
  feedValue: (_m, r, c) => {
    if (c.feedCount === 0) return null;
    const e: FeedEdit = { input: int(r, 0, c.feedCount - 1), index: int(r, 0, 3), value: pick(r, [...INT_EDGES, ...FLOAT_EDGES]) };
    c.feedEdits.push(e);
    return `feed ${e.input}[${e.index}] ← ${e.value}`;
  },
};

/** Every mutator by kind, in a fixed order (a case records indices into this list). */
export const MUTATORS: readonly [string, Mutator][] = [
  ...Object.entries(STRUCTURE).map(([k, f]): [string, Mutator] => [`structure.${k}`, f]),
  ...Object.entries(ATTRIBUTES).map(([k, f]): [string, Mutator] => [`attribute.${k}`, f]),
  ...Object.entries(INITIALIZERS).map(([k, f]): [string, Mutator] => [`initializer.${k}`, f]),
  ...Object.entries(HEADER).map(([k, f]): [string, Mutator] => [`header.${k}`, f]),
  ...Object.entries(VALUE_INFOS).map(([k, f]): [string, Mutator] => [`value.${k}`, f]),
];

/**
 * Relative weights of the mutators (default 1): those that reach CPU folding and kernel
 * parameters with extreme values (plan-time input values, int tensors, int attributes)
 * are drawn more often.
 */
const WEIGHT: Record<string, number> = {
  'value.feedValue': 5, 'initializer.initIntValue': 4, 'attribute.attrIntEdge': 4, 'attribute.attrListLen': 2, 'attribute.attrType': 2,
  'attribute.attrFloatEdge': 2, 'attribute.perm': 2, 'initializer.initExternal': 3, 'initializer.initData': 2, 'header.irVersion': 0.5, 'header.opset': 0.7,
};

/** One planned mutation: the mutator's index and the seed it draws from. */
export type Step = readonly [mutator: number, seed: number];

/** Each kind's share of the draws besides the per-mutator weights (structure has many mutators, all of which the checker stops early). */
const KIND_WEIGHT: Record<string, number> = { structure: 0.4, attribute: 1, initializer: 1, header: 1, value: 1 };
const WEIGHTS = MUTATORS.map(([k]) => (WEIGHT[k] ?? 1) * KIND_WEIGHT[k.split('.')[0]]);
const TOTAL_WEIGHT = WEIGHTS.reduce((a, b) => a + b, 0);

/** A weighted draw of a mutator index. */
function drawMutator(r: Rand): number {
  let y = r() * TOTAL_WEIGHT;
  let k = 0;
  while ((y -= WEIGHTS[k]) >= 0 && k < WEIGHTS.length - 1) k++;
  return k;
}

/** The mutations of case `seed`: 0–3 steps (0 in 4 % of cases: the clean model). */
export function planSteps(seed: number): Step[] {
  const r = rng(seed ^ 0x5bd1e995);
  const x = r();
  const count = x < 0.04 ? 0 : x < 0.6 ? 1 : x < 0.9 ? 2 : 3;
  const steps: Step[] = [];
  for (let i = 0; i < count; i++) steps.push([drawMutator(r), Math.floor(r() * 2 ** 32)]);
  return steps;
}

const baseBytes = new Map<string, Uint8Array>();

function readBase(b: Base): Uint8Array {
  let bytes = baseBytes.get(b.path);
  if (!bytes) {
    bytes = new Uint8Array(readFileSync(b.path));
    if (baseBytes.size > 64) baseBytes.clear();
    baseBytes.set(b.path, bytes);
  }
  return bytes;
}

/** Number of input_*.pb files of a node test's data set. */
function feedCount(b: Base): number {
  return b.dataDir ? readdirSync(b.dataDir).filter((f) => f.startsWith('input_')).length : 0;
}

/** Applies `steps` to a fresh decode of the base model. */
export function buildCase(b: Base, seed: number, steps: readonly Step[]): FuzzCase {
  const m = onnx.ModelProto.decode(readBase(b));
  const c: MutationContext = { files: [], symlinks: [], dirs: [], feedEdits: [], feedCount: feedCount(b) };
  const mutations: string[] = [];
  for (const [k0, s] of steps) {
    // A mutator that does not apply to this model hands over to others (fixed by the step's seed).
    const alt = rng(s ^ 0x2545f491);
    let name = '';
    let d: string | null = null;
    for (let attempt = 0, k = k0; attempt < 6 && d === null; attempt++, k = drawMutator(alt)) {
      const [n, f] = MUTATORS[k];
      name = n;
      try {
        d = f(m, rng(s + attempt), c);
      } catch (e) {
        d = `(mutator failed: ${(e as Error).message})`;
      }
    }
    mutations.push(`${name}: ${d ?? '(not applicable)'}`);
  }
  let bytes: Uint8Array;
  try {
    bytes = onnx.ModelProto.encode(m).finish();
  } catch {
    // A mutation protobufjs cannot encode (a value out of its field's range): the clean model with the record.
    mutations.push('(encode failed: the base model is used)');
    bytes = readBase(b);
  }
  const grad = !b.dataDir && (seed & 7) === 0;
  return { base: b.name, seed, mutations, bytes, files: c.files, symlinks: c.symlinks, dirs: c.dirs, feedEdits: c.feedEdits, grad };
}

/** Case `index` of a campaign with `seed`: its base and its own seed. */
export function caseAt(bases: readonly Base[], seed: number, index: number): { base: Base; seed: number } {
  const r = rng((seed * 0x9e3779b1 + index * 0x85ebca77) >>> 0);
  return { base: pickBase(bases, r), seed: Math.floor(r() * 2 ** 32) };
}

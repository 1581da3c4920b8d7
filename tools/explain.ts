/**
 * `camgpu explain`: saliency maps for images (or a .npy batch) with one or more CAM methods,
 * written as .npy arrays, colormapped overlays, a labelled grid per image and summary.json.
 * The method math is `src/cam/explain.ts`; this file is everything around it: flags, inputs,
 * batching over a folder, drawing, and writing the results all-or-nothing.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { type GridPanel } from '../src/io/grid.js';
import { encodePng, renderGridPng } from '../src/io/grid-node.js';
import { type ModelCard, readModelCardBeside } from '../src/io/model-card.js';
import { formatNpy } from '../src/io/npy.js';
import { COLORMAP_NAMES, type ColormapName, cropRgb, denormalizeToRgb, isColormapName, overlay, type RgbImage, rgbaToRgb, rgbToRgba } from '../src/io/overlay.js';
import type { Model } from '../src/model.js';
import { explain, type ExplainOptions, type ExplainResult, type ExplainRow, METHOD_NAMES, type MethodMaps, methodNameKey, type TargetSpec } from '../src/cam/explain.js';
import { CamgpuError, GpuContext, InputError, loadModel, readTensors, type Tensor } from '../src/node.js';
import { collect, csv, meanStd, nonNegativeInt, positiveInt, positiveNumber } from './args.js';
import { type HostInput, inputCount, type InputOptions, inputTensor, type Preprocessing, readInput, resolvePreprocessing } from './input.js';

// ---------------------------------------------------------------------------------------
// The method layer (src/cam/explain.ts); tests may put a stand-in in its place.

export type { ExplainOptions, ExplainResult, ExplainRow, MethodMaps, TargetSpec } from '../src/cam/explain.js';

/** What the command reads of an explain result. */
export type ExplainOutcome = Pick<ExplainResult, 'rows' | 'layers' | 'methods' | 'dispose'>;

export interface ExplainModule {
  explain: (model: Model, x: Tensor, options: ExplainOptions) => Promise<ExplainOutcome>;
  METHOD_NAMES: readonly string[];
}

let override: ExplainModule | null = null;

/** Replaces src/cam/explain.ts for the command (tests); null restores the real module. */
export function setExplainModule(m: ExplainModule | null): void {
  override = m;
}

async function loadExplainModule(): Promise<ExplainModule> {
  return override ?? { explain, METHOD_NAMES };
}

// ---------------------------------------------------------------------------------------
// Flags

export interface ExplainCliOptions extends InputOptions {
  model: string;
  method: string[];
  layer: string[];
  class: string;
  score?: string;
  out?: string;
  colormap: string;
  alpha: string;
  batchSize?: number;
  seed?: number;
  profile: boolean;
  progress: boolean;
  json: boolean;
  masks?: number;
  iters?: number;
  lr?: number;
  alignCorners: boolean;
  scoreBaseline: boolean;
  polyNormalize: string;
  lnorm: boolean;
  sweepStyle: string;
  maskSpace: string;
}

/** How the command's flags read method names: as explain() does (case, separators, aliases). */
const methodKey = methodNameKey;

export function checkMethods(names: readonly string[], known: readonly string[]): void {
  if (names.length === 0) throw new InputError(`give --method NAME[,NAME…]; known methods: ${known.join(', ')}, all`);
  const keys = new Set(known.map(methodKey));
  for (const n of names) {
    if (methodKey(n) !== 'all' && methodKey(n) !== 'sweeps' && !keys.has(methodKey(n))) throw new InputError(`unknown method '${n}'; known methods: ${known.join(', ')}, all, sweeps`);
  }
}

export function parseAlpha(v: string): number {
  const a = Number(v);
  if (v.trim() === '' || !Number.isFinite(a) || a < 0 || a > 1) throw new InputError(`--alpha must be a number in [0, 1], got '${v}'`);
  return a;
}

export function parseColormap(v: string): ColormapName {
  if (!isColormapName(v)) throw new InputError(`unknown colormap '${v}'; known colormaps: ${COLORMAP_NAMES.join(', ')}`);
  return v;
}

/**
 * --class: 'argmax', 'topK', one class for every input, or one per input. A list that does
 * not match the batch is an error, never truncated or repeated.
 */
export function parseTargets(v: string, count: number, classes: number | null): TargetSpec {
  const s = v.trim().toLowerCase();
  if (s === 'argmax') return 'argmax';
  const top = /^top-?(\d+)$/.exec(s);
  if (top) {
    const k = Number(top[1]);
    if (k < 1) throw new InputError(`--class ${v}: top-K needs K ≥ 1`);
    if (classes !== null && k > classes) throw new InputError(`--class ${v}: the model has ${classes} classes`);
    return { topK: k };
  }
  const list = csv(v).map((t) => {
    if (!/^\d+$/.test(t)) throw new InputError(`--class: '${t}' is not a class index (give argmax, topK, K or K1,K2,…)`);
    const n = Number(t);
    if (classes !== null && n >= classes) throw new InputError(`--class: class ${n} is not in [0, ${classes}) (the model card names ${classes} classes)`);
    return n;
  });
  if (list.length === 0) throw new InputError('--class is empty (give argmax, topK, K or K1,K2,…)');
  if (list.length === 1) return list[0];
  if (list.length !== count) throw new InputError(`--class gives ${list.length} classes for ${count} input${count === 1 ? '' : 's'}: give one class for all, or exactly one per input`);
  return list;
}

function targetsFor(spec: TargetSpec, from: number, to: number): TargetSpec {
  return Array.isArray(spec) ? spec.slice(from, to) : spec;
}

// ---------------------------------------------------------------------------------------
// Output: everything goes to a staging folder beside DIR and is moved in at the end.

function fileSafe(s: string): string {
  return s.replace(/[^A-Za-z0-9._+-]+/g, '_').replace(/^\.+/, '_').slice(0, 100) || 'x';
}

/** Unique file stems for the inputs (image names without extension, or npy-stem-i). */
function inputStems(host: HostInput): string[] {
  const raw = host.kind === 'npy'
    ? Array.from({ length: inputCount(host) }, (_, i) => `${basename(host.file, extname(host.file))}-${i}`)
    : host.files.map((f) => basename(f, extname(f)));
  const used = new Map<string, number>();
  return raw.map((r) => {
    const s = fileSafe(r);
    const n = (used.get(s) ?? 0) + 1;
    used.set(s, n);
    return n === 1 ? s : `${s}-${n}`;
  });
}

class Staging {
  readonly dir: string;
  readonly files: string[] = [];
  constructor(readonly target: string) {
    if (existsSync(target) && !statSync(target).isDirectory()) throw new InputError(`--out ${target} exists and is not a folder`);
    const parent = dirname(resolve(target));
    mkdirSync(parent, { recursive: true });
    this.dir = mkdtempSync(join(parent, `.${basename(resolve(target))}.camgpu-tmp-`));
  }

  write(name: string, bytes: Uint8Array | string): void {
    writeFileSync(join(this.dir, name), bytes);
    this.files.push(name);
  }

  /** Moves every file into the target folder (the staging folder itself when the target does not exist yet). */
  commit(): void {
    if (!existsSync(this.target)) {
      renameSync(this.dir, this.target);
      return;
    }
    for (const f of readdirSync(this.dir)) renameSync(join(this.dir, f), join(this.target, f));
    rmSync(this.dir, { recursive: true, force: true });
  }

  abandon(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------
// Drawing

/**
 * The picture the model saw for input i, at its own resolution: the image itself (for
 * resize-crop, the center crop that was fed), or a .npy image drawn back through mean/std.
 */
function displayImage(host: HostInput, i: number, prep: Preprocessing): RgbImage {
  if (host.kind === 'npy') {
    const [, C, H, W] = host.array.shape;
    const per = C * H * W;
    const norm = prep.normalize ?? { mean: new Array<number>(C).fill(0), std: new Array<number>(C).fill(1) };
    return denormalizeToRgb(host.array.data.subarray(i * per, (i + 1) * per), [C, H, W], norm.mean, norm.std);
  }
  const img = rgbaToRgb(host.images[i]);
  if (prep.mode !== 'resize-crop') return img;
  // preprocessImages' crop: shorter side to round(min(H, W)·256/224), then the centered H×W.
  const [H, W] = prep.size;
  const s = Math.round((Math.min(H, W) * 256) / 224);
  const k = s / Math.min(img.height, img.width);
  const scaled = [Math.round(img.height * k), Math.round(img.width * k)];
  const oy = Math.floor((scaled[0] - H) / 2);
  const ox = Math.floor((scaled[1] - W) / 2);
  const y = Math.min(Math.max(0, Math.round(oy / k)), img.height - 1);
  const x = Math.min(Math.max(0, Math.round(ox / k)), img.width - 1);
  const h = Math.max(1, Math.min(img.height - y, Math.round(H / k)));
  const w = Math.max(1, Math.min(img.width - x, Math.round(W / k)));
  return cropRgb(img, y, x, h, w);
}

function className(card: ModelCard | null, c: number): string {
  const name = card?.classes?.[c];
  return name ? `${name} (${c})` : `class ${c}`;
}

function scoreText(score: number, kind: 'logit' | 'softmax'): string {
  return kind === 'softmax' ? `p ${score.toFixed(4)}` : `logit ${score.toFixed(3)}`;
}

// ---------------------------------------------------------------------------------------
// The command

interface MethodAcc {
  method: string;
  title: string;
  maps: Float32Array[];
  raws: Float32Array[];
  weights: Float32Array[] | null;
  mapShape: number[];
  rawShape: number[];
  weightShape: number[] | null;
  /** Poly-CAM's per-layer maps of each chunk, [rows, L, H, W]; null for other methods. */
  layerMaps: Float32Array[] | null;
  layerNames: string[] | null;
  gpuMs: number | null;
  wallMs: number;
}

export interface ExplainSummary {
  command: 'explain';
  model: string;
  card: string | null;
  input: { kind: 'images' | 'npy'; count: number; folder: string | null; size: [number, number]; preprocessing: { mode: string; mean: number[]; std: number[] } | null };
  options: {
    methods: string[]; layers: string[]; class: string; score: string | null; seed: number | null; batchSize: number; colormap: string; alpha: number;
    masks: number | null; iters: number | null; lr: number | null; alignCorners: boolean; scoreBaseline: boolean; polyNormalize: string; lnorm: boolean; sweepStyle: string; maskSpace: string;
  };
  layers: { requested: string; tensor: string; shape: number[] }[];
  rows: number;
  methods: { method: string; title: string; gpuMs: number | null; wallMs: number; layers: string[] | null; files: { map: string; raw: string; weights: string | null; layers: string | null } | null }[];
  images: {
    index: number;
    name: string;
    source: string | null;
    width: number;
    height: number;
    class: number;
    className: string | null;
    score: number;
    layers: string[];
    targets: { row: number; class: number; className: string | null; score: number; overlays: Record<string, string> | null }[];
    grid: string | null;
  }[];
  out: string | null;
}

const DEFAULT_CHUNK = 16;

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function round2(v: number): number {
  return Number(v.toFixed(2));
}

export async function cmdExplain(o: ExplainCliOptions): Promise<ExplainSummary> {
  // Everything a user can get wrong is checked before the GPU is touched.
  const alpha = parseAlpha(o.alpha);
  const colormap = parseColormap(o.colormap);
  // --score given or not: methods whose SPEC default is the softmax (RISE, Poly-CAM) keep it unless told.
  const scoreGiven = o.score !== undefined;
  const score = o.score ?? 'logit';
  if (score !== 'logit' && score !== 'softmax') throw new InputError(`--score must be logit or softmax, got '${score}'`);
  if (o.polyNormalize !== 'minmax' && o.polyNormalize !== 'percentile') throw new InputError(`--poly-normalize must be minmax or percentile, got '${o.polyNormalize}'`);
  const polyNormalize: 'minmax' | 'percentile' = o.polyNormalize;
  if (o.sweepStyle !== 'spec' && o.sweepStyle !== 'torchcam') throw new InputError(`--sweep-style must be spec or torchcam, got '${o.sweepStyle}'`);
  const sweepStyle: 'spec' | 'torchcam' = o.sweepStyle;
  if (o.maskSpace !== 'input' && o.maskSpace !== 'raw') throw new InputError(`--mask-space must be input or raw, got '${o.maskSpace}'`);
  const maskSpace: 'input' | 'raw' = o.maskSpace;
  const api = await loadExplainModule();
  checkMethods(o.method, api.METHOD_NAMES);
  const card = readModelCardBeside(o.model);
  const host = readInput(o, 'give --image FILE[,FILE…], --images DIR or --input-npy FILE');
  const count = inputCount(host);
  if (count < 1) throw new InputError(`${host.kind === 'npy' ? host.file : 'the input'} holds no inputs`);
  const targets = parseTargets(o.class, count, card?.classes?.length ?? null);
  const layers = o.layer.length ? o.layer : ['auto'];
  const chunk = o.batchSize ?? DEFAULT_CHUNK;
  const stems = inputStems(host);
  const staging = o.out !== undefined ? new Staging(o.out) : null;

  let ctx: GpuContext | null = null;
  let model: Model | null = null;
  let bar: cliProgress.SingleBar | null = null;
  try {
    const prepHost = host.kind === 'npy' ? host.array.shape : undefined;
    // A .npy is used as is; its preprocessing only says how to draw it back.
    let prep = host.kind === 'npy' ? resolvePreprocessing(null, card, o, prepHost) : null;
    ctx = await GpuContext.create();
    model = loadModel(ctx, o.model);
    prep ??= resolvePreprocessing(model, card, o);

    const accs = new Map<string, MethodAcc>();
    let layerInfo: { requested: string; tensor: string; shape: number[] }[] = [];
    const rows: ExplainRow[] = [];
    const images: ExplainSummary['images'] = [];
    if (host.kind === 'images' && host.folder !== null && o.progress && process.stderr.isTTY) {
      bar = new cliProgress.SingleBar({ format: 'explain [{bar}] {value}/{total} images | ETA {eta_formatted}', hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic);
      bar.start(count, 0);
    }

    // Long sweeps: a bar over their forward passes, moved as the GPU queue finishes them.
    const sweepBar = !bar && o.progress && process.stderr.isTTY ? new cliProgress.SingleBar({ format: 'sweeps [{bar}] {value}/{total} passes | ETA {eta_formatted}', hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic) : null;
    let sweepStarted = false;
    const onProgress = sweepBar ? (done: number, total: number) => {
      if (!sweepStarted) {
        sweepBar.start(total, 0);
        sweepStarted = true;
      }
      sweepBar.setTotal(total);
      sweepBar.update(done);
    } : undefined;
    for (let from = 0; from < count; from += chunk) {
      const to = Math.min(count, from + chunk);
      const x = inputTensor(ctx, host, prep, from, to);
      let r: ExplainOutcome | null = null;
      try {
        r = await api.explain(model, x, {
          methods: o.method, layers, targets: targetsFor(targets, from, to), score: scoreGiven ? score : undefined, seed: o.seed, imageOffset: from, batchSize: o.batchSize, profile: o.profile || undefined,
          masks: o.masks, iterations: o.iters, lr: o.lr, alignCorners: o.alignCorners || undefined, scoreBaseline: o.scoreBaseline || undefined, polyNormalize, lnorm: o.lnorm, sweepStyle, maskSpace,
          pixels: pixelsOf(prep, x.shape[1]),
          onProgress,
        });
        const chunkRows = await r.rows();
        const tensors: Tensor[] = [];
        for (const m of r.methods) tensors.push(m.map, m.raw, ...(m.weights ? [m.weights] : []), ...(m.layerMaps ?? []).map((l) => l.map));
        const data = await readTensors(ctx, tensors);
        let k = 0;
        const chunkMaps = new Map<string, Float32Array>();
        for (const m of r.methods) {
          const map = data[k++];
          const raw = data[k++];
          const weights = m.weights ? data[k++] : null;
          const perLayer = (m.layerMaps ?? []).map(() => data[k++]);
          if (m.map.shape.length !== 3 || m.map.shape[0] !== chunkRows.length) throw new Error(`internal: ${m.method} map [${m.map.shape}] for ${chunkRows.length} rows`);
          let acc = accs.get(m.method);
          if (!acc) {
            acc = {
              method: m.method, title: m.title, maps: [], raws: [], weights: m.weights ? [] : null, mapShape: m.map.shape.slice(1), rawShape: m.raw.shape.slice(1), weightShape: m.weights ? m.weights.shape.slice(1) : null,
              layerMaps: m.layerMaps ? [] : null, layerNames: m.layerMaps ? m.layerMaps.map((l) => l.layer) : null, gpuMs: m.gpuMs, wallMs: 0,
            };
            accs.set(m.method, acc);
          } else {
            acc.gpuMs = acc.gpuMs === null || m.gpuMs === null ? null : acc.gpuMs + m.gpuMs;
          }
          acc.maps.push(map);
          acc.raws.push(raw);
          if (acc.weights && weights) acc.weights.push(weights);
          if (acc.layerMaps && perLayer.length) {
            // [rows, L, H, W]: row-major over (row, layer).
            const plane = map.length / chunkRows.length;
            const joined = new Float32Array(map.length * perLayer.length);
            for (let row = 0; row < chunkRows.length; row++) perLayer.forEach((l, li) => joined.set(l.subarray(row * plane, (row + 1) * plane), (row * perLayer.length + li) * plane));
            acc.layerMaps.push(joined);
          }
          acc.wallMs += m.wallMs;
          chunkMaps.set(m.method, map);
        }
        if (from === 0) layerInfo = r.layers.map((l) => ({ requested: l.requested, tensor: l.tensor, shape: [...l.shape] }));
        const rowBase = rows.length;
        chunkRows.forEach((row) => rows.push({ image: from + row.image, target: row.target, score: row.score }));
        drawChunk({ targets, host, prep, card, stems, staging, from, to, rowBase, chunkRows, chunkMaps, methods: r.methods, colormap, alpha, score, layerInfo, images });
      } finally {
        r?.dispose();
        x.dispose();
      }
      bar?.update(to);
    }
    bar?.stop();
    bar = null;
    if (sweepStarted) sweepBar?.stop();

    const M = rows.length;
    const methods: ExplainSummary['methods'] = [];
    for (const acc of accs.values()) {
      let files: ExplainSummary['methods'][number]['files'] = null;
      if (staging) {
        const base = fileSafe(acc.method);
        files = { map: `${base}.npy`, raw: `${base}-raw.npy`, weights: acc.weights ? `${base}-weights.npy` : null, layers: acc.layerMaps ? `${base}-layers.npy` : null };
        if (acc.layerMaps && files.layers) staging.write(files.layers, formatNpy(concat(acc.layerMaps), [M, acc.layerNames!.length, ...acc.mapShape]));
        staging.write(files.map, formatNpy(concat(acc.maps), [M, ...acc.mapShape]));
        staging.write(files.raw, formatNpy(concat(acc.raws), [M, ...acc.rawShape]));
        if (acc.weights && files.weights) staging.write(files.weights, formatNpy(concat(acc.weights), [M, ...acc.weightShape!]));
      }
      methods.push({ method: acc.method, title: acc.title, gpuMs: acc.gpuMs === null ? null : round2(acc.gpuMs), wallMs: round2(acc.wallMs), layers: acc.layerNames, files });
    }
    const summary: ExplainSummary = {
      command: 'explain',
      model: o.model,
      card: card?.path ?? null,
      input: {
        kind: host.kind, count, folder: host.kind === 'images' ? host.folder : null, size: prep.size,
        preprocessing: prep.normalize ? { mode: host.kind === 'npy' ? 'as given' : prep.mode, mean: prep.normalize.mean, std: prep.normalize.std } : null,
      },
      options: {
        methods: [...o.method], layers: [...layers], class: o.class, score: scoreGiven ? score : null, seed: o.seed ?? null, batchSize: chunk, colormap, alpha,
        masks: o.masks ?? null, iters: o.iters ?? null, lr: o.lr ?? null, alignCorners: o.alignCorners, scoreBaseline: o.scoreBaseline, polyNormalize, lnorm: o.lnorm, sweepStyle, maskSpace,
      },
      layers: layerInfo.map((l) => ({ ...l, shape: [M, ...l.shape.slice(1)] })),
      rows: M,
      methods,
      images,
      out: o.out ?? null,
    };
    if (staging) {
      staging.write('summary.json', `${JSON.stringify(summary, null, 2)}\n`);
      staging.commit();
    }
    if (o.json) console.log(JSON.stringify(summary, null, 2));
    else printSummary(summary);
    return summary;
  } catch (e) {
    bar?.stop();
    staging?.abandon();
    throw e;
  } finally {
    if (model) await model.dispose();
    ctx?.destroy();
  }
}

/**
 * How the model input relates to [0, 1] pixels (for the methods that mask pixels): the
 * preprocessing's mean/std, one value per channel (a single value serves every channel).
 */
function pixelsOf(prep: Preprocessing, channels: number): { mean: number[]; std: number[] } {
  const per = (v: readonly number[] | undefined, fallback: number) => Array.from({ length: channels }, (_, c) => (v ? v[v.length === 1 ? 0 : c] : fallback));
  return { mean: per(prep.normalize?.mean, 0), std: per(prep.normalize?.std, 1) };
}

/** Panels per grid row. */
const GRID_COLUMNS = 7;

interface DrawArgs {
  targets: TargetSpec;
  host: HostInput;
  prep: Preprocessing;
  card: ModelCard | null;
  stems: string[];
  staging: Staging | null;
  from: number;
  to: number;
  rowBase: number;
  chunkRows: readonly ExplainRow[];
  chunkMaps: Map<string, Float32Array>;
  methods: readonly MethodMaps[];
  colormap: ColormapName;
  alpha: number;
  score: 'logit' | 'softmax';
  layerInfo: { requested: string; tensor: string }[];
  images: ExplainSummary['images'];
}

/** Overlays and the grid of each image of a chunk, and its entry in the summary. */
function drawChunk(a: DrawArgs): void {
  const topK = typeof a.targets === 'object' && !Array.isArray(a.targets);
  for (let i = a.from; i < a.to; i++) {
    const rowIdx = a.chunkRows.map((r, j) => ({ r, j })).filter(({ r }) => a.from + r.image === i);
    const picture = a.staging ? displayImage(a.host, i, a.prep) : null;
    const inputPng = picture ? encodePng(rgbToRgba(picture)) : null;
    const grid: GridPanel[][] = [];
    const targets: ExplainSummary['images'][number]['targets'] = [];
    for (const { r, j } of rowIdx) {
      const cls = r.target;
      const label = className(a.card, cls);
      const panels: GridPanel[] = [];
      let overlays: Record<string, string> | null = null;
      if (picture && inputPng && a.staging) {
        overlays = {};
        panels.push({ png: inputPng, width: picture.width, height: picture.height, lines: [a.host.names[i], label, scoreText(r.score, a.score)] });
        for (const m of a.methods) {
          const [H, W] = m.map.shape.slice(1);
          const maps = a.chunkMaps.get(m.method)!;
          const ov = overlay(picture, maps.subarray(j * H * W, (j + 1) * H * W), [H, W], { colormap: a.colormap, alpha: a.alpha });
          const png = encodePng(ov);
          const file = `${a.stems[i]}-${fileSafe(m.method)}${topK ? `-${cls}` : ''}.png`;
          a.staging.write(file, png);
          overlays[m.method] = file;
          panels.push({ png, width: ov.width, height: ov.height, lines: [m.title, label, scoreText(r.score, a.score)] });
        }
        // Wrapped so that `--method all` stays readable: the image, then six methods a row.
        for (let k = 0; k < panels.length; k += GRID_COLUMNS) grid.push(panels.slice(k, k + GRID_COLUMNS));
      }
      targets.push({ row: a.rowBase + j, class: cls, className: a.card?.classes?.[cls] ?? null, score: r.score, overlays });
    }
    let gridFile: string | null = null;
    if (a.staging && grid.length) {
      gridFile = `${a.stems[i]}-grid.png`;
      a.staging.write(gridFile, renderGridPng(grid).png);
    }
    const src = a.host.kind === 'images' ? a.host.images[i] : null;
    const first = targets[0];
    a.images.push({
      index: i,
      name: a.host.names[i],
      source: a.host.kind === 'images' ? a.host.files[i] : a.host.file,
      width: src ? src.width : a.prep.size[1],
      height: src ? src.height : a.prep.size[0],
      class: first?.class ?? -1,
      className: first?.className ?? null,
      score: first?.score ?? Number.NaN,
      layers: a.layerInfo.map((l) => l.tensor),
      targets,
      grid: gridFile,
    });
  }
}

function printSummary(s: ExplainSummary): void {
  for (const img of s.images) {
    const t = img.targets.map((t) => `${t.class}${t.className ? ` ${t.className}` : ''} (${s.options.score ?? 'logit'} ${t.score.toFixed(s.options.score === 'softmax' ? 4 : 3)})`).join(', ');
    console.log(`${img.name}: ${t}`);
  }
  for (const l of s.layers) console.log(`layer ${l.requested} -> ${l.tensor} [${l.shape.join('x')}]`);
  for (const m of s.methods) console.log(`${m.title}: ${m.wallMs.toFixed(1)} ms wall${m.gpuMs !== null ? `, ${m.gpuMs.toFixed(1)} ms GPU` : ''}`);
  if (s.out) console.log(`wrote ${s.out}: ${s.methods.length} method${s.methods.length === 1 ? '' : 's'} × ${s.rows} maps (.npy, overlays), ${s.images.length} grids, summary.json`);
}

/** Registers `explain` on the program. */
export function addExplainCommand(program: Command): void {
  program
    .command('explain')
    .description('saliency maps (Grad-CAM and kin) for images: .npy maps, colormapped overlays, a labelled grid per image, summary.json')
    .requiredOption('--model <file>', 'ONNX model (its card, <model>.json, gives preprocessing and class names)')
    .option('--image <files>', 'PNG/JPEG image(s), comma-separated or repeated', collect, [])
    .option('--images <dir>', 'every PNG/JPEG file of a folder (with a progress bar)')
    .option('--input-npy <file>', 'float32 NCHW .npy batch, used as is (overlays drawn over it de-normalized)')
    .requiredOption('--method <names>', "methods, comma-separated (gradcam,hirescam,…), 'all' (every single-pass method) or 'sweeps' (Score-CAM, SS-CAM, IS-CAM)", collect, [])
    .option('--layer <names>', "target layer(s): 'auto', tensor names, node names or torch module paths", collect, [])
    .option('--class <c>', "whose score to explain: 'argmax', one class K for all, K1,K2,… one per input, or topK (e.g. top3)", 'argmax')
    .option('--score <s>', "y_c is the 'logit' (default; RISE and Poly-CAM: 'softmax') or the 'softmax' probability")
    .option('--out <dir>', 'write <method>.npy, <method>-raw.npy, <method>-weights.npy, overlays, grids and summary.json here (all or nothing)')
    .option('--colormap <name>', `overlay colormap: ${COLORMAP_NAMES.join(', ')}`, 'jet')
    .option('--alpha <a>', 'overlay opacity of the colormap, in [0, 1]', '0.5')
    .option('--batch-size <b>', `inputs per explain pass (default ${DEFAULT_CHUNK})`, positiveInt)
    .option('--seed <s>', 'seed of the randomized methods', nonNegativeInt)
    .option('--profile', 'per-method GPU time from timestamp queries (slower)', false)
    .option('--no-progress', 'no progress bar for --images')
    .option('--json', 'print summary.json to stdout', false)
    .option('--size <HxW>', 'model input size for images (default: the model card, else the model input shape)')
    .option('--resize <mode>', "'resize' (bilinear to the input size) or 'resize-crop' (shorter side to 256/224 of it, center crop)", 'resize')
    .option('--mean <m>', 'normalization mean, one value per channel (default: the model card, else ImageNet)', meanStd)
    .option('--std <s>', 'normalization std, one value per channel (default: the model card, else ImageNet)', meanStd)
    .option('--no-normalize', 'feed [0,1] pixels without mean/std normalization')
    .option('--masks <n>', 'RISE: number of seeded masks (default 4000)', positiveInt)
    .option('--iters <n>', 'Opti-CAM: Adam iterations (default 50)', positiveInt)
    .option('--lr <v>', "Opti-CAM: Adam's learning rate (default 0.1)", positiveNumber)
    .option('--align-corners', "Score-CAM family: upsample masks with align_corners=true (pytorch-grad-cam's Score-CAM)", false)
    .option('--score-baseline', "Score-CAM family: subtract y_c(x) from the scores before the softmax (torch-cam's)", false)
    .option('--mask-space <s>', "masking methods: 'input' (the tensor the model receives) or 'raw' ([0, 1] pixels, normalized after the mask with the card's or --mean/--std's values); Opti-CAM always masks raw pixels", 'input')
    .option('--sweep-style <s>', "Score-CAM, IS-CAM, SS-CAM: 'spec' (SPEC §1) or 'torchcam' (torch-cam's masks, IS-CAM coefficients and SS-CAM noise, for parity)", 'spec')
    .option('--poly-normalize <mode>', "Poly-CAM: 'minmax' (SPEC's u()) or 'percentile' (aenglebert/polycam's 0.1/99.9 % normalization)", 'minmax')
    .option('--no-lnorm', "Poly-CAM: without LNorm (the paper's ablation); --layer gives its layers, shallow to deep, or 'auto'")
    .action(async (o: ExplainCliOptions) => {
      await cmdExplain(o);
    });
}

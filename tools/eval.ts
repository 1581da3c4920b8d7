/**
 * `camgpu eval`: saliency metrics over a folder of images, Fashion-MNIST, or a .npy batch, for
 * maps computed here by any methods or maps given as a .npy file. The metric math is
 * src/metrics; this file is the command around it: flags, inputs, labels and boxes, batching,
 * the resumable journal (DIR/results.jsonl, one line per (image, method, metric)), progress,
 * and the report (summaries, curves, plots) written at the end.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { type ModelCard, readModelCardBeside } from '../src/io/model-card.js';
import { parseNpy } from '../src/io/npy.js';
import type { Model } from '../src/model.js';
import { resolveMethods } from '../src/cam/explain.js';
import { type Box, evaluate, METRIC_NAMES, resolveMetrics } from '../src/metrics/evaluate.js';
import type { CausalPresetName } from '../src/metrics/causal.js';
import type { MetricRecord } from '../src/metrics/records.js';
import { GpuContext, InputError, loadModel, Tensor } from '../src/node.js';
import { collect, csv, meanStd, nonNegativeInt, positiveInt, UsageError } from './args.js';
import { loadFashionMnist, preprocess as preprocessFashion } from './fashion-mnist.js';
import { type HostInput, inputCount, type InputOptions, inputTensor, readInput, resolvePreprocessing, type Preprocessing } from './input.js';
import { Journal } from './journal.js';
import { makeDapImages } from '../src/metrics/dap.js';
import { writeReport } from './report.js';

export interface EvalCliOptions extends InputOptions {
  model: string;
  dataset?: string;
  labels?: string;
  boxes?: string;
  methods: string[];
  maps?: string;
  class: string;
  metrics: string[];
  preset: string;
  granularity?: number;
  batchSize?: number;
  seed?: number;
  out: string;
  layer: string[];
  maskSpace: string;
  tolerance?: number;
  deadRows?: string;
  plots: boolean;
  progress: boolean;
  json: boolean;
}

/** Inputs of an evaluation: host data to upload batch by batch, names, and optional labels. */
interface EvalInput {
  count: number;
  names: (string | number)[];
  /** The GPU tensor of inputs [from, to). */
  tensor(ctx: GpuContext, from: number, to: number): Tensor;
  labels: number[] | null;
  /** Image i's size before preprocessing (boxes are given in those pixels), when known. */
  sourceSize(i: number): [number, number] | null;
  prep: Preprocessing | null;
  /** Inputs that come with their own ground truth (DAP): boxes in model-input pixels, targets, and per-image notes. */
  boxes?: Box[][];
  targets?: number[];
  notes?: Record<string, number | string | boolean>[];
  dispose?: () => void;
}

/** --dataset fashion-mnist[:test|:train][:N]: the first N images of the split (default test, all). */
export function parseDataset(v: string): { split: 'test' | 'train'; count: number | null } {
  const parts = v.split(':');
  if (parts[0] !== 'fashion-mnist') throw new UsageError(`--dataset: only fashion-mnist is known, got '${parts[0]}'`);
  let split: 'test' | 'train' = 'test';
  let count: number | null = null;
  for (const p of parts.slice(1)) {
    if (p === 'test' || p === 'train') split = p;
    else if (/^\d+$/.test(p) && Number(p) > 0) count = Number(p);
    else throw new UsageError(`--dataset ${v}: '${p}' is neither a split (test, train) nor an image count`);
  }
  return { split, count };
}

/**
 * --dataset dap1[:N] / dap2[:N]: Pixab-CAM's adversarial-patch images (seed 002 §2), made on
 * the GPU for this model (targeted iterative FGSM on a zero image); each patch is the ground
 * truth box of the pointing and energy games, its class the target.
 */
async function dapInput(v: string, ctx: GpuContext, model: Model, card: ModelCard | null, seed: number): Promise<EvalInput> {
  const [variant, n] = v.split(':');
  const count = n === undefined ? 16 : Number(n);
  if (!Number.isInteger(count) || count < 1) throw new UsageError(`--dataset ${v}: the image count must be a whole number ≥ 1`);
  const shape = model.defaultInputShape(1);
  if (shape.length !== 4) throw new InputError(`--dataset ${variant}: the model must take images [N, C, H, W], it takes [${shape}]`);
  const image: [number, number, number] = [shape[1], shape[2], shape[3]];
  const pixels = card ? { mean: card.mean, std: card.std } : undefined;
  const d = await makeDapImages(model, { count, variant: variant as 'dap1' | 'dap2', seed, image, pixels });
  const per = image[0] * image[1] * image[2];
  return {
    count,
    names: Array.from({ length: count }, (_, i) => i),
    tensor: (c, from, to) => {
      const t = Tensor.empty(c, [to - from, ...image], 'eval-dap');
      const enc = c.device.createCommandEncoder({ label: 'eval-dap' });
      enc.copyBufferToBuffer(d.x.buffer, d.x.byteOffset + from * per * 4, t.buffer, t.byteOffset, (to - from) * per * 4);
      c.device.queue.submit([enc.finish()]);
      return t;
    },
    labels: null,
    sourceSize: () => [image[1], image[2]],
    prep: pixels ? { size: [image[1], image[2]], mode: 'resize', channels: image[0] as 1 | 3, normalize: pixels } : null,
    boxes: d.boxes.map((list) => list.map(([x0, y0, x1, y1]) => [x0, y0, x1, y1] as const)),
    targets: d.targets,
    notes: d.success.map((ok, i) => ({ dap: variant, attackSucceeded: ok, predicted: d.predicted[i], patches: d.patches[i].length })),
    dispose: () => d.x.dispose(),
  };
}

function datasetInput(v: string, card: ModelCard | null, model: Model): EvalInput {
  const { split, count } = parseDataset(v);
  const data = loadFashionMnist();
  const set = data[split];
  const n = Math.min(count ?? set.count, set.count);
  const shape = model.defaultInputShape(1);
  if (shape.length !== 4 || shape[1] !== 1) throw new InputError(`--dataset fashion-mnist: the model must take one-channel images [N, 1, H, W], it takes [${shape}]`);
  const mean = card?.mean?.[0];
  const std = card?.std?.[0];
  if (mean === undefined || std === undefined) throw new InputError(`--dataset fashion-mnist: the model needs a card (<model>.json) giving its mean and std`);
  const size = shape[2];
  return {
    count: n,
    names: Array.from({ length: n }, (_, i) => i),
    tensor: (ctx, from, to) => Tensor.fromData(ctx, preprocessFashion(set, Array.from({ length: to - from }, (_, i) => from + i), size, mean, std), [to - from, 1, size, shape[3]], 'eval-input'),
    labels: Array.from(set.labels.subarray(0, n)),
    sourceSize: () => [set.rows, set.cols],
    prep: { size: [size, shape[3]], mode: 'resize', channels: 1, normalize: { mean: [mean], std: [std] } },
  };
}

function hostInput(o: EvalCliOptions, host: HostInput, model: Model, card: ModelCard | null): EvalInput {
  const prep = host.kind === 'images' ? resolvePreprocessing(model, card, o) : null;
  const names: (string | number)[] = host.kind === 'npy' ? Array.from({ length: inputCount(host) }, (_, i) => i) : host.names;
  return {
    count: inputCount(host),
    names,
    tensor: (ctx, from, to) => inputTensor(ctx, host, prep, from, to),
    labels: null,
    sourceSize: (i) => (host.kind === 'images' ? [host.images[i].height, host.images[i].width] : null),
    prep,
  };
}

/** labels.csv: `file,label` lines (a header line is skipped), one per image, matched by file name. */
export function parseLabels(text: string, file: string, names: readonly (string | number)[], classes: number | null): number[] {
  const byName = new Map<string, number>();
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (!t) return;
    const cells = t.split(',').map((c) => c.trim());
    if (cells.length < 2) throw new InputError(`${file}:${i + 1}: expected 'file,label', got '${t}'`);
    const label = Number(cells[1]);
    if (!Number.isInteger(label) || label < 0 || (classes !== null && label >= classes)) {
      if (i === 0 && !/^\d+$/.test(cells[1])) return;
      throw new InputError(`${file}:${i + 1}: label '${cells[1]}' of ${cells[0]} is not a class index${classes !== null ? ` in [0, ${classes})` : ''}`);
    }
    if (byName.has(cells[0])) throw new InputError(`${file}:${i + 1}: ${cells[0]} is labelled twice`);
    byName.set(cells[0], label);
  });
  const missing = names.filter((n) => !byName.has(String(n)));
  if (missing.length) throw new InputError(`${file}: no label for ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''} (the labels must name every image)`);
  const extra = [...byName.keys()].filter((k) => !names.includes(k));
  if (extra.length) throw new InputError(`${file}: labels for images that are not inputs: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ` and ${extra.length - 5} more` : ''}`);
  return names.map((n) => byName.get(String(n))!);
}

/**
 * boxes.json: { "<file>": [[x0, y0, x1, y1], …] } in the source image's pixels (end exclusive),
 * mapped to the model input's pixels as the resize maps them; every image must have a list.
 */
export function parseBoxes(text: string, file: string, input: EvalInput, size: [number, number]): Box[][] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file}: not JSON (${(e as Error).message})`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new InputError(`${file}: expected an object { "<image>": [[x0, y0, x1, y1], …] }`);
  const map = doc as Record<string, unknown>;
  if (input.prep?.mode === 'resize-crop') throw new InputError(`${file}: boxes are supported with --resize resize only`);
  return input.names.map((name, i) => {
    const list = map[String(name)];
    if (!Array.isArray(list) || list.length === 0) throw new InputError(`${file}: no boxes for image ${name} (give a non-empty list for every image)`);
    const [h0, w0] = input.sourceSize(i) ?? size;
    return list.map((b, k) => {
      if (!Array.isArray(b) || b.length !== 4 || !b.every((v) => typeof v === 'number' && Number.isFinite(v))) throw new InputError(`${file}: box ${k} of ${name} is not [x0, y0, x1, y1]`);
      const [x0, y0, x1, y1] = b as number[];
      if (x0 < 0 || y0 < 0 || x1 > w0 || y1 > h0 || x1 <= x0 || y1 <= y0) throw new InputError(`${file}: box ${k} of ${name} [${b}] is outside the ${w0}×${h0} image or empty`);
      const sx = size[1] / w0;
      const sy = size[0] / h0;
      return [x0 * sx, y0 * sy, x1 * sx, y1 * sy] as const;
    });
  });
}

function parseRows(v: string, H: number): [number, number] {
  const m = /^(\d+):(\d+)$/.exec(v);
  if (!m) throw new UsageError(`--dead-rows must look like FROM:TO (rows of the model input), got '${v}'`);
  const r: [number, number] = [Number(m[1]), Number(m[2])];
  if (!(r[0] < r[1] && r[1] <= H)) throw new InputError(`--dead-rows ${v}: need FROM < TO ≤ ${H}`);
  return r;
}

const key3 = (image: string | number, method: string, metric: string) => JSON.stringify([image, method, metric]);

export async function cmdEval(o: EvalCliOptions): Promise<void> {
  const preset = o.preset as CausalPresetName;
  if (!['polycam', 'rise', 'torchcam'].includes(preset)) throw new UsageError(`--preset must be polycam, rise or torchcam, got '${o.preset}'`);
  if (o.maskSpace !== 'input' && o.maskSpace !== 'raw') throw new UsageError(`--mask-space must be input or raw, got '${o.maskSpace}'`);
  if ((o.methods.length > 0) === (o.maps !== undefined)) throw new UsageError('give either --methods a,b|all or --maps MAPS.npy');
  const metrics = resolveMetrics(o.metrics.length ? o.metrics : ['all']);
  const methodNames = o.maps ? ['maps'] : resolveMethods(o.methods).map((m) => m.name);
  const ctx = await GpuContext.create();
  const model = loadModel(ctx, o.model);
  const card = readModelCardBeside(o.model);
  const given = [o.dataset !== undefined, o.image.length > 0 || o.images !== undefined || o.inputNpy !== undefined].filter(Boolean).length;
  if (given > 1) throw new UsageError('give --dataset or image inputs (--image, --images, --input-npy), not both');
  const dap = o.dataset !== undefined && /^dap[12](:|$)/.test(o.dataset);
  const input = dap ? await dapInput(o.dataset!, ctx, model, card, o.seed ?? 0)
    : o.dataset !== undefined ? datasetInput(o.dataset, card, model)
      : hostInput(o, readInput(o, 'give --images DIR, --image FILE, --dataset fashion-mnist[:test][:N]|dap1[:N]|dap2[:N] or --input-npy FILE'), model, card);
  const first = input.tensor(ctx, 0, 1);
  const [, C, H, W] = first.shape;
  first.dispose();
  const classes = card?.classes?.length ?? null;

  let labels = input.labels;
  if (o.labels !== undefined) {
    if (o.dataset !== undefined) throw new UsageError('--labels: the dataset has its own labels');
    labels = parseLabels(readText(o.labels), o.labels, input.names, classes);
  }
  let boxes: Box[][] | null = input.boxes ?? null;
  if (o.boxes !== undefined) {
    if (input.boxes) throw new UsageError('--boxes: the DAP images come with their patch boxes');
    boxes = parseBoxes(readText(o.boxes), o.boxes, input, [H, W]);
  }

  let maps: Float32Array | null = null;
  if (o.maps !== undefined) {
    const a = parseNpy(new Uint8Array(readFileBytes(o.maps)), o.maps);
    if (a.shape.length !== 3 || a.shape[0] !== input.count || a.shape[1] !== H || a.shape[2] !== W) {
      throw new InputError(`${o.maps}: maps must be float32 [${input.count}, ${H}, ${W}] (one map per image at the model input's size), got [${a.shape}]`);
    }
    maps = a.data;
  }
  // Targets: argmax, one class, one per image, or the labels.
  const classSpec = o.class.trim().toLowerCase();
  let targetList: number[] | 'argmax' = 'argmax';
  if (input.targets) {
    if (classSpec !== 'argmax') throw new UsageError('--class: the DAP images are explained for the classes of their patches');
    targetList = input.targets;
  } else if (classSpec === 'label' || classSpec === 'labels') {
    if (!labels) throw new UsageError('--class labels needs --labels (or a --dataset)');
    targetList = labels;
  } else if (classSpec !== 'argmax') {
    const list = csv(o.class).map((s) => {
      if (!/^\d+$/.test(s)) throw new InputError(`--class: '${s}' is not a class index (give argmax, labels, K or K1,K2,…)`);
      return Number(s);
    });
    if (list.length === 1) targetList = new Array<number>(input.count).fill(list[0]);
    else if (list.length === input.count) targetList = list;
    else throw new InputError(`--class gives ${list.length} classes for ${input.count} inputs: give one class for all, or exactly one per input`);
  }

  const journal = Journal.open(o.out);
  try {
    const done = new Set(journal.records().map((r) => key3(r.image, r.method, r.metric)));
    // 'all' means every metric that applies; a metric asked for by name must say why it cannot run.
    const all = o.metrics.length === 0 || (o.metrics.length === 1 && o.metrics[0] === 'all');
    for (const m of metrics) {
      if (all) continue;
      if (m.needs.includes('boxes') && !boxes) throw new InputError(`metric '${m.name}' needs ground-truth boxes (--boxes boxes.json)`);
      if (o.maps && m.needs.includes('method')) throw new InputError(`metric '${m.name}' recomputes maps with their method; maps given as a file (${o.maps}) have none (use --methods)`);
    }
    const metricNames = metrics.filter((m) => !(o.maps && m.needs.includes('method')) && !(m.needs.includes('boxes') && !boxes)).map((m) => m.name);
    if (metricNames.length === 0) throw new InputError('no metric applies to these inputs');
    const B = o.batchSize ?? 8;
    const todo: [number, number][] = [];
    for (let from = 0; from < input.count; from += B) {
      const to = Math.min(input.count, from + B);
      let complete = true;
      for (let i = from; i < to && complete; i++) for (const me of methodNames) for (const mt of metricNames) if (!done.has(key3(input.names[i], me, mt))) complete = false;
      if (!complete) todo.push([from, to]);
    }
    const showBar = o.progress && !o.json && process.stderr.isTTY !== false;
    const bar = showBar ? new cliProgress.SingleBar({ format: 'eval [{bar}] {percentage}% | {value}/{total} passes | ETA {eta_formatted} | images {images}', stream: process.stderr, etaBuffer: 50 }, cliProgress.Presets.shades_classic) : null;
    let barTotal = 0;
    let base = 0;
    const started = performance.now();
    let imagesDone = 0;
    for (const [from, to] of todo) {
      const x = input.tensor(ctx, from, to);
      const mapsT = maps ? Tensor.fromData(ctx, maps.subarray(from * H * W, to * H * W), [to - from, H, W], 'eval-maps') : null;
      try {
        const r = await evaluate(model, x, {
          methods: o.maps ? undefined : o.methods,
          maps: mapsT ?? undefined,
          metrics: metricNames.length ? metricNames : o.metrics,
          targets: targetList === 'argmax' ? 'argmax' : targetList.slice(from, to),
          preset,
          granularity: o.granularity,
          boxes: boxes ? boxes.slice(from, to) : undefined,
          pointingTolerance: o.tolerance,
          deadRows: o.deadRows ? parseRows(o.deadRows, H) : undefined,
          seed: o.seed,
          maskSpace: o.maskSpace as 'input' | 'raw',
          pixels: input.prep?.normalize ?? undefined,
          names: input.names.slice(from, to),
          imageOffset: from,
          explain: { layers: o.layer.length ? o.layer : undefined, batchSize: o.batchSize },
          skip: (image, method, metric) => done.has(key3(image, method, metric)),
          onProgress: bar ? (d, total) => {
            if (barTotal === 0) bar.start((barTotal = total * todo.length), 0, { images: 0 });
            bar.update(base + d, { images: imagesDone });
          } : undefined,
        });
        const fresh: MetricRecord[] = r.records.map((rec) => {
          const i = input.names.indexOf(rec.image);
          const note = input.notes?.[i];
          return labels || note ? { ...rec, extra: { ...rec.extra, ...(labels ? { label: labels[i] } : {}), ...note } } : rec;
        });
        journal.append(fresh);
        for (const rec of fresh) done.add(key3(rec.image, rec.method, rec.metric));
        imagesDone += to - from;
        if (bar && barTotal > 0) {
          base += barTotal / todo.length;
          bar.update(base, { images: imagesDone });
        }
      } finally {
        x.dispose();
        mapsT?.dispose();
      }
    }
    bar?.stop();
    const seconds = (performance.now() - started) / 1000;
    const written = await writeReport(o.out, journal.records(), { seed: o.seed ?? 0, plots: o.plots, methods: methodNames, metrics: metricNames });
    const summary = {
      model: basename(o.model),
      images: input.count,
      evaluatedNow: imagesDone,
      resumed: input.count - imagesDone,
      methods: methodNames,
      metrics: metricNames,
      preset,
      seconds,
      imagesPerSecond: imagesDone > 0 ? imagesDone / seconds : null,
      channels: C,
      size: [H, W],
      files: written.map((f) => basename(f)),
    };
    if (o.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else process.stdout.write(`eval: ${imagesDone} images evaluated (${input.count - imagesDone} from the journal), ${methodNames.length} method(s) × ${metricNames.length} metric(s) in ${seconds.toFixed(1)} s${imagesDone ? ` (${(imagesDone / seconds).toFixed(2)} images/s)` : ''}; results in ${o.out}\n`);
  } finally {
    journal.close();
    input.dispose?.();
    await model.dispose();
  }
}

function readText(file: string): string {
  return Buffer.from(readFileBytes(file)).toString('utf8');
}

function readFileBytes(file: string): Uint8Array {
  if (!existsSync(file)) throw new InputError(`cannot read ${file}: no such file`);
  try {
    return new Uint8Array(readFileSync(file));
  } catch (e) {
    throw new InputError(`cannot read ${file}: ${(e as Error).message}`);
  }
}

export function addEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('saliency metrics (insertion/deletion, AD/AI/AG, pointing game, …) for maps of any methods or from a .npy file: a resumable journal, summaries with bootstrap intervals, curves and plots')
    .requiredOption('--model <file>', 'ONNX model (its card, <model>.json, gives preprocessing and class names)')
    .option('--images <dir>', 'every PNG/JPEG file of a folder')
    .option('--image <files>', 'PNG/JPEG image(s), comma-separated or repeated', collect, [])
    .option('--input-npy <file>', 'float32 NCHW .npy batch, used as is')
    .option('--dataset <name>', "fashion-mnist[:test|:train][:N] (the first N images of the split), or dap1[:N] / dap2[:N] (Pixab-CAM's adversarial-patch images made for the model: patch boxes and classes are the ground truth)")
    .option('--labels <file>', 'labels.csv: file,label per image (recorded; --class labels scores them)')
    .option('--boxes <file>', 'boxes.json: { "<file>": [[x0, y0, x1, y1], …] } in source-image pixels (pointing and energy games)')
    .option('--methods <names>', "methods, comma-separated, or 'all' (every single-pass method)", collect, [])
    .option('--maps <file>', 'float32 [N, H, W] .npy maps computed elsewhere, judged as method "maps"')
    .option('--class <c>', "target: 'argmax' (default), 'labels', one class K for all, or K1,K2,… one per input", 'argmax')
    .option('--metrics <names>', `metrics, comma-separated, or 'all': ${METRIC_NAMES.join(', ')}`, collect, [])
    .option('--preset <p>', 'insertion/deletion preset: polycam (default), rise or torchcam', 'polycam')
    .option('--granularity <s>', 'insertion/deletion: rank s×s blocks instead of pixels', positiveInt)
    .option('--batch-size <b>', 'images per evaluate call (default 8)', positiveInt)
    .option('--seed <s>', 'seed of perturbations, seeded methods and bootstrap', nonNegativeInt)
    .requiredOption('--out <dir>', 'results.jsonl (resumable), summary.csv/json, curves-<metric>-<method>.npy, plots')
    .option('--layer <names>', "methods' target layer(s): 'auto', tensor names, node names or torch module paths", collect, [])
    .option('--mask-space <s>', "where pixels are replaced: 'input' (the tensor the model receives) or 'raw' ([0, 1] pixels)", 'input')
    .option('--tolerance <px>', 'pointing game tolerance in pixels (seed 002 uses 15)', nonNegativeInt)
    .option('--dead-rows <a:b>', 'dead-zone rows [a, b) of the model input (default: the bottom 54/224)')
    .option('--no-plots', 'skip the SVG/PNG plots')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print the run summary as JSON', false)
    .option('--size <HxW>', 'model input size for images (default: the model card, else the model input shape)')
    .option('--resize <mode>', "'resize' (bilinear to the input size) or 'resize-crop'", 'resize')
    .option('--mean <m>', 'normalization mean, one value per channel (default: the model card, else ImageNet)', meanStd)
    .option('--std <s>', 'normalization std, one value per channel', meanStd)
    .option('--no-normalize', 'feed [0,1] pixels without mean/std normalization')
    .action(async (o: EvalCliOptions) => {
      await cmdEval(o);
    });
}

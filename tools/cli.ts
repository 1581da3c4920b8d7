import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { readModelCardBeside } from '../src/io/model-card.js';
import { formatNpy, parseNpy } from '../src/io/npy.js';
import { CamgpuError, GpuContext, InputError, InternalError, loadModel, Tensor } from '../src/node.js';
import { EXPLAIN_METHODS, runBench, runExplainBench, runMatmulBench, runSweepBench } from './bench.js';
import { runEvalBench } from './bench-eval.js';
import { runTrainBench } from './bench-train.js';
import { collect, csv, meanStd, nonNegativeInt, positiveInt, positiveNumber, UsageError } from './args.js';
import { addEvalCommand } from './eval.js';
import { addExplainCommand } from './explain.js';
import { loadInput } from './input.js';
import { type ArchName, RECIPES, runTraining, runVerification } from './train.js';

function intList(v: string): number[] {
  return csv(v).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`'${s}' is not a positive integer`);
    return n;
  });
}

function nonNegativeNumber(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`'${v}' is not a non-negative number`);
  return n;
}

function archName(v: string): ArchName {
  if (v !== 'vgg' && v !== 'resnet') throw new UsageError(`--arch must be vgg or resnet, got '${v}'`);
  return v;
}

/** A check that ran and failed: exit status 1 with the reason. */
class CamgpuCheckError extends Error {}

/** Softmax of one row, in float64. */
function softmax(row: Float32Array): number[] {
  const m = Math.max(...row);
  const e = Array.from(row, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function topK(row: Float32Array, k: number) {
  const p = softmax(row);
  return Array.from(row, (logit, cls) => ({ cls, logit, prob: p[cls] }))
    .sort((a, b) => b.logit - a.logit || a.cls - b.cls)
    .slice(0, k);
}

function safeFileName(name: string): string {
  return name.replace(/^\/+/, '').replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 120) || 'tensor';
}

interface RunCliOptions {
  model: string;
  image: string[];
  inputNpy?: string;
  taps: string[];
  topk: number;
  out?: string;
  json: boolean;
  size?: string;
  resize: string;
  mean?: number[];
  std?: number[];
  normalize: boolean;
}

async function cmdRun(o: RunCliOptions): Promise<void> {
  const ctx = await GpuContext.create();
  const model = loadModel(ctx, o.model);
  const card = readModelCardBeside(o.model);
  const { x, names } = await loadInput(ctx, model, card, o);
  const t0 = performance.now();
  const r = await model.run(x, { taps: o.taps });
  const outName = model.graph.outputs[0].name;
  const logitsT = r.outputs.get(outName)!;
  const logits = await logitsT.read();
  const ms = performance.now() - t0;
  const classes = logitsT.shape[logitsT.shape.length - 1];
  const batch = logitsT.shape.length > 1 ? logitsT.shape[0] : 1;
  const perImage = Array.from({ length: batch }, (_, i) => topK(logits.subarray(i * classes, (i + 1) * classes), Math.min(o.topk, classes)));
  const tapInfo: Record<string, { tensor: string; how: string; shape: number[]; file?: string }> = {};
  if (o.out) {
    mkdirSync(o.out, { recursive: true });
    writeFileSync(join(o.out, 'logits.npy'), formatNpy(logits, logitsT.shape));
  }
  const usedFiles = new Set<string>();
  for (const [name, tap] of r.taps) {
    const info: (typeof tapInfo)[string] = { tensor: tap.tensor, how: tap.how, shape: [...tap.value.shape] };
    if (o.out) {
      let file = `tap-${safeFileName(name)}.npy`;
      for (let k = 2; usedFiles.has(file); k++) file = `tap-${safeFileName(name)}-${k}.npy`;
      usedFiles.add(file);
      writeFileSync(join(o.out, file), formatNpy(await tap.value.read(), tap.value.shape));
      info.file = file;
    }
    tapInfo[name] = info;
  }
  if (o.out) writeFileSync(join(o.out, 'taps.json'), `${JSON.stringify(tapInfo, null, 2)}\n`);
  if (o.json) {
    console.log(JSON.stringify({
      model: o.model, output: outName, batch, classes, ms: Number(ms.toFixed(2)), chunk: r.chunk,
      top: perImage.map((t, i) => ({ input: names[i] ?? String(i), classes: t.map((c) => ({ ...c, label: card?.classes?.[c.cls] ?? null })) })),
      taps: tapInfo, out: o.out ?? null,
    }, null, 2));
  } else {
    perImage.forEach((t, i) => {
      const label = (c: number) => (card?.classes?.[c] ? ` ${card.classes[c]}` : '');
      console.log(`${names[i] ?? `#${i}`}: ${t.map((c) => `${c.cls}${label(c.cls)} (p ${c.prob.toFixed(4)}, logit ${c.logit.toFixed(3)})`).join(', ')}`);
    });
    for (const [name, t] of Object.entries(tapInfo)) console.log(`tap ${name} -> ${t.tensor} [${t.shape.join('x')}]${t.file ? ` ${t.file}` : ''}`);
    if (o.out) console.log(`wrote ${join(o.out, 'logits.npy')}${Object.keys(tapInfo).length ? ' and taps.json' : ''}`);
    console.log(`forward + readback: ${ms.toFixed(1)} ms (batch ${batch}, ${r.chunk} per pass)`);
  }
  x.dispose();
  for (const t of r.outputs.values()) t.dispose();
  for (const t of r.taps.values()) t.value.dispose();
  await model.dispose();
  ctx.destroy();
}

interface GradCliOptions {
  model: string;
  inputNpy: string;
  class: string;
  target: string;
  wrt: string[];
  out: string;
  json: boolean;
}

function parseClasses(v: string, batch: number): 'argmax' | number[] {
  if (v === 'argmax') return 'argmax';
  const list = csv(v).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`--class: '${s}' is not a class index`);
    return n;
  });
  if (list.length === 1) return new Array<number>(batch).fill(list[0]);
  if (list.length !== batch) throw new UsageError(`--class gives ${list.length} classes for a batch of ${batch}: give one, or one per image`);
  return list;
}

async function cmdGrad(o: GradCliOptions): Promise<void> {
  if (o.target !== 'logit' && o.target !== 'softmax') throw new UsageError(`--target must be logit or softmax, got '${o.target}'`);
  const ctx = await GpuContext.create();
  const model = loadModel(ctx, o.model);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(o.inputNpy));
  } catch (e) {
    throw new InputError(`cannot read ${o.inputNpy}: ${(e as Error).message}`);
  }
  const arr = parseNpy(bytes, o.inputNpy);
  const x = Tensor.fromData(ctx, arr.data, arr.shape);
  const classes = parseClasses(o.class, arr.shape[0]);
  const t0 = performance.now();
  const r = await model.grad(x, { target: { of: o.target, classes }, wrt: o.wrt });
  const written: Record<string, { tensor: string; how: string; shape: number[]; file: string }> = {};
  mkdirSync(o.out, { recursive: true });
  const used = new Set<string>();
  for (const name of o.wrt) {
    const g = r.gradients.get(name);
    if (!g) throw new InputError(`the target does not depend on '${name}', so it has no gradient`);
    let file = name === 'input' ? 'grad-input.npy' : `grad-${safeFileName(name)}.npy`;
    for (let k = 2; used.has(file); k++) file = `grad-${safeFileName(name)}-${k}.npy`;
    used.add(file);
    writeFileSync(join(o.out, file), formatNpy(await g.value.read(), g.value.shape));
    written[name] = { tensor: g.tensor, how: g.how, shape: [...g.value.shape], file };
  }
  const logits = await r.outputs.get(model.outputName)!.read();
  writeFileSync(join(o.out, 'logits.npy'), formatNpy(logits, r.outputs.get(model.outputName)!.shape));
  writeFileSync(join(o.out, 'taps.json'), `${JSON.stringify(written, null, 2)}\n`);
  const ms = performance.now() - t0;
  if (o.json) console.log(JSON.stringify({ model: o.model, target: o.target, classes, wrt: written, ms: Number(ms.toFixed(2)), chunk: r.chunk, out: o.out }, null, 2));
  else {
    for (const [name, w] of Object.entries(written)) console.log(`d${o.target}/d(${name}) -> ${w.tensor} [${w.shape.join('x')}] ${join(o.out, w.file)}`);
    console.log(`forward + backward + readback: ${ms.toFixed(1)} ms (batch ${arr.shape[0]}, ${r.chunk} per pass)`);
  }
  x.dispose();
  for (const t of r.outputs.values()) t.dispose();
  for (const g of r.gradients.values()) g.value.dispose();
  await model.dispose();
  ctx.destroy();
}

async function cmdInfo(o: { json: boolean }): Promise<void> {
  const ctx = await GpuContext.create();
  const limits: Record<string, number> = {};
  const proto = Object.getPrototypeOf(ctx.limits) as object;
  for (const k of Object.keys(Object.getOwnPropertyDescriptors(proto))) {
    const v = (ctx.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const info = { adapter: ctx.adapterInfo, features: [...ctx.adapter.features].sort(), timestamps: ctx.hasTimestamps, limits };
  if (o.json) console.log(JSON.stringify(info, null, 2));
  else {
    console.log(`adapter: ${info.adapter.description || info.adapter.device} (vendor ${info.adapter.vendor}, ${info.adapter.architecture}${info.adapter.isSoftware ? ', software' : ''})`);
    console.log(`timestamp queries: ${info.timestamps ? 'yes' : 'no'}`);
    console.log(`features: ${info.features.join(', ')}`);
    for (const [k, v] of Object.entries(limits)) console.log(`  ${k}: ${v}`);
  }
  ctx.destroy();
}

export function buildProgram(): Command {
  const program = new Command('camgpu')
    .description('ONNX CNNs on WebGPU: forward passes, layer taps, gradients, CAM explanations, benchmarks')
    .option('--debug', 'print the stack of an internal error (also CAMGPU_DEBUG=1)')
    .showHelpAfterError()
    .exitOverride();
  program.command('info').description('adapter, features and limits').option('--json', 'machine-readable output', false).action(cmdInfo);
  program
    .command('run')
    .description('run a model on images or a .npy batch and print the top-K classes')
    .requiredOption('--model <file>', 'ONNX model')
    .option('--image <files>', 'PNG/JPEG image(s), comma-separated or repeated', collect, [])
    .option('--input-npy <file>', 'float32 NCHW .npy batch, used as is')
    .option('--taps <names>', 'layers to return: tensor names, node names or torch module paths (comma-separated)', csv, [])
    .option('--topk <k>', 'classes to print per image', positiveInt, 5)
    .option('--out <dir>', 'write logits.npy, one .npy per tap and taps.json here')
    .option('--json', 'machine-readable output', false)
    .option('--size <HxW>', 'model input size for --image (default: the model input shape)')
    .option('--resize <mode>', "'resize' (bilinear to the input size) or 'resize-crop' (shorter side to 256/224 of it, center crop)", 'resize')
    .option('--mean <m>', 'normalization mean, one value per channel (default: the model card, else ImageNet)', meanStd)
    .option('--std <s>', 'normalization std, one value per channel (default: the model card, else ImageNet)', meanStd)
    .option('--no-normalize', 'feed [0,1] RGB without mean/std normalization')
    .action(cmdRun);
  program
    .command('grad')
    .description('gradients of a class score with respect to the input and/or layers, written as .npy')
    .requiredOption('--model <file>', 'ONNX model')
    .requiredOption('--input-npy <file>', 'float32 NCHW .npy batch')
    .option('--class <c>', "target class: 'argmax', one index for every image, or one per image (K1,K2,...)", 'argmax')
    .option('--target <t>', "differentiate the 'logit' or the 'softmax' probability", 'logit')
    .option('--wrt <names>', "'input' and/or layers (tensor names, node names, torch module paths)", csv, ['input'])
    .requiredOption('--out <dir>', 'write grad-input.npy, grad-<name>.npy, logits.npy and taps.json here')
    .option('--json', 'machine-readable output', false)
    .action(cmdGrad);
  addExplainCommand(program);
  addEvalCommand(program);
  program
    .command('bench')
    .description('time forward passes: median, p10, p90 per batch, GFLOP/s, per-op GPU time')
    .option('--model <file>', 'ONNX model')
    .option('--batch <sizes>', 'batch sizes, comma-separated', intList, [1, 8])
    .option('--iters <n>', 'timed iterations per batch size', positiveInt, 10)
    .option('--warmup <n>', 'untimed iterations first', positiveInt, 2)
    .option('--no-profile', 'skip the per-op GPU timestamp pass')
    .option('--grad', 'also time forward+backward to the input (∂ top-class logit / ∂x)', false)
    .option('--matmul <n>', "also time the matmul core on an n×n×n problem", positiveInt)
    .option('--train', 'time training steps of --arch (gather, forward, backward, optimizer): images/s', false)
    .option('--arch <name>', 'architecture for --train: vgg or resnet', 'vgg')
    .option('--optimizer <name>', 'optimizer for --train: sgd or adam')
    .option('--explain', 'time explain() per CAM method (and all together) with the readback of the maps, against the bare forward+backward pass to --layer', false)
    .option('--layer <name>', "target layer for --explain: tensor, node or torch module path (layer4, features.29), or 'auto'", 'auto')
    .option('--methods <names>', `methods for --explain, comma-separated (default: ${EXPLAIN_METHODS.join(',')})`, csv)
    .option('--maps-out <dir>', "--explain: write each method's maps at the first batch size here (<method>.npy)")
    .option('--sweeps', 'time many-pass methods (--methods scorecam,rise,…) on one image against the bare batched forward passes/s', false)
    .option('--masks <n>', '--sweeps: RISE masks', positiveInt, 4000)
    .option('--opti-iters <n>', '--sweeps: Opti-CAM iterations', positiveInt, 50)
    .option('--bare-batch <n>', '--sweeps: images per bare forward pass', positiveInt, 16)
    .option('--bare-images <n>', '--sweeps: images timed for the bare throughput', positiveInt, 256)
    .option('--sweep-batch <n>', '--sweeps: most rows per sweep pass (default: what the binding limit allows)', positiveInt)
    .option('--eval', 'time insertion+deletion (all steps, batched) of one image against the same number of bare forward passes', false)
    .option('--preset <p>', '--eval: insertion/deletion preset (polycam, rise, torchcam)', 'polycam')
    .option('--eval-batch <n>', '--eval: rows per pass, for the eval and the bare passes', positiveInt, 16)
    .option('--json', 'machine-readable output', false)
    .action(async (o: { model?: string; batch: number[]; iters: number; warmup: number; profile: boolean; grad: boolean; matmul?: number; train: boolean; arch: string; optimizer?: string; explain: boolean; layer: string; methods?: string[]; mapsOut?: string; json: boolean; sweeps: boolean; masks: number; optiIters: number; bareBatch: number; bareImages: number; sweepBatch?: number; eval: boolean; preset: string; evalBatch: number }, cmd: Command) => {
      if (!o.model && !o.matmul && !o.train) throw new UsageError('give --model FILE, --matmul N and/or --train --arch NAME');
      if (o.explain && !o.model) throw new UsageError('--explain needs --model FILE');
      if (o.explain && o.grad) throw new UsageError('--explain and --grad are separate benchmarks; give one');
      const results: Record<string, unknown> = {};
      if (o.eval) {
        if (!o.model) throw new UsageError('--eval needs --model FILE');
        if (!['polycam', 'rise', 'torchcam'].includes(o.preset)) throw new UsageError(`--preset must be polycam, rise or torchcam, got '${o.preset}'`);
        results.eval = await runEvalBench(o.model, { preset: o.preset as 'polycam' | 'rise' | 'torchcam', batch: o.evalBatch, iters: o.iters, json: o.json });
      } else if (o.sweeps) {
        if (!o.model || !o.methods) throw new UsageError('--sweeps needs --model FILE and --methods NAME[,NAME…]');
        results.sweeps = await runSweepBench(o.model, { methods: o.methods, layer: o.layer, masks: o.masks, iterations: o.optiIters, bareBatch: o.bareBatch, bareImages: o.bareImages, sweepBatch: o.sweepBatch, json: o.json });
      } else if (o.model && o.explain) {
        results.explain = await runExplainBench(o.model, { batch: o.batch, iters: o.iters, warmup: o.warmup, layer: o.layer, methods: o.methods, profile: o.profile, mapsOut: o.mapsOut, json: o.json });
      } else if (o.model) results.model = await runBench(o.model, o);
      if (o.matmul) results.matmul = await runMatmulBench(o.matmul, o);
      if (o.train) {
        const arch = archName(o.arch);
        if (o.optimizer !== undefined && o.optimizer !== 'sgd' && o.optimizer !== 'adam') throw new UsageError(`--optimizer must be sgd or adam, got '${o.optimizer}'`);
        // The forward benchmark's default batches (1, 8) are not training batches: the recipe's unless --batch is given.
        const batch = cmd.getOptionValueSource('batch') === 'cli' ? o.batch[0] : undefined;
        results.train = await runTrainBench(arch, { batch, iters: o.iters, warmup: o.warmup, optimizer: o.optimizer as 'sgd' | 'adam' | undefined, json: o.json });
      }
      if (o.json) console.log(JSON.stringify(results, null, 2));
    });
  program
    .command('train')
    .description('train a Fashion-MNIST model on the GPU, export it to ONNX with a model card')
    .requiredOption('--arch <name>', 'vgg or resnet')
    .option('--seed <n>', 'seed of initialization, validation split and shuffles', nonNegativeInt, 1)
    .option('--epochs <n>', 'epochs (default: the architecture recipe)', positiveInt)
    .option('--batch <n>', 'batch size (default: the recipe)', positiveInt)
    .option('--lr <x>', 'peak learning rate (default: the recipe for the optimizer)', positiveNumber)
    .option('--optimizer <name>', 'sgd (Nesterov momentum 0.9, weight decay 5e-4) or adam', 'sgd')
    .option('--weight-decay <x>', 'weight decay of conv and dense weights', nonNegativeNumber)
    .option('--data <dir>', 'Fashion-MNIST IDX folder (default: $FASHION_MNIST_DIR, then /usr/share/datasets/fashion-mnist)')
    .option('--no-verify', 'skip the check of the exported file against onnxruntime-web on the test split')
    .option('--no-progress', 'no progress bar')
    .requiredOption('--out <dir>', 'write <name>.onnx and <name>.json here')
    .action(async (o: { arch: string; seed: number; epochs?: number; batch?: number; lr?: number; optimizer: string; weightDecay?: number; data?: string; verify: boolean; progress: boolean; out: string }) => {
      const arch = archName(o.arch);
      if (o.optimizer !== 'sgd' && o.optimizer !== 'adam') throw new UsageError(`--optimizer must be sgd or adam, got '${o.optimizer}'`);
      const recipe = RECIPES[arch];
      const epochs = o.epochs ?? recipe.epochs;
      const batch = o.batch ?? recipe.batch;
      const lr = o.lr ?? recipe.lr[o.optimizer];
      const command = `camgpu train --arch ${arch} --seed ${o.seed} --epochs ${epochs} --batch ${batch} --optimizer ${o.optimizer} --lr ${lr}${o.weightDecay !== undefined ? ` --weight-decay ${o.weightDecay}` : ''} --out ${o.out}`;
      await runTraining({
        arch, seed: o.seed, epochs, batch, lr, optimizer: o.optimizer, weightDecay: o.weightDecay, out: o.out, data: o.data, verify: o.verify,
        command, progress: o.progress ? undefined : false,
      });
    });
  program
    .command('verify-fashion')
    .description('check an exported Fashion-MNIST model: camgpu and onnxruntime-web (wasm) on the same preprocessed test images')
    .requiredOption('--card <file>', 'model card (models/<name>.json); the model file is read from beside it')
    .option('--count <n>', 'test images (default: all 10000)', positiveInt)
    .option('--data <dir>', 'Fashion-MNIST IDX folder')
    .option('--write', 'record the result in the card', false)
    .action(async (o: { card: string; count?: number; data?: string; write: boolean }) => {
      const v = await runVerification(o.card, { count: o.count, data: o.data, write: o.write });
      if (Math.abs(v.camgpu.accuracy - v.onnxruntime.accuracy) > 0.001) throw new CamgpuCheckError(`accuracies differ by more than 0.1%: camgpu ${v.camgpu.accuracy}, onnxruntime ${v.onnxruntime.accuracy}`);
    });
  return program;
}

/** One line: messages never span lines on the terminal (a stray newline in a name cannot split them). */
function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

export async function main(argv: string[]): Promise<number> {
  // --debug (anywhere) or CAMGPU_DEBUG=1: internal errors come with their stack.
  const debug = argv.includes('--debug') || process.env.CAMGPU_DEBUG === '1';
  const program = buildProgram();
  try {
    await program.parseAsync(argv.filter((a) => a !== '--debug'), { from: 'user' });
    return 0;
  } catch (e) {
    const err = e as Error & { code?: string; exitCode?: number };
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
    if (err.code?.startsWith('commander.')) return err.exitCode ?? 2;
    if (e instanceof UsageError) {
      console.error(`camgpu: ${oneLine(e.message)}`);
      return 2;
    }
    if (e instanceof CamgpuCheckError) {
      console.error(`camgpu: check failed: ${oneLine(e.message)}`);
      return 1;
    }
    if (e instanceof CamgpuError && !(e instanceof InternalError)) {
      console.error(`camgpu: error [${e.code}]: ${oneLine(e.message)}`);
      return 1;
    }
    // A bug in camgpu, not in the input: one line asking for a report; the stack on request.
    const internal = e instanceof InternalError ? e : new InternalError('the command', e);
    console.error(`camgpu: internal error [${internal.code}]: ${oneLine(internal.message.replace(/^internal error /, ''))} — this is a bug in camgpu; please report it with the command and the model${debug ? '' : ' (rerun with --debug for the stack)'}`);
    if (debug) {
      const cause = internal.cause;
      console.error(cause instanceof Error && cause.stack ? cause.stack : internal.stack);
    }
    return 70;
  }
}

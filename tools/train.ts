import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { exportOnnx } from '../src/onnx/export.js';
import { importOnnx } from '../src/onnx/import.js';
import { resolveTap } from '../src/onnx/resolve.js';
import { ADAM_DEFAULTS, type OptimizerOptions, SGD_DEFAULTS } from '../src/ops/optim.js';
import { GpuContext } from '../src/runtime/device.js';
import { InputError } from '../src/runtime/errors.js';
import { sizeOf } from '../src/runtime/shape.js';
import { GpuImageSet } from '../src/train/data.js';
import { Rng } from '../src/train/rng.js';
import { type Architecture, graphFlops, TrainingSession } from '../src/train/session.js';
import { FASHION_CLASSES, type FashionMnist, loadFashionMnist, pixelStats } from './fashion-mnist.js';
import { resnet } from './models/resnet.js';
import { vgg } from './models/vgg.js';
import { type Verification, verifyFashionModel } from './verify-fashion.js';

export type ArchName = 'vgg' | 'resnet';

/** Per architecture: the network and the training recipe its card was made with. */
export const RECIPES: Record<ArchName, { arch: Architecture; epochs: number; batch: number; optimizer: 'sgd' | 'adam'; lr: { sgd: number; adam: number } }> = {
  vgg: { arch: vgg, epochs: 10, batch: 128, optimizer: 'sgd', lr: { sgd: 0.05, adam: 1e-3 } },
  resnet: { arch: resnet, epochs: 8, batch: 128, optimizer: 'sgd', lr: { sgd: 0.1, adam: 2e-3 } },
};

/** Training images held out of Fashion-MNIST's training split for validation. */
export const VALIDATION_SIZE = 5000;

export interface TrainOptions {
  arch: ArchName;
  seed: number;
  epochs?: number;
  batch?: number;
  lr?: number;
  optimizer?: 'sgd' | 'adam';
  weightDecay?: number;
  out: string;
  data?: string;
  /** Check the exported file against onnxruntime-web on the whole test split (default true). */
  verify?: boolean;
  /** The command line to record in the card. */
  command?: string;
  /** Progress and per-epoch lines (default: stderr and stdout). */
  log?: (line: string) => void;
  progress?: boolean;
}

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  validationLoss: number;
  validationAccuracy: number;
  seconds: number;
  imagesPerSecond: number;
}

/** Linear warm-up over the first 5 % of steps (at most 300), then cosine decay to 0. */
export function learningRate(step: number, total: number, base: number): number {
  const warm = Math.max(1, Math.min(300, Math.floor(total * 0.05)));
  if (step < warm) return (base * (step + 1)) / warm;
  return 0.5 * base * (1 + Math.cos((Math.PI * (step - warm)) / Math.max(1, total - warm)));
}

export function optimizerOptions(kind: 'sgd' | 'adam', lr: number, weightDecay?: number): OptimizerOptions {
  return kind === 'sgd' ? { ...SGD_DEFAULTS, lr, weightDecay: weightDecay ?? SGD_DEFAULTS.weightDecay } : { ...ADAM_DEFAULTS, lr, weightDecay: weightDecay ?? ADAM_DEFAULTS.weightDecay };
}

/** Train / validation split of the training items, from the seed. */
export function splitTrain(count: number, seed: number, validation = VALIDATION_SIZE): { train: Uint32Array; validation: Uint32Array } {
  const all = Uint32Array.from({ length: count }, (_, i) => i);
  Rng.derive(seed, 'split').shuffle(all);
  // Sorted, so the split is a set and the shuffles below alone decide the order.
  return { validation: all.slice(0, validation).sort(), train: all.slice(validation).sort() };
}

/** The first epoch whose validation accuracy reached 90 %, with the training seconds spent until then. */
function reached90(history: readonly EpochRecord[]): { epoch: number; seconds: number } | null {
  let seconds = 0;
  for (const h of history) {
    seconds += h.seconds;
    if (h.validationAccuracy >= 0.9) return { epoch: h.epoch, seconds: Number(seconds.toFixed(1)) };
  }
  return null;
}

const round = (x: number, digits = 5) => Number(x.toFixed(digits));

function pct(x: number): string {
  return `${(100 * x).toFixed(2)}%`;
}

/**
 * Trains one architecture on Fashion-MNIST, evaluates it on the test split, folds batch
 * normalization, exports ONNX plus a model card to `out`, and (unless verify is false)
 * checks the file with onnxruntime-web on the 10k test images. Returns the card.
 */
export async function runTraining(o: TrainOptions): Promise<Record<string, unknown>> {
  const recipe = RECIPES[o.arch];
  if (!recipe) throw new InputError(`unknown architecture '${o.arch}' (vgg or resnet)`);
  const arch = recipe.arch;
  const epochs = o.epochs ?? recipe.epochs;
  const batch = o.batch ?? recipe.batch;
  const optimizer = o.optimizer ?? recipe.optimizer;
  const lr = o.lr ?? recipe.lr[optimizer];
  const log = o.log ?? ((l: string) => console.log(l));
  const ds: FashionMnist = loadFashionMnist(o.data);
  const { mean, std } = pixelStats(ds.train);
  const split = splitTrain(ds.train.count, o.seed);
  const ctx = await GpuContext.create();
  const trainSet = GpuImageSet.upload(ctx, ds.train, 'train');
  const testSet = GpuImageSet.upload(ctx, ds.test, 'test');
  const session = await TrainingSession.create(ctx, arch, trainSet, { batch, evalBatch: 500, mean, std, seed: o.seed, optimizer: optimizerOptions(optimizer, lr, o.weightDecay) });
  const params = session.decls.filter((d) => d.trainable).reduce((s, d) => s + sizeOf(d.shape), 0);
  log(`${arch.name}: ${params} parameters, ${(session.forwardFlopsPerImage / 1e6).toFixed(2)} MFLOP/image forward; ${split.train.length} training / ${split.validation.length} validation images, batch ${batch}, ${epochs} epochs, ${optimizer} lr ${lr}; ${ctx.adapterInfo.description || ctx.adapterInfo.device}`);
  const shuffle = Rng.derive(o.seed, 'shuffle');
  const stepsPerEpoch = Math.floor(split.train.length / batch);
  const total = stepsPerEpoch * epochs;
  const history: EpochRecord[] = [];
  let trainSeconds = 0;
  let step = 0;
  const showBar = o.progress ?? process.stderr.isTTY === true;
  try {
    for (let epoch = 1; epoch <= epochs; epoch++) {
      const order = split.train.slice();
      shuffle.shuffle(order);
      session.beginEpoch(order);
      const bar = showBar
        ? new cliProgress.SingleBar({ format: `epoch ${epoch}/${epochs} [{bar}] {value}/{total} steps | {ips} img/s | lr {lr} | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic)
        : null;
      bar?.start(stepsPerEpoch, 0, { ips: '-', lr: '-' });
      const t0 = performance.now();
      for (let k = 0; k < stepsPerEpoch; k++, step++) {
        const rate = learningRate(step, total, lr);
        await session.step(rate);
        bar?.update(k + 1, { ips: (((k + 1) * batch) / ((performance.now() - t0) / 1000)).toFixed(0), lr: rate.toPrecision(3) });
      }
      await session.sync();
      const seconds = (performance.now() - t0) / 1000;
      bar?.stop();
      trainSeconds += seconds;
      const tr = await session.epochMetrics();
      const va = await session.evaluate(trainSet, split.validation);
      const rec: EpochRecord = {
        epoch, trainLoss: round(tr.loss), trainAccuracy: round(tr.accuracy), validationLoss: round(va.loss), validationAccuracy: va.accuracy,
        seconds: Number(seconds.toFixed(1)), imagesPerSecond: Math.round((stepsPerEpoch * batch) / seconds),
      };
      history.push(rec);
      log(`epoch ${epoch}/${epochs}: train loss ${tr.loss.toFixed(4)} acc ${pct(tr.accuracy)} | validation loss ${va.loss.toFixed(4)} acc ${pct(va.accuracy)} | ${rec.seconds} s, ${rec.imagesPerSecond} img/s`);
    }
    const testIdx = Uint32Array.from({ length: ds.test.count }, (_, i) => i);
    const test = await session.evaluate(testSet, testIdx);
    log(`test: accuracy ${pct(test.accuracy)} (${test.correct}/${test.count}), loss ${test.loss.toFixed(4)}`);
    const graph = await session.exportGraph();
    const bytes = exportOnnx(graph, {
      inputs: [{ name: 'input' }],
      outputs: ['logits'],
      producer: 'camgpu',
      graphName: arch.name,
      docString: `Fashion-MNIST classifier trained by camgpu (seed ${o.seed}); preprocessing and provenance in ${arch.name}.json`,
    });
    mkdirSync(o.out, { recursive: true });
    const modelPath = join(o.out, `${arch.name}.onnx`);
    const cardPath = join(o.out, `${arch.name}.json`);
    writeFileSync(modelPath, bytes);
    const ir = importOnnx(bytes, { name: modelPath });
    const target = resolveTap(ir, arch.targetLayer);
    const card: Record<string, unknown> = {
      name: arch.name,
      file: `${arch.name}.onnx`,
      task: 'Fashion-MNIST image classification (10 classes)',
      architecture: {
        family: o.arch === 'vgg' ? 'VGG-style (3×3 conv blocks, max pooling, dense head)' : 'ResNet-style (BasicBlocks with batch normalization, global average pooling, dense head)',
        parameters: params,
        flopsPerImage: Math.round(graphFlops(graph)),
        flopsNote: 'multiply-adds × 2 of the convolutions and dense layers, per image',
        batchNormFolded: o.arch === 'resnet',
      },
      input: { name: 'input', shape: ['N', arch.channels, arch.inputSize, arch.inputSize], dtype: 'float32', layout: 'NCHW', channelOrder: 'single grayscale channel (Fashion-MNIST is grayscale; replicating it into RGB would add nothing)' },
      output: { name: 'logits', shape: ['N', arch.classes], meaning: 'unnormalized class scores (apply softmax for probabilities)' },
      preprocessing: {
        source: [ds.test.rows, ds.test.cols],
        pixelScale: 'p / 255',
        mean: Number(mean.toFixed(6)),
        std: Number(std.toFixed(6)),
        normalize: '(p / 255 − mean) / std',
        resize: { to: [arch.inputSize, arch.inputSize], mode: 'bilinear', coordinates: 'half_pixel (align_corners=false; source coordinate (o + 0.5)·28/56 − 0.5, clamped at 0)' },
        order: 'normalize, then resize (the same result in either order: both are linear and the bilinear weights sum to 1)',
        statsFrom: `all ${ds.train.count} images of the training split`,
      },
      classes: [...FASHION_CLASSES],
      targetLayer: { module: arch.targetLayer, tensor: target.tensor, note: 'module path of the last convolutional block (torch-style scoped node names)' },
      dataset: { name: 'Fashion-MNIST', source: ds.dir, train: split.train.length, validation: split.validation.length, test: ds.test.count, validationSplit: `seeded random ${VALIDATION_SIZE} of the training split` },
      training: {
        command: o.command ?? `camgpu train --arch ${o.arch} --seed ${o.seed} --epochs ${epochs} --batch ${batch} --optimizer ${optimizer} --lr ${lr} --out ${o.out}`,
        seed: o.seed,
        epochs,
        batch,
        optimizer: optimizerOptions(optimizer, lr, o.weightDecay),
        schedule: 'linear warm-up over the first 5% of steps (at most 300), then cosine decay to 0',
        loss: 'mean softmax cross-entropy',
        steps: total,
        seconds: Number(trainSeconds.toFixed(1)),
        imagesPerSecond: Math.round((total * batch) / trainSeconds),
        timeNote: 'wall time of the training steps (gather, forward, backward, optimizer); per-epoch evaluation excluded',
        device: ctx.adapterInfo.description || ctx.adapterInfo.device,
        date: new Date().toISOString(),
        history,
        firstEpochAt90PercentValidation: reached90(history),
      },
      evaluation: { testAccuracy: test.accuracy, testCorrect: test.correct, testImages: test.count, testLoss: Number(test.loss.toFixed(5)), by: 'camgpu training runtime (GPU preprocessing, running batch statistics, before folding)' },
    };
    writeFileSync(cardPath, `${JSON.stringify(card, null, 2)}\n`);
    log(`wrote ${modelPath} and ${cardPath}`);
    if (o.verify !== false) {
      const v = await verifyFashionModel(ctx, modelPath, cardPreprocessing(card), ds.test, ds.test.count);
      card.verification = verificationRecord(v);
      writeFileSync(cardPath, `${JSON.stringify(card, null, 2)}\n`);
      log(verificationLine(v));
    }
    return card;
  } finally {
    session.dispose();
    trainSet.dispose();
    testSet.dispose();
    ctx.destroy();
  }
}

export function cardPreprocessing(card: Record<string, unknown>): { size: [number, number]; mean: number; std: number } {
  const p = card.preprocessing as { mean: number; std: number; resize: { to: [number, number] } } | undefined;
  if (!p || typeof p.mean !== 'number' || typeof p.std !== 'number' || !Array.isArray(p.resize?.to)) throw new InputError('model card has no usable preprocessing section');
  return { size: p.resize.to, mean: p.mean, std: p.std };
}

export function verificationRecord(v: Verification): Record<string, unknown> {
  const diff = Math.abs(v.camgpu.accuracy - v.onnxruntime.accuracy);
  return {
    images: v.images,
    camgpuAccuracy: v.camgpu.accuracy,
    onnxruntimeAccuracy: v.onnxruntime.accuracy,
    onnxruntime: `onnxruntime-web ${v.onnxruntime.version}, wasm execution provider, 1 thread, in Node`,
    accuracyDifference: Number(diff.toFixed(6)),
    agreesWithin0_1pct: diff <= 0.001,
    predictionAgreement: v.agreement,
    disagreements: v.disagreements,
    inputs: 'test images preprocessed on the CPU in float64 as the card says, rounded to float32, fed to both runtimes',
    date: v.date,
  };
}

export function verificationLine(v: Verification): string {
  return `verification on ${v.images} test images: camgpu ${pct(v.camgpu.accuracy)} (${v.camgpu.ms} ms), onnxruntime-web wasm ${pct(v.onnxruntime.accuracy)} (${v.onnxruntime.ms} ms), same prediction on ${pct(v.agreement)}`;
}

/** `camgpu verify-fashion`: re-checks an exported model against its card and records the result there. */
export async function runVerification(cardPath: string, options: { count?: number; data?: string; write?: boolean; log?: (l: string) => void }): Promise<Verification> {
  const log = options.log ?? ((l: string) => console.log(l));
  let card: Record<string, unknown>;
  try {
    card = JSON.parse(readFileSync(cardPath, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`cannot read model card ${cardPath}: ${(e as Error).message}`);
  }
  const file = typeof card.file === 'string' ? card.file : null;
  if (!file) throw new InputError(`${cardPath}: no 'file' entry`);
  const modelPath = join(cardPath, '..', file);
  const ds = loadFashionMnist(options.data);
  const ctx = await GpuContext.create();
  try {
    const v = await verifyFashionModel(ctx, modelPath, cardPreprocessing(card), ds.test, options.count ?? ds.test.count);
    log(verificationLine(v));
    if (options.write) {
      card.verification = verificationRecord(v);
      writeFileSync(cardPath, `${JSON.stringify(card, null, 2)}\n`);
      log(`updated ${cardPath}`);
    }
    return v;
  } finally {
    ctx.destroy();
  }
}

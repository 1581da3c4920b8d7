import { readFileSync } from 'node:fs';
import type { GpuContext } from '../src/runtime/device.js';
import { InputError } from '../src/runtime/errors.js';
import { Tensor } from '../src/runtime/tensor.js';
import { loadModel } from '../src/node.js';
import { type ImageSet, preprocess } from './fashion-mnist.js';

/**
 * The independent check of an exported Fashion-MNIST model: the same CPU-preprocessed
 * test images through camgpu (the ONNX file imported back) and through onnxruntime-web's
 * wasm execution provider in Node, predictions compared image by image.
 */

/** What a model card says about preprocessing (see tools/train.ts). */
export interface CardPreprocessing {
  size: [number, number];
  mean: number;
  std: number;
}

export interface RuntimeResult {
  accuracy: number;
  correct: number;
  ms: number;
}

export interface Verification {
  images: number;
  camgpu: RuntimeResult;
  onnxruntime: RuntimeResult & { version: string; executionProvider: 'wasm' };
  /** Images on which both predict the same class. */
  agreement: number;
  /** Indices (into the test split) where the predictions differ. */
  disagreements: number[];
  date: string;
}

function argmaxRows(logits: ArrayLike<number>, rows: number, classes: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[r * classes + c] > logits[r * classes + best]) best = c;
    out.push(best);
  }
  return out;
}

/** Runs both runtimes on the first `count` test images, `batch` at a time. */
export async function verifyFashionModel(ctx: GpuContext, modelPath: string, pre: CardPreprocessing, test: ImageSet, count: number, batch = 250): Promise<Verification> {
  if (count < 1 || count > test.count) throw new InputError(`verify: ${count} images requested, the test split has ${test.count}`);
  if (pre.size[0] !== pre.size[1]) throw new InputError(`verify: a square input size is expected, the card says ${pre.size.join('×')}`);
  const size = pre.size[0];
  const ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(modelPath)), { executionProviders: ['wasm'] });
  const model = loadModel(ctx, modelPath);
  const labels = test.labels;
  const ours: number[] = [];
  const theirs: number[] = [];
  let camMs = 0;
  let ortMs = 0;
  try {
    for (let i0 = 0; i0 < count; i0 += batch) {
      const n = Math.min(batch, count - i0);
      const idx = Array.from({ length: n }, (_, k) => i0 + k);
      const x = preprocess(test, idx, size, pre.mean, pre.std);
      const shape = [n, 1, size, size];
      let t = performance.now();
      const input = Tensor.fromData(ctx, x, shape);
      const r = await model.run(input);
      const logits = r.outputs.get(model.outputName)!;
      const values = await logits.read();
      camMs += performance.now() - t;
      const classes = logits.shape[1];
      ours.push(...argmaxRows(values, n, classes));
      input.dispose();
      for (const o of r.outputs.values()) o.dispose();
      t = performance.now();
      const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, shape) });
      ortMs += performance.now() - t;
      theirs.push(...argmaxRows(out[session.outputNames[0]].data as Float32Array, n, classes));
    }
  } finally {
    await model.dispose();
    await session.release();
  }
  const correct = (p: number[]) => p.reduce((s, c, i) => s + (c === labels[i] ? 1 : 0), 0);
  const disagreements = ours.flatMap((c, i) => (c !== theirs[i] ? [i] : []));
  const camCorrect = correct(ours);
  const ortCorrect = correct(theirs);
  return {
    images: count,
    camgpu: { accuracy: camCorrect / count, correct: camCorrect, ms: Math.round(camMs) },
    onnxruntime: { accuracy: ortCorrect / count, correct: ortCorrect, ms: Math.round(ortMs), version: ort.env.versions.web ?? 'unknown', executionProvider: 'wasm' },
    agreement: (count - disagreements.length) / count,
    disagreements,
    date: new Date().toISOString(),
  };
}

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Model } from '../src/model.js';
import { resolveTap } from '../src/onnx/resolve.js';
import { findFashionMnist, FASHION_CLASSES, loadFashionMnist } from '../tools/fashion-mnist.js';
import { cardPreprocessing } from '../tools/train.js';
import { verifyFashionModel } from '../tools/verify-fashion.js';
import { gpu } from './helpers/gpu.js';

/**
 * The committed Fashion-MNIST models (trained by `camgpu train`, see their cards): the
 * cards say what a user needs, the files tap by module path, and on 500 test images
 * preprocessed as the card says, camgpu and onnxruntime-web (wasm) predict the same
 * classes and camgpu is as accurate as the card claims.
 */

const MODELS = join(import.meta.dirname, '..', 'models');
const NAMES = ['fashion-vgg', 'fashion-resnet'];
const DATA = findFashionMnist();
const COUNT = 500;

interface Card {
  name: string;
  file: string;
  architecture: { parameters: number; flopsPerImage: number };
  input: { name: string; shape: (string | number)[]; channelOrder: string };
  output: { name: string; shape: (string | number)[] };
  preprocessing: { source: number[]; mean: number; std: number; resize: { to: number[]; mode: string; coordinates: string } };
  classes: string[];
  targetLayer: { module: string; tensor: string };
  training: { command: string; seed: number; epochs: number; seconds: number; imagesPerSecond: number; date: string };
  evaluation: { testAccuracy: number; testImages: number };
  verification: { images: number; camgpuAccuracy: number; onnxruntimeAccuracy: number; predictionAgreement: number };
}

describe.each(NAMES)('%s', (name) => {
  const cardPath = join(MODELS, `${name}.json`);
  const card = JSON.parse(readFileSync(cardPath, 'utf8')) as Card;

  it('has a complete model card', () => {
    expect(card.name).toBe(name);
    expect(existsSync(join(MODELS, card.file))).toBe(true);
    expect(card.input.shape).toEqual(['N', 1, 56, 56]);
    expect(card.output).toMatchObject({ name: 'logits', shape: ['N', 10] });
    expect(card.classes).toEqual([...FASHION_CLASSES]);
    expect(card.preprocessing.source).toEqual([28, 28]);
    expect(card.preprocessing.resize).toMatchObject({ to: [56, 56], mode: 'bilinear' });
    expect(card.preprocessing.resize.coordinates).toMatch(/half_pixel/);
    expect(card.preprocessing.mean).toBeCloseTo(0.286, 3);
    expect(card.preprocessing.std).toBeCloseTo(0.353, 3);
    expect(card.training.command).toMatch(/^camgpu train --arch (vgg|resnet) --seed \d+/);
    expect(card.training.seconds).toBeGreaterThan(0);
    expect(card.training.imagesPerSecond).toBeGreaterThan(0);
    expect(Number.isNaN(Date.parse(card.training.date))).toBe(false);
    expect(card.architecture.parameters).toBeGreaterThan(0);
    expect(card.evaluation.testImages).toBe(10000);
    expect(card.evaluation.testAccuracy).toBeGreaterThanOrEqual(0.9);
    expect(card.verification.images).toBe(10000);
    expect(Math.abs(card.verification.camgpuAccuracy - card.verification.onnxruntimeAccuracy)).toBeLessThanOrEqual(0.001);
  });

  it('taps its recommended target layer by module path, a map of at least 7×7', async () => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(MODELS, card.file))), { name: card.file });
    const tap = resolveTap(model.graph, card.targetLayer.module);
    expect(tap.how).toBe('module');
    expect(tap.tensor).toBe(card.targetLayer.tensor);
    const shape = model.analyze(new Map([[model.inputName, [1, 1, 56, 56]]]), new Set([tap.tensor])).shapes.get(tap.tensor)!;
    expect(shape.length).toBe(4);
    expect(Math.min(shape[2], shape[3])).toBeGreaterThanOrEqual(7);
    await model.dispose();
  });

  it(`camgpu and onnxruntime-web agree on ${COUNT} test images`, async () => {
    if (!DATA) throw new Error("Fashion-MNIST is not installed (Debian's dataset-fashion-mnist): run `bash scripts/setup.sh`");
    const ctx = await gpu();
    const test = loadFashionMnist(DATA).test;
    const v = await verifyFashionModel(ctx, join(MODELS, card.file), cardPreprocessing(card as unknown as Record<string, unknown>), test, COUNT);
    expect(v.agreement).toBeGreaterThanOrEqual(0.998);
    expect(v.camgpu.accuracy).toBeGreaterThanOrEqual(0.88);
  });
});

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { Model } from '../src/model.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { FIXTURES, npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';

it('200 consecutive forward passes leave GPU memory where it was after the first', async () => {
  const ctx = await gpu();
  const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(FIXTURES, 'torch', 'resnet18-w8.onnx'))), { name: 'resnet18-w8' });
  const input = npy(join(FIXTURES, 'torch', 'inputs', 'input-3x3x64x64-seed0.npy'));
  const x = Tensor.fromData(ctx, input.data, input.shape);
  const pass = async () => {
    const r = await model.run(x, { taps: ['layer4', 'relu'] });
    const all = [...r.outputs.values(), ...[...r.taps.values()].map((t) => t.value)];
    await readTensors(ctx, all);
    for (const t of all) t.dispose();
  };
  await pass();
  const after1 = ctx.pool.getStats();
  const weights1 = model.weights.totalBytes;
  for (let i = 0; i < 200; i++) await pass();
  const after201 = ctx.pool.getStats();
  expect(after201.inUseBytes).toBe(after1.inUseBytes);
  expect(after201.freeBytes).toBe(after1.freeBytes);
  // No new buffer was created after the first pass: every later one reused pooled buffers.
  expect(after201.created).toBe(after1.created);
  expect(model.weights.totalBytes).toBe(weights1);
  x.dispose();
  await model.dispose();
  // Disposing the model returns its plans' buffers: only the pool's free lists remain.
  expect(ctx.pool.getStats().inUseBytes).toBe(0);
});

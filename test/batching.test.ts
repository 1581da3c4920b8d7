import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import '../src/node-provider.js';
import { Model } from '../src/model.js';
import { GpuContext } from '../src/runtime/device.js';
import { Tensor } from '../src/runtime/tensor.js';
import { FIXTURES, npy, torchManifest } from './helpers/fixtures.js';
import { relError } from './helpers/random.js';

const DIR = join(FIXTURES, 'torch');

it('splits a batch that exceeds the binding limit, transparently', async () => {
  const m = torchManifest(DIR, 'resnet18-w8');
  const input = npy(join(DIR, m.input.file));
  const want = npy(join(DIR, m.output.file));
  const wantTap = npy(join(DIR, m.taps.find((t) => t.module === 'relu')!.file));
  // The largest activation of one 64×64 image is its input, 48 KiB: a 64 KiB cap allows one image per pass.
  const ctx = await GpuContext.create({ activationBindingLimit: 64 * 1024 });
  const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(DIR, m.model))), { name: m.model });
  const x = Tensor.fromData(ctx, input.data, input.shape);
  const r = await model.run(x, { taps: ['relu'] });
  expect(r.chunk).toBe(1);
  expect(relError(await r.outputs.get('logits')!.read(), want.data)).toBeLessThan(1e-4);
  const tap = r.taps.get('relu')!.value;
  expect(tap.shape).toEqual([3, 8, 32, 32]);
  expect(relError(await tap.read(), wantTap.data)).toBeLessThan(1e-4);
  await model.dispose();
  ctx.destroy();
});

it('runs any batch size: each image of a batch of 7 equals its own batch-of-1 result', async () => {
  const ctx = await GpuContext.create();
  const m = torchManifest(DIR, 'resnet18-w8');
  const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(DIR, m.model))), { name: m.model });
  const input = npy(join(DIR, m.input.file));
  const per = 3 * 64 * 64;
  const big = new Float32Array(7 * per);
  for (let i = 0; i < 7; i++) big.set(input.data.subarray((i % 3) * per, (i % 3 + 1) * per), i * per);
  const r7 = await model.run(Tensor.fromData(ctx, big, [7, 3, 64, 64]));
  const all = await r7.outputs.get('logits')!.read();
  const want = npy(join(DIR, m.output.file)).data;
  for (let i = 0; i < 7; i++) expect(relError(all.subarray(i * 10, i * 10 + 10), want.subarray((i % 3) * 10, (i % 3) * 10 + 10))).toBeLessThan(1e-4);
  await model.dispose();
  ctx.destroy();
});

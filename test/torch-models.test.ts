import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Model } from '../src/model.js';
import { Tensor } from '../src/runtime/tensor.js';
import { FIXTURES, npy, torchManifest } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { relError } from './helpers/random.js';

const SMALL = join(FIXTURES, 'torch');
/** Opt-in: full-size models from `tools/gen_torch_fixtures.py --full DIR` (too large to commit). */
const FULL = process.env.CAMGPU_TORCH_FULL;

const cases: [string, string][] = [
  ...['resnet18-w8', 'resnet50-w8', 'vgg11_bn-w8', 'vgg16-w8'].map((n): [string, string] => [n, SMALL]),
  ...(FULL ? (['resnet18', 'resnet50', 'vgg11_bn', 'vgg16'] as const).filter((n) => existsSync(join(FULL, `${n}.json`))).map((n): [string, string] => [n, FULL]) : []),
];

/**
 * torchvision architectures (narrowed by 8 so the files stay small, same module names),
 * random weights and randomized BatchNorm statistics, exported by Debian's PyTorch:
 * logits and taps at module paths and node names against PyTorch's own outputs.
 */
describe.each(cases)('%s against PyTorch', (name, DIR) => {
  it('logits and taps within 1e-4 relative error', async () => {
    const ctx = await gpu();
    const m = torchManifest(DIR, name);
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(DIR, m.model))), { name: m.model });
    const input = npy(join(DIR, m.input.file));
    const x = Tensor.fromData(ctx, input.data, input.shape);
    const tapNames = m.taps.map((t) => t.module ?? t.node!);
    const r = await model.run(x, { taps: tapNames });
    const logits = await r.outputs.get(m.output.name)!.read();
    const want = npy(join(DIR, m.output.file));
    expect(relError(logits, want.data)).toBeLessThan(1e-4);
    for (const t of m.taps) {
      const key = t.module ?? t.node!;
      const tap = r.taps.get(key)!;
      expect(tap.value.shape, key).toEqual(t.shape);
      const got = await tap.value.read();
      expect(relError(got, npy(join(DIR, t.file)).data), `tap ${key} -> ${tap.tensor}`).toBeLessThan(1e-4);
    }
    for (const t of [...r.outputs.values(), ...[...r.taps.values()].map((q) => q.value)]) t.dispose();
    x.dispose();
    await model.dispose();
  });
});

describe('layer names', () => {
  it("'auto' is the last 4-D spatial output before the classifier (SPEC §0)", () => {
    const load = (n: string) => Model.fromBytes({} as never, new Uint8Array(readFileSync(join(SMALL, `${n}.onnx`))), { name: n });
    const r18 = load('resnet18-w8');
    expect(r18.resolveTaps(['auto'])[0].tensor).toBe(r18.resolveTaps(['layer4'])[0].tensor);
    // torchvision VGG: the adaptive 7×7 average pool after `features` is the last spatial node.
    const vgg = load('vgg16-w8');
    expect(vgg.resolveTaps(['auto'])[0].tensor).toBe(vgg.resolveTaps(['avgpool'])[0].tensor);
    // Module paths resolve through nested containers and repeated calls.
    expect(r18.resolveTaps(['layer2.0.downsample'])[0].tensor).toBe('/layer2/layer2.0/downsample/downsample.1/BatchNormalization_output_0');
    expect(r18.resolveTaps(['layer4.1.relu'])[0].tensor).toBe('/layer4/layer4.1/relu_1/Relu_output_0');
  });
});

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { formatNpy } from '../src/io/npy.js';
import { Model } from '../src/model.js';
import { InputError, OnnxFormatError, ShapeError, UnsupportedOpError } from '../src/runtime/errors.js';
import { Tensor } from '../src/runtime/tensor.js';
import { FIXTURES } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { buildModel } from './helpers/onnx-build.js';
import { rng } from './helpers/random.js';

const run = promisify(execFile);
const MODEL = join(FIXTURES, 'torch', 'resnet18-w8.onnx');
const dir = mkdtempSync(join(tmpdir(), 'camgpu-bad-'));
const good = new Uint8Array(readFileSync(MODEL));

const truncated = join(dir, 'truncated.onnx');
const garbage = join(dir, 'garbage.onnx');
const unsupported = join(dir, 'unsupported.onnx');
const wrongShape = join(dir, 'wrong-shape.npy');
const vector = join(dir, 'vector.npy');

beforeAll(() => {
  writeFileSync(truncated, good.subarray(0, Math.floor(good.length * 0.6)));
  const rand = rng(7);
  writeFileSync(garbage, Uint8Array.from({ length: 4096 }, () => Math.floor(rand() * 256)));
  writeFileSync(unsupported, buildModel({
    nodes: [
      { op: 'Relu', inputs: ['x'], outputs: ['r'], name: 'first_relu' },
      { op: 'Hardmax', inputs: ['r'], outputs: ['y'], name: 'the_hardmax' },
    ],
    inputs: [{ name: 'x', dims: [1, 4] }],
    outputs: [{ name: 'y' }],
  }));
  writeFileSync(wrongShape, formatNpy(new Float32Array(2 * 3 * 32 * 32), [2, 3, 32, 32]));
  writeFileSync(vector, formatNpy(new Float32Array([1, -2, 3, -4]), [1, 4]));
});

async function cli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  try {
    const r = await run(process.execPath, [join(import.meta.dirname, '..', 'bin', 'camgpu.js'), ...args], { env: { ...process.env }, timeout: 120_000 });
    return { code: 0, stderr: r.stderr, stdout: r.stdout };
  } catch (e) {
    const err = e as { code: number; stderr: string; stdout: string };
    return { code: err.code, stderr: err.stderr, stdout: err.stdout };
  }
}

describe('bad input gives typed errors', () => {
  it('a truncated file', () => {
    expect(() => Model.fromBytes({} as never, new Uint8Array(readFileSync(truncated)), { name: truncated })).toThrow(OnnxFormatError);
    expect(() => Model.fromBytes({} as never, new Uint8Array(readFileSync(truncated)), { name: truncated })).toThrow(/truncated\.onnx/);
  });

  it('random bytes', () => {
    expect(() => Model.fromBytes({} as never, new Uint8Array(readFileSync(garbage)), { name: garbage })).toThrow(OnnxFormatError);
  });

  it('an empty file', () => {
    expect(() => Model.fromBytes({} as never, new Uint8Array(0), { name: 'empty.onnx' })).toThrow(/empty\.onnx: file is empty/);
  });

  it('every prefix of a real model fails cleanly or loads, never crashes', () => {
    // Cutting at many points exercises every protobuf length check.
    for (let cut = 1; cut < good.length; cut += Math.max(1, Math.floor(good.length / 157))) {
      try {
        Model.fromBytes({} as never, good.subarray(0, cut), { name: 'cut.onnx' });
      } catch (e) {
        expect(e, `cut at ${cut}`).toBeInstanceOf(OnnxFormatError);
      }
    }
  });

  it('an unsupported op names the op, the node and the supported set', async () => {
    const ctx = await gpu();
    const m = Model.fromBytes(ctx, new Uint8Array(readFileSync(unsupported)), { name: unsupported });
    const x = Tensor.fromData(ctx, new Float32Array(4), [1, 4]);
    await expect(m.run(x)).rejects.toThrow(UnsupportedOpError);
    await expect(m.run(x)).rejects.toThrow(/Hardmax at node 'the_hardmax'.*Supported ops: .*Conv/);
    x.dispose();
  });

  it('a wrong input shape', async () => {
    const ctx = await gpu();
    const m = Model.fromBytes(ctx, good, { name: MODEL });
    const x = Tensor.fromData(ctx, new Float32Array(2 * 3 * 32 * 32), [2, 3, 32, 32]);
    await expect(m.run(x)).rejects.toThrow(ShapeError);
    await expect(m.run(x)).rejects.toThrow(/expects shape \[N, 3, 64, 64\], got \[2, 3, 32, 32\]/);
    x.dispose();
    await m.dispose();
  });

  it('a tap that does not resolve', async () => {
    const ctx = await gpu();
    const m = Model.fromBytes(ctx, good, { name: MODEL });
    const x = Tensor.fromData(ctx, new Float32Array(3 * 64 * 64), [1, 3, 64, 64]);
    await expect(m.run(x, { taps: ['layer9'] })).rejects.toThrow(InputError);
    await expect(m.run(x, { taps: ['layer9'] })).rejects.toThrow(/layer 'layer9'.*module paths there include/);
    x.dispose();
    await m.dispose();
  });
});

describe('the CLI exits non-zero with the typed error', () => {
  const npyArgs = ['--input-npy', join(FIXTURES, 'torch', 'inputs', 'input-3x3x64x64-seed0.npy')];
  it.each([
    ['truncated', () => ['run', '--model', truncated, ...npyArgs], /error \[ONNX_FORMAT\]: .*truncated\.onnx/],
    ['garbage', () => ['run', '--model', garbage, ...npyArgs], /error \[ONNX_FORMAT\]: .*garbage\.onnx/],
    ['unsupported', () => ['run', '--model', unsupported, '--input-npy', vector], /error \[UNSUPPORTED_OP\]: unsupported op Hardmax at node 'the_hardmax'/],
    ['wrong shape', () => ['run', '--model', MODEL, '--input-npy', wrongShape], /error \[SHAPE\]: .*expects shape/],
    ['missing file', () => ['run', '--model', join(dir, 'nope.onnx'), ...npyArgs], /error \[ONNX_FORMAT\]: .*cannot read the file/],
  ])('%s', async (_name, args, message) => {
    const r = await cli(args());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/internal error|at .*\.js:\d+/);
  });

  it('a usage error exits 2', async () => {
    const r = await cli(['run', '--model', MODEL]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--image FILE or --input-npy FILE/);
  });
});

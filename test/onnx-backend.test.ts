import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Model } from '../src/model.js';
import { SUPPORTED_OPS } from '../src/onnx/analyze.js';
import { hostTensor } from '../src/runtime/host-tensor.js';
import { importOnnx } from '../src/onnx/import.js';
import { CamgpuError, OnnxFormatError, ShapeError, UnsupportedOpError } from '../src/runtime/errors.js';
import { formatShape } from '../src/runtime/shape.js';
import { Tensor } from '../src/runtime/tensor.js';
import { gpu } from './helpers/gpu.js';
import { allclose, type CaseOutput, discoverCases, ONNX_NODE_DIR, runCase, type VariantOptions } from './helpers/onnx-testdata.js';

/**
 * The ONNX backend conformance suite (data/node of Debian's libonnx-testdata): every case
 * whose ops camgpu supports runs through Model and must match ONNX's expected outputs, or
 * be listed in UNSUPPORTED with the typed error it must fail with. Ops that camgpu folds on
 * the CPU (Shape, Gather, Slice, Transpose, ...) see their graph inputs as values bound in
 * inputValues, which the runtime treats as known at plan time.
 */
const RTOL = 1e-3;
const ATOL = 1e-5;

type ErrorClass = abstract new (...args: never[]) => CamgpuError;

const INTEGER_GPU = 'integer tensors on the GPU (GPU ops take float32)';
const POOL_3D = '3-D pooling (1-D and 2-D spatial inputs only)';
const ARGMAX = 'MaxPool Indices output';
const BN_TRAINING = 'training-mode BatchNormalization';
const DROPOUT_MASK = 'Dropout mask output';
const DROPOUT_TRAINING = 'training-mode Dropout';
const STRINGS = 'string tensors';
const NON_TENSOR = 'sequence and optional values';
const OPSET_1 = 'opset 1 models (camgpu imports opsets 7 through 21)';
const BAD_DATA = "test data contradicts the model's declared input shape ('like' is [3, 4], data [1])";

/** Cases camgpu deliberately does not run, the typed error each must raise, and why. */
const UNSUPPORTED: Record<string, { error: ErrorClass; reason: string }> = {
  test_add_uint8: { error: UnsupportedOpError, reason: INTEGER_GPU },
  test_sub_uint8: { error: UnsupportedOpError, reason: INTEGER_GPU },
  test_mul_uint8: { error: UnsupportedOpError, reason: INTEGER_GPU },
  test_div_uint8: { error: UnsupportedOpError, reason: INTEGER_GPU },
  test_clip_default_int8_inbounds: { error: UnsupportedOpError, reason: INTEGER_GPU },
  test_clip_default_int8_max: { error: UnsupportedOpError, reason: INTEGER_GPU },
  test_clip_default_int8_min: { error: UnsupportedOpError, reason: INTEGER_GPU },
  test_maxpool_2d_uint8: { error: UnsupportedOpError, reason: INTEGER_GPU },
  test_edge_pad: { error: UnsupportedOpError, reason: INTEGER_GPU },
  test_reflect_pad: { error: UnsupportedOpError, reason: INTEGER_GPU },
  test_averagepool_3d_default: { error: UnsupportedOpError, reason: POOL_3D },
  test_maxpool_3d_default: { error: UnsupportedOpError, reason: POOL_3D },
  test_maxpool_with_argmax_2d_precomputed_pads: { error: UnsupportedOpError, reason: ARGMAX },
  test_maxpool_with_argmax_2d_precomputed_strides: { error: UnsupportedOpError, reason: ARGMAX },
  test_batchnorm_epsilon_training_mode: { error: UnsupportedOpError, reason: BN_TRAINING },
  test_batchnorm_example_training_mode: { error: UnsupportedOpError, reason: BN_TRAINING },
  test_dropout_default_mask: { error: UnsupportedOpError, reason: DROPOUT_MASK },
  test_dropout_default_mask_ratio: { error: UnsupportedOpError, reason: DROPOUT_MASK },
  test_training_dropout: { error: UnsupportedOpError, reason: DROPOUT_TRAINING },
  test_training_dropout_default: { error: UnsupportedOpError, reason: DROPOUT_TRAINING },
  test_training_dropout_default_mask: { error: UnsupportedOpError, reason: DROPOUT_TRAINING },
  test_training_dropout_mask: { error: UnsupportedOpError, reason: DROPOUT_TRAINING },
  test_training_dropout_zero_ratio: { error: UnsupportedOpError, reason: DROPOUT_TRAINING },
  test_training_dropout_zero_ratio_mask: { error: UnsupportedOpError, reason: DROPOUT_TRAINING },
  test_cast_FLOAT_to_STRING: { error: OnnxFormatError, reason: STRINGS },
  test_cast_STRING_to_FLOAT: { error: OnnxFormatError, reason: STRINGS },
  test_castlike_FLOAT_to_STRING_expanded: { error: OnnxFormatError, reason: STRINGS },
  test_castlike_STRING_to_FLOAT_expanded: { error: OnnxFormatError, reason: STRINGS },
  test_identity_opt: { error: UnsupportedOpError, reason: NON_TENSOR },
  test_identity_sequence: { error: UnsupportedOpError, reason: NON_TENSOR },
  test_castlike_BFLOAT16_to_FLOAT_expanded: { error: ShapeError, reason: BAD_DATA },
  test_globalaveragepool: { error: OnnxFormatError, reason: OPSET_1 },
  test_globalaveragepool_precomputed: { error: OnnxFormatError, reason: OPSET_1 },
  test_globalmaxpool: { error: OnnxFormatError, reason: OPSET_1 },
  test_globalmaxpool_precomputed: { error: OnnxFormatError, reason: OPSET_1 },
};

const FLOAT_DATA = { how: 'on float32 data (every value is exact in float32)', options: { firstInputAsFloat32: true } };
const AT_OPSET_7 = { how: 'at opset 7 (the op has a single version, 1, so the model means the same)', options: { opset: 7 } };

/** Listed cases re-run in a form camgpu supports, so the semantics they test are still checked. */
const VARIANTS: Record<string, { how: string; options: VariantOptions }> = {
  test_edge_pad: FLOAT_DATA,
  test_reflect_pad: FLOAT_DATA,
  test_maxpool_2d_uint8: FLOAT_DATA,
  test_clip_default_int8_inbounds: FLOAT_DATA,
  test_clip_default_int8_max: FLOAT_DATA,
  test_clip_default_int8_min: FLOAT_DATA,
  test_globalaveragepool: AT_OPSET_7,
  test_globalaveragepool_precomputed: AT_OPSET_7,
  test_globalmaxpool: AT_OPSET_7,
  test_globalmaxpool_precomputed: AT_OPSET_7,
};

const cases = discoverCases(SUPPORTED_OPS);
if (cases.length === 0) console.log(`ONNX node tests skipped: no test data in ${ONNX_NODE_DIR} (install libonnx-testdata or set ONNX_NODE_TESTDATA)`);
const stats = { ran: 0, passed: 0, unsupported: 0, variants: 0 };
const passedOps = new Set<string>();
const report: string[] = [];

/** Compares every output of a run with the expected values (shape exact, values allclose). */
function check(label: string, outs: CaseOutput[]): void {
  for (const o of outs) {
    expect(o.shape, `${label} output '${o.name}' shape`).toEqual(o.want.dims);
    const r = allclose(o.got, o.want.data, RTOL, ATOL);
    report.push(`  ${label} ${o.name} ${formatShape(o.shape)}: max abs error ${r.maxAbs.toExponential(2)}, max rel ${r.maxRel.toExponential(2)}`);
    expect(r.ok, `${label} output '${o.name}': element ${r.worst} is ${o.got[r.worst]}, expected ${o.want.data[r.worst]} (max abs error ${r.maxAbs})`).toBe(true);
  }
}

describe(`ONNX backend node tests (${ONNX_NODE_DIR})`, () => {
  it('finds ONNX\'s node tests', () => {
    expect(cases.length, "no ONNX backend node tests found: install Debian's libonnx-testdata (bash scripts/setup.sh)").toBeGreaterThan(100);
  });

  afterAll(() => {
    const byReason = new Map<string, number>();
    for (const c of cases) {
      const u = UNSUPPORTED[c.name];
      if (u) byReason.set(u.reason, (byReason.get(u.reason) ?? 0) + 1);
    }
    const stale = Object.keys(UNSUPPORTED).filter((n) => !cases.some((c) => c.name === n));
    console.log(
      [
        `ONNX node tests: ${cases.length} discovered, ${stats.ran} ran, ${stats.passed} passed, ${stats.unsupported} listed as unsupported` +
          ` (${stats.variants} of those re-run in a supported form)`,
        ...[...byReason].map(([r, k]) => `  unsupported: ${k} × ${r}`),
        ...(stale.length ? [`  listed but not in this test data: ${stale.join(', ')}`] : []),
        ...report,
      ].join('\n'),
    );
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (name, c) => {
    const ctx = await gpu();
    const listed = UNSUPPORTED[name];
    if (listed) {
      let err: unknown = null;
      try {
        for (const set of c.dataSets) await runCase(ctx, c, set);
      } catch (e) {
        err = e;
      }
      expect(err, `${name} is listed as unsupported (${listed.reason}) but ran`).not.toBeNull();
      expect(err, `${name}: ${(err as Error).message}`).toBeInstanceOf(listed.error);
      stats.unsupported++;
      return;
    }
    stats.ran++;
    expect(c.dataSets.length, `${name} has no test data`).toBeGreaterThan(0);
    for (const set of c.dataSets) check(`${name}/${set}`, await runCase(ctx, c, set));
    stats.passed++;
    for (const op of c.opTypes) passedOps.add(op);
  });

  it.each(Object.keys(VARIANTS).filter((n) => cases.some((c) => c.name === n)))('%s, re-run', async (name) => {
    const ctx = await gpu();
    const c = cases.find((q) => q.name === name)!;
    const v = VARIANTS[name];
    expect(UNSUPPORTED[name], `${name} runs as it is; it needs no variant`).toBeDefined();
    for (const set of c.dataSets) check(`${name}/${set} ${v.how}`, await runCase(ctx, c, set, v.options));
    stats.variants++;
    for (const op of c.opTypes) passedOps.add(op);
  });

  it('covers every supported op that has node tests', () => {
    const tested = new Set(cases.flatMap((c) => c.opTypes));
    const missing = SUPPORTED_OPS.filter((op) => tested.has(op) && !passedOps.has(op));
    const untested = SUPPORTED_OPS.filter((op) => !tested.has(op));
    if (untested.length) console.log(`supported ops without ONNX node tests here: ${untested.join(', ')}`);
    expect(missing, 'supported ops whose node tests never passed').toEqual([]);
  });
});

describe('values bound through inputValues', () => {
  it('a result folded from a bound input follows each run\'s value, and the run releases its plan', async () => {
    const ctx = await gpu();
    const c = cases.find((q) => q.name === 'test_gather_0')!;
    const model = new Model(ctx, importOnnx(new Uint8Array(readFileSync(join(c.dir, 'model.onnx'))), { name: c.name }));
    const [dataName, indicesName] = model.graph.inputs.map((i) => i.name);
    const data = Float32Array.from({ length: 5 * 4 * 3 * 2 }, (_, i) => i);
    const x = Tensor.fromData(ctx, data, [5, 4, 3, 2]);
    const inUse = ctx.pool.getStats().inUseBytes;
    for (const indices of [[0, 1, 3], [4, 2, 2]]) {
      const inputValues = new Map([[dataName, hostTensor('float32', [5, 4, 3, 2], data)], [indicesName, hostTensor('int64', [3], indices)]]);
      const y = (await model.run(x, { inputValues })).outputs.get(model.graph.outputs[0].name)!;
      expect(y.shape).toEqual([3, 4, 3, 2]);
      expect(Array.from(await y.read())).toEqual(indices.flatMap((i) => Array.from(data.subarray(i * 24, (i + 1) * 24))));
      y.dispose();
    }
    expect(ctx.pool.getStats().inUseBytes).toBe(inUse);
    x.dispose();
    await model.dispose();
  });
});

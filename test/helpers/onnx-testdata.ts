import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Model } from '../../src/model.js';
import { type HostTensor, toFloat32 } from '../../src/runtime/host-tensor.js';
import { importOnnx } from '../../src/onnx/import.js';
import type { IrGraph, IrValueInfo } from '../../src/onnx/ir.js';
import { decodeTensor, onnx } from '../../src/onnx/proto.js';
import type { GpuContext } from '../../src/runtime/device.js';
import { Tensor } from '../../src/runtime/tensor.js';

/**
 * The ONNX backend conformance data (Debian's libonnx-testdata): one folder per node
 * test with model.onnx and test_data_set_N/{input,output}_K.pb TensorProto files.
 */
export const ONNX_NODE_DIR = process.env.ONNX_NODE_TESTDATA ?? '/usr/share/libonnx-testdata/data/node';

/** TensorProto element type of float32, the only type camgpu keeps on the GPU. */
const FLOAT = 1;
const BFLOAT16 = 16;

export interface OnnxCase {
  name: string;
  dir: string;
  /** Op types of the model's nodes. */
  opTypes: string[];
  /** The imported graph; null when importOnnx refuses the file (the case then fails in its run). */
  graph: IrGraph | null;
  dataSets: string[];
}

/** Op types of a model read straight from the protobuf (for files importOnnx refuses). */
function rawOpTypes(bytes: Uint8Array): string[] {
  try {
    return [...new Set((onnx.ModelProto.decode(bytes).graph?.node ?? []).map((n) => n.opType ?? ''))];
  } catch {
    return [];
  }
}

/** Every node test whose model uses only `supported` op types, in folder order. */
export function discoverCases(supported: readonly string[], root = ONNX_NODE_DIR): OnnxCase[] {
  if (!existsSync(root)) return [];
  const ok = new Set(supported);
  const out: OnnxCase[] = [];
  for (const name of readdirSync(root).sort()) {
    const dir = join(root, name);
    const file = join(dir, 'model.onnx');
    if (!existsSync(file)) continue;
    const bytes = new Uint8Array(readFileSync(file));
    let graph: IrGraph | null = null;
    let opTypes: string[];
    try {
      graph = importOnnx(bytes, { name });
      opTypes = [...new Set(graph.nodes.map((n) => n.opType))];
    } catch {
      opTypes = rawOpTypes(bytes);
    }
    if (opTypes.length === 0 && !graph) continue;
    if (!opTypes.every((o) => ok.has(o))) continue;
    const dataSets = readdirSync(dir).filter((d) => d.startsWith('test_data_set_')).sort();
    out.push({ name, dir, opTypes, graph, dataSets });
  }
  return out;
}

/** A TensorProto file decoded the way camgpu decodes initializers. */
export function readTensorPb(path: string): HostTensor & { name: string } {
  const proto = onnx.TensorProto.decode(new Uint8Array(readFileSync(path)));
  return { ...decodeTensor(proto, path, null), name: proto.name ?? '' };
}

/**
 * The tensors of one data set for the given graph inputs or outputs ('input_' / 'output_'
 * files), keyed by name: the file's tensor name, else its position. Values that are not
 * tensors (elemType 0: sequences, optionals) are left out.
 */
export function loadTensors(c: OnnxCase, set: string, prefix: 'input_' | 'output_', decls: readonly IrValueInfo[]): Map<string, HostTensor> {
  const dir = join(c.dir, set);
  const list = readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith('.pb'));
  list.sort((a, b) => Number(a.slice(prefix.length, -3)) - Number(b.slice(prefix.length, -3)));
  const m = new Map<string, HostTensor>();
  list.forEach((f, i) => {
    const decl = decls[i];
    if (!decl || decl.elemType === 0) return;
    let t: HostTensor & { name: string } = readTensorPb(join(dir, f));
    if (decl.elemType === BFLOAT16 && t.dtype === 'uint16') {
      // numpy has no bfloat16: the data holds its bit patterns as uint16.
      const bits = Uint32Array.from(t.data, (v) => v << 16);
      t = { ...t, dtype: 'bfloat16', data: new Float32Array(bits.buffer) };
    }
    m.set(t.name && decls.some((d) => d.name === t.name) ? t.name : decl.name, t);
  });
  return m;
}

export interface CaseOutput {
  name: string;
  shape: number[];
  got: Float32Array;
  want: HostTensor;
}

export interface VariantOptions {
  /** Feed the first input's values as float32 (for integer cases whose values float32 holds exactly). */
  firstInputAsFloat32?: boolean;
  /** Re-stamp the model's default-domain opset (for models whose ops have one version only). */
  opset?: number;
}

/** The case's model file, re-stamped at another opset when asked. */
function modelBytes(c: OnnxCase, opset?: number): Uint8Array {
  const bytes = new Uint8Array(readFileSync(join(c.dir, 'model.onnx')));
  if (opset === undefined) return bytes;
  const m = onnx.ModelProto.decode(bytes);
  for (const o of m.opsetImport) if (!o.domain || o.domain === 'ai.onnx') o.version = opset;
  return onnx.ModelProto.encode(m).finish();
}

/**
 * Runs one data set through Model: float32 graph inputs are fed as tensors (one input
 * through run(tensor), several through run(map)), and every input's value is also bound
 * in inputValues for ops that need it at plan time.
 */
export async function runCase(ctx: GpuContext, c: OnnxCase, set: string, options: VariantOptions = {}): Promise<CaseOutput[]> {
  // Importing again (not c.graph) keeps every run on a fresh IR, and puts import errors inside the run.
  const graph = importOnnx(modelBytes(c, options.opset), { name: c.name });
  const inputs = loadTensors(c, set, 'input_', graph.inputs);
  if (options.firstInputAsFloat32) {
    // The same case on float32 data (for integer cases whose values float32 holds exactly).
    const first = graph.inputs[0];
    const v = inputs.get(first.name)!;
    first.elemType = FLOAT;
    inputs.set(first.name, { dtype: 'float32', dims: v.dims, data: toFloat32(v) });
  }
  const model = new Model(ctx, graph);
  const feeds = new Map<string, Tensor>();
  const results: Tensor[] = [];
  try {
    for (const inp of graph.inputs) {
      const v = inputs.get(inp.name);
      if (v && inp.elemType === FLOAT) feeds.set(inp.name, Tensor.fromData(ctx, toFloat32(v), v.dims, inp.name));
    }
    const only = feeds.size === 1 ? feeds.get(graph.inputs[0].name) : undefined;
    const r = only ? await model.run(only, { inputValues: inputs }) : await model.run(feeds, { inputValues: inputs });
    results.push(...r.outputs.values());
    const outputs = loadTensors(c, set, 'output_', graph.outputs);
    const out: CaseOutput[] = [];
    for (const o of graph.outputs) {
      const t = r.outputs.get(o.name);
      const want = outputs.get(o.name);
      if (!t || !want) throw new Error(`${c.name}: no ${t ? 'expected value' : 'result'} for output '${o.name}'`);
      out.push({ name: o.name, shape: [...t.shape], got: await t.read(), want });
    }
    return out;
  } finally {
    for (const t of [...feeds.values(), ...results]) t.dispose();
    await model.dispose();
  }
}

export interface Closeness {
  ok: boolean;
  maxAbs: number;
  maxRel: number;
  /** First element outside the tolerance, if any. */
  worst: number;
}

/** numpy.allclose(got, want, rtol, atol), NaN equal to NaN, with the largest errors. */
export function allclose(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number): Closeness {
  let ok = got.length === want.length;
  let maxAbs = 0;
  let maxRel = 0;
  let worst = -1;
  for (let i = 0; i < Math.min(got.length, want.length); i++) {
    const g = got[i];
    const w = want[i];
    if (Number.isNaN(w) || Number.isNaN(g)) {
      if (Number.isNaN(w) !== Number.isNaN(g)) {
        ok = false;
        if (worst < 0) worst = i;
      }
      continue;
    }
    if (g === w) continue;
    const d = Math.abs(g - w);
    maxAbs = Math.max(maxAbs, d);
    if (w !== 0) maxRel = Math.max(maxRel, d / Math.abs(w));
    if (!(d <= atol + rtol * Math.abs(w))) {
      ok = false;
      if (worst < 0) worst = i;
    }
  }
  return { ok, maxAbs, maxRel, worst };
}

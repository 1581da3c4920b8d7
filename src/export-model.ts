import type { Model } from './model.js';
import type { IrValueInfo } from './onnx/ir.js';
import { exportOnnx, type ExportOptions } from './onnx/export.js';
import { InputError } from './runtime/errors.js';

/*
 * Exporting a Model (rather than an op graph) lives beside model.ts: src/onnx sits below
 * Model and must not import it.
 */

export interface ExportModelOptions extends Partial<ExportOptions> {
  /** Shapes to analyze at; default: each input's declared shape with batch 1. */
  inputShapes?: ReadonlyMap<string, number[]>;
}

function batchOneShape(file: string, v: IrValueInfo): number[] {
  const rest = v.dims?.slice(1) ?? null;
  if (!v.dims || !rest || rest.some((d) => typeof d !== 'number')) {
    throw new InputError(`${file}: input '${v.name}' has no fixed shape past the batch axis (${v.dims ? `[${v.dims.map((d) => d ?? '?').join(', ')}]` : 'none declared'}); pass inputShapes`);
  }
  return v.dims.length === 0 ? [] : [1, ...(rest as number[])];
}

/**
 * Exports a model as camgpu runs it: analyzed at batch 1 (or `inputShapes`) with its
 * passes applied (BatchNorm folded into convs, activations fused), inputs and outputs as
 * the model declares them, the batch left dynamic.
 */
export function exportModel(model: Model, options: ExportModelOptions = {}): Uint8Array {
  const { inputShapes, inputs, outputs, ...rest } = options;
  const shapes = new Map(inputShapes ?? model.graph.inputs.map((i): [string, number[]] => [i.name, batchOneShape(model.graph.file, i)]));
  const analysis = model.analyze(shapes, new Set(outputs ?? []));
  for (const o of outputs ?? []) {
    if (!analysis.shapes.has(o)) throw new InputError(`${model.graph.file}: no tensor '${o}' to export as an output`);
  }
  return exportOnnx(analysis, { ...rest, inputs: inputs ?? analysis.inputs.map((name) => ({ name })), outputs: outputs ?? analysis.outputs });
}

/**
 * camgpu: ONNX CNNs on WebGPU. This entry point is platform-neutral (browsers use
 * navigator.gpu); Node code imports `camgpu/node`, which also registers Dawn.
 */
export { GpuContext, setDefaultGpuProvider, type GpuProvider, type AdapterDescription } from './runtime/device.js';
export { Tensor, readTensors } from './runtime/tensor.js';
export { Recorder, type OpTiming } from './runtime/recorder.js';
export * from './runtime/errors.js';
export { Model, type RunOptions, type RunResult, type TapResult, type GradOptions, type GradResult, type GradTarget, type TapeOptions, type TapeTarget, type ModelTape } from './model.js';
export {
  ProgramRunner, type BatchAxis, type ProgramFeed, type ProgramResultSpec, type ProgramGraph, type ProgramBuilder, type ProgramSpec,
  type RunRequest, type RecordedRun, type ProgramRun, type CompiledProgram, type RunnerOptions,
} from './ops/program.js';
export type { Tape, Sym } from './ops/tape.js';
export { importOnnx, MIN_OPSET, MAX_OPSET } from './onnx/import.js';
export { checkModel, FOLD_MAX_ELEMENTS, MAX_RANK, MAX_IR_VERSION, type CheckedModel } from './onnx/check.js';
export { type PoolOptions, type PoolStats, DEFAULT_POOL_FREE_BYTES, DEFAULT_POOL_IDLE_MS } from './runtime/buffer-pool.js';
export { exportOnnx, type ExportOptions, type ExportInput } from './onnx/export.js';
export { exportModel, type ExportModelOptions } from './export-model.js';
export { SUPPORTED_OPS } from './onnx/analyze.js';
export { resolveTap, autoTargetLayer, nodeModulePath } from './onnx/resolve.js';
export type { IrGraph, IrNode } from './onnx/ir.js';
export type { HostTensor } from './runtime/host-tensor.js';
export { parseNpy, formatNpy, type NpyArray } from './io/npy.js';
export { COLORMAP_NAMES, type ColormapName, colormapLut, colormapRgb, colorize, overlay, type OverlayOptions, resizeBilinear, denormalizeToRgb, type RgbImage, type RgbaPixels } from './io/overlay.js';
export { gridSvg, type GridPanel, type GridLayout, type GridSvg } from './io/grid.js';
export { explain, resolveMethods, METHOD_NAMES, type ExplainOptions, type ExplainResult, type ExplainRow, type MethodMaps, type TargetSpec } from './cam/explain.js';
export { METHODS, type CamMethod } from './cam/methods.js';
export * from './cam/api.js';

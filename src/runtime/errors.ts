/**
 * Typed errors. Every failure a user can cause (a bad file, an unsupported op, a wrong
 * shape, a missing GPU) is one of these, with the place it happened in the message, so a
 * CLI can print it and exit non-zero instead of crashing.
 */
export class CamgpuError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** No WebGPU adapter could be acquired. */
export class NoAdapterError extends CamgpuError {
  constructor(detail: string) {
    super(
      'NO_ADAPTER',
      `no WebGPU adapter available: ${detail}. ` +
        'On Debian 12 run `bash scripts/setup.sh` (installs Mesa lavapipe >= 23 from bookworm-backports); ' +
        'in a browser enable WebGPU (Chromium: --enable-unsafe-webgpu).',
    );
  }
}

/** The GPU device was lost (driver reset, destroyed, out of memory). */
export class DeviceLostError extends CamgpuError {
  constructor(reason: string, message: string) {
    super('DEVICE_LOST', `GPU device lost (${reason}): ${message}`);
  }
}

/** WebGPU reported a validation or out-of-memory error for work we submitted. */
export class GpuError extends CamgpuError {
  constructor(kind: string, message: string) {
    super('GPU_ERROR', `GPU ${kind} error: ${message}`);
  }
}

/** The ONNX file is malformed, truncated or violates the ONNX spec. */
export class OnnxFormatError extends CamgpuError {
  readonly file: string;
  constructor(file: string, detail: string) {
    super('ONNX_FORMAT', `${file}: ${detail}`);
    this.file = file;
  }
}

/** The graph uses an op (or an op feature) that camgpu does not implement. */
export class UnsupportedOpError extends CamgpuError {
  readonly opType: string;
  readonly nodeName: string;
  constructor(opType: string, nodeName: string, detail: string, supported: readonly string[]) {
    super(
      'UNSUPPORTED_OP',
      `unsupported op ${opType} at node '${nodeName}': ${detail}. Supported ops: ${supported.join(', ')}`,
    );
    this.opType = opType;
    this.nodeName = nodeName;
  }
}

/** Shapes do not fit: a wrong input shape, or shapes an op cannot combine. */
export class ShapeError extends CamgpuError {
  constructor(where: string, detail: string) {
    super('SHAPE', `${where}: ${detail}`);
  }
}

/** A user-facing argument is wrong (a tap that does not resolve, a bad .npy, a bad flag). */
export class InputError extends CamgpuError {
  constructor(detail: string) {
    super('INPUT', detail);
  }
}

/** A tensor or buffer would exceed what the device can bind or allocate. */
export class LimitError extends CamgpuError {
  constructor(detail: string) {
    super('LIMIT', detail);
  }
}

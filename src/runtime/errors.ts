/**
 * Typed errors. Every failure a user can cause (a bad file, an unsupported op, a wrong
 * shape, a missing GPU) is one of these, with the place it happened in the message, so a
 * CLI can print it and exit non-zero instead of crashing.
 */
export class CamgpuError extends Error {
  readonly code: string;
  /** The graph node the error is about, when there is one (its IR name). */
  readonly node: string | undefined;
  /** The field of the node, tensor or file at fault (an attribute, input, `dims`, `offset`, …). */
  readonly field: string | undefined;
  constructor(code: string, message: string, place: ErrorPlace = {}) {
    super(message);
    this.code = code;
    this.name = new.target.name;
    this.node = place.node;
    this.field = place.field;
  }

  /** Fills in the place when it is not known yet (analysis adds the node it was in); returns the error. */
  at(place: ErrorPlace): this {
    const self = this as { node: string | undefined; field: string | undefined };
    self.node ??= place.node;
    self.field ??= place.field;
    return this;
  }
}

/** Where in a model an error is: the node and the field, for callers that act on it (and tests). */
export interface ErrorPlace {
  node?: string;
  field?: string;
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
  constructor(file: string, detail: string, place: ErrorPlace = {}) {
    super('ONNX_FORMAT', `${file}: ${detail}`, place);
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
      { node: nodeName },
    );
    this.opType = opType;
    this.nodeName = nodeName;
  }
}

/** Shapes do not fit: a wrong input shape, or shapes an op cannot combine. */
export class ShapeError extends CamgpuError {
  constructor(where: string, detail: string, place: ErrorPlace = {}) {
    super('SHAPE', `${where}: ${detail}`, place);
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
  constructor(detail: string, place: ErrorPlace = {}) {
    super('LIMIT', detail, place);
  }
}

/**
 * A failure that is camgpu's bug, not the caller's: anything other than a CamgpuError that
 * escaped from import, analysis, compilation or a run, wrapped (the original is `cause`).
 * No malformed input should ever produce one; the CLI asks to report it and exits 70.
 */
export class InternalError extends CamgpuError {
  override readonly cause: unknown;
  constructor(stage: string, cause: unknown) {
    const msg = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super('INTERNAL', `internal error during ${stage}: ${msg.split('\n')[0]}`);
    this.cause = cause;
  }
}

/** `e` as a typed error: a CamgpuError as it is, anything else wrapped as an InternalError of `stage`. */
export function typedError(e: unknown, stage: string): CamgpuError {
  return e instanceof CamgpuError ? e : new InternalError(stage, e);
}

/** Runs `fn`; whatever it throws leaves as a CamgpuError (see typedError). */
export function typedSync<T>(stage: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw typedError(e, stage);
  }
}

/** typedSync for async work. */
export async function typedAsync<T>(stage: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw typedError(e, stage);
  }
}

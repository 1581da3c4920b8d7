import './node-provider.js';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import type { GpuContext } from './runtime/device.js';
import { Model } from './model.js';
import { OnnxFormatError } from './runtime/errors.js';

export * from './index.js';
export { encodePng, decodePng, renderSvgToPng, renderGridPng } from './io/grid-node.js';

/** Loads an ONNX file; external data files are read relative to the model's folder. */
export function loadModel(ctx: GpuContext, path: string): Model {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new OnnxFormatError(path, `cannot read the file: ${(e as Error).message}`);
  }
  const dir = dirname(path);
  return Model.fromBytes(ctx, bytes, {
    name: path,
    readExternal: (location, offset, length) => {
      if (isAbsolute(location) || location.split(/[\\/]/).includes('..')) {
        throw new OnnxFormatError(path, `external data location '${location}' must be a relative path inside the model's folder`);
      }
      let data: Uint8Array;
      try {
        data = new Uint8Array(readFileSync(join(dir, location)));
      } catch (e) {
        throw new OnnxFormatError(path, `cannot read external data file '${location}': ${(e as Error).message}`);
      }
      const end = length === null ? data.length : offset + length;
      if (offset < 0 || end > data.length) {
        throw new OnnxFormatError(path, `external data '${location}' holds ${data.length} bytes; needs [${offset}, ${end})`);
      }
      return data.subarray(offset, end);
    },
  });
}

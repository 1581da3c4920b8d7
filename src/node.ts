import './node-provider.js';
import { closeSync, fstatSync, openSync, readFileSync, readSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, sep } from 'node:path';
import type { GpuContext } from './runtime/device.js';
import { Model } from './model.js';
import { OnnxFormatError, typedSync } from './runtime/errors.js';
import type { ExternalDataReader } from './onnx/proto.js';

export * from './index.js';
export { encodePng, decodePng, renderSvgToPng, renderGridPng } from './io/grid-node.js';

/**
 * Reads external data for the model at `path`: `location` must be a relative path whose real
 * path (symlinks followed) lies inside the model's folder and names a regular file, and
 * [offset, offset + length) must lie within it. Only those bytes are read.
 */
export function externalDataReader(path: string): ExternalDataReader {
  const dir = dirname(path);
  let realDir: string | null = null;
  return (location, offset, length) => {
    const fail = (detail: string, field = 'location'): never => {
      throw new OnnxFormatError(path, `external data '${location}' ${detail}`, { field });
    };
    if (isAbsolute(location) || /^[A-Za-z]:/.test(location) || location.split(/[\\/]/).includes('..') || location.includes('\0')) {
      throw new OnnxFormatError(path, `external data location '${location}' must be a relative path inside the model's folder`, { field: 'location' });
    }
    let real: string;
    try {
      realDir ??= realpathSync(dir);
      real = realpathSync(join(dir, location));
    } catch (e) {
      return fail(`cannot be read: ${(e as Error).message}`);
    }
    if (!real.startsWith(realDir.endsWith(sep) ? realDir : realDir + sep)) {
      return fail(`resolves (through a symbolic link) to '${real}', outside the model's folder '${realDir}'`);
    }
    let fd: number;
    try {
      fd = openSync(real, 'r');
    } catch (e) {
      return fail(`cannot be read: ${(e as Error).message}`);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return fail('is not a regular file');
      if (offset + length > st.size) return fail(`holds ${st.size} bytes; needs [${offset}, ${offset + length})`, offset > st.size ? 'offset' : 'length');
      const out = new Uint8Array(length);
      for (let done = 0; done < length;) {
        const n = readSync(fd, out, done, length - done, offset + done);
        if (n <= 0) return fail(`ended after ${done} of ${length} bytes`, 'length');
        done += n;
      }
      return out;
    } finally {
      closeSync(fd);
    }
  };
}

/** Loads an ONNX file; external data files are read from the model's folder (externalDataReader). */
export function loadModel(ctx: GpuContext, path: string): Model {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new OnnxFormatError(path, `cannot read the file: ${(e as Error).message}`);
  }
  return typedSync('import', () => Model.fromBytes(ctx, bytes, { name: path, readExternal: externalDataReader(path) }));
}

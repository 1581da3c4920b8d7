import { readFileSync } from 'node:fs';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { InputError } from '../runtime/errors.js';
import type { RgbaImage } from '../preprocess.js';

/** Decodes a PNG or JPEG file (by its signature, not its name) to RGBA8. */
export function readImageFile(path: string): RgbaImage {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new InputError(`cannot read image ${path}: ${(e as Error).message}`);
  }
  try {
    if (bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47) {
      const png = PNG.sync.read(bytes);
      return { width: png.width, height: png.height, rgba: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.length), source: path };
    }
    if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
      return { width: img.width, height: img.height, rgba: img.data, source: path };
    }
  } catch (e) {
    throw new InputError(`cannot decode image ${path}: ${(e as Error).message}`);
  }
  throw new InputError(`${path} is neither a PNG nor a JPEG file`);
}

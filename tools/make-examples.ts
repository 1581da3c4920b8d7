// Writes the sample images of the README's main command: the first test image of each
// Fashion-MNIST class as an 8-bit grayscale PNG, examples/fashion/<class>.png.
// Run: npx esbuild tools/make-examples.ts --bundle --platform=node --format=esm --packages=external --outfile=dist/make-examples.js && node dist/make-examples.js
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { FASHION_CLASSES, loadFashionMnist } from './fashion-mnist.js';

const out = join(import.meta.dirname, '..', 'examples', 'fashion');
mkdirSync(out, { recursive: true });
const { test } = loadFashionMnist();
const px = test.rows * test.cols;
FASHION_CLASSES.forEach((name, c) => {
  const i = Array.from(test.labels).indexOf(c);
  const png = new PNG({ width: test.cols, height: test.rows, colorType: 0, inputColorType: 0, bitDepth: 8, inputHasAlpha: false });
  const gray = test.images.subarray(i * px, (i + 1) * px);
  for (let p = 0; p < px; p++) {
    png.data[p * 4] = gray[p];
    png.data[p * 4 + 1] = gray[p];
    png.data[p * 4 + 2] = gray[p];
    png.data[p * 4 + 3] = 255;
  }
  const file = `${name.toLowerCase().replace(/[^a-z]+/g, '-')}.png`;
  writeFileSync(join(out, file), PNG.sync.write(png, { colorType: 0 }));
  console.log(`${file}: test image ${i}`);
});

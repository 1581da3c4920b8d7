// Bundles the browser page (web/main.ts, which imports the platform-neutral src/index.ts)
// into web/dist/ with esbuild. Unlike tools/build.mjs, npm packages (onnx-proto and
// protobufjs/minimal) are bundled in, since a page has no node_modules.
import { build } from 'esbuild';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Inputs that would mean Node-only code leaked into the page. */
const FORBIDDEN = [/^src\/node(-provider)?\.ts$/, /^src\/io\/image-node\.ts$/, /node_modules\/webgpu\//, /^node:/];

const result = await build({
  absWorkingDir: root,
  entryPoints: { main: 'web/main.ts' },
  outdir: 'web/dist',
  bundle: true,
  platform: 'browser',
  format: 'esm',
  // WebGPU shipped in Chrome 113; ES2022 covers everything the sources use.
  target: ['es2022', 'chrome113'],
  sourcemap: true,
  minify: false,
  metafile: true,
  logLevel: 'warning',
  // No define/inject needed: protobufjs/minimal probes for Node's `buffer` and `long`
  // through a guarded dynamic require (esbuild's __require shim throws, the probe catches),
  // so in the page it uses Uint8Array and reads int64 as plain numbers, which camgpu's
  // int64() accepts; it detects Node via `typeof global`, which is undefined in a page.
});

const leaked = Object.keys(result.metafile.inputs).filter((f) => FORBIDDEN.some((re) => re.test(f)));
if (leaked.length > 0) {
  console.error(`build-web: Node-only modules reached the browser bundle: ${leaked.join(', ')}`);
  process.exit(1);
}
for (const [file, out] of Object.entries(result.metafile.outputs)) {
  if (!file.endsWith('.map')) console.log(`build-web: ${relative(root, join(root, file))} ${(out.bytes / 1024).toFixed(0)} KiB`);
}

// Bundles the Node library and the CLI into dist/ (esbuild; npm packages stay external).
import { build } from 'esbuild';

const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', sourcemap: true, logLevel: 'warning' };
await build({ ...common, entryPoints: { cli: 'tools/cli.ts', node: 'src/node.ts', index: 'src/index.ts' }, outdir: 'dist' });

// The tfjs peer of `camgpu bench --explain` (a devDependency): tfjs-core, its gradients and the
// WebGPU backend bundled from their ES modules (one tfjs-core for kernels and gradients; its
// CommonJS build has no gradients), `webgpu` external. Skipped when tfjs is not installed.
let tfjs = true;
try {
  await import('@tensorflow/tfjs-core/package.json', { with: { type: 'json' } });
  await import('@tensorflow/tfjs-backend-webgpu/package.json', { with: { type: 'json' } });
} catch {
  tfjs = false;
}
if (tfjs) {
  await build({
    ...common, packages: undefined, external: ['webgpu'], mainFields: ['module', 'main'],
    // tfjs' node platform code calls require(): give the ES module bundle one.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    entryPoints: { 'bench-tfjs': 'tools/bench-tfjs.ts' }, outdir: 'dist',
  });
}

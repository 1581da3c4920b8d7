// Bundles the Node library and the CLI into dist/ (esbuild; npm packages stay external).
import { build } from 'esbuild';

const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', sourcemap: true, logLevel: 'warning' };
await build({ ...common, entryPoints: { cli: 'tools/cli.ts', node: 'src/node.ts', index: 'src/index.ts' }, outdir: 'dist' });

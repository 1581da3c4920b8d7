// `npm run fuzz -- --minutes M --seed S`: bundles the fuzzer's campaign runner (test/fuzz/) and runs it.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const out = fileURLToPath(new URL('../dist/fuzz-campaign.mjs', import.meta.url));
await build({ entryPoints: [fileURLToPath(new URL('../test/fuzz/campaign.ts', import.meta.url))], outfile: out, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' });
const r = spawnSync(process.execPath, ['--enable-source-maps', out, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);

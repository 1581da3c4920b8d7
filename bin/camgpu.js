#!/usr/bin/env node
// Entry point of the `camgpu` command; the CLI itself is bundled into dist/ by `npm run build`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  console.error('camgpu: dist/cli.js is missing; run `npm run build` (or scripts/setup.sh) first');
  process.exit(2);
}
const { main } = await import(cli.href);
process.exit(await main(process.argv.slice(2)));

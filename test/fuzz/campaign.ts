import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runCampaign, runSoak, summarize } from './harness.js';

/**
 * `npm run fuzz -- --minutes M --seed S [--out DIR] [--cases N] [--case-budget SEC]`: a
 * campaign of the structure-aware fuzzer, minimal reproducers of every failure written to
 * DIR (default fuzz-out/), a summary in DIR/summary.json. Exit status 1 when anything
 * crashed, hung, leaked or escaped untyped.
 *
 * `npm run fuzz -- --soak N [--seed S]`: N loads (failing or succeeding) in one process,
 * printing the pool's checked-out bytes and the RSS as they go.
 */
const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '2' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string', default: 'fuzz-out' },
    cases: { type: 'string' },
    'case-budget': { type: 'string', default: '30' },
    soak: { type: 'string' },
    'sample-every': { type: 'string', default: '1000' },
  },
});
const seed = Number(values.seed);
if (values.soak) {
  const loads = Number(values.soak);
  const t0 = performance.now();
  const samples = await runSoak(seed, loads, Number(values['sample-every']), 6 * 3600_000);
  for (const s of samples) console.log(`${s.loads} loads: rss ${s.rssMB} MB, heap ${s.heapMB} MB, pool in use ${s.inUseBytes} B, pool free ${(s.freeBytes / 2 ** 20).toFixed(1)} MB, ${JSON.stringify(s.statuses)}`);
  console.log(`soak: ${loads} loads in ${((performance.now() - t0) / 1000).toFixed(0)} s, max rss ${Math.max(...samples.map((s) => s.rssMB))} MB`);
  process.exit(samples.every((s) => s.inUseBytes === 0) ? 0 : 1);
}
mkdirSync(values.out!, { recursive: true });
const r = await runCampaign({
  seed,
  maxMs: Number(values.minutes) * 60_000,
  cases: values.cases ? Number(values.cases) : undefined,
  caseBudgetMs: Number(values['case-budget']) * 1000,
  out: values.out,
  log: (l) => console.log(l),
});
console.log(summarize(r));
writeFileSync(join(values.out!, 'summary.json'), `${JSON.stringify({ ...r, failures: r.failures.map((f) => ({ ...f, steps: undefined })) }, null, 2)}\n`);
process.exit(r.failures.length ? 1 : 0);

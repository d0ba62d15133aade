/**
 * npm run faults -- [--trials N] [--minutes M] [--scenario NAME…] [--seed S] [--verbose]
 * Runs the campaign against the built dist/ (with --minutes, each scenario
 * stops after the trial that ends past M minutes), prints the table and
 * `N trials, M violations`; exits 1 on a violation, with the seed and the
 * steps to replay it.
 */
import { parseArgs } from 'node:util';
import { runCampaign, summary, table } from './campaign.js';
import { allScenarios } from './scenarios.js';
import { assertBuilt } from '../../test/helpers/cli.js';

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '20' },
    minutes: { type: 'string' },
    scenario: { type: 'string', multiple: true },
    seed: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
  },
  allowPositionals: false,
});

const every = allScenarios();
if (values.list) {
  for (const s of every) console.log(`${s.name}\t${s.help}`);
  process.exit(0);
}
const trials = Number(values.trials);
if (!Number.isInteger(trials) || trials < 1) {
  console.error(`--trials ${values.trials}: a whole number of at least 1, please.`);
  process.exit(2);
}
const minutes = values.minutes === undefined ? undefined : Number(values.minutes);
if (minutes !== undefined && !(minutes > 0)) {
  console.error(`--minutes ${values.minutes}: a number of minutes above 0, please.`);
  process.exit(2);
}
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!Number.isInteger(seed)) {
  console.error(`--seed ${values.seed}: a whole number, please.`);
  process.exit(2);
}
const wanted = values.scenario ?? [];
const unknown = wanted.filter((n) => !every.some((s) => s.name === n || s.name.startsWith(`${n}/`)));
if (unknown.length) {
  console.error(`No scenario ${unknown.join(', ')}: there are ${every.map((s) => s.name).join(', ')}.`);
  process.exit(2);
}
const scenarios = wanted.length ? every.filter((s) => wanted.some((n) => s.name === n || s.name.startsWith(`${n}/`))) : every;

assertBuilt();
console.log(`fault campaign: ${trials} trials per scenario, seed ${seed}`);
const results = await runCampaign({ trials, budgetMs: minutes === undefined ? undefined : minutes * 60_000, seed, scenarios, log: values.verbose ? (l) => console.log(l) : undefined });
console.log(table(results).join('\n'));
console.log(summary(results));
const failed = results.filter((r) => r.violations > 0);
for (const r of failed) {
  for (const f of r.failures) {
    console.log(`\n${r.scenario}, trial ${f.trial}: replay with npm run faults -- --scenario ${r.scenario} --seed ${seed} --trials ${f.trial}`);
    for (const s of f.steps) console.log(`  step: ${s}`);
    for (const v of f.violations) console.log(`  VIOLATION: ${v}`);
  }
}
process.exit(failed.length ? 1 : 0);

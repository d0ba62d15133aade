/**
 * A trial that hangs does not hold the campaign (nor CI) until its end: past
 * the campaign's hang time it is a violation, what waits where is logged,
 * the processes it started are killed, and the next scenario runs.
 */
import test from 'ava';
import { execa } from 'execa';
import { runCampaign, type Scenario } from '../../bench/faults/campaign.js';
import { descendants } from '../helpers/procs.js';

const hangs: Scenario = {
  name: 'hangs',
  help: 'a trial whose program never ends',
  missing: async () => null,
  setup: async () => ({
    trial: async () => {
      await execa('sleep', ['600']);
      return { steps: ['slept'], violations: [], recovered: true, recoveryMs: 1 };
    },
  }),
};

const passes: Scenario = {
  name: 'passes',
  help: 'a trial that ends at once',
  missing: async () => null,
  setup: async () => ({ trial: async () => ({ steps: ['done'], violations: [], recovered: true, recoveryMs: 1 }) }),
};

test('a hung trial is a violation, its processes are killed and logged, and the next scenario still runs', async (t) => {
  const lines: string[] = [];
  const results = await runCampaign({ trials: 3, seed: 1, scenarios: [hangs, passes], hangMs: 1_000, log: (l) => lines.push(l) });
  const [hung, next] = results;
  t.is(hung.trials, 1, 'the hung scenario stops at its first trial');
  t.is(hung.recovered, 0);
  t.deepEqual(hung.failures[0]?.violations, ['hangs #1 hung: not done after 1 s']);
  t.true(
    lines.some((l) => /^ {2}\d+ \(parent \d+\) [SR].*: sleep 600$/.test(l)),
    `the sleeping program is shown: ${lines.join('\n')}`,
  );
  t.false(
    descendants().some((p) => p.comm === 'sleep'),
    'the sleep was killed',
  );
  t.is(next.trials, 3);
  t.is(next.violations, 0);
});

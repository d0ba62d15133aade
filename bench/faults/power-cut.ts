/**
 * Scenario: a power cut at a random instant of a run (fs driver, local),
 * the appliance's home on a disk whose power is cut (test/helpers/
 * power-cut.ts): from that instant nothing reaches the disk and what no sync
 * forced out is lost; the run's processes die with the power. Then the disk
 * comes back and the next run goes as the scheduler would start it.
 *
 * Checked, besides kill-9's invariants (the destination a complete source
 * snapshot right after, the next run succeeds and carries every write, no
 * leftovers): the source's files are as they were (synced before the run: a
 * cut may take what syncsh was writing, never the operator's data); a run
 * that had reported success before the cut is all there; and the newest
 * snapshot of each side reads back whole (a full send of it into a scratch
 * dataset, which checks every block's hash): a store whose index names pack
 * bytes the cut took is damaged for that snapshot and every later one.
 */
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Fixture } from '../../test/peer/_fixture.js';
import { makePowerCutDisk, powerCutMissing } from '../../test/helpers/power-cut.js';
import { killAll } from '../../test/helpers/procs.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';
import { firstRun, descendants, destination, differs, makeWorld, oneOf, readable, readBackWhole, recover, source, startRun, writeRandomly, type Tree } from './world.js';

/** fsync every file and directory under `dir` */
async function fsyncTree(dir: string): Promise<void> {
  const sync = async (p: string) => {
    const fh = await open(p, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  };
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) if (e.isFile() || e.isDirectory()) await sync(path.join(e.parentPath, e.name));
  await sync(dir);
}

export function powerCutScenario(): Scenario {
  return {
    name: 'power-cut/fs/local',
    help: 'a power cut of the disk holding the appliance at a random instant of a run (or right after it reported success), fs driver, local-to-local',
    missing: powerCutMissing,
    async setup(f: Fixture): Promise<ScenarioRun> {
      const disk = await makePowerCutDisk(f, 1024);
      const w = await makeWorld(f, 'local', { homesUnder: disk.dir });
      let estimate = await firstRun(w);
      let last: Tree = await destination(w);
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          const steps = [await writeRandomly(w, rng)];
          // The operator's files reached the disk before the run: what the cut may take is syncsh's to guard. Each
          // file fsynced, not the file system: a syncfs would also flush what syncsh wrote and did not sync itself.
          await fsyncTree(w.srcDir);
          const expected = await source(w);
          // a third of the cuts after the run's end: what it reported done must be there
          const delay = Math.round(rng.next() * estimate * 1.5);
          const run = startRun(w);
          const started = Date.now();
          let exited = false;
          void run.then(() => (exited = true));
          while (!exited && Date.now() - started < delay) await new Promise((r) => setTimeout(r, 2));
          const below = exited ? [] : descendants(run.pid!);
          await disk.cut();
          const at = Date.now() - started;
          // the power takes every process of the run (some may have died of the cut's I/O errors already)
          if (!exited) killAll([run.pid!, ...below.map((d) => d.pid)]);
          const r = await run;
          const reported = r.exitCode === 0;
          steps.push(reported ? `power cut at ${at} ms, after the run reported success` : `power cut at ${at} ms, mid-run (${r.signal ?? `exit ${r.exitCode}`})`);
          await disk.restore();
          const violations: string[] = [];
          const src = differs(await source(w), expected);
          if (src.length) violations.push(`the cut changed the source's files: ${src.slice(0, 4).join('; ')}`);
          const seen = await readable(w, 'right after the power came back');
          const torn = typeof seen === 'string' ? seen : oneOf(seen, reported ? [expected] : [last, expected], reported ? 'a run that reported success, after the cut,' : 'right after the cut, the destination');
          if (torn) violations.push(torn);
          const next = await recover(w, expected);
          violations.push(...next.violations);
          const recovered = !next.violations.some((v) => v.startsWith('the next run failed'));
          if (recovered) {
            for (const [side, x, ds] of [
              ['source', w.src, w.srcDataset],
              ['destination', w.dst, w.dstDataset],
            ] as const) {
              const back = await readBackWhole(x, ds);
              const wrong = typeof back === 'string' ? back : oneOf(back, [expected], `the ${side}'s newest snapshot read back whole`);
              if (wrong) violations.push(wrong);
            }
            estimate = Math.round(estimate * 0.7 + next.ms * 0.3);
            last = expected;
          }
          steps.push(recovered ? `next run OK in ${next.ms} ms` : 'next run failed');
          return { steps, violations, recovered, recoveryMs: recovered ? next.ms : null };
        },
      };
    },
  };
}

/**
 * Scenario (d): over OpenSSH into a network namespace (test/peer/_fixture.ts
 * sshPair), at a random instant of a run the link is cut (veth down) or the
 * receiving agent stalls (SIGSTOP), for a random while, then restored. The
 * link is throttled so that a run's stream lasts long enough to be hit.
 * After the receiver settles (its dataset lock released) the destination is
 * one complete snapshot; the next run lands without an operator.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { netnsMissing } from '../../test/helpers/netns.js';
import { sshdMissing } from '../../test/helpers/sshd.js';
import { sshPair, until, type Fixture } from '../../test/peer/_fixture.js';
import { Layout } from '../../src/services/storage/fs/layout.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';
import { makeStores, storeMissing } from './stores.js';
import { firstRun, destination, makeWorld, oneOf, recover, source, startRun, writeRandomly, type DriverName, type Tree } from './world.js';

/** the agents serving `home` (under the namespace's sshd) */
function agentsOf(home: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (cmd.includes('agent') && cmd.includes(home)) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

const signal = (pids: number[], sig: NodeJS.Signals) => {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      /* gone */
    }
  }
};

export function linkScenario(driver: DriverName = 'fs'): Scenario {
  return {
    name: `link-cut-stall/${driver}/ssh`,
    help: `veth down or SIGSTOP of the receiving agent at a random instant, over OpenSSH in a network namespace, then restored (${driver} driver)`,
    missing: async () => (driver === 'fs' ? null : await storeMissing(driver)) ?? (await sshdMissing()) ?? (await netnsMissing()),
    async setup(f: Fixture): Promise<ScenarioRun> {
      const stores = driver === 'fs' ? {} : { driver, ...(await makeStores(f, driver)) };
      const pair = await sshPair(f);
      const { b, link } = pair;
      const w = await makeWorld(f, 'peer', { over: pair, ...stores });
      await link.throttle('80mbit');
      f.teardown(() => link.throttle(null));
      let estimate = await firstRun(w);
      let last: Tree = await destination(w);
      // the receiver has settled once its agents are gone, and on fs its dataset lock released
      const lock = driver === 'fs' ? new Layout(path.join(b.home, 'fs')).lockFile(w.dstDataset) : null;
      const settled = () => !agentsOf(b.home).length && !(lock && existsSync(lock));
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          const steps = [await writeRandomly(w, rng, 12)];
          const expected = await source(w);
          const fault = rng.pick(['cut', 'stall'] as const);
          const at = Math.round(rng.next() * estimate);
          const lasting = rng.int(200, 8000);
          const run = startRun(w);
          let exited = false;
          void run.then(() => (exited = true));
          await new Promise((r) => setTimeout(r, at));
          let stopped: number[] = [];
          if (fault === 'cut') await link.down();
          else {
            // the agents start late in a run (connection, start-up): a stall needs one to hit
            while (!exited && !agentsOf(b.home).length) await new Promise((r) => setTimeout(r, 5));
            await new Promise((r) => setTimeout(r, rng.int(0, 1500)));
            signal((stopped = agentsOf(b.home)), 'SIGSTOP');
          }
          await new Promise((r) => setTimeout(r, lasting));
          if (fault === 'cut') await link.up();
          else signal(stopped, 'SIGCONT');
          const r = await run;
          steps.push(`${fault === 'cut' ? 'link cut' : `agents ${stopped.join(',') || '(none yet)'} stopped`} at ${at} ms for ${lasting} ms: the run ${r.exitCode === 0 ? 'landed' : `failed: ${String(r.stderr).trim().split('\n').at(-1)}`}`);
          const violations: string[] = [];
          try {
            await until('the receiver to settle', settled, 60_000);
          } catch (error) {
            violations.push(`a minute after the fault the receiver's agents are still running or its dataset lock is held: ${(error as Error).message}`);
          }
          const torn = oneOf(await destination(w), [last, expected], 'once the receiver settled, the destination');
          if (torn) violations.push(torn);
          const next = await recover(w, expected);
          violations.push(...next.violations);
          const recovered = !next.violations.some((v) => v.startsWith('the next run failed'));
          if (recovered) {
            last = expected;
            estimate = Math.round(estimate * 0.7 + next.ms * 0.3);
          }
          steps.push(recovered ? `next run OK in ${next.ms} ms` : 'next run failed');
          return { steps, violations, recovered, recoveryMs: recovered ? next.ms : null };
        },
      };
    },
  };
}

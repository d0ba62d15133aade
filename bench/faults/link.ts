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
import { folderWith, sshPair, until, type Fixture } from '../../test/peer/_fixture.js';
import { Layout } from '../../src/services/storage/fs/layout.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';
import { destination, oneOf, recover, source, startRun, writeRandomly, type Tree, type World } from './world.js';

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

export function linkScenario(): Scenario {
  return {
    name: 'link-cut-stall/fs/ssh',
    help: 'veth down or SIGSTOP of the receiving agent at a random instant, over OpenSSH in a network namespace, then restored',
    missing: async () => (await sshdMissing()) ?? (await netnsMissing()),
    async setup(f: Fixture): Promise<ScenarioRun> {
      const pair = await sshPair(f);
      const { a, b, link } = pair;
      const bound = await a.cli(`${pair.bindLine} -y`);
      if (bound.exitCode !== 0) throw new Error(String(bound.stderr));
      await folderWith(b, 'tank', {});
      await folderWith(a, 'tank', {});
      const srcDir = await folderWith(a, 'tank/docs', {});
      const created = await a.cli('create auto-sync --from-fs fs:tank/docs --to-host beta --to-fs fs:tank/docs --type hour --period 1 --recursive no --keep-src 3 --keep-dst 3 -y');
      if (created.exitCode !== 0) throw new Error(String(created.stderr));
      const name = /auto-sync:(\S+?):/.exec(String(created.stdout))![1];
      const w: World = { kind: 'peer', driver: 'fs', srcDataset: 'tank/docs', src: a, dst: b, name, srcDir, dstDataset: 'tank/docs', files: [] };
      await link.throttle('80mbit');
      f.teardown(() => link.throttle(null));
      const t0 = Date.now();
      const first = await startRun(w);
      if (first.exitCode !== 0) throw new Error(`the first run failed: ${first.stderr}`);
      let estimate = Date.now() - t0;
      let last: Tree = await destination(w);
      const lock = new Layout(path.join(b.home, 'fs')).lockFile('tank/docs');
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
            await until('the receiver to settle', () => !existsSync(lock), 60_000);
          } catch (error) {
            violations.push(`the receiver still holds its lock a minute after the fault: ${(error as Error).message}`);
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

/**
 * Scenario (a): kill -9 at a random instant of a run: of the CLI process
 * running it, of the peer's agent (the receiving side, to a local-bind peer),
 * or of the receive mid-commit (fs: after a random number of its journal
 * steps, SYNCSH_FS_CRASH_AFTER_STEPS, in the local case where the CLI
 * receives; zfs and btrfs: the `zfs receive` / `btrfs receive` program,
 * at the first instant it runs after the random delay).
 */
import type { Fixture } from '../../test/peer/_fixture.js';
import { processAlive } from '../../src/services/lock.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';
import { makeStores, storeMissing } from './stores.js';
import { firstRun, commitPending, descendants, PENDING_COMMIT, destination, makeWorld, readable, oneOf, recover, source, startRun, writeRandomly, type DriverName, type Tree } from './world.js';

type Target = 'cli' | 'agent' | 'commit' | 'receiver';

/** the driver's receiving program, in a process list */
const RECEIVER = /(^|\/)(zfs|btrfs) receive\b/;
const ZFS_STREAM = /(^|\/)zfs (send|receive)\b/;

async function gone(pids: number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  let left = pids.filter(processAlive);
  while (left.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = left.filter(processAlive);
  }
  return left;
}

export function killScenario(kind: 'local' | 'peer', driver: DriverName = 'fs'): Scenario {
  const targets: Target[] = driver === 'fs' ? (kind === 'local' ? ['cli', 'cli', 'commit'] : ['cli', 'agent']) : kind === 'local' ? ['cli', 'cli', 'receiver'] : ['cli', 'agent', 'receiver'];
  return {
    name: `kill-9/${driver}/${kind}`,
    help: `kill -9 at a random instant of a run (${targets.join(', ')}), ${driver} driver, ${kind === 'local' ? 'local-to-local' : 'to a local-bind peer'}`,
    missing: async () => (driver === 'fs' ? null : storeMissing(driver)),
    async setup(f: Fixture): Promise<ScenarioRun> {
      const w = await makeWorld(f, kind, driver === 'fs' ? {} : { driver, ...(await makeStores(f, driver)) });
      let estimate = await firstRun(w);
      let last: Tree = await destination(w);
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          const steps = [await writeRandomly(w, rng)];
          const expected = await source(w);
          const target = rng.pick(targets);
          const delay = Math.round(rng.next() * estimate * 1.1);
          const crashAfter = rng.int(0, 8);
          const run = startRun(w, target === 'commit' ? { SYNCSH_FS_CRASH_AFTER_STEPS: String(crashAfter) } : {});
          const started = Date.now();
          const seen = new Set<number>();
          let killed = '';
          if (target !== 'commit') {
            let exited = false;
            void run.then(() => (exited = true));
            // the processes that may go on after their CLI is killed: its agents, and on zfs its
            // zfs send and receive (orphaned, a receive may still finish), which the reader waits for
            const note = () => {
              for (const d of descendants(run.pid!)) if (/ agent\b/.test(d.cmd) || (driver === 'zfs' && ZFS_STREAM.test(d.cmd))) seen.add(d.pid);
            };
            while (!exited && Date.now() - started < delay) {
              note();
              await new Promise((r) => setTimeout(r, 2));
            }
            if (!exited) {
              if (target === 'cli') {
                note();
                process.kill(run.pid!, 'SIGKILL');
                killed = 'the CLI';
              } else if (target === 'receiver') {
                // the receiving program may not have started yet: it is killed the moment it shows
                while (!exited && !killed) {
                  const receiver = descendants(run.pid!).find((d) => RECEIVER.test(d.cmd));
                  if (receiver) {
                    process.kill(receiver.pid, 'SIGKILL');
                    killed = `${receiver.cmd.split(' ').slice(0, 2).join(' ')} (first seen at ${Date.now() - started} ms)`;
                  } else await new Promise((r) => setTimeout(r, 2));
                }
              } else {
                const agents = descendants(run.pid!).filter((d) => / agent\b/.test(d.cmd));
                if (agents.length) {
                  const victim = rng.pick(agents);
                  process.kill(victim.pid, 'SIGKILL');
                  killed = `the agent (${victim.cmd.replace(/.*agent/, 'agent').split(' --home')[0]})`;
                }
              }
            }
          }
          const r = await run;
          steps.push(
            target === 'commit' ? `crash after ${crashAfter} commit steps: ${r.signal ?? `exit ${r.exitCode}`}` : `kill -9 of ${killed || `the ${target} (too late: the run had ended)`} at ${delay} ms: ${r.signal ?? `exit ${r.exitCode}`}`,
          );
          const violations: string[] = [];
          // an agent may finish a receive that had fully arrived; one that outlives its run by long is a leak.
          // On zfs the reader looks once it is done: zfs switches a received dataset under its mount (and
          // zfs-fuse's cached lookups stay stale until the driver remounts), so a walk of the tree that
          // straddles that instant sees files of both snapshots, however atomic the receive itself is;
          // and a reader with files open in it then makes zfs-fuse detach the mount instead, after which
          // it calls the dataset busy for good (seed 402, trial 3, when only agents were waited for).
          const settleFirst = driver === 'zfs';
          const lingering = settleFirst ? await gone([...seen], 30_000) : [];
          const pending = commitPending(w);
          const seenNow = await readable(w, settleFirst ? "once the killed run's agents and zfs programs ended" : 'right after the fault');
          const torn = typeof seenNow === 'string' ? seenNow : oneOf(seenNow, [last, expected], 'right after the fault, the destination');
          if (torn) violations.push(pending ? `${torn} ${PENDING_COMMIT}` : torn);
          if (!settleFirst) lingering.push(...(await gone([...seen], 30_000)));
          if (lingering.length) {
            violations.push(`processes of the killed run (agents, zfs send or receive) ${lingering.join(', ')} outlived the killed run by 30 s`);
            for (const pid of lingering) process.kill(pid, 'SIGKILL');
          }
          const next = await recover(w, expected);
          violations.push(...next.violations);
          const recovered = !next.violations.some((v) => v.startsWith('the next run failed'));
          if (recovered) {
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

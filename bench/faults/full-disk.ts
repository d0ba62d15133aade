/**
 * Scenario (c): the destination fills up at a random point. The peer's fs
 * pools sit on a small tmpfs (test/helpers/small-fs.ts); before each run a
 * filler leaves it a random amount of room, from none to more than the
 * delta needs, so ENOSPC strikes anywhere in the receive (or not at all).
 * The run either lands or fails with the destination at its previous
 * snapshot; once the filler is gone, the next run lands without an operator.
 * On zfs and btrfs the destination is a small pool (64 MiB) or btrfs image
 * (120 MiB) of its own (stores.ts), local to local or to a local-bind peer,
 * the filler in its root.
 */
import { rmSync, statfsSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import path from 'node:path';
import { fill, smallFs, smallFsMissing } from '../../test/helpers/small-fs.js';
import type { Fixture } from '../../test/peer/_fixture.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';
import { makeStores, storeMissing } from './stores.js';
import { firstRun, destination, makeWorld, oneOf, readable, recover, source, startRun, writeRandomly, type Tree } from './world.js';

const MiB = 1024 * 1024;
/** what the driver says when the destination is full */
const FULL = /No space left|ran out of space/;

const free = (dir: string) => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

/** the file system's free space once what was freed is committed: synced, then read until it holds still */
async function settled(dir: string): Promise<number> {
  await execa('sync', ['-f', dir]);
  let last = free(dir);
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 250));
    const now = free(dir);
    if (now === last) return now;
    last = now;
  }
  return last;
}

export function fullDiskScenario(driver: 'fs' | 'zfs' | 'btrfs' = 'fs', kind: 'local' | 'peer' = driver === 'fs' ? 'peer' : 'local'): Scenario {
  const where = driver === 'fs' ? 'a 96 MiB tmpfs' : driver === 'zfs' ? 'a 64 MiB zfs-fuse pool' : 'a 120 MiB btrfs image';
  return {
    name: `full-disk/${driver}/${kind}`,
    help: `the destination (${where}, ${kind === 'peer' ? 'under a local-bind peer' : 'local'}) left a random amount of room before a run`,
    missing: async () => (driver === 'fs' ? smallFsMissing() : storeMissing(driver)),
    async setup(f: Fixture): Promise<ScenarioRun> {
      let small: string;
      let w;
      if (driver === 'fs') {
        // the peer's whole fs home on the small file system (locally that would fill the source too)
        if (kind === 'local') throw new Error('full-disk on the fs driver is a peer scenario');
        small = await smallFs(f, '96m');
        w = await makeWorld(f, 'peer', { peerFsRoot: small });
      } else {
        const stores = await makeStores(f, driver, (driver === 'zfs' ? 64 : 120) * MiB);
        small = stores.dstRoot;
        w = await makeWorld(f, kind, { driver, ...stores });
      }
      await firstRun(w);
      let last: Tree = await destination(w);
      const filler = path.join(small, 'filler');
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          const steps = [await writeRandomly(w, rng, 10)];
          const expected = await source(w);
          // room for: nothing, a little, about the delta, plenty
          fill(filler);
          if (driver === 'fs') {
            rmSync(filler);
            const room = rng.pick([0, 4096, rng.int(0, 2 << 20), rng.int(0, 12 << 20)]);
            writeFileSync(filler, Buffer.alloc(Math.max(0, free(small) - room), 1));
          } else {
            // zfs and btrfs free a file's space only at their next commit: the filler is cut down to leave the room, not rewritten
            const room = rng.pick([0, 4096, rng.int(0, 2 << 20), rng.int(0, 12 << 20)]);
            await settled(small);
            truncateSync(filler, Math.max(0, statSync(filler).size - room));
            await settled(small);
          }
          steps.push(`left ${free(small)} bytes free`);
          const r = await startRun(w);
          const said = String(r.stderr).trim().split('\n').at(-1) ?? '';
          steps.push(r.exitCode === 0 ? 'the run landed' : `the run failed: ${said}`);
          const violations: string[] = [];
          const now = await readable(w, 'after the run');
          const torn = typeof now === 'string' ? now : oneOf(now, r.exitCode === 0 ? [expected] : [last], r.exitCode === 0 ? 'after a successful run, the destination' : 'after a run failed for space, the destination');
          if (torn) violations.push(torn);
          if (r.exitCode !== 0 && !FULL.test(said)) violations.push(`the failure does not say the disk is full: ${said}`);
          rmSync(filler);
          if (driver !== 'fs') await settled(small);
          const next = await recover(w, expected);
          violations.push(...next.violations);
          const recovered = !next.violations.some((v) => v.startsWith('the next run failed'));
          if (recovered) last = expected;
          steps.push(recovered ? `space freed; next run OK in ${next.ms} ms` : 'space freed; next run failed');
          return { steps, violations, recovered, recoveryMs: recovered ? next.ms : null };
        },
      };
    },
  };
}

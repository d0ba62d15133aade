/**
 * Scenario: kill -9 of a run of a zvol (fs:tank/vm1 => fs:tank/copy, local):
 * of the CLI at a random instant, or of its receive at a commit phase, half
 * way through patching the image, or after a random number of commit steps.
 * Right after, a reader of the destination (the zvol opened as the NBD
 * daemon opens it) finds exactly the previous or the new source image, byte
 * for byte; the next run brings the new one and leaves nothing behind.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServices } from '../../src/services/index.js';
import { makeAppliance, type Appliance, type Fixture } from '../../test/peer/_fixture.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';
import { firstRun, leftovers, startRun, type World } from './world.js';

const CHUNK = 64 * 1024;
const SIZE = 4 * 1024 * 1024;
const KILLS = ['cli', 'fs.commit.place', 'fs.zvol.patch.half', 'fs.commit.meta', 'fs.commit.register', 'steps'] as const;

/** the zvol's content as an NBD client would read it now (opened, read, closed), as a sha256 */
async function imageHash(x: Appliance, dataset: string): Promise<string | null> {
  const services = createServices(x.env);
  try {
    const fs = await services.storage.usable('fs');
    if (!(await fs.getDataset(dataset))) return null;
    const v = await fs.openVolume!(dataset, { readOnly: true });
    try {
      return createHash('sha256')
        .update(await v.read(0, v.size))
        .digest('hex');
    } finally {
      await v.close();
    }
  } finally {
    await services.peers.close();
  }
}

/** random data all over the source zvol */
async function fill(x: Appliance): Promise<void> {
  const services = createServices(x.env);
  try {
    const v = await (await services.storage.usable('fs')).openVolume!('tank/vm1');
    await v.write(0, randomBytes(SIZE), { fua: true });
    await v.close();
  } finally {
    await services.peers.close();
  }
}

/** rewrite a few random chunks (some partly, some zeroed) of the source zvol */
async function writeChunks(x: Appliance, rng: Rng): Promise<string> {
  const services = createServices(x.env);
  try {
    const v = await (await services.storage.usable('fs')).openVolume!('tank/vm1');
    const did: string[] = [];
    try {
      for (let i = rng.int(1, 12); i > 0; i--) {
        const c = rng.int(0, SIZE / CHUNK - 1);
        const how = rng.pick(['whole', 'whole', 'part', 'zero'] as const);
        if (how === 'whole') await v.write(c * CHUNK, randomBytes(CHUNK), { fua: false });
        else if (how === 'part') await v.write(c * CHUNK + 4096 * rng.int(0, 15), randomBytes(4096), { fua: false });
        else await v.writeZeroes(c * CHUNK, CHUNK, { fua: false, noHole: false });
        did.push(`${how} ${c}`);
      }
      await v.flush();
    } finally {
      await v.close();
    }
    return `wrote chunks: ${did.join(', ')}`;
  } finally {
    await services.peers.close();
  }
}

export function zvolKillScenario(): Scenario {
  return {
    name: 'kill-9/fs-zvol/local',
    help: 'kill -9 of a zvol run (the CLI at a random instant, or its receive at a commit phase or mid-patch), fs driver, local-to-local',
    missing: async () => null,
    async setup(f: Fixture): Promise<ScenarioRun> {
      const a = makeAppliance(f, 'alpha');
      let name = '';
      for (const line of [
        'create folder fs:tank',
        `create zvol fs:tank/vm1 --size ${SIZE / 1024}K --block-size 4K`,
        'create auto-sync --from-fs fs:tank/vm1 --to-fs fs:tank/copy --type hour --period 1 --recursive no --keep-src 3 --keep-dst 3 -y',
      ]) {
        const r = await a.cli(line);
        if (r.exitCode !== 0) throw new Error(`${line}: ${r.stderr}`);
        name = /auto-sync:(\S+?):/.exec(String(r.stdout))?.[1] ?? name;
      }
      const w: World = { kind: 'local', driver: 'fs', srcDataset: 'tank/vm1', src: a, dst: a, name, srcDir: '', dstDataset: 'tank/copy', files: [] };
      await fill(a);
      let estimate = await firstRun(w);
      let last = await imageHash(a, 'tank/copy');
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          const steps = [await writeChunks(a, rng)];
          const expected = await imageHash(a, 'tank/vm1');
          const kill = rng.pick(KILLS);
          const crashAfter = rng.int(0, 6);
          const env = kill === 'cli' ? {} : kill === 'steps' ? { SYNCSH_FS_CRASH_AFTER_STEPS: String(crashAfter) } : { SYNCSH_FAILPOINTS: kill };
          const delay = Math.round(rng.next() * estimate * 1.1);
          const run = startRun(w, env);
          if (kill === 'cli') {
            let exited = false;
            void run.then(() => (exited = true));
            const started = Date.now();
            while (!exited && Date.now() - started < delay) await new Promise((r) => setTimeout(r, 2));
            if (!exited) process.kill(run.pid!, 'SIGKILL');
          }
          const r = await run;
          steps.push(`${kill === 'cli' ? `kill -9 of the CLI at ${delay} ms` : kill === 'steps' ? `crash after ${crashAfter} commit steps` : `kill -9 at ${kill}`}: ${r.signal ?? `exit ${r.exitCode}`}`);
          const violations: string[] = [];
          const seen = await imageHash(a, 'tank/copy');
          if (seen !== last && seen !== expected) violations.push(`right after the fault, a reader of the destination zvol finds neither the previous nor the new source image (sha256 ${seen})`);
          const t1 = Date.now();
          const next = await startRun(w);
          const ms = Date.now() - t1;
          if (next.exitCode !== 0) {
            violations.push(`the next run failed (exit ${next.exitCode ?? next.signal}): ${String(next.stderr).trim().split('\n').slice(-3).join(' ')}`);
            return { steps, violations, recovered: false, recoveryMs: null };
          }
          const after = await imageHash(a, 'tank/copy');
          if (after !== expected) violations.push(`after the next successful run the destination zvol is not the source image the run began with (sha256 ${after}, not ${expected})`);
          violations.push(...leftovers(a));
          estimate = Math.round(estimate * 0.7 + ms * 0.3);
          last = after;
          steps.push(`next run OK in ${ms} ms`);
          return { steps, violations, recovered: true, recoveryMs: ms };
        },
      };
    },
  };
}

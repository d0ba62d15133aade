/**
 * Scenario: kill -9 of `syncsh daemon` while a real NBD client (qemu-io)
 * writes to a zvol it serves, with FUA and FLUSH at random, then a restart.
 * Invariant (a block device's, issue 11): every write acknowledged with FUA,
 * or before an acknowledged FLUSH, is there afterwards; every 4 KiB block
 * holds its old data or the data of one write to it, never a mix.
 * The writer and its model are block-writes.ts's.
 *
 * `power-cut/nbd-daemon/fs`: the same with the appliance's home on a disk
 * whose power is cut instead (test/helpers/power-cut.ts): what the page cache
 * held is lost with the daemon, as in a power loss; the same invariant, and a
 * full run of the zvol to a copy afterwards must give the image as read back
 * (the dirty map, after the cut, still names every chunk that changed).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { acknowledged, allowedValues, BLOCK, BLOCKS, check, commands, readBack, spanEstimate, writer } from './block-writes.js';
import { BIN } from '../../test/helpers/cli.js';
import { daemonLines } from '../../test/helpers/daemon.js';
import { unixUri } from '../../test/helpers/nbd.js';
import { missingCommand } from '../../test/helpers/system.js';
import { makePowerCutDisk, powerCutMissing } from '../../test/helpers/power-cut.js';
import { makeAppliance, type Appliance, type Fixture } from '../../test/peer/_fixture.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';

const ZVOL = 'fs:tank/vm1';
const COPY = 'tank/vm1-copy';

function startDaemon(a: Appliance) {
  const child = execa(process.execPath, [BIN, 'daemon'], { env: a.env, extendEnv: false, reject: false });
  const lines = daemonLines(child);
  return { child, listening: lines.wait(/NBD server listening on /, 0, 60_000) };
}

/** a run of the zvol to a copy carries the image as read back: the dirty map missed no chunk; the violations */
async function replicatesAsRead(a: Appliance, image: Buffer, service: { name?: string }): Promise<string[]> {
  if (!service.name) {
    const r = await a.cli(`create auto-sync --from-fs ${ZVOL} --to-fs fs:${COPY} --type hour --period 1 --recursive no --keep-src 2 --keep-dst 2 -y`);
    if (r.exitCode !== 0) return [`creating the check service failed: ${r.stderr}`];
    service.name = /auto-sync:(\S+?):/.exec(String(r.stdout))![1];
  }
  // the daemon runs a new service at once, and on its schedule: wait for such a run to end
  let run = await a.cli(`run auto-sync :${service.name}`);
  for (const deadline = Date.now() + 60_000; run.exitCode !== 0 && / is busy: /.test(String(run.stderr)) && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 200));
    run = await a.cli(`run auto-sync :${service.name}`);
  }
  if (run.exitCode !== 0) return [`a run of the zvol after the power cut failed: ${String(run.stderr).trim()}`];
  const copy = await readFile(path.join(a.live(COPY), 'volume.img'));
  for (let at = 0; at < image.length; at += BLOCK) {
    const got = copy.subarray(at, at + BLOCK);
    if (!(got.length ? got : Buffer.alloc(BLOCK)).equals(image.subarray(at, at + BLOCK))) return [`a run after the power cut did not carry block ${at / BLOCK} of the zvol: the dirty map missed a change`];
  }
  return [];
}

export function nbdKillScenario(fault: 'kill' | 'power-cut' = 'kill'): Scenario {
  const cut = fault === 'power-cut';
  return {
    name: cut ? 'power-cut/nbd-daemon/fs' : 'kill-9/nbd-daemon/fs',
    help: cut
      ? 'power cut of the disk under syncsh daemon while qemu-io writes to a zvol it serves (FUA, flush), then a restart: every durable write there, no block torn, a run of the zvol carries what was read back'
      : 'kill -9 of syncsh daemon while qemu-io writes to a zvol it serves (FUA, flush), then a restart: every durable write there, no block torn',
    missing: async () => {
      const m = await missingCommand('qemu-io', 'nbdcopy', 'stdbuf');
      if (m) return `${m} is not installed (Debian packages qemu-utils, libnbd-bin)`;
      return cut ? powerCutMissing() : null;
    },
    async setup(f: Fixture): Promise<ScenarioRun> {
      const disk = cut ? await makePowerCutDisk(f) : null;
      const a = makeAppliance(f, 'alpha', {}, disk?.dir);
      for (const line of ['create folder fs:tank', `create zvol ${ZVOL} --size ${(BLOCKS * BLOCK) / 1024}K --block-size 4K`]) {
        const r = await a.cli(line);
        if (r.exitCode !== 0) throw new Error(`${line}: ${r.stderr}`);
      }
      const uri = unixUri(path.join(a.home, 'run', 'nbd.sock'), ZVOL);
      let daemon: ResultPromise | null = null;
      f.teardown(async () => {
        daemon?.kill('SIGKILL');
        await daemon;
      });
      const start = async () => {
        const d = startDaemon(a);
        daemon = d.child;
        await d.listening;
      };
      await start();
      let old: number[] = new Array(BLOCKS).fill(0);
      const service: { name?: string } = {};
      const estimate = spanEstimate();
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          const cmds = commands(rng, rng.int(20, 160));
          const delay = Math.round(rng.next() * estimate.ms * 1.2);
          const steps = [`${cmds.length} commands (${cmds.filter((c) => c.kind === 'flush').length} flushes, ${cmds.filter((c) => c.kind === 'write' && c.fua).length} FUA writes)`];
          // The kill lands anywhere in the client's writes (most of its run is start-up): timed from its first acknowledgement, one trial in ten before it.
          const client = writer(uri, cmds);
          const { finished } = await client.until(delay, rng.next() < 0.1);
          const victim = daemon!;
          if (disk) await disk.cut();
          victim.kill('SIGKILL');
          const killedAt = Date.now();
          await victim;
          if (disk) await disk.restore();
          const r = await client.io;
          if (finished && r.exitCode === 0) estimate.learn(client.span());
          const acked = acknowledged(cmds, String(r.stdout));
          steps.push(`${disk ? 'power cut' : 'kill -9 of the daemon'} at ${killedAt - client.started} ms${finished ? ' (the client had finished)' : ''}: ${acked} of ${cmds.filter((c) => c.kind === 'write').length} writes acknowledged`);
          const violations: string[] = [];
          try {
            await start();
          } catch (error) {
            violations.push(`the daemon did not serve again after the kill: ${(error as Error).message}`);
            return { steps, violations, recovered: false, recoveryMs: null };
          }
          const image = await readBack(uri);
          if (typeof image === 'string') {
            violations.push(`reading the zvol back after the restart failed: ${image}`);
            return { steps, violations, recovered: false, recoveryMs: null };
          }
          const recoveryMs = Date.now() - killedAt;
          const result = check(image, allowedValues(old, cmds, acked));
          violations.push(...result.violations.slice(0, 8));
          old = result.values;
          if (disk) violations.push(...(await replicatesAsRead(a, image, service)));
          steps.push(`restarted and read back in ${recoveryMs} ms`);
          return { steps, violations, recovered: true, recoveryMs };
        },
      };
    },
  };
}

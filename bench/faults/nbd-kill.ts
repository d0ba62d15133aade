/**
 * Scenario: kill -9 of `syncsh daemon` while a real NBD client (qemu-io)
 * writes to a zvol it serves, with FUA and FLUSH at random, then a restart.
 * Invariant (a block device's, issue 11): every write acknowledged with FUA,
 * or before an acknowledged FLUSH, is there afterwards; every 4 KiB block
 * holds its old data or the data of one write to it, never a mix.
 * The writer and its model are block-writes.ts's.
 */
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { acknowledged, allowedValues, BLOCK, BLOCKS, check, commands, readBack, spanEstimate, writer } from './block-writes.js';
import { BIN } from '../../test/helpers/cli.js';
import { daemonLines } from '../../test/helpers/daemon.js';
import { unixUri } from '../../test/helpers/nbd.js';
import { missingCommand } from '../../test/helpers/system.js';
import { makeAppliance, type Appliance, type Fixture } from '../../test/peer/_fixture.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';

const ZVOL = 'fs:tank/vm1';

function startDaemon(a: Appliance) {
  const child = execa(process.execPath, [BIN, 'daemon'], { env: a.env, extendEnv: false, reject: false });
  const lines = daemonLines(child);
  return { child, listening: lines.wait(/NBD server listening on /, 0, 60_000) };
}

export function nbdKillScenario(): Scenario {
  return {
    name: 'kill-9/nbd-daemon/fs',
    help: 'kill -9 of syncsh daemon while qemu-io writes to a zvol it serves (FUA, flush), then a restart: every durable write there, no block torn',
    missing: async () => {
      const m = await missingCommand('qemu-io', 'nbdcopy', 'stdbuf');
      return m ? `${m} is not installed (Debian packages qemu-utils, libnbd-bin)` : null;
    },
    async setup(f: Fixture): Promise<ScenarioRun> {
      const a = makeAppliance(f, 'alpha');
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
          victim.kill('SIGKILL');
          const killedAt = Date.now();
          await victim;
          const r = await client.io;
          if (finished && r.exitCode === 0) estimate.learn(client.span());
          const acked = acknowledged(cmds, String(r.stdout));
          steps.push(`kill -9 of the daemon at ${killedAt - client.started} ms${finished ? ' (the client had finished)' : ''}: ${acked} of ${cmds.filter((c) => c.kind === 'write').length} writes acknowledged`);
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
          steps.push(`restarted and read back in ${recoveryMs} ms`);
          return { steps, violations, recovered: true, recoveryMs };
        },
      };
    },
  };
}

/**
 * Scenario: kill -9 of `syncsh daemon` while a real NBD client (qemu-io)
 * writes to a zvol it serves, with FUA and FLUSH at random, then a restart.
 * Invariant (a block device's, issue 11): every write acknowledged with FUA,
 * or before an acknowledged FLUSH, is there afterwards; every 4 KiB block
 * holds its old data or the data of one write to it, never a mix.
 *
 * Each write fills whole 4 KiB blocks with one byte unique in its trial, so
 * a block read back names the write it came from. qemu-io runs its commands
 * one at a time and prints a line for each write once it is acknowledged;
 * a flush prints nothing, so it counts as acknowledged only when a write
 * after it was (never more than the client knew).
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { BIN } from '../../test/helpers/cli.js';
import { daemonLines } from '../../test/helpers/daemon.js';
import { unixUri } from '../../test/helpers/nbd.js';
import { missingCommand } from '../../test/helpers/system.js';
import { makeAppliance, type Appliance, type Fixture } from '../../test/peer/_fixture.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';

const BLOCK = 4096;
const BLOCKS = 256; // a 1 MiB zvol
const ZVOL = 'fs:tank/vm1';

export type Command = { kind: 'write'; first: number; count: number; value: number; fua: boolean } | { kind: 'flush' };

/** a trial's commands: writes of 1–4 blocks (values 1, 2, … in order, a third with FUA), a flush now and then */
export function commands(rng: Rng, n: number): Command[] {
  const out: Command[] = [];
  let value = 0;
  for (let i = 0; i < n; i++) {
    if (i > 0 && rng.next() < 0.15) out.push({ kind: 'flush' });
    else {
      const count = rng.int(1, 4);
      out.push({ kind: 'write', first: rng.int(0, BLOCKS - count), count, value: ++value, fua: rng.next() < 0.3 });
    }
  }
  return out;
}

/** qemu-io's -c argument for a command */
export function qemuIoCommand(c: Command): string {
  return c.kind === 'flush' ? 'flush' : `write${c.fua ? ' -f' : ''} -P ${c.value} ${c.first * BLOCK} ${c.count * BLOCK}`;
}

/** how many of the writes qemu-io acknowledged: its "wrote" lines, which must name the writes in order */
export function acknowledged(cmds: readonly Command[], stdout: string): number {
  const writes = cmds.filter((c) => c.kind === 'write');
  let n = 0;
  for (const line of stdout.split('\n')) {
    const m = /^wrote (\d+)\/\d+ bytes at offset (\d+)/.exec(line);
    if (!m) continue;
    const w = writes[n];
    if (!w || Number(m[2]) !== w.first * BLOCK || Number(m[1]) !== w.count * BLOCK) throw new Error(`qemu-io acknowledged "${line}" where write ${n + 1} was ${w ? qemuIoCommand(w) : 'none'}.`);
    n++;
  }
  return n;
}

/**
 * The values each block may hold after the kill, from what it held before
 * (`old`) and the commands, of whose writes the first `acked` were
 * acknowledged: the value of its last durable write (FUA, or before an
 * acknowledged flush) or of a write after that one; without a durable
 * write, its old value too. Of the writes not acknowledged only the first
 * was sent (qemu-io has one request in flight), so only it may be there.
 */
export function allowedValues(old: readonly number[], cmds: readonly Command[], acked: number): Set<number>[] {
  const writes = old.map(() => [] as number[]); // per block, the values written to it, in order
  const lastDurable = old.map(() => -1); // per block, the index in writes[b] of its last durable write
  let index = 0; // writes so far
  let unflushed: { c: Extract<Command, { kind: 'write' }>; at: number[] }[] = [];
  const durable = (c: Extract<Command, { kind: 'write' }>, at: number[]) => {
    for (let b = c.first; b < c.first + c.count; b++) lastDurable[b] = Math.max(lastDurable[b], at[b - c.first]);
  };
  for (const c of cmds) {
    if (c.kind === 'flush') {
      // acknowledged when the write after it was
      if (acked > index) for (const u of unflushed) durable(u.c, u.at);
      if (acked > index) unflushed = [];
      continue;
    }
    if (index > acked) break; // never sent
    const at: number[] = [];
    for (let b = c.first; b < c.first + c.count; b++) at.push(writes[b].push(c.value) - 1);
    if (index < acked) {
      if (c.fua) durable(c, at);
      else unflushed.push({ c, at });
    }
    index++;
  }
  return old.map((v, b) => new Set(lastDurable[b] < 0 ? [v, ...writes[b]] : writes[b].slice(lastDurable[b])));
}

/** the broken invariants of an image read back (one byte value per whole block, from the allowed ones) */
export function check(image: Buffer, allowed: readonly Set<number>[]): { values: number[]; violations: string[] } {
  const values: number[] = [];
  const violations: string[] = [];
  for (let b = 0; b < allowed.length; b++) {
    const block = image.subarray(b * BLOCK, (b + 1) * BLOCK);
    const v = block[0];
    values.push(v);
    if (block.length !== BLOCK || !block.every((x) => x === v)) violations.push(`block ${b} is torn: not the data of one write (it starts with ${v})`);
    else if (!allowed[b].has(v)) violations.push(`block ${b} holds the data of write ${v}, but one of {${[...allowed[b]].join(', ')}} was due (an acknowledged FUA or flushed write is lost)`);
  }
  return { values, violations };
}

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
      let estimate = 300; // ms from the first acknowledgement to the client's end
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          const cmds = commands(rng, rng.int(20, 160));
          const delay = Math.round(rng.next() * estimate * 1.2);
          const steps = [`${cmds.length} commands (${cmds.filter((c) => c.kind === 'flush').length} flushes, ${cmds.filter((c) => c.kind === 'write' && c.fua).length} FUA writes)`];
          const started = Date.now();
          // line-buffered: each "wrote" line arrives as its write is acknowledged
          const io = execa('stdbuf', ['-oL', 'qemu-io', '-f', 'raw', ...cmds.flatMap((c) => ['-c', qemuIoCommand(c)]), uri], { reject: false, timeout: 60_000 });
          // The kill lands anywhere in the client's writes (most of its run is start-up): timed from its first acknowledgement, one trial in ten before it.
          let firstAckAt = 0;
          io.stdout!.on('data', (d: Buffer) => {
            if (!firstAckAt && d.includes('wrote ')) firstAckAt = Date.now();
          });
          const early = rng.next() < 0.1;
          let endedAt = 0;
          void io.then(() => (endedAt = Date.now()));
          while (!endedAt && (early ? Date.now() - started < delay : !firstAckAt || Date.now() - firstAckAt < delay)) await new Promise((r) => setTimeout(r, 2));
          const finished = endedAt > 0;
          const victim = daemon!;
          victim.kill('SIGKILL');
          const killedAt = Date.now();
          await victim;
          const r = await io;
          // the writes' length, learned from the runs the kill did not cut
          if (finished && r.exitCode === 0 && firstAckAt) estimate = Math.round(estimate * 0.7 + (endedAt - firstAckAt) * 0.3);
          const acked = acknowledged(cmds, String(r.stdout));
          steps.push(`kill -9 of the daemon at ${killedAt - started} ms${finished ? ' (the client had finished)' : ''}: ${acked} of ${cmds.filter((c) => c.kind === 'write').length} writes acknowledged`);
          const violations: string[] = [];
          try {
            await start();
          } catch (error) {
            violations.push(`the daemon did not serve again after the kill: ${(error as Error).message}`);
            return { steps, violations, recovered: false, recoveryMs: null };
          }
          const copy = path.join(os.tmpdir(), `syncsh-nbd-kill-${process.pid}-${Date.now()}.img`);
          try {
            const got = await execa('nbdcopy', [uri, copy], { reject: false });
            if (got.exitCode !== 0) {
              violations.push(`reading the zvol back after the restart failed: ${got.stderr}`);
              return { steps, violations, recovered: false, recoveryMs: null };
            }
            const recoveryMs = Date.now() - killedAt;
            const result = check(readFileSync(copy), allowedValues(old, cmds, acked));
            violations.push(...result.violations.slice(0, 8));
            old = result.values;
            steps.push(`restarted and read back in ${recoveryMs} ms`);
            return { steps, violations, recovered: true, recoveryMs };
          } finally {
            await rm(copy, { force: true });
          }
        },
      };
    },
  };
}

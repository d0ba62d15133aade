/**
 * The block-device writer the NBD scenarios share (nbd-kill.ts,
 * cdp-failover.ts): qemu-io writing whole 4 KiB blocks, each write its own
 * byte unique in its trial (so a block read back names the write it came
 * from), some FUA, flushes between; which values each block may hold
 * afterwards; and the check of an image read back.
 *
 * qemu-io runs its commands one at a time and prints a line for each write
 * once it is acknowledged (or failed); a flush prints nothing when it
 * succeeds, so it counts as acknowledged only when a write after it was
 * (never more than the client knew).
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { Rng } from './campaign.js';

export const BLOCK = 4096;
export const BLOCKS = 256; // a 1 MiB zvol

export type Write = { kind: 'write'; first: number; count: number; value: number; fua: boolean };
export type Command = Write | { kind: 'flush' };

/** what became of a write: acknowledged, failed (EIO: it may have landed), or never sent */
export type Fate = 'acked' | 'failed' | 'unsent';

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

const writesOf = (cmds: readonly Command[]) => cmds.filter((c): c is Write => c.kind === 'write');

/**
 * Each write's fate from qemu-io's output (stdout and stderr in one stream,
 * in order): a "wrote" line acknowledges the next write, which it must name;
 * a "write failed" line fails it. Of the writes after the last line the
 * first was in flight when the client ended (killed, cut off): it may have
 * landed, as a failed one; the others were never sent.
 */
export function fates(cmds: readonly Command[], output: string): Fate[] {
  const writes = writesOf(cmds);
  const out: Fate[] = writes.map(() => 'unsent');
  let n = 0;
  for (const line of output.split('\n')) {
    const m = /^wrote (\d+)\/\d+ bytes at offset (\d+)/.exec(line);
    if (!m && !/^write failed/.test(line)) continue;
    const w = writes[n];
    if (m && (!w || Number(m[2]) !== w.first * BLOCK || Number(m[1]) !== w.count * BLOCK)) throw new Error(`qemu-io acknowledged "${line}" where write ${n + 1} was ${w ? qemuIoCommand(w) : 'none'}.`);
    if (!w) throw new Error(`qemu-io said "${line}" after its last write.`);
    out[n++] = m ? 'acked' : 'failed';
  }
  if (n < out.length) out[n] = 'failed';
  return out;
}

/** how many of the writes qemu-io acknowledged: its "wrote" lines, which must name the writes in order */
export function acknowledged(cmds: readonly Command[], stdout: string): number {
  return fates(cmds, stdout).filter((f) => f === 'acked').length;
}

/**
 * The values each block may hold, from what it held before (`old`), the
 * writes' fates and which acknowledged writes are durable: the value of its
 * last durable write or of a write after it that may have landed; without a
 * durable write, its old value too.
 */
export function allowedAfter(old: readonly number[], writes: readonly { w: Write; fate: Fate; durable: boolean }[]): Set<number>[] {
  const values = old.map(() => [] as number[]); // per block, the values that may have been written to it, in order
  const lastDurable = old.map(() => -1); // per block, the index in values[b] of its last durable write
  for (const { w, fate, durable } of writes) {
    if (fate === 'unsent') continue;
    for (let b = w.first; b < w.first + w.count; b++) {
      const at = values[b].push(w.value) - 1;
      if (durable && fate === 'acked') lastDurable[b] = at;
    }
  }
  return old.map((v, b) => new Set(lastDurable[b] < 0 ? [v, ...values[b]] : values[b].slice(lastDurable[b])));
}

/**
 * A block device's promise after a crash, of whose writes the first `acked`
 * were acknowledged: durable are the FUA ones and those before an
 * acknowledged flush. Of the writes not acknowledged only the first was
 * sent (qemu-io has one request in flight), so only it may be there.
 */
export function allowedValues(old: readonly number[], cmds: readonly Command[], acked: number): Set<number>[] {
  const writes: { w: Write; fate: Fate; durable: boolean }[] = [];
  const unflushed: { durable: boolean }[] = [];
  for (const c of cmds) {
    if (c.kind === 'flush') {
      // acknowledged when the write after it was
      if (acked > writes.length) for (const u of unflushed.splice(0)) u.durable = true;
      continue;
    }
    const i = writes.length;
    const x = { w: c, fate: (i < acked ? 'acked' : i === acked ? 'failed' : 'unsent') as Fate, durable: c.fua };
    writes.push(x);
    if (!c.fua) unflushed.push(x);
  }
  return allowedAfter(old, writes);
}

/** the promise of a sync mirror: every acknowledged write is on both copies, whatever its flags */
export function allowedSync(old: readonly number[], cmds: readonly Command[], fate: readonly Fate[]): Set<number>[] {
  return allowedAfter(
    old,
    writesOf(cmds).map((w, i) => ({ w, fate: fate[i], durable: true })),
  );
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
    else if (!allowed[b].has(v)) violations.push(`block ${b} holds the data of write ${v}, but one of {${[...allowed[b]].join(', ')}} was due (an acknowledged durable write is lost)`);
  }
  return { values, violations };
}

/**
 * qemu-io running `cmds` on an export (cache mode writeback: only the FUA
 * writes are FUA on the wire), its output line-buffered and stderr in the
 * same stream (each line arrives as its write is answered, in order).
 * `until` waits for the fault's instant: `delay` ms after the first
 * acknowledgement (or after the start, `early`), or the client's end.
 */
export function writer(uri: string, cmds: readonly Command[]) {
  // writeback: qemu-io's default cache mode is writethrough, which makes every write FUA (or follows it with a flush):
  // every write would be durable when acknowledged, and no fault could take one that was not flushed
  const args = ['-f', 'raw', '-t', 'writeback', ...cmds.flatMap((c) => ['-c', qemuIoCommand(c)]), uri];
  const io: ResultPromise = execa('sh', ['-c', 'exec stdbuf -oL -eL qemu-io "$@" 2>&1', 'qemu-io', ...args], { reject: false, timeout: 120_000 });
  const started = Date.now();
  let firstAckAt = 0;
  let endedAt = 0;
  io.stdout!.on('data', (d: Buffer) => {
    if (!firstAckAt && d.includes('wrote ')) firstAckAt = Date.now();
  });
  void io.then(() => (endedAt = Date.now()));
  return {
    io,
    started,
    async until(delay: number, early: boolean): Promise<{ finished: boolean }> {
      while (!endedAt && (early ? Date.now() - started < delay : !firstAckAt || Date.now() - firstAckAt < delay)) await new Promise((r) => setTimeout(r, 2));
      return { finished: endedAt > 0 };
    },
    /** the writes' length, first acknowledgement to the end, for a run no fault cut (else null) */
    span: () => (endedAt && firstAckAt ? endedAt - firstAckAt : null),
  };
}

/** a running estimate of the writes' length (ms from the first acknowledgement to the client's end), learned from runs the fault did not cut */
export function spanEstimate(initial = 300) {
  let estimate = initial;
  return {
    get ms() {
      return estimate;
    },
    learn(span: number | null) {
      if (span !== null) estimate = Math.round(estimate * 0.7 + span * 0.3);
    },
  };
}

/** an export's whole image, read with nbdcopy; a string is why it could not be read */
export async function readBack(uri: string): Promise<Buffer | string> {
  const copy = path.join(os.tmpdir(), `syncsh-readback-${process.pid}-${Date.now()}.img`);
  try {
    const got = await execa('nbdcopy', [uri, copy], { reject: false });
    return got.exitCode === 0 ? readFileSync(copy) : `nbdcopy ${uri}: ${got.stderr}`;
  } finally {
    await rm(copy, { force: true });
  }
}

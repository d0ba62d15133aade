/**
 * `zfs send` as a Readable. Incrementals use `-I` so the snapshots between
 * the base and the target travel too and the chain stays identical on both
 * sides; `-R` carries children and their properties, `-p` carries the
 * properties of a single dataset where this zfs has it.
 *
 * Temporary send holds. For `-R` (and `-p` on zfs-fuse) libzfs puts a hold
 * tagged `.send-<pid>-<seq>` on every snapshot it sends (the whole `-I`
 * range, children included) and releases it when the send ends. Kernel ZFS
 * also drops it when the process dies (the hold is tied to a /dev/zfs file
 * descriptor); zfs-fuse does not: a `zfs send` ended by a signal or a broken
 * pipe leaves the hold for good, and the snapshot can then never be
 * destroyed (a failed run could not drop its marker; pruning would stall).
 * So this runs `zfs send` itself, knows its pid, and when a send that could
 * have taken such holds fails or is given up, it releases `.send-<pid>-0`
 * and `-1` on the snapshots of the range once the process has exited. Until
 * that is done, the operations that refuse held snapshots wait for it
 * (ZfsCli.settleSends), so a run that gives up a send can drop its marker.
 * A syncsh process killed outright cannot do that: each such send is
 * recorded in a journal first (send-journal.ts), and recover releases the
 * holds of the sends whose process is gone (releaseOrphanedSends).
 */
import { PassThrough, type Readable } from 'node:stream';
import type { SendOptions } from '../driver.js';
import { failpoint } from '../../failpoints.js';
import { abortError, commandError, execa, type CommandError } from '../exec.js';
import type { ZfsCli } from './cli.js';
import { explainZfs, isZfsError } from './errors.js';
import { checkDatasetName, checkSnapshotName, snapshotPath } from './names.js';
import { stillRunning, type JournalEntry, type SendRange } from './send-journal.js';

/** what `receive_resume_token` holds: a version, hex digits and dashes */
const RESUME_TOKEN = /^[0-9]+-[0-9a-f-]+$/;

/** a given-up send that has not exited by then is killed outright */
const KILL_AFTER_MS = 10_000;

export function sendArgs(dataset: string, snapshot: string, opts: SendOptions, withProperties: boolean): string[] {
  // The token names the snapshot, the base and the offset already received.
  if (opts.resumeToken !== undefined) return ['send', '-t', opts.resumeToken];
  return ['send', ...(opts.recursive ? ['-R'] : withProperties ? ['-p'] : []), ...(opts.from ? ['-I', snapshotPath(dataset, opts.from)] : []), snapshotPath(dataset, snapshot)];
}

/** waits for one line on stdin (none: its owner died, so it exits), then becomes the command its arguments name */
const SEND_GATE = 'read -r _ && exec "$@"';

/** names are checked before anything runs (a bad one throws here, synchronously) */
export function send(cli: ZfsCli, dataset: string, snapshot: string, opts: SendOptions): Readable {
  checkDatasetName(dataset);
  checkSnapshotName(snapshot);
  if (opts.from !== undefined) checkSnapshotName(opts.from);
  if (opts.resumeToken !== undefined && !RESUME_TOKEN.test(opts.resumeToken)) throw new Error(`${JSON.stringify(opts.resumeToken.slice(0, 40))} is not a zfs resume token.`);
  // feature detection is async but the stream must be returned now: start it once known
  const out = new PassThrough();
  const explain = (error: CommandError) => {
    const explained = explainZfs(error);
    explained.message = `Sending '${snapshotPath(dataset, snapshot)}' failed: ${explained.message}`;
    return explained;
  };
  void cli.features().then(
    (features) => {
      if (out.destroyed) return;
      const args = sendArgs(dataset, snapshot, opts, features.sendProperties);
      const holds = opts.resumeToken === undefined && (opts.recursive || args.includes('-p'));
      const range: SendRange = { dataset, snapshot, ...(opts.from === undefined ? {} : { from: opts.from }), recursive: opts.recursive };
      let journal: JournalEntry | null = null;
      try {
        journal = holds ? (cli.sendJournal?.begin(range) ?? null) : null;
      } catch (error) {
        return void out.destroy(new Error(`Sending '${snapshotPath(dataset, snapshot)}' failed: cannot record the send in ${cli.sendJournal?.dir}: ${(error as Error).message}`));
      }
      const tracked = cli.trackSend(dataset);
      void runSend(cli, args, out, opts.signal, explain, tracked.ending, journal, holds ? (pid) => releaseSendHolds(cli, range, pid) : null).finally(tracked.done);
    },
    (error: Error) => out.destroy(error),
  );
  return out;
}

/**
 * Feed `out` from `zfs ARGS`; the stream ends only once the exit status says
 * the bytes are whole. Destroying `out` or aborting kills the command.
 * Resolves when the command has exited and `afterFailure` (if any) is done;
 * calls `ending` as soon as it is over or given up.
 */
async function runSend(
  cli: ZfsCli,
  args: string[],
  out: PassThrough,
  signal: AbortSignal | undefined,
  explain: (error: CommandError) => Error,
  ending: () => void,
  journal: JournalEntry | null,
  afterFailure: ((pid: number) => Promise<void>) | null,
): Promise<void> {
  if (signal?.aborted) {
    journal?.end();
    return void out.destroy(abortError(signal));
  }
  // A journaled send starts behind a gate: a shell that execs `zfs send` (same pid) only once it reads a line,
  // written after the pid is recorded. Killed before that, this process closes the pipe and the shell exits
  // without running zfs, so no hold can exist that the journal does not name (the record's write and fsync
  // take milliseconds on a busy disk).
  const child = journal
    ? execa('/bin/sh', ['-c', SEND_GATE, 'zfs-send-gate', cli.zfsBin, ...args], { reject: false, stdin: 'pipe', buffer: { stdout: false, stderr: true } })
    : execa(cli.zfsBin, args, { reject: false, stdin: 'ignore', buffer: { stdout: false, stderr: true } });
  if (journal && child.pid !== undefined) {
    failpoint('zfs.send.spawned'); // tests: killed before the pid is recorded
    try {
      journal.spawned(child.pid);
    } catch (error) {
      // not recorded, so never let through: the shell has not run zfs, and nothing is held
      child.kill('SIGKILL');
      await child;
      journal.end();
      return void out.destroy(new Error(`Sending failed: cannot record the send in ${cli.sendJournal?.dir}: ${(error as Error).message}`));
    }
    child.stdin?.on('error', () => {}); // a shell already gone (killed): its exit status says so below
    child.stdin?.end('\n');
  }
  let gaveUp = false;
  let killTimer: NodeJS.Timeout | undefined;
  const giveUp = () => {
    if (gaveUp || child.exitCode !== null) return;
    gaveUp = true;
    ending();
    child.stdout.unpipe(out);
    child.stdout.destroy(); // zfs-fuse's daemon writes the stream: a closed pipe stops it
    child.kill('SIGTERM');
    killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
  };
  const onAbort = () => {
    giveUp();
    out.destroy(abortError(signal!));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  out.on('close', giveUp);
  child.stdout.pipe(out, { end: false });
  const result = await child;
  ending();
  clearTimeout(killTimer);
  signal?.removeEventListener('abort', onAbort);
  if (afterFailure && child.pid !== undefined && (result.failed || gaveUp)) {
    // kept, marked, for the next recover: this release may come before zfs-fuse applies the last hold (send-journal.ts)
    const released = await afterFailure(child.pid).then(
      () => true,
      () => false,
    );
    // not released: kept unmarked, so the next recover after this process ends tries again
    if (released) journal?.settled();
  } else journal?.end();
  if (out.destroyed) return;
  if (signal?.aborted) return void out.destroy(abortError(signal));
  if (result.failed) {
    return void out.destroy(explain(commandError(cli.zfsBin, args, result)));
  }
  out.end();
}

/** release what a send that did not finish may have left held (see the top of this file); quiet when nothing is */
async function releaseSendHolds(cli: ZfsCli, { dataset, snapshot, ...opts }: SendRange, pid: number): Promise<void> {
  const all = (await cli.listNames(dataset, 'snapshot', 1)).map((full) => full.slice(dataset.length + 1));
  const order = await cli.getProps(
    all.map((s) => snapshotPath(dataset, s)),
    ['createtxg'],
  );
  const txg = (name: string) => Number(order.get(snapshotPath(dataset, name))?.createtxg ?? -1);
  const [low, high] = [opts.from === undefined ? txg(snapshot) : txg(opts.from), txg(snapshot)];
  const range = all.filter((s) => txg(s) >= low && txg(s) <= high);
  const held = await cli.getProps(
    range.map((s) => snapshotPath(dataset, s)),
    ['userrefs'],
  );
  for (const name of range) {
    if (!opts.recursive && Number(held.get(snapshotPath(dataset, name))?.userrefs ?? 0) === 0) continue;
    for (const tag of [`.send-${pid}-0`, `.send-${pid}-1`]) {
      await cli.zfs(['release', ...(opts.recursive ? ['-r'] : []), tag, snapshotPath(dataset, name)]).catch(() => undefined);
    }
  }
}

/** how long an orphaned `zfs send` (its syncsh process killed) is given to exit once killed */
const ORPHAN_EXIT_MS = 10_000;

/**
 * Release the temporary holds of the journaled sends whose syncsh process is
 * gone (killed outright: it could not release them itself). A `zfs send` that
 * outlived it is killed first (nobody reads its stream), and its holds are
 * released once it has exited. Returns what it did, for recover's report.
 */
export async function releaseOrphanedSends(cli: ZfsCli): Promise<string[]> {
  const done: string[] = [];
  for (const { record, forget } of cli.sendJournal?.orphans() ?? []) {
    const { child } = record;
    if (child === null) {
      forget(); // its owner died before it spawned `zfs send`, so no hold was taken
      continue;
    }
    if (stillRunning(child)) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
      const deadline = Date.now() + ORPHAN_EXIT_MS;
      while (stillRunning(child) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      if (stillRunning(child)) continue; // the next recover tries again
    }
    try {
      await releaseSendHolds(cli, record, child.pid);
    } catch (error) {
      if (!isZfsError(error, 'missing') && !isZfsError(error, 'no-pool')) continue; // zfs did not answer: kept for the next recover
    }
    forget();
    done.push(
      `released the temporary holds of ${record.ended ? 'an unfinished' : 'a killed'} zfs send (process ${child.pid}) on '${snapshotPath(record.dataset, record.snapshot)}'${record.from ? ` and the snapshots since '${record.from}'` : ''}`,
    );
  }
  return done;
}

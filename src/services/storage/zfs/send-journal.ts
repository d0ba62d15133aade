/**
 * The journal of running `zfs send`s that may take temporary holds (send.ts),
 * so that holds a killed process left on zfs-fuse can be released later.
 *
 * send.ts releases the holds of a send that failed or was given up; a
 * process killed outright (kill -9 of the CLI, the daemon or an agent)
 * cannot, and zfs-fuse neither drops the hold when `zfs send` dies nor lists
 * holds (`zfs holds` is missing), so its tag `.send-<pid>-<seq>` can only be
 * released by someone who knows the pid. Hence one small file per send, in
 * the appliance home: written (durably) before `zfs send` starts, completed
 * with the zfs process's pid in the same tick it is spawned (before it can
 * have taken a hold: it must still exec and reach the zfs-fuse daemon), and
 * removed once the send has ended and its holds are released. recover
 * (orphans) takes the entries whose owner is gone.
 *
 * A process is named by its pid, the boot it runs in and its start time, so
 * a pid reused after a crash or a reboot is never taken for the owner.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../fs/files.js';

/** a process as the kernel knows it: pid, boot and start time (clock ticks since boot) */
export interface ProcessIdentity {
  pid: number;
  boot: string;
  start: string;
}

/** what a send that may hold covers: the snapshots of its range (see releaseSendHolds) */
export interface SendRange {
  dataset: string;
  snapshot: string;
  from?: string;
  recursive: boolean;
}

export interface SendRecord extends SendRange {
  /** the syncsh process that runs the send */
  owner: ProcessIdentity;
  /** the `zfs send` process, whose pid is in the hold's tag (null until it is spawned) */
  child: ProcessIdentity | null;
  /** the send failed or was given up and its owner released its holds once; the next recover does again (see settled) */
  ended?: true;
}

let bootId: string | undefined;
function boot(): string {
  bootId ??= readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  return bootId;
}

/** the identity of a live process (a zombie is not live), or null */
export function processIdentity(pid: number): ProcessIdentity | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so fields are counted from the last ')'; starttime is field 22
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return null;
  return { pid, boot: boot(), start: fields[19] ?? '' };
}

/** is the process that `who` names still running (the same process, not one that got its pid since)? */
export function stillRunning(who: ProcessIdentity): boolean {
  if (who.boot !== boot()) return false;
  const now = processIdentity(who.pid);
  return now !== null && now.start === who.start;
}

export interface JournalEntry {
  /** the `zfs send` process was spawned: its pid is recorded (synchronously) */
  spawned(pid: number): void;
  /** the send is over and its holds released (or it released them itself) */
  end(): void;
  /**
   * The send failed or was given up and its holds were released, as far as this process can tell: zfs-fuse's
   * daemon may still apply a hold the killed `zfs send` asked for after that release (seen: a receive killed
   * as the send began left its holds for good). Kept, marked, for the next recover to release once more.
   */
  settled(): void;
}

export class SendJournal {
  constructor(readonly dir: string) {}

  /** record a send about to start (synchronously, durably: before `zfs send` runs) */
  begin(range: SendRange): JournalEntry {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = path.join(this.dir, `${process.pid}-${randomBytes(6).toString('hex')}.json`);
    const owner = processIdentity(process.pid);
    if (!owner) throw new Error(`Cannot read this process's identity from /proc/${process.pid}/stat.`);
    const record: SendRecord = { ...range, owner, child: null };
    writeJsonAtomic(file, record);
    return {
      spawned: (pid) => {
        // read now, while the child surely runs (a zfs send lasts far longer than this tick)
        record.child = processIdentity(pid) ?? { pid, boot: owner.boot, start: '' };
        writeJsonAtomic(file, record);
      },
      end: () => rmSync(file, { force: true }),
      settled: () => {
        record.ended = true;
        writeJsonAtomic(file, record);
      },
    };
  }

  /** the sends whose owner is gone or that ended unfinished (settled), each with `forget()` to drop its entry once its holds are released */
  orphans(): { record: SendRecord; forget(): void }[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const found: { record: SendRecord; forget(): void }[] = [];
    for (const name of names) {
      const file = path.join(this.dir, name);
      if (name.startsWith('.') && name.endsWith('.tmp')) {
        // writeJsonAtomic's draft (`.PID-….json.….tmp`) of a dead owner (killed while writing it); a live owner renames its own in a moment
        const pid = Number(name.slice(1).split('-')[0]);
        if (!processIdentity(pid)) rmSync(file, { force: true });
        continue;
      }
      if (!name.endsWith('.json')) continue;
      let record: SendRecord;
      try {
        record = JSON.parse(readFileSync(file, 'utf8')) as SendRecord;
      } catch {
        continue; // removed meanwhile (its owner ended, or another recover took it)
      }
      if (!record.ended && stillRunning(record.owner)) continue;
      found.push({ record, forget: () => rmSync(file, { force: true }) });
    }
    return found;
  }
}

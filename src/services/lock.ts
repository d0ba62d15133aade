/**
 * Cross-process locks as files that name their owner. A lock whose owner
 * process is gone (crash, kill -9) is stale and is taken over, so a crash
 * never blocks later runs.
 *
 * A lock appears whole or not at all: the owner is written to a private
 * file first, then hard-linked to the lock's name (link fails with EEXIST
 * when the lock is held). A full disk fails the first step, so it leaves no
 * empty lock and no open descriptor. Taking over a stale lock is serialised
 * by a second, short-lived lock (`FILE.takeover`): under it the owner is read
 * again and the file removed only if it still names that dead owner, so of
 * several processes that found the same stale lock, one removes it and they
 * race fairly for the new one. A lock found absent is never removed: anyone
 * may create it without the guard (takeoverAction).
 */
import { openSync, writeSync, closeSync, readFileSync, unlinkSync, linkSync, rmSync, renameSync } from 'node:fs';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LockOwner {
  pid: number;
  host: string;
  since: string;
  purpose: string;
}

export class LockBusyError extends Error {
  constructor(
    readonly what: string,
    readonly owner: LockOwner,
  ) {
    super(`${what} is busy: ${owner.purpose} by process ${owner.pid} since ${owner.since}.`);
    this.name = 'LockBusyError';
  }
}

export interface Lock {
  release(): void;
}

/** What a lock file says: its owner, `absent` (no file), or `garbage` (there, but not an owner). */
export type Seen = LockOwner | 'absent' | 'garbage';

function readOwner(file: string): Seen {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw error;
  }
  try {
    const owner = JSON.parse(text) as LockOwner;
    return typeof owner === 'object' && owner !== null && typeof owner.pid === 'number' ? owner : 'garbage';
  } catch {
    return 'garbage';
  }
}

const ownerOf = (seen: Seen): LockOwner | null => (typeof seen === 'object' ? seen : null);

/**
 * Under the takeover guard: remove the lock only if it still shows what was found stale. An
 * absent lock is never "still" anything: between the look and the removal another process may
 * create it (it needs no guard to), and removing that fresh lock gave two holders at once.
 * An unreadable or dead-owned lock can only go away under the guard, so it is safe to remove.
 */
export function takeoverAction(found: Seen, now: Seen): 'remove' | 'retry' {
  if (found === 'absent' || now === 'absent') return 'retry';
  return JSON.stringify(found) === JSON.stringify(now) ? 'remove' : 'retry';
}

/** is process `pid` there? (EPERM: there, though not ours to signal) */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function alive(owner: LockOwner): boolean {
  if (owner.host !== os.hostname()) return true; // cannot tell: assume alive
  return processAlive(owner.pid);
}

const sameOwner = (a: Seen, b: LockOwner) => JSON.stringify(a) === JSON.stringify(b);
let serial = 0;
const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Create `file` holding `owner`, whole, or throw EEXIST; nothing is left behind on any error. */
function createWhole(file: string, owner: LockOwner): void {
  const draft = `${file}.${process.pid}.${++serial}.new`;
  try {
    const fd = openSync(draft, 'wx', 0o644);
    try {
      writeSync(fd, JSON.stringify(owner));
    } finally {
      closeSync(fd);
    }
    linkSync(draft, file);
  } finally {
    rmSync(draft, { force: true });
  }
}

/**
 * Clear a guard whose holder died. It is moved aside first (one rename moves one file), and
 * only a moved guard that is still the dead one is deleted: a second reaper that read the same
 * dead holder moves the next taker's live guard instead, and puts it back.
 */
function reapGuard(guard: string, dead: LockOwner): void {
  const aside = `${guard}.${process.pid}.${++serial}.reap`;
  try {
    renameSync(guard, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // reaped or released already
    throw error;
  }
  if (takeoverAction(dead, readOwner(aside)) === 'remove') rmSync(aside, { force: true });
  else {
    try {
      linkSync(aside, guard);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      rmSync(aside, { force: true });
    }
  }
}

/** Remove `file` if it still names the dead `stale` owner; false when another process is doing so. */
function removeStale(file: string, stale: Seen): boolean {
  const guard = `${file}.takeover`;
  const me: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), purpose: 'taking over a stale lock' };
  try {
    createWhole(guard, me);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    // A guard whose owner died in the few instructions it is held for: clear it. A guard that
    // reads as nothing was released just now: retry, never remove it, since the next taker may
    // have made it again in between, and removing theirs let two processes take over at once.
    const holder = ownerOf(readOwner(guard));
    if (holder && !alive(holder)) reapGuard(guard, holder);
    return false;
  }
  try {
    if (takeoverAction(stale, readOwner(file)) === 'remove') rmSync(file, { force: true });
    return true;
  } finally {
    if (sameOwner(readOwner(guard), me)) unlinkSync(guard); // only our own guard, never the next taker's
  }
}

/** Take the lock once; throws LockBusyError when a live owner holds it. */
export function tryLock(file: string, what: string, purpose: string): Lock {
  const me: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), purpose };
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      createWhole(file, me);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw new Error(`${what} could not be locked: the file system holding ${file} is full (${code}); nothing was changed.`);
      }
      if (code !== 'EEXIST') throw error;
      const seen = readOwner(file);
      if (seen === 'absent') continue; // released or taken over since the link failed: try again
      if (seen !== 'garbage' && alive(seen)) throw new LockBusyError(what, seen);
      // Stale (owner gone) or unreadable (a lock written by an older version that crashed mid-write).
      if (!removeStale(file, seen)) pause(1); // another process is removing it: let it finish
      continue;
    }
    let released = false;
    return {
      release() {
        if (released) return;
        released = true;
        if (sameOwner(readOwner(file), me)) unlinkSync(file);
      },
    };
  }
  throw new LockBusyError(what, ownerOf(readOwner(file)) ?? { pid: 0, host: '?', since: '?', purpose: 'unknown' });
}

/** Wait up to timeoutMs for the lock. */
export async function lock(file: string, what: string, purpose: string, timeoutMs = 10_000): Promise<Lock> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    try {
      return tryLock(file, what, purpose);
    } catch (error) {
      if (!(error instanceof LockBusyError) || Date.now() >= deadline) throw error;
      await sleep(delay);
    }
  }
}

export async function withLock<T>(file: string, what: string, purpose: string, fn: () => Promise<T> | T, timeoutMs?: number): Promise<T> {
  const held = await lock(file, what, purpose, timeoutMs);
  try {
    return await fn();
  } finally {
    held.release();
  }
}

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
 * race fairly for the new one.
 */
import { openSync, writeSync, closeSync, readFileSync, unlinkSync, linkSync, rmSync } from 'node:fs';
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

function readOwner(file: string): LockOwner | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LockOwner;
  } catch {
    return null;
  }
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

const sameOwner = (a: LockOwner | null, b: LockOwner | null) => JSON.stringify(a) === JSON.stringify(b);
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

/** Remove `file` if it still names the dead `stale` owner; false when another process is doing so. */
function removeStale(file: string, stale: LockOwner | null): boolean {
  const guard = `${file}.takeover`;
  const me: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), purpose: 'taking over a stale lock' };
  try {
    createWhole(guard, me);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    // A guard whose owner died in the few instructions it is held for: clear it. A guard that
    // reads as nothing was released just now: retry, never remove it, since the next taker may
    // have made it again in between, and removing theirs let two processes take over at once.
    const holder = readOwner(guard);
    if (holder && !alive(holder)) rmSync(guard, { force: true });
    return false;
  }
  try {
    if (sameOwner(readOwner(file), stale)) rmSync(file, { force: true });
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
      const owner = readOwner(file);
      if (owner && alive(owner)) throw new LockBusyError(what, owner);
      // Stale (owner gone) or unreadable (a lock written by an older version that crashed mid-write).
      if (!removeStale(file, owner)) pause(1); // another process is removing it: let it finish
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
  const owner = readOwner(file);
  throw new LockBusyError(what, owner ?? { pid: 0, host: '?', since: '?', purpose: 'unknown' });
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

/**
 * Cross-process locks as files created with O_EXCL that name their owner.
 * A lock whose owner process is gone (crash, kill -9) is stale and is taken
 * over, so a crash never blocks later runs.
 */
import { openSync, writeSync, closeSync, readFileSync, unlinkSync, renameSync } from 'node:fs';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LockOwner {
  pid: number;
  host: string;
  since: string;
  purpose: string;
}

export class LockBusyError extends Error {
  constructor(readonly what: string, readonly owner: LockOwner) {
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

function alive(owner: LockOwner): boolean {
  if (owner.host !== os.hostname()) return true; // cannot tell: assume alive
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Take the lock once; throws LockBusyError when a live owner holds it. */
export function tryLock(file: string, what: string, purpose: string): Lock {
  const me: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), purpose };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      writeSync(fd, JSON.stringify(me));
      closeSync(fd);
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          const owner = readOwner(file);
          if (owner && owner.pid === me.pid && owner.since === me.since) unlinkSync(file);
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = readOwner(file);
      if (owner && alive(owner)) throw new LockBusyError(what, owner);
      // Stale (owner gone) or half-written: move it aside atomically so that
      // only one of several racing processes removes it.
      try {
        const aside = `${file}.stale.${process.pid}`;
        renameSync(file, aside);
        unlinkSync(aside);
      } catch {
        /* someone else took it over first; try again */
      }
    }
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

/**
 * Per-dataset locks (files created with O_EXCL naming their pid; a dead
 * owner's lock is taken over, see ../../lock.ts).
 *
 * - The operation lock covers snapshot, receive, rollback, destroy, mount
 *   and recover. It fails fast: a second operation on the same dataset is
 *   refused as busy instead of queueing behind a transfer of many GiB.
 * - The index lock covers only the read-modify-write of snapshots.json
 *   (holds, registration); it is held for milliseconds, so it waits.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { lock as waitLock, processAlive, tryLock, type Lock } from '../../lock.js';
import type { Layout } from './layout.js';

export type { Lock };

export function lockDatasets(layout: Layout, names: string[], purpose: string): Lock {
  const held: Lock[] = [];
  try {
    // A fixed order, so two multi-dataset operations cannot each hold half.
    for (const name of [...new Set(names)].sort()) {
      mkdirSync(layout.locksDir(name), { recursive: true });
      held.push(tryLock(layout.lockFile(name), `The fs dataset ${name}`, purpose));
    }
  } catch (error) {
    for (const l of held.reverse()) l.release();
    throw error;
  }
  return {
    release() {
      for (const l of [...held].reverse()) l.release();
    },
  };
}

export async function withIndexLock<T>(layout: Layout, name: string, fn: () => T): Promise<T> {
  mkdirSync(layout.locksDir(name), { recursive: true });
  const held = await waitLock(layout.indexLockFile(name), `The snapshot index of fs dataset ${name}`, 'an update', 10_000);
  try {
    return fn();
  } finally {
    held.release();
  }
}

/** The pid of a lock left behind by a process that is gone, if any (for recover's report). */
export function staleLockOwner(file: string): number | null {
  let owner: { pid?: number; host?: string };
  try {
    owner = JSON.parse(readFileSync(file, 'utf8')) as { pid?: number; host?: string };
  } catch {
    return null;
  }
  if (!owner.pid || owner.host !== os.hostname()) return null;
  return processAlive(owner.pid) ? null : owner.pid;
}

export { processAlive };

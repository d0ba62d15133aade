/**
 * What a copy of a mirror holds that its peer's copy may lack, for a hand
 * role switch: a copy about to become master must hold every chunk the
 * peer's copy holds, or its resync would overwrite acknowledged writes.
 *
 * The answer is the peer's dirty map for this copy (cdp/NAME/HOST.dmap,
 * the engine's own, kept when a master steps down): its set bits are the
 * chunks written there and not yet acknowledged here (marked before a
 * write is acked, cleared once the target holds it). A copy that lists the
 * caller as its target but has no valid map cannot tell (its first sync
 * never ran or the map is lost); a slave with no map for the caller never
 * mirrored to it, so it holds nothing the caller lacks.
 *
 * A copy switched to slave goes on taking writes as master until its
 * daemon's next round stops the engine: a map read in between could miss a
 * write acknowledged after it. So the daemon marks a running engine
 * (cdp/NAME/engine, its pid) and the answer waits until the mark is gone.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readDirtyMap, setBits } from '../storage/fs/dirty-map.js';
import { processAlive } from '../storage/fs/lock.js';
import type { MirrorConfig } from './model.js';
import { CHUNK } from './receiver.js';

/** the engine's map base (a map of another base is no map) */
export const MAP_BASE = 'auto-cdp-target';

export const mapFileOf = (root: string, name: string, host: string): string => path.join(root, 'cdp', name, `${host}.dmap`);

const chunksOf = (c: MirrorConfig): number => Math.ceil(c.size / CHUNK);

/** the chunks `host`'s copy may lack of this copy `c`; null: cannot tell (so any of them) */
export function owedTo(root: string, c: MirrorConfig, host: string): number | null {
  const map = readDirtyMap(mapFileOf(root, c.name, host), CHUNK, chunksOf(c));
  if (map && map.base === MAP_BASE) return setBits(map.bits, map.chunks).length;
  return c.role === 'master' || c.targets.some((t) => t.host === host) ? null : 0;
}

/** this copy keeps a valid dirty map for `host` (from its last term as master): what `host` lacks of it */
export function hasMap(root: string, c: MirrorConfig, host: string): boolean {
  return readDirtyMap(mapFileOf(root, c.name, host), CHUNK, chunksOf(c))?.base === MAP_BASE;
}

const engineMarkOf = (root: string, name: string): string => path.join(root, 'cdp', name, 'engine');

/** the daemon runs this mirror's engine from now on (it has not taken a write yet) */
export function markEngine(root: string, name: string): void {
  writeFileSync(engineMarkOf(root, name), `${process.pid}\n`);
}

/** the engine is closed: every write it acknowledged is in its maps */
export function unmarkEngine(root: string, name: string): void {
  rmSync(engineMarkOf(root, name), { force: true });
}

/** a live daemon runs this mirror's engine (a mark left by a daemon that died is none) */
export function engineRuns(root: string, name: string): boolean {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(engineMarkOf(root, name), 'utf8'), 10);
  } catch {
    return false;
  }
  return Number.isSafeInteger(pid) && pid > 0 && processAlive(pid);
}

/** wait up to `ms` for the engine to stop: false if it still runs */
export async function engineStopped(root: string, name: string, ms: number, pollMs = 50): Promise<boolean> {
  const until = Date.now() + ms;
  while (engineRuns(root, name)) {
    if (Date.now() >= until) return false;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  return true;
}

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
 */
import path from 'node:path';
import { readDirtyMap, setBits } from '../storage/fs/dirty-map.js';
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

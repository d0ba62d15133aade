/**
 * Walk a live tree: every entry with its lstat, sorted by path like a
 * manifest. Child dataset mountpoints (top-level names in `exclude`) are
 * left out: they are datasets of their own.
 *
 * Sync lstat/readdir are several times faster than their promise versions
 * for 20,000 small calls; the walk yields to the event loop every few
 * thousand entries so a console served by the same process stays responsive.
 */
import { lstatSync, readdirSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { errorCode } from './files.js';
import type { ExcludeMatcher } from './excludes.js';

export type LiveType = 'file' | 'dir' | 'symlink' | 'other';

/**
 * The part of an lstat a tree walk keeps (number stats: cheaper than bigint
 * ones, and exact enough, see manifest.ts StatCache). Not the Stats object
 * itself: with its four Date objects, 20,000 of them held through a sync
 * made the garbage collector a tenth of an incremental sync's time.
 */
export interface LiveStat {
  mode: number;
  size: number;
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
  uid: number;
  gid: number;
  /** link count: above 1, other names of the same file may be in the tree (hard links) */
  nlink: number;
  dev: number;
}

export interface LiveNode {
  path: string;
  type: LiveType;
  stat: LiveStat;
}

function keep(st: Stats): LiveStat {
  return { mode: st.mode, size: st.size, ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, uid: st.uid, gid: st.gid, nlink: st.nlink, dev: st.dev };
}

/** The key of the file a node is, when other names of it may be in the tree (hard links); null when it has only one name. */
export function inodeKey(n: LiveNode): string | null {
  return n.type === 'file' && n.stat.nlink > 1 ? `${n.stat.dev}:${n.stat.ino}` : null;
}

/**
 * For every file of the scan that has other names in it (hard links): its
 * first name in path order, the one a manifest records the content under.
 * Files with one name in the tree are not in the map.
 */
export function linkPrimaries(nodes: readonly LiveNode[]): Map<string, string> {
  const first = new Map<string, string>();
  const out = new Map<string, string>();
  for (const n of nodes) {
    const key = inodeKey(n);
    if (key === null) continue;
    const p = first.get(key);
    if (p === undefined) first.set(key, n.path);
    else {
      out.set(p, p);
      out.set(n.path, p);
    }
  }
  return out;
}

export function liveType(st: Stats): LiveType {
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
}

/**
 * The tree under `root` (root itself as path ''), or null when root does not
 * exist. `skip` leaves out what the dataset's exclude patterns name (and
 * everything under an excluded directory).
 */
export async function scanTree(root: string, exclude: ReadonlySet<string> = new Set(), skip: ExcludeMatcher | null = null): Promise<LiveNode[] | null> {
  let rootStat: Stats;
  try {
    rootStat = lstatSync(root);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;
    throw error;
  }
  if (!rootStat.isDirectory()) throw new Error(`The live tree ${root} is not a directory.`);
  const out: LiveNode[] = [{ path: '', type: 'dir', stat: keep(rootStat) }];
  const pending: string[] = [''];
  let sinceYield = 0;
  while (pending.length) {
    const rel = pending.pop()!;
    let names: string[];
    try {
      names = readdirSync(rel ? `${root}/${rel}` : root);
    } catch (error) {
      // Deleted while we walked: the snapshot simply does not include it.
      if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') continue;
      throw error;
    }
    for (const name of names) {
      if (!rel && exclude.has(name)) continue;
      const childRel = rel ? `${rel}/${name}` : name;
      const st = lstatSync(`${root}/${childRel}`, { throwIfNoEntry: false });
      if (!st) continue; // deleted while we walked
      const type = liveType(st);
      if (skip?.(childRel, type === 'dir')) continue;
      out.push({ path: childRel, type, stat: keep(st) });
      if (type === 'dir') pending.push(childRel);
      if (++sinceYield >= 4096) {
        sinceYield = 0;
        await yieldToLoop();
      }
    }
  }
  out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return out;
}

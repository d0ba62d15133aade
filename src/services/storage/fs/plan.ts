/**
 * What it takes to turn a live tree into a manifest's tree (rollback,
 * receive), as static lists a journal can replay, and the staging of every
 * file that must be (re)written, built from blocks before anything in the
 * live tree is touched.
 */
import { chmodSync, closeSync, ftruncateSync, mkdirSync, openSync, readlinkSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { BlockStore, CHUNK_SIZE, ZERO_BLOCK } from './block-store.js';
import { Breather, mode as modeBits, sameMtime, setMtime } from './files.js';
import { byPath, cacheMatches, sameContent, type Entry, type EntryType, type Manifest } from './manifest.js';
import type { LiveNode } from './scan.js';

export interface Plan {
  /** live paths to delete, outermost only (not in the target, or a dir where the target has a non-dir or back) */
  remove: string[];
  /** directories to create, parents first */
  mkdir: string[];
  /** files and symlinks to move in from staging (staged = name in the staging files dir) */
  place: { path: string; staged: string }[];
  /** unchanged content whose mode or mtime must be set */
  meta: { path: string; type: EntryType; mode: number; mtimeNs: string }[];
  /** every directory of the target, deepest first: final mode and mtime (children change a dir's mtime) */
  dirs: { path: string; mode: number; mtimeNs: string }[];
}

function depth(p: string): number {
  let n = 0;
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) n++;
  return p === '' ? -1 : n;
}

function underAny(set: Set<string>, p: string): boolean {
  if (set.has(p)) return true;
  for (let at = p.lastIndexOf('/'); at > 0; at = p.lastIndexOf('/', at - 1)) if (set.has(p.slice(0, at))) return true;
  return false;
}

function topName(p: string): string {
  const at = p.indexOf('/');
  return at < 0 ? p : p.slice(0, at);
}

/**
 * Diff the live tree against `target`. A live file counts as already right
 * only when a stat cache proves it (from the target or another manifest
 * with the same content); anything unproven is rewritten, which is always
 * correct. Paths under `exclude` (child dataset mountpoints) are never touched.
 */
export function planApply(live: LiveNode[] | null, liveDir: string, target: Manifest, caches: Manifest[], exclude: ReadonlySet<string>): Plan {
  const plan: Plan = { remove: [], mkdir: [], place: [], meta: [], dirs: [] };
  const targetMap = byPath(target);
  const cacheMaps = [targetMap, ...caches.map(byPath)];
  const liveMap = new Map((live ?? []).map((n) => [n.path, n]));
  const removeSet = new Set<string>();
  for (const node of live ?? []) {
    if (node.path === '') continue;
    const t = targetMap.get(node.path);
    // Special files are not part of a dataset: left alone unless a directory must take their place.
    const conflict = node.type === 'other' ? t?.type === 'dir' : !t || (node.type === 'dir') !== (t.type === 'dir');
    if (conflict && !underAny(removeSet, node.path)) {
      removeSet.add(node.path);
      plan.remove.push(node.path);
    }
  }
  const provablySame = (e: Entry, node: LiveNode): boolean => {
    if (node.stat.size !== e.size) return false;
    return cacheMaps.some((m) => {
      const known = m.get(e.path);
      return !!known && known.type === 'file' && sameContent(known, e) && cacheMatches(known, node.stat);
    });
  };
  for (const e of target.entries) {
    if (e.path !== '' && exclude.has(topName(e.path))) continue;
    const node = e.path !== '' && underAny(removeSet, e.path) ? undefined : liveMap.get(e.path);
    if (e.type === 'dir') {
      if (!node) plan.mkdir.push(e.path);
      plan.dirs.push({ path: e.path, mode: e.mode, mtimeNs: e.mtimeNs });
      continue;
    }
    let same = false;
    if (node && e.type === 'file' && node.type === 'file') same = provablySame(e, node);
    if (node && e.type === 'symlink' && node.type === 'symlink') same = readlinkSync(path.join(liveDir, e.path)) === e.target;
    if (!same) {
      plan.place.push({ path: e.path, staged: `f${plan.place.length}` });
      continue;
    }
    const modeDiffers = e.type === 'file' && modeBits(node!.stat.mode) !== e.mode;
    if (modeDiffers || !sameMtime(node!.stat.mtimeMs, e.mtimeNs)) plan.meta.push({ path: e.path, type: e.type, mode: e.mode, mtimeNs: e.mtimeNs });
  }
  plan.dirs.sort((a, b) => depth(b.path) - depth(a.path));
  return plan;
}

/** A file rebuilt from its blocks; zero blocks stay holes, so sparse files stay sparse. */
async function buildFile(file: string, entry: Entry, store: BlockStore, buf: Buffer, what: string, breather: Breather): Promise<void> {
  const blocks = entry.blocks!;
  const fd = openSync(file, 'w', 0o600);
  try {
    for (let i = 0; i < blocks.length; i++) {
      if (blocks[i] === ZERO_BLOCK) continue;
      const n = store.readInto(blocks[i], buf, what);
      if (n !== Math.min(CHUNK_SIZE, entry.size - i * CHUNK_SIZE)) throw new Error(`The block ${blocks[i]} of ${what} (${entry.path}) has the wrong length; the block store is damaged.`);
      let off = 0;
      while (off < n) off += writeSync(fd, buf, off, n - off, i * CHUNK_SIZE + off);
      await breather.breathe();
    }
    if (blocks.at(-1) === ZERO_BLOCK) ftruncateSync(fd, entry.size);
  } finally {
    closeSync(fd);
  }
}

/**
 * Write every file and symlink the plan places into `filesDir`, with its
 * final mode and mtime (a rename keeps both), from the dataset's block store.
 */
export async function stageFiles(plan: Plan, target: Manifest, filesDir: string, store: BlockStore, what: string, signal?: AbortSignal): Promise<void> {
  mkdirSync(filesDir, { recursive: true });
  const targetMap = byPath(target);
  const buf = Buffer.allocUnsafe(CHUNK_SIZE);
  const breather = new Breather();
  for (const item of plan.place) {
    signal?.throwIfAborted();
    const entry = targetMap.get(item.path)!;
    const staged = path.join(filesDir, item.staged);
    if (entry.type === 'symlink') {
      symlinkSync(entry.target!, staged);
      setMtime(staged, entry.mtimeNs, true);
      continue;
    }
    if (entry.size === 0) writeFileSync(staged, '');
    else await buildFile(staged, entry, store, buf, what, breather);
    chmodSync(staged, entry.mode);
    setMtime(staged, entry.mtimeNs, false);
    await breather.breathe();
  }
}

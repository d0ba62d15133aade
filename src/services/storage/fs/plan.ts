/**
 * What it takes to turn a live tree into a manifest's tree (rollback,
 * receive), as static lists a journal can replay. stage.ts builds the files
 * the plan moves in before anything in the live tree is touched.
 */
import { readlinkSync } from 'node:fs';
import path from 'node:path';
import { mode as modeBits, sameMtime } from './files.js';
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
  /** directories of the target that are new, differ, or get entries added or removed (which moves their mtime), deepest first: final mode and mtime */
  dirs: { path: string; mode: number; mtimeNs: string }[];
  /**
   * The live tree is missing or an empty directory: the whole target tree
   * is staged as it will stand, and the commit moves it in with one rename
   * instead of one per file (a full receive of 20,000 files).
   */
  tree?: true;
}

function depth(p: string): number {
  let n = 0;
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) n++;
  return p === '' ? -1 : n;
}

function underAny(set: Set<string>, p: string): boolean {
  if (set.size === 0) return false;
  if (set.has(p)) return true;
  for (let at = p.lastIndexOf('/'); at > 0; at = p.lastIndexOf('/', at - 1)) if (set.has(p.slice(0, at))) return true;
  return false;
}

function parentPath(p: string): string {
  const at = p.lastIndexOf('/');
  return at < 0 ? '' : p.slice(0, at);
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
  if ((!live || (live.length === 1 && live[0].type === 'dir')) && !target.entries.some((e) => e.path !== '' && exclude.has(topName(e.path)))) {
    const dirs = target.entries.filter((e) => e.type === 'dir').map((e) => ({ path: e.path, mode: e.mode, mtimeNs: e.mtimeNs }));
    return { remove: [], mkdir: [], place: [], meta: [], dirs: dirs.sort((a, b) => depth(b.path) - depth(a.path)), tree: true };
  }
  const plan: Plan = { remove: [], mkdir: [], place: [], meta: [], dirs: [] };
  const targetMap = byPath(target);
  const cacheMaps = [targetMap, ...caches.map(byPath)];
  const liveMap = new Map<string, LiveNode>();
  for (const n of live ?? []) liveMap.set(n.path, n);
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
  const dirs: { e: Entry; node: LiveNode | undefined }[] = [];
  for (const e of target.entries) {
    if (exclude.size && e.path !== '' && exclude.has(topName(e.path))) continue;
    const node = e.path !== '' && underAny(removeSet, e.path) ? undefined : liveMap.get(e.path);
    if (e.type === 'dir') {
      if (!node) plan.mkdir.push(e.path);
      dirs.push({ e, node });
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
  // A directory needs its mode and mtime set when it is new, differs, or has an entry added or removed.
  const touched = new Set([...plan.remove, ...plan.mkdir, ...plan.place.map((p) => p.path)].map(parentPath));
  for (const { e, node } of dirs) {
    if (node?.type === 'dir' && !touched.has(e.path) && modeBits(node.stat.mode) === e.mode && sameMtime(node.stat.mtimeMs, e.mtimeNs)) continue;
    plan.dirs.push({ path: e.path, mode: e.mode, mtimeNs: e.mtimeNs });
  }
  plan.dirs.sort((a, b) => depth(b.path) - depth(a.path));
  return plan;
}

/**
 * What it takes to turn a live tree into a manifest's tree (rollback,
 * receive), as static lists a journal can replay. stage.ts builds the files
 * the plan moves in before anything in the live tree is touched.
 *
 * A file with several names (hard links) is one group: it stays when all
 * its names are already that one live file and no other name that stays
 * is; otherwise the whole group is staged again, its first name as a file
 * and the others as hard links to it, and moved in name by name.
 */
import { readlinkSync } from 'node:fs';
import path from 'node:path';
import { mode as modeBits, sameMtime } from './files.js';
import { byPath, cacheMatches, ownerKept, sameContent, sameOwner, type Entry, type EntryType, type Manifest } from './manifest.js';
import { inodeKey, type LiveNode } from './scan.js';

/** The owner to set, when the target records one and this process sets owners (absent otherwise). */
export interface Owner {
  uid?: number;
  gid?: number;
}

export interface Plan {
  /** live paths to delete, outermost only (not in the target, or a dir where the target has a non-dir or back) */
  remove: string[];
  /** directories to create, parents first */
  mkdir: string[];
  /**
   * files and symlinks to move in from staging (staged = name in the staging
   * files dir); `link` = the staged name of the file this one is another
   * name of (a hard link, staged as one), always placed earlier in the list
   */
  place: { path: string; staged: string; link?: string }[];
  /** unchanged content whose mode, owner (when given) or mtime must be set; a file with several names once */
  meta: ({ path: string; type: EntryType; mode: number; mtimeNs: string } & Owner)[];
  /**
   * directories of the target that are new, differ, or get entries added or
   * removed (which moves their mtime), deepest first: final mode, mtime and
   * owner (when kept)
   */
  dirs: ({ path: string; mode: number; mtimeNs: string } & Owner)[];
  /**
   * The live tree is missing or an empty directory: the whole target tree
   * is staged as it will stand, and the commit moves it in with one rename
   * instead of one per file (a full receive of 20,000 files).
   */
  tree?: true;
  /**
   * A zvol's image, patched in place instead of rebuilt (zvol.ts): the
   * chunks to write, each [index, block name], from the store.
   */
  patch?: { path: string; size: number; chunks: [number, string][] };
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

function ownerOf(e: Entry): Owner {
  return ownerKept(e) ? { uid: e.uid, gid: e.gid } : {};
}

const NO_OTHERS: readonly Entry[] = [];

/**
 * Diff the live tree against `target`. A live file counts as already right
 * only when a stat cache proves it (from the target or another manifest
 * with the same content); anything unproven is rewritten, which is always
 * correct. Paths under `exclude` (child dataset mountpoints) are never touched.
 */
export function planApply(live: LiveNode[] | null, liveDir: string, target: Manifest, caches: Manifest[], exclude: ReadonlySet<string>): Plan {
  if ((!live || (live.length === 1 && live[0].type === 'dir')) && !target.entries.some((e) => e.path !== '' && exclude.has(topName(e.path)))) {
    const dirs = target.entries.filter((e) => e.type === 'dir').map((e) => ({ path: e.path, mode: e.mode, mtimeNs: e.mtimeNs, ...ownerOf(e) }));
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
  /** the live node of a target path, unless the plan removes it first */
  const liveOf = (p: string) => (p !== '' && underAny(removeSet, p) ? undefined : liveMap.get(p));
  // Hard links are recorded from format 2 on: before, each name is judged on its own, as then.
  const links = target.format >= 2;
  const others = links ? otherNames(target, exclude) : new Map<string, Entry[]>();
  /** live files (by inode) that stay as the file of a target entry: no other target file may stay as them */
  const staying = new Set<string>();
  for (const e of target.entries) {
    if (exclude.size && e.path !== '' && exclude.has(topName(e.path))) continue;
    if (e.type === 'file' && e.link !== undefined) continue; // another name of a file: placed or kept with its first name
    const node = liveOf(e.path);
    if (e.type === 'dir') {
      if (!node) plan.mkdir.push(e.path);
      dirs.push({ e, node });
      continue;
    }
    if (e.type === 'file') {
      const names = others.size ? (others.get(e.path) ?? NO_OTHERS) : NO_OTHERS;
      if (node?.type !== 'file' || !provablySame(e, node) || !(links ? keepsNames(node, names, liveOf, staying) : names.length === 0)) {
        const staged = `f${plan.place.length}`;
        plan.place.push({ path: e.path, staged });
        for (const o of names) plan.place.push({ path: o.path, staged: `f${plan.place.length}`, link: staged });
        continue;
      }
      const st = node.stat;
      if (modeBits(st.mode) !== e.mode || !sameOwner(e, st) || !sameMtime(st.mtimeMs, e.mtimeNs)) plan.meta.push({ path: e.path, type: e.type, mode: e.mode, mtimeNs: e.mtimeNs, ...ownerOf(e) });
      continue;
    }
    if (node?.type !== 'symlink' || readlinkSync(path.join(liveDir, e.path)) !== e.target) {
      plan.place.push({ path: e.path, staged: `f${plan.place.length}` });
      continue;
    }
    if (!sameOwner(e, node.stat) || !sameMtime(node.stat.mtimeMs, e.mtimeNs)) plan.meta.push({ path: e.path, type: e.type, mode: e.mode, mtimeNs: e.mtimeNs, ...ownerOf(e) });
  }
  // A directory needs its mode and mtime set when it is new, differs, or has an entry added or removed.
  const touched = new Set([...plan.remove, ...plan.mkdir, ...plan.place.map((p) => p.path)].map(parentPath));
  for (const { e, node } of dirs) {
    if (node?.type === 'dir' && !touched.has(e.path) && modeBits(node.stat.mode) === e.mode && sameOwner(e, node.stat) && sameMtime(node.stat.mtimeMs, e.mtimeNs)) continue;
    plan.dirs.push({ path: e.path, mode: e.mode, mtimeNs: e.mtimeNs, ...ownerOf(e) });
  }
  plan.dirs.sort((a, b) => depth(b.path) - depth(a.path));
  return plan;
}

/** A plan that changes nothing in the live tree (a run with nothing changed): its commit needs no new version. */
export function planIsEmpty(plan: Plan): boolean {
  return !plan.tree && !plan.patch && plan.remove.length + plan.mkdir.length + plan.place.length + plan.meta.length + plan.dirs.length === 0;
}

/** The other names (hard links) of the target's files with several, by first name; none in child datasets. */
function otherNames(target: Manifest, exclude: ReadonlySet<string>): Map<string, Entry[]> {
  const out = new Map<string, Entry[]>();
  for (const e of target.entries) {
    if (e.link === undefined || (exclude.size && exclude.has(topName(e.path)))) continue;
    const list = out.get(e.link);
    if (list) list.push(e);
    else out.set(e.link, [e]);
  }
  return out;
}

/**
 * Can the live file `node` (content proven) stay as a target file with
 * these other names? Only when each of them is that same live file, and no
 * target file already stays as it (of target files sharing one live file,
 * the first stays and the others are staged anew). Any other live name it
 * has is then not one the target keeps: it is replaced or removed.
 */
function keepsNames(node: LiveNode, names: readonly Entry[], liveOf: (p: string) => LiveNode | undefined, staying: Set<string>): boolean {
  const key = inodeKey(node);
  if (key === null) return names.length === 0;
  if (staying.has(key)) return false;
  for (const o of names) {
    const n = liveOf(o.path);
    if (!n || inodeKey(n) !== key) return false;
  }
  staying.add(key);
  return true;
}

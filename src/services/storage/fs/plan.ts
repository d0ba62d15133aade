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

/** A target file and its other names (hard links; none for most files). */
interface Group {
  first: Entry;
  others: Entry[];
}

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
  const liveOf = (e: Entry) => (e.path !== '' && underAny(removeSet, e.path) ? undefined : liveMap.get(e.path));
  const groups = fileGroups(target, exclude);
  const stays = groupsThatStay(groups, liveOf, provablySame, target.format >= 2);
  for (const e of target.entries) {
    if (exclude.size && e.path !== '' && exclude.has(topName(e.path))) continue;
    const node = liveOf(e);
    if (e.type === 'dir') {
      if (!node) plan.mkdir.push(e.path);
      dirs.push({ e, node });
      continue;
    }
    if (e.type === 'file') {
      const group = groups.get(e.path);
      if (!group) continue; // another name of a file: its group is handled with the first name
      if (!stays.has(group)) {
        const staged = `f${plan.place.length}`;
        plan.place.push({ path: e.path, staged });
        for (const o of group.others) plan.place.push({ path: o.path, staged: `f${plan.place.length}`, link: staged });
        continue;
      }
      const st = node!.stat;
      if (modeBits(st.mode) !== e.mode || !sameOwner(e, st) || !sameMtime(st.mtimeMs, e.mtimeNs)) plan.meta.push({ path: e.path, type: e.type, mode: e.mode, mtimeNs: e.mtimeNs, ...ownerOf(e) });
      continue;
    }
    if (!node || node.type !== 'symlink' || readlinkSync(path.join(liveDir, e.path)) !== e.target) {
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

/** The target's files by their first name, each with its other names (hard links), children's files left out. */
function fileGroups(target: Manifest, exclude: ReadonlySet<string>): Map<string, Group> {
  const groups = new Map<string, Group>();
  for (const e of target.entries) {
    if (e.type !== 'file' || (exclude.size && exclude.has(topName(e.path)))) continue;
    if (e.link === undefined) groups.set(e.path, { first: e, others: [] });
    else groups.get(e.link)?.others.push(e);
  }
  return groups;
}

function sameFileAs(node: LiveNode | undefined, key: string): boolean {
  return node?.type === 'file' && inodeKey(node) === key;
}

/**
 * The groups whose live file can stay as it is: every name is there and is
 * one live file (the same inode) whose content is proven, and no name of
 * another group that stays is that file too (of groups sharing one live
 * file, the first stays and the others are staged anew). Without links in
 * the target (a format 1 manifest does not record them), each name is
 * judged on its own, as then.
 */
function groupsThatStay(groups: Map<string, Group>, liveOf: (e: Entry) => LiveNode | undefined, provablySame: (e: Entry, node: LiveNode) => boolean, links: boolean): Set<Group> {
  const stays = new Set<Group>();
  const byInode = new Set<string>();
  for (const group of groups.values()) {
    const node = liveOf(group.first);
    if (node?.type !== 'file' || !provablySame(group.first, node)) continue;
    const key = links ? inodeKey(node) : null;
    if (key !== null) {
      if (byInode.has(key)) continue;
      if (!group.others.every((o) => sameFileAs(liveOf(o), key))) continue;
      byInode.add(key);
    } else if (group.others.length) {
      continue; // one live name for several target names
    }
    stays.add(group);
  }
  // Any other live name of a file that stays is not a name of a group that stays: it is replaced or removed.
  return stays;
}

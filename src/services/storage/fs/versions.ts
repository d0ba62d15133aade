/**
 * Versioned live trees: what makes a commit atomic to readers.
 *
 * A filesystem dataset's mountpoint is a relative symbolic link to one
 * version of its tree, `.syncsh/<pool>/trees/<uuid>/`. A commit
 * (receive, rollback) builds the next version beside the live one: a clone
 * whose directories are new and whose files are hard links to the live
 * ones (so unchanged content is never copied), then applies its plan to
 * the clone, and swaps with one rename(2) of a new link over the
 * mountpoint. A reader of the mountpoint sees the old tree or the new one,
 * never a mix, whenever the process dies. The version swapped out is kept
 * as the dataset's spare (`<meta>/spare` names it) and is the next commit's
 * build target: its clone then links, replaces or removes only what
 * differs from the live version, so a commit costs what changed, not the
 * whole tree (issue 13). Recover deletes every version that no link, spare
 * or pending commit names.
 *
 * Versions are named by uuid, not by dataset, and all sit in one directory
 * per pool: a child's link inside its parent's version reads `../<uuid>`,
 * which a clone of the parent copies as it is and a rename of either does
 * not change. A link moved to a place of another depth (mount, unmount, a
 * rename next to a directory made before versions) is written again
 * (relink). What a link names is the uuid at its end.
 *
 * Nothing is changed in place in a version another link may still name:
 * a file whose mode, owner or mtime the commit sets is copied into the
 * clone instead of linked (its other names are linked to the copy).
 *
 * Volumes keep their image in a real directory (an NBD server holds it
 * open and their commit patches it in place, a redo journal that recover
 * or the next open for serving replays: zvol.ts). A dataset made before
 * versions existed has a real directory too: its first commit turns it
 * into a version (the one moment a reader may find the path missing).
 */
import { randomUUID } from 'node:crypto';
import { COPYFILE_FICLONE } from 'node:constants';
import { type BigIntStats, type Dirent, chmodSync, copyFileSync, lchownSync, linkSync, lstatSync, mkdirSync, readdirSync, readlinkSync, realpathSync, renameSync, symlinkSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { Catalog } from './catalog.js';
import { errorCode, lstatOrNull, mode as modeBits, readJson, removeTree, sameMtime, setMtime, syncDir } from './files.js';
import type { Journal } from './journal.js';
import type { Layout } from './layout.js';
import { poolOf } from './names.js';

/** The swap a versioned commit ends with (kept in its journal). */
export interface Swap {
  /** the symbolic link readers go through: the mountpoint, or its place while unmounted */
  link: string;
  /** the version live when the commit was planned (a real directory for a dataset made before versions), or null (a new dataset) */
  from: string | null;
  /** the mtime of the link's directory, which the rename moves and which belongs to the parent dataset */
  parentMtimeNs?: string;
}

function versionsDir(layout: Layout, name: string): string {
  return layout.treesDir(poolOf(name));
}

/** Where a new version of `name`'s tree is built. */
export function newVersionDir(layout: Layout, name: string): string {
  return path.join(versionsDir(layout, name), randomUUID());
}

/** The directory a link (or a real directory) leads to: where the files are. */
export function resolveLive(p: string): string {
  try {
    return realpathSync(p);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return p; // nothing there yet
    throw error;
  }
}

/** The version a link names (the uuid its target ends with), or null for anything but a link. */
export function versionOf(link: string): string | null {
  try {
    return path.basename(readlinkSync(link));
  } catch {
    return null;
  }
}

/** Point `link` at `version` in one rename (a temporary link made beside the versions first). */
function placeLink(layout: Layout, name: string, link: string, version: string): void {
  const tmp = path.join(versionsDir(layout, name), `.link-${randomUUID()}`);
  mkdirSync(path.dirname(tmp), { recursive: true });
  // Relative to where the link really is (inside its parent's version, when it has one).
  symlinkSync(path.relative(realpathSync(path.dirname(link)), path.resolve(version)), tmp);
  renameSync(tmp, link);
  syncDir(path.dirname(link));
}

/** After `name`'s link moved (mount, unmount, rename): written again when its target no longer reads right from there. */
export function relink(layout: Layout, name: string, link: string): void {
  const uuid = versionOf(link);
  if (!uuid) return;
  const version = path.join(versionsDir(layout, name), uuid);
  if (readlinkSync(link) !== path.relative(realpathSync(path.dirname(link)), path.resolve(version))) placeLink(layout, name, link, version);
}

/**
 * Whether a commit into the tree at `live` (a link or a real directory) can
 * be versioned: child datasets' mountpoints inside it must be links or
 * empty stand-ins (an unmounted child), which a clone carries over; a
 * child made before versions, whose files are in the parent's directory,
 * keeps in-place commits until it is versioned itself.
 */
export function canVersion(live: string, childNames: ReadonlySet<string>): boolean {
  const dir = resolveLive(live);
  for (const c of childNames) {
    const st = lstatOrNull(path.join(dir, c));
    if (!st || st.isSymbolicLink()) continue;
    if (st.isDirectory() && readdirSync(path.join(dir, c)).length === 0) continue;
    return false;
  }
  return true;
}

/** A new filesystem dataset's mountpoint: a link to an empty first version (the link first: recover keeps what a link names). */
export function createVersionedRoot(layout: Layout, name: string, dirMode: number): void {
  const version = newVersionDir(layout, name);
  placeLink(layout, name, layout.mountpoint(name), version);
  mkdirSync(version, { mode: dirMode });
  chmodSync(version, dirMode);
}

/**
 * Make `to` a clone of the tree at `from`: directories with their mode,
 * owner and mtime; files hard-linked, except those of `copyPaths` (the
 * commit sets their metadata), which are copied (a reflink where the file
 * system has them); links and child mountpoints recreated. `to` may be
 * missing, or hold anything (the spare version, a clone cut short): an
 * entry that is already right (a file that is the same inode, an equal
 * link) is left alone and the rest is replaced or removed, so the work is
 * what differs, and running it again after a crash finishes it (issue 13).
 */
export function cloneTree(from: string, to: string, copyPaths: readonly string[]): void {
  const copyInos = new Set<number>();
  for (const p of copyPaths) {
    const st = lstatOrNull(path.join(from, p));
    if (st?.isFile()) copyInos.add(st.ino);
  }
  const copies = new Map<number, string>();
  const uid = process.geteuid?.();
  const gid = process.getegid?.();
  // Exact times (bigint stats): the manifests compare them to the nanosecond.
  const stat = (p: string) => lstatSync(p, { bigint: true });
  const keep = (p: string, st: BigIntStats, kind: 'dir' | 'file' | 'symlink', had?: BigIntStats) => {
    const [u, g] = had ? [Number(had.uid), Number(had.gid)] : [uid, gid];
    if (Number(st.uid) !== u || Number(st.gid) !== g) lchownSync(p, Number(st.uid), Number(st.gid));
    if (kind !== 'symlink') chmodSync(p, modeBits(Number(st.mode)));
    setMtime(p, st.mtimeNs.toString(), kind === 'symlink');
  };
  const sameLink = (s: string, t: string) => {
    const [a, b] = [stat(s), stat(t)];
    return readlinkSync(s) === readlinkSync(t) && a.uid === b.uid && a.gid === b.gid && sameMtime(Number(b.mtimeNs) / 1e6, a.mtimeNs.toString());
  };
  const walk = (src: string, dst: string) => {
    const had = lstatOrNull(dst);
    if (had && !had.isDirectory()) removeTree(dst);
    const existing = new Map<string, Dirent>();
    if (had?.isDirectory()) {
      chmodSync(dst, 0o700); // owner rwx while it is changed; its own mode at the end
      for (const d of readdirSync(dst, { withFileTypes: true })) existing.set(d.name, d);
    } else mkdirSync(dst, { mode: 0o700 });
    const before = had?.isDirectory() ? stat(dst) : undefined;
    for (const d of readdirSync(src, { withFileTypes: true })) {
      const s = path.join(src, d.name);
      const t = path.join(dst, d.name);
      const e = existing.get(d.name);
      existing.delete(d.name);
      if (d.isDirectory()) {
        if (e && !e.isDirectory()) removeTree(t);
        walk(s, t);
      } else if (d.isSymbolicLink()) {
        if (e?.isSymbolicLink() && sameLink(s, t)) continue;
        if (e) removeTree(t);
        symlinkSync(readlinkSync(s), t);
        keep(t, stat(s), 'symlink');
      } else if (copyInos.size && copyInos.has(lstatSync(s).ino)) {
        if (e) removeTree(t);
        const st = stat(s);
        const first = copies.get(Number(st.ino));
        if (first) linkSync(first, t);
        else {
          copyFileSync(s, t, COPYFILE_FICLONE);
          keep(t, st, 'file');
          copies.set(Number(st.ino), t);
        }
      } else {
        // Already this file (the spare shares every unchanged inode with the live version): nothing to do.
        if (e && !e.isDirectory() && !e.isSymbolicLink() && lstatSync(t).ino === lstatSync(s).ino) continue;
        if (e) removeTree(t);
        linkSync(s, t);
      }
    }
    for (const name of existing.keys()) removeTree(path.join(dst, name));
    keep(dst, stat(src), 'dir', before);
  };
  mkdirSync(path.dirname(to), { recursive: true });
  walk(from, to);
}

/** Where a directory made before versions goes when its first commit swaps a link in. */
function legacyPlace(next: string): string {
  return path.join(path.dirname(next), `legacy-${path.basename(next)}`);
}

/**
 * The swap: `swap.link` now names `next`. Run again after a crash it sees
 * the link already there and does nothing. A real directory in the link's
 * place (a dataset made before versions) is moved beside the versions first.
 */
export function swapIn(layout: Layout, name: string, swap: Swap, next: string): void {
  const st = lstatOrNull(swap.link);
  if (st?.isSymbolicLink() && versionOf(swap.link) === path.basename(next)) return;
  if (st?.isDirectory()) renameSync(swap.link, legacyPlace(next));
  placeLink(layout, name, swap.link, next);
}

/**
 * Children's mountpoints are not under the parent's lock: the link of one
 * made while the parent's next version was built is copied into it just
 * before the swap.
 */
export function carryChildren(catalog: Catalog, name: string, swap: Swap, next: string): void {
  if (!swap.from || !lstatOrNull(next)) return;
  const children = catalog.childMountNames(name);
  for (const c of children) {
    const live = path.join(swap.from, c);
    if (lstatOrNull(live)?.isSymbolicLink() && !lstatOrNull(path.join(next, c))) symlinkSync(readlinkSync(live), path.join(next, c));
  }
}

/**
 * A child destroyed while its parent committed: the parent's next version,
 * cloned before, still holds its link, naming a version that is gone. Such
 * links (into this pool's versions, to nothing, of no registered dataset)
 * are removed, keeping the directory's mtime (the parent's own); a parent
 * snapshot would otherwise take one for a file of its own. Returns their names.
 */
export function dropGoneChildLinks(catalog: Catalog, name: string, dir: string): string[] {
  const real = resolveLive(dir);
  const st = lstatSync(real, { bigint: true, throwIfNoEntry: false });
  if (!st?.isDirectory()) return [];
  const versions = resolveLive(versionsDir(catalog.layout, name));
  const gone: string[] = [];
  for (const d of readdirSync(real, { withFileTypes: true })) {
    if (!d.isSymbolicLink()) continue;
    const p = path.join(real, d.name);
    const target = path.resolve(real, readlinkSync(p));
    if (path.dirname(target) !== versions || lstatOrNull(target) || catalog.record(`${name}/${d.name}`)) continue;
    unlinkSync(p);
    gone.push(d.name);
  }
  if (gone.length) setMtime(real, st.mtimeNs.toString(), false);
  return gone;
}

/** The spare version of `name` (versions.ts, `keepSwappedOut`): its uuid, or null. */
export function spareOf(layout: Layout, name: string): string | null {
  return versionOf(layout.spareLink(name));
}

/**
 * After the swap: the version swapped out is kept as the spare, the next
 * commit's build target, which then only needs what changed since
 * (cloneTree). Deleting it cost an unlink of every file and directory per
 * commit (the largest part of an incremental one: issue 13). The spare it
 * replaces, if it was not this commit's target, is deleted, and so is a
 * directory made before versions. Run again after a crash, it does the same.
 */
export function keepSwappedOut(layout: Layout, name: string, swap: Swap, next: string): void {
  removeTree(legacyPlace(next));
  if (!swap.from) return;
  const from = path.resolve(swap.from);
  const versions = resolveLive(path.dirname(next));
  // Only ever a version: a real directory's path is the link's now.
  if (path.dirname(from) !== versions || path.basename(from) === path.basename(next)) return;
  const old = spareOf(layout, name);
  if (old !== path.basename(from)) {
    const tmp = `${layout.spareLink(name)}.${randomUUID()}`;
    symlinkSync(path.basename(from), tmp);
    renameSync(tmp, layout.spareLink(name));
  }
  if (old && old !== path.basename(next) && old !== path.basename(from)) removeTree(path.join(versions, old));
}

/** A version swapped out by a commit of a build that deleted it in its cleanup phase: deleted, unless it is the spare. */
export function dropSwappedOut(layout: Layout, name: string, swap: Swap, next: string): void {
  if (!swap.from) return;
  const from = path.resolve(swap.from);
  if (path.basename(from) === spareOf(layout, name)) return;
  if (path.dirname(from) === resolveLive(path.dirname(next)) && path.basename(from) !== path.basename(next)) removeTree(from);
}

/**
 * Delete every version in `pool` that no dataset's link and no pending
 * commit names (left by a crash). Skipped while a rename is unfinished.
 * Returns how many went.
 */
export function tidyVersions(catalog: Catalog, pool: string): number {
  const { layout } = catalog;
  const dir = layout.treesDir(pool);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  try {
    if (readdirSync(layout.renamesDir(pool)).length) return 0;
  } catch {
    /* no renames */
  }
  const kept = new Set<string>();
  for (const n of catalog.metaNames(pool)) {
    for (const link of [layout.mountpoint(n), layout.unmountedDir(n)]) {
      const v = versionOf(link);
      if (v) kept.add(v);
    }
    const spare = spareOf(layout, n);
    if (spare) kept.add(spare);
    const j = readJson<Journal>(layout.journalFile(n));
    if (j?.swap) {
      kept.add(path.basename(j.liveDir));
      if (j.swap.from) kept.add(path.basename(j.swap.from));
    }
  }
  let removed = 0;
  for (const n of names) {
    if (kept.has(n)) continue;
    const p = path.join(dir, n);
    if (n.startsWith('.link-')) {
      // A link being placed right now is left alone.
      if (Date.now() - (lstatOrNull(p)?.mtimeMs ?? 0) > 60_000) unlinkSync(p);
      continue;
    }
    removeTree(p);
    removed++;
  }
  return removed;
}

/**
 * Where a commit into `name` applies its plan: a new version and the swap
 * when the tree can be versioned (a filesystem whose children's
 * mountpoints are links or stand-ins), else the live tree in place (a
 * volume's image is patched in place; a plan that changes nothing needs
 * no new version). `parentMtimeNs`: the mtime the
 * link's directory is to have (the parent's, when it arrives in the same
 * stream); by default the one it has now.
 */
export function commitTarget(catalog: Catalog, name: string, opts: { kind: 'filesystem' | 'volume'; patch: boolean; create: boolean; current: string; parentMtimeNs?: string; unchanged?: boolean }): { liveDir: string; swap?: Swap } {
  // A plan that changes nothing leaves the live version as it is: no clone of every file, no swap (issue 13).
  if (opts.unchanged && !opts.create) return { liveDir: opts.current };
  const link = opts.create ? catalog.layout.mountpoint(name) : catalog.liveLink(name);
  if (opts.kind !== 'filesystem' || opts.patch || !canVersion(link, opts.create ? new Set() : catalog.childMountNames(name))) return { liveDir: opts.current };
  const from = lstatOrNull(link) ? resolveLive(link) : null;
  const parentMtimeNs = opts.parentMtimeNs ?? lstatSync(path.dirname(link), { bigint: true, throwIfNoEntry: false })?.mtimeNs.toString();
  // The spare (the version swapped out last) is built on when it is there: its clone costs what changed since.
  const spare = opts.create ? null : spareOf(catalog.layout, name);
  const spareDir = spare ? path.join(versionsDir(catalog.layout, name), spare) : null;
  const liveDir = spareDir && from && path.basename(from) !== spare && lstatOrNull(spareDir)?.isDirectory() ? spareDir : newVersionDir(catalog.layout, name);
  return { liveDir, swap: { link, from, ...(parentMtimeNs ? { parentMtimeNs } : {}) } };
}

/** A link left at `name`'s mountpoint by a creation that never registered it: removed (its version goes with recover's tidy). */
export function dropUnregisteredLink(layout: Layout, name: string): void {
  const mp = layout.mountpoint(name);
  if (!lstatOrNull(mp)?.isSymbolicLink()) return;
  const target = path.resolve(realpathSync(path.dirname(mp)), readlinkSync(mp));
  if (path.dirname(target) === resolveLive(versionsDir(layout, name))) unlinkSync(mp);
}

/**
 * A snapshot is a manifest: every entry of the tree (sorted by path) with
 * its type, mode, owner, mtime, size, symlink target, the list of blocks
 * that hold its bytes, and for a file with several names in the tree (hard
 * links) the first of them. The `cache` of an entry is this appliance's stat of the
 * live file when it was last known to match (inode, ctime, mtime); it lets a
 * snapshot or a comparison skip reading unchanged files and is never sent.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { CHUNK_SIZE, ZERO_BLOCK, ZVOL_CHUNK, isBlockHash } from './block-store.js';
import { chunkCount, isZeroRun, zeroRun } from './block-list.js';
import { errorCode, writeFileAtomic } from './files.js';
import { isSafeRelativePath } from './names.js';
import type { LiveStat } from './scan.js';

/**
 * 2: entries have an owner (uid, gid) and hard links (`link`). Format 1
 * manifests (no owners, no links) are still read: their files' owners are
 * unknown, so they are neither set nor compared.
 */
export const MANIFEST_FORMAT = 2;

export type EntryType = 'file' | 'dir' | 'symlink';

/** Node's number stats, compared exactly: the same timestamps always give the same doubles. */
export interface StatCache {
  ino: number;
  ctimeMs: number;
  mtimeMs: number;
  /** taken so close to a change that a later write could keep the same stat: do not trust it */
  racy?: boolean;
}

export interface Entry {
  /** relative POSIX path; '' is the dataset's root directory */
  path: string;
  type: EntryType;
  /** permission bits (0o7777) */
  mode: number;
  /** ns since the epoch, as a decimal string (too big for a JSON number) */
  mtimeNs: string;
  size: number;
  /** files: one name per chunk (the manifest's chunkSize), a sha256 or ZERO_BLOCK */
  blocks?: string[];
  /** symlinks */
  target?: string;
  /** owner; absent in format 1 manifests (not known: not set, not compared) */
  uid?: number;
  gid?: number;
  /**
   * files: another name of the same file (a hard link). The path of its
   * first name, an earlier file entry without `link` whose mode, owner,
   * mtime, size and blocks this entry repeats.
   */
  link?: string;
  cache?: StatCache;
}

export interface Manifest {
  format: number;
  id: string;
  name: string;
  /** dataset the snapshot was taken on (the sender's name after a receive) */
  origin: string;
  createdAt: string;
  kind: 'filesystem' | 'volume';
  volsize?: number;
  chunkSize: number;
  /** the exclude patterns the snapshot was taken with (kept on the source only: a copy holds the tree as sent) */
  exclude?: string[];
  entries: Entry[];
}

/**
 * How a manifest is stored: its fields, and each entry as one array
 *   [path, "f" | "d" | "l", mode, mtimeNs, size, blocks | target | 0, [ino, ctimeMs, mtimeMs, racy?] | 0, uid, gid, link?]
 * which parses in about a third of the time of one object per entry (a
 * 20,000-file manifest: 9 ms instead of 24) and is a third smaller. Rows
 * of format 1 end after the stat cache (no owner). Files written with one
 * object per entry (`entries`) are still read.
 */
type Row = [string, 'f' | 'd' | 'l', number, string, number, string[] | string | 0, [number, number, number, 1?] | 0, (number | null)?, (number | null)?, string?];
type StoredManifest = Omit<Manifest, 'entries'> & { rows?: Row[]; entries?: Entry[] };

function toRow(e: Entry): Row {
  const c = e.cache;
  const cache: Row[6] = c ? (c.racy ? [c.ino, c.ctimeMs, c.mtimeMs, 1] : [c.ino, c.ctimeMs, c.mtimeMs]) : 0;
  const t = e.type === 'file' ? 'f' : e.type === 'symlink' ? 'l' : 'd';
  const data = e.type === 'file' ? e.blocks! : e.type === 'symlink' ? e.target! : 0;
  if (e.link !== undefined) return [e.path, t, e.mode, e.mtimeNs, e.size, data, cache, e.uid ?? null, e.gid ?? null, e.link];
  if (e.uid !== undefined || e.gid !== undefined) return [e.path, t, e.mode, e.mtimeNs, e.size, data, cache, e.uid ?? null, e.gid ?? null];
  return [e.path, t, e.mode, e.mtimeNs, e.size, data, cache];
}

function fromRow(r: Row, file: string): Entry {
  const [p, t, mode, mtimeNs, size, data, c, uid, gid, link] = r;
  let e: Entry;
  if (t === 'f') e = { path: p, type: 'file', mode, mtimeNs, size, blocks: data as string[] };
  else if (t === 'd') e = { path: p, type: 'dir', mode, mtimeNs, size };
  else if (t === 'l') e = { path: p, type: 'symlink', mode, mtimeNs, size, target: data as string };
  else throw new Error(`The manifest ${file} is damaged: unknown entry type ${JSON.stringify(t)}.`);
  if (uid != null) e.uid = uid;
  if (gid != null) e.gid = gid;
  if (link !== undefined) e.link = link;
  if (c) e.cache = c[3] ? { ino: c[0], ctimeMs: c[1], mtimeMs: c[2], racy: true } : { ino: c[0], ctimeMs: c[1], mtimeMs: c[2] };
  return e;
}

/**
 * Parsed manifests, kept per file while the file is unchanged (same inode,
 * size and times; every write is a new file renamed into place). One sync
 * reads the same manifests several times (snapshot, send, the checks and
 * the commit of a receive, garbage collection); a daemon keeps them between
 * runs. The objects are shared: never modify a manifest that was read.
 */
const cache = new Map<string, { key: string; manifest: Manifest }>();
let cachedEntries = 0;
/** Enough for the few manifests a sync of a large tree uses, without holding a daemon's memory hostage. */
const CACHE_ENTRIES = 400_000;

function identity(st: Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

function remember(file: string, key: string, manifest: Manifest): void {
  forgetManifest(file);
  if (manifest.entries.length > CACHE_ENTRIES) return;
  cache.set(file, { key, manifest });
  cachedEntries += manifest.entries.length;
  for (const [f, c] of cache) {
    if (cachedEntries <= CACHE_ENTRIES) break;
    cache.delete(f); // oldest first: a Map keeps insertion order, and a hit re-inserts
    cachedEntries -= c.manifest.entries.length;
  }
}

export function forgetManifest(file: string): void {
  const had = cache.get(file);
  if (!had) return;
  cache.delete(file);
  cachedEntries -= had.manifest.entries.length;
}

/** The manifest in `file` (shared with other readers: do not modify it). */
export function readManifest(file: string, what: string): Manifest {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') throw new Error(`The manifest of ${what} is missing (${file}); that snapshot is damaged.`);
    throw error;
  }
  let text: string;
  let key: string;
  try {
    key = identity(fstatSync(fd));
    const hit = cache.get(file);
    if (hit && hit.key === key) {
      cache.delete(file);
      cache.set(file, hit);
      return hit.manifest;
    }
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  let stored: StoredManifest;
  try {
    stored = JSON.parse(text) as StoredManifest;
  } catch (error) {
    throw new Error(`The manifest of ${what} (${file}) is damaged: ${(error as Error).message}.`);
  }
  if (typeof stored?.format === 'number' && stored.format > MANIFEST_FORMAT) {
    throw new Error(`The manifest of ${what} (${file}) has format ${stored.format}, but this syncsh reads formats up to ${MANIFEST_FORMAT}; it was written by a newer syncsh.`);
  }
  const { rows, entries, ...fields } = stored;
  const manifest: Manifest = { ...fields, entries: rows ? rows.map((r) => fromRow(r, file)) : (entries ?? []) };
  remember(file, key, manifest);
  return manifest;
}

/** Write a manifest (atomically, synced); the object is kept as the parsed copy, so do not modify it afterwards. */
export function writeManifest(file: string, manifest: Manifest): void {
  const { entries, ...fields } = manifest;
  writeFileAtomic(file, JSON.stringify({ ...fields, rows: entries.map(toRow) }));
  remember(file, identity(statSync(file)), manifest);
}

/**
 * A copy of an entry with another stat cache (or none). Built field by
 * field, always in the same order, so that entries share a few hidden
 * classes: a copy made by spreading (`{ ...e, cache }`) gets one of its
 * own, and with 20,000 of those every read of an entry's field was a slow
 * lookup.
 */
export function withCache(e: Entry, cache: StatCache | undefined): Entry {
  const out: Entry = { path: e.path, type: e.type, mode: e.mode, mtimeNs: e.mtimeNs, size: e.size };
  if (e.blocks !== undefined) out.blocks = e.blocks;
  if (e.target !== undefined) out.target = e.target;
  if (e.uid !== undefined) out.uid = e.uid;
  if (e.gid !== undefined) out.gid = e.gid;
  if (e.link !== undefined) out.link = e.link;
  if (cache) out.cache = cache;
  return out;
}

/** An entry as it travels: without this appliance's stat cache. */
export function withoutCache(e: Entry): Entry {
  return e.cache ? withCache(e, undefined) : e;
}

const pathMaps = new WeakMap<Manifest, ReadonlyMap<string, Entry>>();

/** The entries by path, built once per manifest (a manifest's entry list is never changed once built). */
export function byPath(manifest: Manifest): ReadonlyMap<string, Entry> {
  let map = pathMaps.get(manifest);
  if (!map) {
    const built = new Map<string, Entry>();
    for (const e of manifest.entries) built.set(e.path, e);
    pathMaps.set(manifest, (map = built));
  }
  return map;
}

/**
 * Entries of a manifest looked up by path in ascending order: a merge walk
 * beside another sorted list (a scan, another manifest), without a map of
 * the whole manifest. A path asked below the previous one is looked up from
 * the start again, so an out-of-order caller is slower, never wrong.
 */
export class PathCursor {
  private i = 0;
  private last = '';

  constructor(private readonly entries: readonly Entry[]) {}

  at(p: string): Entry | undefined {
    const list = this.entries;
    if (p < this.last) this.i = 0;
    this.last = p;
    while (this.i < list.length && list[this.i].path < p) this.i++;
    const e = list[this.i];
    if (e !== undefined && e.path === p) return e;
    // A manifest not in path order (none is written so): no merge is possible, look it up whole.
    return this.sorted() ? undefined : byPath({ entries: list } as Manifest).get(p);
  }

  private checked: boolean | undefined;

  private sorted(): boolean {
    if (this.checked === undefined) {
      const list = this.entries;
      let ok = true;
      for (let k = 1; ok && k < list.length; k++) ok = list[k - 1].path < list[k].path;
      this.checked = ok;
    }
    return this.checked;
  }
}

/**
 * The stored blocks of the files of `manifest` whose block list is not the
 * one of the file at the same path in `other` (a merge walk in path order):
 * every block of `manifest` that is not among these is one `other` has.
 * `fn` returns false to stop.
 */
export function forEachBlockBeyond(manifest: Manifest, other: Manifest, fn: (hash: string) => boolean | undefined): void {
  const before = new PathCursor(other.entries);
  for (const e of manifest.entries) {
    const blocks = e.blocks;
    if (!blocks || e.link !== undefined) continue;
    const was = before.at(e.path);
    const old = was?.link === undefined ? was?.blocks : undefined;
    if (old && (old === blocks || (old.length === blocks.length && old.every((h, i) => h === blocks[i])))) continue;
    for (const h of blocks) if (!zeroRun(h) && fn(h) === false) return;
  }
}

export function cacheOf(st: LiveStat, racy: boolean): StatCache {
  return racy ? { ino: st.ino, ctimeMs: st.ctimeMs, mtimeMs: st.mtimeMs, racy: true } : { ino: st.ino, ctimeMs: st.ctimeMs, mtimeMs: st.mtimeMs };
}

/** The live file is provably the one the cache describes (same inode, ctime, mtime and size). */
export function cacheMatches(entry: Entry, st: LiveStat): boolean {
  const c = entry.cache;
  return !!c && !c.racy && st.size === entry.size && st.ino === c.ino && st.ctimeMs === c.ctimeMs && st.mtimeMs === c.mtimeMs;
}

export function sameContent(a: Entry, b: Entry): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'symlink') return a.target === b.target;
  if (a.type === 'dir') return true;
  if (a.size !== b.size || a.blocks!.length !== b.blocks!.length) return false;
  return a.blocks!.every((h, i) => h === b.blocks![i]);
}

/** The bytes of the snapshot's files, each file once (however many names it has). */
export function referencedBytes(manifest: Manifest): number {
  let n = 0;
  for (const e of manifest.entries) if (e.type === 'file' && e.link === undefined) n += e.size;
  return n;
}

/** Every stored block the manifest refers to, in the order its files use them (with repeats; a hard link's once). */
export function blocksOf(manifest: Manifest): string[] {
  const out: string[] = [];
  for (const e of manifest.entries) if (e.blocks && e.link === undefined) for (const h of e.blocks) if (!zeroRun(h)) out.push(h);
  return out;
}

/** This process can set any owner (it runs as root): owners are then set on receive and rollback, and compared. */
export const CAN_CHOWN = process.geteuid?.() === 0;

/** The entry's owner is known (format 2) and this process sets owners: it is part of what must match. */
export function ownerKept(e: Entry): boolean {
  return CAN_CHOWN && e.uid !== undefined && e.gid !== undefined;
}

/** The same owner, as far as it is kept (see ownerKept). */
export function sameOwner(e: Entry, st: { uid: number; gid: number }): boolean {
  if (!CAN_CHOWN) return true;
  const uid = e.uid;
  // uid and gid are both recorded or both not (checkReceivedManifest)
  return uid === undefined || (uid === st.uid && e.gid === st.gid);
}

export function compareByPath(a: { path: string }, b: { path: string }): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/**
 * Check a manifest that came from a stream: well-formed entries, safe
 * paths, sorted and unique, every entry inside a directory of the
 * manifest, block lists matching the sizes. Throws a sentence.
 */
export function checkReceivedManifest(value: unknown, where: string): Manifest {
  const bad = (why: string): never => {
    throw new Error(`The manifest in the stream for ${where} is invalid: ${why}.`);
  };
  if (!value || typeof value !== 'object') bad('not an object');
  const m = value as Manifest;
  if (m.format !== 1 && m.format !== MANIFEST_FORMAT) bad(`format ${String(m.format)} is neither 1 nor ${MANIFEST_FORMAT}`);
  let links = false;
  if (typeof m.id !== 'string' || !m.id) bad('no snapshot id');
  if (typeof m.name !== 'string' || !m.name) bad('no snapshot name');
  if (m.kind !== 'filesystem' && m.kind !== 'volume') bad(`unknown kind ${String(m.kind)}`);
  if (m.chunkSize !== CHUNK_SIZE && !(m.kind === 'volume' && m.chunkSize === ZVOL_CHUNK)) bad(`chunk size ${String(m.chunkSize)} is not ${CHUNK_SIZE}${m.kind === 'volume' ? ` or ${ZVOL_CHUNK}` : ''}`);
  if (!Array.isArray(m.entries) || m.entries.length === 0) bad('no entries');
  const dirs = new Set<string>();
  let previous: string | null = null;
  for (const e of m.entries) {
    if (!e || typeof e.path !== 'string' || !isSafeRelativePath(e.path)) bad(`unsafe path ${JSON.stringify(e?.path)}`);
    if (previous === null ? e.path !== '' : e.path <= previous) bad(`entries out of order at ${JSON.stringify(e.path)}`);
    if (previous === null && e.type !== 'dir') bad('the root is not a directory');
    if (previous !== null) {
      const parent = e.path.includes('/') ? e.path.slice(0, e.path.lastIndexOf('/')) : '';
      if (!dirs.has(parent)) bad(`${JSON.stringify(e.path)} is not inside a directory of the manifest`);
    }
    previous = e.path;
    if (!Number.isInteger(e.mode) || e.mode < 0 || e.mode > 0o7777) bad(`bad mode for ${JSON.stringify(e.path)}`);
    if (typeof e.mtimeNs !== 'string' || !/^-?\d{1,22}$/.test(e.mtimeNs)) bad(`bad mtime for ${JSON.stringify(e.path)}`);
    if (!Number.isSafeInteger(e.size) || e.size < 0) bad(`bad size for ${JSON.stringify(e.path)}`);
    if (e.uid !== undefined || e.gid !== undefined) {
      if (m.format === 1) bad(`an owner for ${JSON.stringify(e.path)} in a format 1 manifest`);
      if (!isId(e.uid) || !isId(e.gid)) bad(`bad owner for ${JSON.stringify(e.path)}`);
    }
    if (e.link !== undefined) {
      if (m.format === 1 || e.type !== 'file') bad(`a hard link at ${JSON.stringify(e.path)}, which cannot be one`);
      links = true;
    }
    if (e.type === 'dir') {
      dirs.add(e.path);
    } else if (e.type === 'file') {
      const blocks = e.blocks;
      const runs = m.chunkSize === ZVOL_CHUNK; // zvols write runs of zero chunks as one name (block-list.ts)
      if (!Array.isArray(blocks) || blocks.some((h) => typeof h !== 'string')) bad(`bad block list for ${JSON.stringify(e.path)}`);
      for (const h of blocks!) if (h !== ZERO_BLOCK && !isBlockHash(h) && !(runs && isZeroRun(h))) bad(`bad block name for ${JSON.stringify(e.path)}`);
      if (chunkCount(blocks!) !== Math.ceil(e.size / m.chunkSize)) bad(`bad block list for ${JSON.stringify(e.path)}`);
    } else if (e.type === 'symlink') {
      if (typeof e.target !== 'string' || !e.target || e.target.includes('\0')) bad(`bad symlink target for ${JSON.stringify(e.path)}`);
    } else {
      bad(`unknown entry type ${JSON.stringify((e as Entry).type)}`);
    }
  }
  if (links) {
    const firsts = new Map<string, Entry>();
    for (const e of m.entries) {
      if (e.type !== 'file') continue;
      if (e.link === undefined) {
        firsts.set(e.path, e);
        continue;
      }
      const first = typeof e.link === 'string' ? firsts.get(e.link) : undefined;
      if (!first) bad(`${JSON.stringify(e.path)} is a hard link of ${JSON.stringify(e.link)}, which is not an earlier file of the manifest`);
      if (!sameFile(first!, e)) bad(`${JSON.stringify(e.path)} is a hard link of ${JSON.stringify(e.link)} but does not describe the same file`);
    }
  }
  return m;
}

/** uid and gid are 32-bit; (uid_t)-1 means "no change" to chown, so it is no owner. */
function isId(v: unknown): boolean {
  return Number.isInteger(v) && (v as number) >= 0 && (v as number) < 0xffffffff;
}

/** Two names of one file describe it alike: mode, owner, mtime, size and content. */
function sameFile(a: Entry, b: Entry): boolean {
  return a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtimeNs === b.mtimeNs && sameContent(a, b);
}

function sameEntry(a: Entry, b: Entry): boolean {
  return a.type === b.type && a.mode === b.mode && a.mtimeNs === b.mtimeNs && a.size === b.size && a.target === b.target && a.uid === b.uid && a.gid === b.gid && a.link === b.link && sameContent(a, b);
}

/** What turns `base` into `target`: an incremental stream carries this instead of the whole manifest. */
export interface ManifestDelta {
  upserts: Entry[];
  removes: string[];
}

/** Both manifests are in path order: one merge walk, no map of either. */
export function diffManifests(base: Manifest, target: Manifest): ManifestDelta {
  const before = new PathCursor(base.entries);
  const after = new PathCursor(target.entries);
  const upserts: Entry[] = [];
  for (const e of target.entries) {
    const old = before.at(e.path);
    if (!old || !sameEntry(old, e)) upserts.push(withoutCache(e));
  }
  return { upserts, removes: base.entries.filter((e) => after.at(e.path) === undefined).map((e) => e.path) };
}

/**
 * The target's entries, rebuilt from the base and a delta. Entries the
 * delta leaves alone are the base's own objects, stat caches included
 * (their files were not touched): shared, so never modify them.
 */
export function applyDelta(base: Manifest, delta: ManifestDelta): Entry[] {
  const removes = new Set(delta.removes);
  const upserts = new Map(delta.upserts.map((e) => [e.path, e]));
  const out: Entry[] = [];
  for (const e of base.entries) {
    if (removes.has(e.path)) continue;
    const changed = upserts.get(e.path);
    out.push(changed ?? e);
    if (changed) upserts.delete(e.path);
  }
  if (upserts.size) {
    out.push(...upserts.values());
    out.sort(compareByPath);
  }
  return out;
}

/**
 * A digest of the entries (without stat caches), to prove a manifest
 * rebuilt from a delta is the sender's. Owner and link are added to an
 * entry's line only when it has them, so entries without (format 1, as
 * version 2 streams carry them) digest as they always did.
 */
export function entriesDigest(entries: Entry[]): string {
  const hash = createHash('sha256');
  let text = '';
  for (const e of entries) {
    const owned = e.uid !== undefined || e.gid !== undefined || e.link !== undefined;
    text += owned
      ? `${e.path}\0${e.type}\0${e.mode}\0${e.mtimeNs}\0${e.size}\0${e.target ?? ''}\0${e.blocks ? e.blocks.join(',') : ''}\0${e.uid ?? ''}\0${e.gid ?? ''}\0${e.link ?? ''}\n`
      : `${e.path}\0${e.type}\0${e.mode}\0${e.mtimeNs}\0${e.size}\0${e.target ?? ''}\0${e.blocks ? e.blocks.join(',') : ''}\n`;
    // Hashed in pieces of about 64 KiB: one update per entry costs more than the hashing.
    if (text.length >= 65536) {
      hash.update(text);
      text = '';
    }
  }
  return hash.update(text).digest('hex');
}

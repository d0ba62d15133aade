/**
 * A snapshot is a manifest: every entry of the tree (sorted by path) with
 * its type, mode, mtime, size, symlink target and the list of blocks that
 * hold its bytes. The `cache` of an entry is this appliance's stat of the
 * live file when it was last known to match (inode, ctime, mtime); it lets a
 * snapshot or a comparison skip reading unchanged files and is never sent.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { CHUNK_SIZE, ZERO_BLOCK, isBlockHash } from './block-store.js';
import { errorCode, writeFileAtomic } from './files.js';
import { isSafeRelativePath } from './names.js';

export const MANIFEST_FORMAT = 1;

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
  /** files: one name per CHUNK_SIZE chunk, a sha256 or ZERO_BLOCK */
  blocks?: string[];
  /** symlinks */
  target?: string;
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
  entries: Entry[];
}

export function readManifest(file: string, what: string): Manifest {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') throw new Error(`The manifest of ${what} is missing (${file}); that snapshot is damaged.`);
    throw error;
  }
  return JSON.parse(text) as Manifest;
}

export function writeManifest(file: string, manifest: Manifest): void {
  writeFileAtomic(file, JSON.stringify(manifest));
}

/** The manifest as it travels: without this appliance's stat caches. */
export function portable(manifest: Manifest): Manifest {
  return { ...manifest, entries: manifest.entries.map(({ cache: _cache, ...rest }) => rest) };
}

export function byPath(manifest: Manifest): Map<string, Entry> {
  return new Map(manifest.entries.map((e) => [e.path, e]));
}

export function cacheOf(st: Stats, racy: boolean): StatCache {
  return racy ? { ino: st.ino, ctimeMs: st.ctimeMs, mtimeMs: st.mtimeMs, racy: true } : { ino: st.ino, ctimeMs: st.ctimeMs, mtimeMs: st.mtimeMs };
}

/** The live file is provably the one the cache describes (same inode, ctime, mtime and size). */
export function cacheMatches(entry: Entry, st: Stats): boolean {
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

export function referencedBytes(manifest: Manifest): number {
  let n = 0;
  for (const e of manifest.entries) if (e.type === 'file') n += e.size;
  return n;
}

export function* blocksOf(manifest: Manifest): Generator<string> {
  for (const e of manifest.entries) if (e.blocks) for (const h of e.blocks) if (h !== ZERO_BLOCK) yield h;
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
  if (m.format !== MANIFEST_FORMAT) bad(`format ${String(m.format)} is not ${MANIFEST_FORMAT}`);
  if (typeof m.id !== 'string' || !m.id) bad('no snapshot id');
  if (typeof m.name !== 'string' || !m.name) bad('no snapshot name');
  if (m.kind !== 'filesystem' && m.kind !== 'volume') bad(`unknown kind ${String(m.kind)}`);
  if (m.chunkSize !== CHUNK_SIZE) bad(`chunk size ${String(m.chunkSize)} is not ${CHUNK_SIZE}`);
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
    delete e.cache;
    if (e.type === 'dir') {
      dirs.add(e.path);
    } else if (e.type === 'file') {
      const blocks = e.blocks;
      if (!Array.isArray(blocks) || blocks.length !== Math.ceil(e.size / CHUNK_SIZE)) bad(`bad block list for ${JSON.stringify(e.path)}`);
      for (const h of blocks!) if (h !== ZERO_BLOCK && !isBlockHash(h)) bad(`bad block name for ${JSON.stringify(e.path)}`);
    } else if (e.type === 'symlink') {
      if (typeof e.target !== 'string' || !e.target || e.target.includes('\0')) bad(`bad symlink target for ${JSON.stringify(e.path)}`);
    } else {
      bad(`unknown entry type ${JSON.stringify((e as Entry).type)}`);
    }
  }
  return m;
}

function sameEntry(a: Entry, b: Entry): boolean {
  return a.type === b.type && a.mode === b.mode && a.mtimeNs === b.mtimeNs && a.size === b.size && a.target === b.target && sameContent(a, b);
}

/** What turns `base` into `target`: an incremental stream carries this instead of the whole manifest. */
export interface ManifestDelta {
  upserts: Entry[];
  removes: string[];
}

export function diffManifests(base: Manifest, target: Manifest): ManifestDelta {
  const old = byPath(base);
  const upserts: Entry[] = [];
  for (const e of portable(target).entries) {
    const before = old.get(e.path);
    old.delete(e.path);
    if (!before || !sameEntry(before, e)) upserts.push(e);
  }
  return { upserts, removes: [...old.keys()] };
}

export function applyDelta(base: Manifest, delta: ManifestDelta): Entry[] {
  const map = byPath(portable(base));
  for (const p of delta.removes) map.delete(p);
  for (const e of delta.upserts) map.set(e.path, e);
  return [...map.values()].sort(compareByPath);
}

/** A digest of the entries (without stat caches), to prove a manifest rebuilt from a delta is the sender's. */
export function entriesDigest(entries: Entry[]): string {
  const hash = createHash('sha256');
  for (const e of entries) {
    hash.update(`${e.path}\0${e.type}\0${e.mode}\0${e.mtimeNs}\0${e.size}\0${e.target ?? ''}\0${(e.blocks ?? []).join(',')}\n`);
  }
  return hash.digest('hex');
}

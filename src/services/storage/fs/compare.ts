/**
 * Does the live tree still match a manifest? Stat first (paths, types,
 * modes, owners, sizes, mtimes, symlink targets, which names are one file);
 * a file's content is read and
 * hashed only when its stat cache cannot vouch for it (new inode or ctime
 * with the same size and mtime, e.g. after a copy that kept the mtime).
 */
import { closeSync, openSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { CHUNK_SIZE, ZERO_BLOCK, blockName } from './block-store.js';
import { forEachRun, zeroRun } from './block-list.js';
import { Breather, mode, readFull, sameMtime } from './files.js';
import { cacheMatches, sameOwner, type Entry, type Manifest } from './manifest.js';
import { linkPrimaries, scanTree, type LiveNode } from './scan.js';
import type { ExcludeMatcher } from './excludes.js';

function contentMatches(file: string, entry: Entry, buf: Buffer, chunk: number): boolean {
  const fd = openSync(file, 'r');
  try {
    const chunks = Math.ceil(entry.size / chunk);
    let same = true;
    forEachRun(entry.blocks!, (first, count, name) => {
      for (let i = first; same && i < first + count; i++) {
        const n = readFull(fd, buf.subarray(0, chunk), i * chunk);
        const expected = i === chunks - 1 ? entry.size - i * chunk : chunk;
        if (n !== expected || blockName(buf.subarray(0, n)) !== (zeroRun(name) ? ZERO_BLOCK : name)) same = false;
      }
    });
    if (!same) return false;
    return readFull(fd, buf.subarray(0, 1), entry.size) === 0;
  } finally {
    closeSync(fd);
  }
}

function topName(p: string): string {
  const at = p.indexOf('/');
  return at < 0 ? p : p.slice(0, at);
}

/** The first difference between the live tree and the manifest, as a short phrase, or null when they match. */
export async function firstDifference(liveDir: string, manifest: Manifest, exclude: ReadonlySet<string>, skip: ExcludeMatcher | null = null): Promise<string | null> {
  return differenceFrom(await scanTree(liveDir, exclude, skip), liveDir, manifest, exclude);
}

/** firstDifference for a tree already scanned (scanTree's result for liveDir). */
export async function differenceFrom(scanned: LiveNode[] | null, liveDir: string, manifest: Manifest, exclude: ReadonlySet<string>): Promise<string | null> {
  if (!scanned) return `${liveDir} is missing`;
  // Special files (fifos, sockets, devices) are not part of a dataset.
  const live: LiveNode[] = scanned.filter((n) => n.type !== 'other');
  const entries = exclude.size ? manifest.entries.filter((e) => e.path === '' || !exclude.has(topName(e.path))) : manifest.entries;
  let buf: Buffer | null = null;
  const breather = new Breather();
  // Hard links are recorded from format 2 on; a format 1 manifest does not know them.
  const primaries = manifest.format >= 2 ? linkPrimaries(live) : null;
  for (let i = 0; i < Math.max(live.length, entries.length); i++) {
    const node = live[i];
    const e = entries[i];
    if (!node) return `${e.path} was deleted`;
    if (!e || node.path !== e.path) return `${(!e || node.path < e.path ? node : e).path} was added or deleted`;
    const where = e.path || 'the root directory';
    if (node.type !== e.type) return `${where} changed type`;
    if (!sameOwner(e, node.stat)) return `${where} changed owner`;
    if (primaries && e.type === 'file' && (e.link !== undefined || primaries.size) && (primaries.get(e.path) ?? e.path) !== (e.link ?? e.path)) {
      return e.link === undefined ? `${where} became a hard link of ${primaries.get(e.path)}` : `${where} is no longer a hard link of ${e.link}`;
    }
    if (e.type === 'symlink') {
      if (readlinkSync(path.join(liveDir, e.path)) !== e.target) return `${where} points elsewhere`;
      continue;
    }
    if (mode(node.stat.mode) !== e.mode) return `${where} changed mode`;
    if (e.type === 'dir') continue;
    if (node.stat.size !== e.size) return `${where} changed size`;
    if (!sameMtime(node.stat.mtimeMs, e.mtimeNs)) return `${where} changed mtime`;
    if (cacheMatches(e, node.stat)) continue;
    buf ??= Buffer.allocUnsafe(CHUNK_SIZE);
    if (!contentMatches(path.join(liveDir, e.path), e, buf, manifest.chunkSize)) return `${where} changed content`;
    await breather.breathe();
  }
  return null;
}

/**
 * Taking a snapshot: walk the live tree, copy changed content into the
 * block store and describe every entry in a manifest. A file whose
 * (size, mtime, inode, ctime) match the previous manifest's stat cache is
 * not read again: its block list is reused, which is what makes an
 * incremental snapshot of a large, mostly unchanged tree cheap.
 *
 * Every entry records its owner. A file with several names in the tree
 * (hard links) is read once, under its first name in path order; its
 * other names repeat that entry with `link` pointing to the first.
 *
 * What a snapshot guarantees (the fs driver has no copy-on-write to freeze
 * the tree): each file is as read at one moment, and a tree that nothing
 * changes while the snapshot is taken is captured exactly. A tree that
 * changes during the snapshot is noticed (`changedUnderScan`: a file that
 * vanished or changed while it was read, a directory whose entries changed
 * since the walk); the driver then takes it again, and reports the snapshot
 * as not point-in-time when the tree keeps changing (see index.ts).
 */
import { randomUUID } from 'node:crypto';
import { closeSync, fstatSync, lstatSync, openSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { type BlockStore, CHUNK_SIZE, ZERO_BLOCK, blockName } from './block-store.js';
import type { Catalog } from './catalog.js';
import { Breather, errorCode, mode, msToNs, readFull, sameMtime } from './files.js';
import { MANIFEST_FORMAT, PathCursor, cacheMatches, cacheOf, readManifest, type Entry, type Manifest } from './manifest.js';
import { linkPrimaries, scanTree, type LiveNode, type LiveStat } from './scan.js';
import { excludeMatcher } from './excludes.js';

/**
 * A write that lands in the same clock tick as our stat can leave size,
 * mtime and ctime unchanged (the "racy git" problem). A stat taken within
 * this margin of the snapshot's start is marked racy and re-read next time.
 * File systems with whole-second times get a wider margin.
 */
function isRacy(st: LiveStat, startMs: number): boolean {
  const margin = st.ctimeMs % 1000 === 0 ? 2000 : 100;
  return st.ctimeMs >= startMs - margin;
}

/**
 * Read files into the store, chunk by chunk (never a whole file in
 * memory); each entry gets its block list, size as read and exact mtime.
 * Returns the entries of files that were gone by the time we got to them.
 */
async function storeFiles(store: BlockStore, liveDir: string, files: { entry: Entry; stat: LiveStat }[], what: string, signal?: AbortSignal, changed?: string[]): Promise<Set<Entry>> {
  const buf = Buffer.allocUnsafe(CHUNK_SIZE);
  const breather = new Breather();
  const vanished = new Set<Entry>();
  for (const { entry, stat } of files) {
    signal?.throwIfAborted();
    const file = path.join(liveDir, entry.path);
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (error) {
      // Deleted between the walk and the read: the snapshot does not have it.
      if (errorCode(error) === 'ENOENT') {
        vanished.add(entry);
        continue;
      }
      throw new Error(`Cannot read ${file} for the snapshot ${what}: ${(error as Error).message}.`, { cause: error });
    }
    try {
      const mtimeNs = String(fstatSync(fd, { bigint: true }).mtimeNs);
      let size = 0;
      for (;;) {
        let n: number;
        try {
          n = readFull(fd, buf, size);
        } catch (error) {
          throw new Error(`Cannot read ${file} for the snapshot ${what}: ${(error as Error).message}.`, { cause: error });
        }
        if (n === 0) break;
        const chunk = buf.subarray(0, n);
        const name = blockName(chunk);
        if (name !== ZERO_BLOCK) store.put(name, chunk);
        entry.blocks!.push(name);
        size += n;
        if (n < CHUNK_SIZE) break;
        await breather.breathe();
      }
      entry.size = size;
      entry.mtimeNs = mtimeNs;
      // Changed while we read it: the content is what we read, but the stat is not to be trusted.
      if (size !== stat.size || !sameMtime(stat.mtimeMs, mtimeNs)) {
        entry.cache!.racy = true;
        changed?.push(entry.path);
      }
    } finally {
      closeSync(fd);
    }
    await breather.breathe();
  }
  return vanished;
}

/**
 * The other names of each file with several take what was read under its
 * first name. When that first name was gone by the time it was read, the
 * next name becomes the first and is read in its place.
 */
async function settleLinks(store: BlockStore, liveDir: string, links: Map<Entry, Entry[]>, vanished: Set<Entry>, startMs: number, what: string, signal?: AbortSignal): Promise<void> {
  let pending = [...links];
  while (pending.length) {
    const again: [Entry, Entry[]][] = [];
    const toRead: { entry: Entry; stat: LiveStat }[] = [];
    for (const [first, others] of pending) {
      if (!vanished.has(first)) {
        for (const o of others) Object.assign(o, { mode: first.mode, uid: first.uid, gid: first.gid, mtimeNs: first.mtimeNs, size: first.size, blocks: first.blocks, cache: first.cache });
        continue;
      }
      const [next, ...rest] = others;
      if (!next) continue;
      const st = lstatSync(path.join(liveDir, next.path), { throwIfNoEntry: false });
      if (!st?.isFile()) {
        vanished.add(next);
        again.push([first, rest]);
        continue;
      }
      // The next name is the file's first name now.
      const stat: LiveStat = { mode: st.mode, size: st.size, ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, uid: st.uid, gid: st.gid, nlink: st.nlink, dev: st.dev };
      Object.assign(next, { mode: mode(st.mode), uid: st.uid, gid: st.gid, size: st.size, blocks: [], cache: cacheOf(stat, isRacy(stat, startMs)) });
      delete next.link;
      for (const o of rest) o.link = next.path;
      toRead.push({ entry: next, stat });
      again.push([next, rest]);
    }
    for (const v of await storeFiles(store, liveDir, toRead, what, signal)) vanished.add(v);
    pending = again;
  }
}

/**
 * The paths that changed between the walk and the end of the reads: files
 * that vanished or changed while read, and directories whose entries or
 * metadata changed since the walk (an entry added, removed or renamed
 * changes its directory's mtime and ctime). At most `limit` of them.
 */
export function changedUnderScan(liveDir: string, nodes: LiveNode[], vanished: Set<Entry>, changedWhileRead: string[], limit = 10): string[] {
  const out = [...[...vanished].map((e) => e.path), ...changedWhileRead];
  for (const node of nodes) {
    if (out.length >= limit) break;
    if (node.type !== 'dir') continue;
    const now = lstatSync(path.join(liveDir, node.path), { throwIfNoEntry: false });
    if (!now || now.mtimeMs !== node.stat.mtimeMs || now.ctimeMs !== node.stat.ctimeMs) out.push(node.path === '' ? '.' : node.path);
  }
  return out.slice(0, limit);
}

/**
 * Read the live tree into `store` and describe it, with what changed under
 * the scan (empty: the tree held still). The caller seals the
 * store before it writes and lists the manifest, and discards what was
 * stored when that fails.
 */
export async function takeSnapshot(catalog: Catalog, dataset: string, name: string, store: BlockStore, signal?: AbortSignal, exclude: readonly string[] = []): Promise<{ manifest: Manifest; changed: string[] }> {
  const rec = catalog.require(dataset);
  const liveDir = catalog.liveDir(dataset);
  const index = catalog.index(dataset);
  const prevId = index.head && index.snapshots.some((s) => s.id === index.head) ? index.head : index.snapshots.at(-1)?.id;
  // The scan and the previous manifest are both in path order: looked up by a merge walk, not a map of 20,000 paths.
  const prev = new PathCursor(prevId ? readManifest(catalog.layout.manifestFile(dataset, prevId), `${dataset} (${prevId})`).entries : []);
  const startMs = Date.now();
  const nodes = await scanTree(liveDir, catalog.childMountNames(dataset), excludeMatcher(exclude));
  if (!nodes) throw new Error(`The files of fs dataset ${dataset} are missing: ${liveDir} does not exist.`);
  const primaries = linkPrimaries(nodes);
  const entries: Entry[] = [];
  const toRead: { entry: Entry; stat: LiveStat }[] = [];
  /** the other names of files with several, by their first name's entry: filled in once it is read */
  const links = new Map<Entry, Entry[]>();
  const firsts = new Map<string, Entry>();
  for (const node of nodes) {
    const { stat } = node;
    const p = node.path;
    if (node.type === 'file') {
      const primary = primaries.size ? primaries.get(p) : undefined;
      const first = primary !== undefined && primary !== p ? firsts.get(primary) : undefined;
      if (first) {
        // The same file: what its first name says of it (filled in once that is read).
        const entry: Entry = { path: p, type: 'file', mode: first.mode, mtimeNs: first.mtimeNs, size: first.size, blocks: first.blocks, uid: first.uid, gid: first.gid, link: primary, cache: first.cache };
        entries.push(entry);
        links.get(first)!.push(entry);
        continue;
      }
      const before = prev.at(p);
      let entry: Entry;
      if (before?.type === 'file' && cacheMatches(before, stat)) {
        // Same inode, ctime and mtime: same content, and the exact mtime is the one recorded.
        entry = { path: p, type: 'file', mode: mode(stat.mode), mtimeNs: before.mtimeNs, size: before.size, blocks: before.blocks, uid: stat.uid, gid: stat.gid, cache: before.cache };
      } else {
        entry = { path: p, type: 'file', mode: mode(stat.mode), mtimeNs: msToNs(stat.mtimeMs), size: stat.size, blocks: [], uid: stat.uid, gid: stat.gid, cache: cacheOf(stat, isRacy(stat, startMs)) };
        toRead.push({ entry, stat });
      }
      entries.push(entry);
      if (primary === p) {
        firsts.set(p, entry);
        links.set(entry, []);
      }
    } else if (node.type === 'dir') {
      entries.push({ path: p, type: 'dir', mode: mode(stat.mode), mtimeNs: msToNs(stat.mtimeMs), size: 0, uid: stat.uid, gid: stat.gid });
    } else if (node.type === 'symlink') {
      entries.push({ path: p, type: 'symlink', mode: mode(stat.mode), mtimeNs: msToNs(stat.mtimeMs), size: 0, target: readlinkSync(path.join(liveDir, p)), uid: stat.uid, gid: stat.gid });
    }
    // sockets, fifos and devices are not part of a snapshot
  }
  const changedWhileRead: string[] = [];
  const vanished = await storeFiles(store, liveDir, toRead, `${dataset}@${name}`, signal, changedWhileRead);
  if (links.size) await settleLinks(store, liveDir, links, vanished, startMs, `${dataset}@${name}`, signal);
  const changed = changedUnderScan(liveDir, nodes, vanished, changedWhileRead);
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    id: randomUUID(),
    name,
    origin: dataset,
    createdAt: new Date().toISOString(),
    kind: rec.kind,
    ...(rec.kind === 'volume' ? { volsize: rec.volsize } : {}),
    chunkSize: CHUNK_SIZE,
    ...(exclude.length ? { exclude: [...exclude] } : {}),
    entries: vanished.size ? entries.filter((e) => !vanished.has(e)) : entries,
  };
  return { manifest, changed };
}

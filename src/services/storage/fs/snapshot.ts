/**
 * Taking a snapshot: walk the live tree, copy changed content into the
 * block store and describe every entry in a manifest. A file whose
 * (size, mtime, inode, ctime) match the previous manifest's stat cache is
 * not read again: its block list is reused, which is what makes an
 * incremental snapshot of a large, mostly unchanged tree cheap.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, fstatSync, openSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { BlockStore, CHUNK_SIZE, ZERO_BLOCK, blockName } from './block-store.js';
import type { Catalog } from './catalog.js';
import { Breather, errorCode, mode, msToNs, readFull, sameMtime } from './files.js';
import { MANIFEST_FORMAT, byPath, cacheMatches, cacheOf, readManifest, type Entry, type Manifest } from './manifest.js';
import { scanTree, type LiveStat } from './scan.js';

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
async function storeFiles(store: BlockStore, liveDir: string, files: { entry: Entry; stat: LiveStat }[], what: string, signal?: AbortSignal): Promise<Set<Entry>> {
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
      if (size !== stat.size || !sameMtime(stat.mtimeMs, mtimeNs)) entry.cache!.racy = true;
    } finally {
      closeSync(fd);
    }
    await breather.breathe();
  }
  return vanished;
}

/**
 * Read the live tree into `store` and describe it. The caller seals the
 * store before it writes and lists the manifest, and discards what was
 * stored when that fails.
 */
export async function takeSnapshot(catalog: Catalog, dataset: string, name: string, store: BlockStore, signal?: AbortSignal): Promise<Manifest> {
  const rec = catalog.require(dataset);
  const liveDir = catalog.liveDir(dataset);
  const index = catalog.index(dataset);
  const prevId = index.head && index.snapshots.some((s) => s.id === index.head) ? index.head : index.snapshots.at(-1)?.id;
  const prev = prevId ? byPath(readManifest(catalog.layout.manifestFile(dataset, prevId), `${dataset} (${prevId})`)) : new Map<string, Entry>();
  const startMs = Date.now();
  const nodes = await scanTree(liveDir, catalog.childMountNames(dataset));
  if (!nodes) throw new Error(`The files of fs dataset ${dataset} are missing: ${liveDir} does not exist.`);
  const entries: Entry[] = [];
  const toRead: { entry: Entry; stat: LiveStat }[] = [];
  for (const node of nodes) {
    const { stat } = node;
    const p = node.path;
    if (node.type === 'file') {
      const before = prev.get(p);
      if (before?.type === 'file' && cacheMatches(before, stat)) {
        // Same inode, ctime and mtime: same content, and the exact mtime is the one recorded.
        entries.push({ path: p, type: 'file', mode: mode(stat.mode), mtimeNs: before.mtimeNs, size: before.size, blocks: before.blocks, cache: before.cache });
      } else {
        const entry: Entry = { path: p, type: 'file', mode: mode(stat.mode), mtimeNs: msToNs(stat.mtimeMs), size: stat.size, blocks: [], cache: cacheOf(stat, isRacy(stat, startMs)) };
        entries.push(entry);
        toRead.push({ entry, stat });
      }
    } else if (node.type === 'dir') {
      entries.push({ path: p, type: 'dir', mode: mode(stat.mode), mtimeNs: msToNs(stat.mtimeMs), size: 0 });
    } else if (node.type === 'symlink') {
      entries.push({ path: p, type: 'symlink', mode: mode(stat.mode), mtimeNs: msToNs(stat.mtimeMs), size: 0, target: readlinkSync(path.join(liveDir, p)) });
    }
    // sockets, fifos and devices are not part of a snapshot
  }
  const vanished = await storeFiles(store, liveDir, toRead, `${dataset}@${name}`, signal);
  return {
    format: MANIFEST_FORMAT,
    id: randomUUID(),
    name,
    origin: dataset,
    createdAt: new Date().toISOString(),
    kind: rec.kind,
    ...(rec.kind === 'volume' ? { volsize: rec.volsize } : {}),
    chunkSize: CHUNK_SIZE,
    entries: vanished.size ? entries.filter((e) => !vanished.has(e)) : entries,
  };
}

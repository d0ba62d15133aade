/**
 * zvols of the fs driver: a volume (`volume.img`) with 64 KiB chunks and a
 * persistent dirty-chunk map (dirty-map.ts), so that what costs O(size) for
 * an image file costs O(changes) here:
 *
 * - a snapshot hashes only the dirty chunks and takes the head manifest's
 *   names for the rest (a fresh zvol's base is all zero: nothing to read);
 * - "changed since the head" compares only the dirty chunks;
 * - a receive or rollback patches the chunks that differ into the live
 *   image, journaled (Plan.patch), instead of rebuilding the whole image.
 *   The journal is a redo log: it names each chunk's block, sealed in the
 *   store before the journal is written, so replaying it rewrites every
 *   chunk whole and ends at the new snapshot however often it was cut.
 *   A commit is refused while the zvol is served, and opening it for
 *   serving (zvol-writer.ts) first finishes a commit a kill left pending:
 *   a reader of the live export sees the old snapshot or the new one,
 *   never a mix. Only a reader of the image file itself, between a kill
 *   and the next recover or open, can find it part old, part new.
 *
 * The map is valid only relative to the dataset's head (its header names
 * it); anything else counts as all dirty, which is always correct.
 */
import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, lstatSync, openSync, writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { BlockStore, ZERO_BLOCK, ZVOL_CHUNK, blockName } from './block-store.js';
import type { Catalog, DatasetRecord } from './catalog.js';
import { readDirtyMap, setBits, writeCleanMap } from './dirty-map.js';
import { Breather, mode, msToNs, readFull } from './files.js';
import { type Layout, VOLUME_FILE } from './layout.js';
import { MANIFEST_FORMAT, readManifest, type Entry, type Manifest } from './manifest.js';
import type { Plan } from './plan.js';
import { BlockListBuilder, namesAt, patchBlocks, zeroRun } from './block-list.js';
import { failpoint } from '../../failpoints.js';

/** what `create zvol` records (absent on `--volume-size` image volumes, which keep 1 MiB chunks and no map) */
export interface ZvolRecord {
  /** the volume's block size (a power of two, 512 B to 64 KiB); the size is a multiple of it */
  blockSize: number;
  chunkSize: number;
}

/** the map's base when the dataset has never had a head: the image is all zero but for the dirty chunks */
export const EMPTY_BASE = '';

export function isZvol(rec: DatasetRecord | null): rec is DatasetRecord & { zvol: ZvolRecord; volsize: number } {
  return !!rec && rec.kind === 'volume' && !!rec.zvol;
}

export function chunksOf(size: number): number {
  return Math.ceil(size / ZVOL_CHUNK);
}

export function dirtyMapFile(layout: Layout, name: string): string {
  return path.join(layout.datasetMeta(name), 'dirty.map');
}

function imageFile(catalog: Catalog, name: string): string {
  return path.join(catalog.liveDir(name), VOLUME_FILE);
}

function headOf(catalog: Catalog, name: string): string {
  const index = catalog.index(name);
  return index.head && index.snapshots.some((s) => s.id === index.head) ? index.head : EMPTY_BASE;
}

/** the image's block list in a manifest (canonical, runs of zero chunks as one name), padded with zero chunks to `chunks` (the volume grew since) */
export function volumeBlocks(manifest: Manifest, chunks: number): string[] {
  const e = manifest.entries.find((x) => x.path === VOLUME_FILE);
  return patchBlocks(e?.blocks ?? [], new Map(), chunks);
}

function allZero(chunks: number): string[] {
  const b = new BlockListBuilder(true);
  b.zero(chunks);
  return b.done();
}

/** The chunks whose names differ between two block lists of `chunks` chunks (a walk over their names, not their chunks). */
export function differingChunks(a: readonly string[], b: readonly string[], chunks: number): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  let ai = 0; // chunks of a[i] already passed
  let bj = 0;
  for (let at = 0; at < chunks; ) {
    const an = zeroRun(a[i] ?? ZERO_BLOCK) || 1;
    const bn = zeroRun(b[j] ?? ZERO_BLOCK) || 1;
    const step = Math.min(an - ai, bn - bj, chunks - at);
    const az = zeroRun(a[i] ?? ZERO_BLOCK) > 0;
    const bz = zeroRun(b[j] ?? ZERO_BLOCK) > 0;
    if (!(az && bz) && a[i] !== b[j]) for (let c = at; c < at + step; c++) out.push(c);
    at += step;
    ai += step;
    bj += step;
    if (ai === an) {
      i++;
      ai = 0;
    }
    if (bj === bn) {
      j++;
      bj = 0;
    }
  }
  return out;
}

function manifestOf(catalog: Catalog, name: string, id: string): Manifest {
  return readManifest(catalog.layout.manifestFile(name, id), `${name} (${id})`);
}

/**
 * What the live image is made of, as far as the map knows: the head's chunk
 * names and the dirty chunks, or `dirty: null` when the map cannot vouch
 * (every chunk must be read).
 */
export function liveChanges(catalog: Catalog, name: string): { head: string; base: string[]; dirty: number[] | null } {
  const rec = catalog.require(name);
  if (!isZvol(rec)) throw new Error(`The fs dataset ${name} is not a zvol.`);
  const chunks = chunksOf(rec.volsize);
  const head = headOf(catalog, name);
  const map = readDirtyMap(dirtyMapFile(catalog.layout, name), ZVOL_CHUNK, chunks);
  const base = head === EMPTY_BASE ? allZero(chunks) : volumeBlocks(manifestOf(catalog, name, head), chunks);
  return { head, base, dirty: map && map.base === head ? setBits(map.bits, chunks) : null };
}

/**
 * Snapshot a zvol: read the dirty chunks (all of them when the map cannot
 * vouch) into the store. The caller holds the dataset lock and has stopped
 * every writer (ZvolWriter.quiesce); it clears the map (`resetDirtyMap`) once
 * the manifest is listed.
 */
export async function takeZvolSnapshot(catalog: Catalog, name: string, snapshot: string, store: BlockStore, signal?: AbortSignal): Promise<Manifest> {
  const rec = catalog.require(name);
  if (!isZvol(rec)) throw new Error(`The fs dataset ${name} is not a zvol.`);
  const { base, dirty } = liveChanges(catalog, name);
  const size = rec.volsize;
  const chunks = chunksOf(size);
  const updates = new Map<number, string>();
  const full = new BlockListBuilder(true);
  const liveDir = catalog.liveDir(name);
  const fd = openSync(imageFile(catalog, name), 'r');
  const buf = Buffer.allocUnsafe(ZVOL_CHUNK);
  const breather = new Breather();
  let file: Entry;
  try {
    const read = (c: number): void => {
      const n = readFull(fd, buf.subarray(0, Math.min(ZVOL_CHUNK, size - c * ZVOL_CHUNK)), c * ZVOL_CHUNK);
      const chunk = buf.subarray(0, n);
      const h = blockName(chunk);
      if (h !== ZERO_BLOCK) store.put(h, chunk);
      if (dirty) updates.set(c, h);
      else full.push(h);
    };
    if (dirty) {
      for (const c of dirty) {
        read(c);
        await breather.breathe();
      }
    } else {
      for (let c = 0; c < chunks; c++) {
        read(c);
        signal?.throwIfAborted();
        await breather.breathe();
      }
    }
    const blocks = dirty ? patchBlocks(base, updates, chunks) : full.done();
    const st = fstatSync(fd, { bigint: true });
    file = { path: VOLUME_FILE, type: 'file', mode: Number(st.mode) & 0o7777, mtimeNs: String(st.mtimeNs), size, blocks, uid: Number(st.uid), gid: Number(st.gid) };
  } finally {
    closeSync(fd);
  }
  const root = lstatSync(liveDir);
  return {
    format: MANIFEST_FORMAT,
    id: randomUUID(),
    name: snapshot,
    origin: name,
    createdAt: new Date().toISOString(),
    kind: 'volume',
    volsize: size,
    chunkSize: ZVOL_CHUNK,
    entries: [{ path: '', type: 'dir', mode: mode(root.mode), mtimeNs: msToNs(root.mtimeMs), size: 0, uid: root.uid, gid: root.gid }, file],
  };
}

/** The image now equals the head `base`: no chunk is dirty relative to it. */
export function resetDirtyMap(catalog: Catalog, name: string, base: string): void {
  const rec = catalog.require(name);
  if (isZvol(rec)) writeCleanMap(dirtyMapFile(catalog.layout, name), ZVOL_CHUNK, chunksOf(rec.volsize), base);
}

/**
 * Does the live image differ from the snapshot `manifest`? Only the dirty
 * chunks are read when the map is relative to it; undefined when it is not
 * (the caller compares the whole tree).
 */
export function zvolDifference(catalog: Catalog, name: string, manifest: Manifest): string | null | undefined {
  const rec = catalog.record(name);
  if (!isZvol(rec) || manifest.chunkSize !== ZVOL_CHUNK) return undefined;
  const { head, base, dirty } = liveChanges(catalog, name);
  if (head !== manifest.id || !dirty) return undefined;
  const st = lstatSync(imageFile(catalog, name), { throwIfNoEntry: false });
  if (!st) return `${VOLUME_FILE} was deleted`;
  if (st.size !== manifest.entries.find((e) => e.path === VOLUME_FILE)?.size) return `${VOLUME_FILE} changed size`;
  const fd = openSync(imageFile(catalog, name), 'r');
  const buf = Buffer.allocUnsafe(ZVOL_CHUNK);
  const names = namesAt(base, dirty);
  try {
    for (const c of dirty) {
      const n = readFull(fd, buf.subarray(0, Math.min(ZVOL_CHUNK, st.size - c * ZVOL_CHUNK)), c * ZVOL_CHUNK);
      if (blockName(buf.subarray(0, n)) !== names.get(c)) return `${VOLUME_FILE} changed content`;
    }
  } finally {
    closeSync(fd);
  }
  return null;
}

/**
 * Turn a plan that would rebuild the whole image into a patch of the chunks
 * that differ: those whose names differ between what the live image is
 * (`from`: the head, plus the dirty chunks) and the target. Only when the
 * live image exists and is a zvol's; otherwise the plan is left as it is.
 */
export function patchPlan(catalog: Catalog, name: string, plan: Plan, target: Manifest): Plan {
  const rec = catalog.record(name);
  if (!isZvol(rec) || target.chunkSize !== ZVOL_CHUNK || plan.tree) return plan;
  const at = plan.place.findIndex((p) => p.path === VOLUME_FILE);
  if (at < 0) return plan;
  const live = lstatSync(imageFile(catalog, name), { throwIfNoEntry: false });
  if (!live?.isFile()) return plan;
  const entry = target.entries.find((e) => e.path === VOLUME_FILE)!;
  const chunks = chunksOf(entry.size);
  const want = volumeBlocks(target, chunks);
  const { base, dirty } = liveChanges(catalog, name);
  const differ = new Set<number>(differingChunks(base, want, chunks));
  if (dirty) {
    for (const c of dirty) if (c < chunks) differ.add(c);
  } else {
    for (let c = 0; c < chunks; c++) differ.add(c);
  }
  const sorted = [...differ].sort((a, b) => a - b);
  const names = namesAt(want, sorted);
  const patch: [number, string][] = sorted.map((c) => [c, names.get(c)!]);
  return {
    ...plan,
    place: plan.place.filter((_, i) => i !== at),
    meta: [...plan.meta, { path: VOLUME_FILE, type: 'file', mode: entry.mode, mtimeNs: entry.mtimeNs, ...(entry.uid !== undefined ? { uid: entry.uid, gid: entry.gid } : {}) }],
    patch: { path: VOLUME_FILE, size: entry.size, chunks: patch },
  };
}

/** Commit a patch (idempotent: each chunk is written whole from the store, again after a crash of the process). */
export function applyPatch(layout: Layout, name: string, liveDir: string, patch: NonNullable<Plan['patch']>): void {
  const store = new BlockStore(layout.blocksDir(name));
  const fd = openSync(path.join(liveDir, patch.path), 'r+');
  const buf = Buffer.allocUnsafe(ZVOL_CHUNK);
  const zeros = Buffer.alloc(ZVOL_CHUNK);
  try {
    for (const [i, [c, h]] of patch.chunks.entries()) {
      if (i === patch.chunks.length >> 1) failpoint('fs.zvol.patch.half'); // tests: a kill with the image part old, part new
      const len = Math.min(ZVOL_CHUNK, patch.size - c * ZVOL_CHUNK);
      const data = h === ZERO_BLOCK ? zeros.subarray(0, len) : buf.subarray(0, store.readInto(h, buf, `${name} (chunk ${c})`));
      if (data.length !== len) throw new Error(`The block ${h} for chunk ${c} of ${name} has the wrong length; the block store is damaged.`);
      let off = 0;
      while (off < len) off += writeSync(fd, data, off, len - off, c * ZVOL_CHUNK + off);
    }
    // grown on the other side: the new end reads as zeroes
    if (fstatSync(fd).size !== patch.size) ftruncateSync(fd, patch.size);
    // Not synced here: the journal's place phase syncs the file system once before it records the phase done (journal.ts, writesData).
  } finally {
    closeSync(fd);
    store.close();
  }
}

const MIN_BLOCK = 512;

/** A zvol's size and block size: each a specific sentence naming the bad value. */
export function checkZvolGeometry(name: string, size: number | undefined, blockSize: number): void {
  if (!Number.isSafeInteger(blockSize) || blockSize < MIN_BLOCK || blockSize > ZVOL_CHUNK || (blockSize & (blockSize - 1)) !== 0) {
    throw new Error(`The block size of zvol fs:${name} must be a power of two from 512 to 64K, not ${String(blockSize)} bytes.`);
  }
  if (size === undefined || !Number.isSafeInteger(size) || size <= 0) throw new Error(`The size of zvol fs:${name} must be a positive number of bytes, not ${String(size)}.`);
  if (size % blockSize !== 0) throw new Error(`The size of zvol fs:${name} (${size} bytes) is not a multiple of its block size (${blockSize} bytes).`);
}

/**
 * Grow a zvol (never shrink: the end of a disk holds a filesystem's backup
 * superblocks, GPT's second header). The grown part is zero, so the map
 * stays valid for it; the old last chunk, if partial, becomes dirty.
 */
export function growZvol(catalog: Catalog, name: string, size: number): void {
  const rec = catalog.require(name);
  if (!isZvol(rec)) throw new Error(`The fs dataset ${name} is not a zvol.`);
  checkZvolGeometry(name, size, rec.zvol.blockSize);
  if (size < rec.volsize) throw new Error(`The zvol fs:${name} is ${rec.volsize} bytes; it can only grow, not shrink to ${size} bytes.`);
  if (size === rec.volsize) throw new Error(`The zvol fs:${name} is already ${size} bytes.`);
  const { head, dirty } = liveChanges(catalog, name);
  const fd = openSync(imageFile(catalog, name), 'r+');
  try {
    ftruncateSync(fd, size);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const oldChunks = chunksOf(rec.volsize);
  const file = dirtyMapFile(catalog.layout, name);
  writeCleanMap(file, ZVOL_CHUNK, chunksOf(size), head);
  const map = readDirtyMap(file, ZVOL_CHUNK, chunksOf(size))!;
  const marks = dirty ?? Array.from({ length: chunksOf(size) }, (_, c) => c);
  if (rec.volsize % ZVOL_CHUNK !== 0) marks.push(oldChunks - 1);
  for (const c of marks) map.bits[c >> 3] |= 1 << (c & 7);
  writeMapBits(file, map.bits);
  catalog.register({ ...rec, volsize: size });
}

function writeMapBits(file: string, bits: Buffer): void {
  const fd = openSync(file, 'r+');
  try {
    let off = 0;
    while (off < bits.length) off += writeSync(fd, bits, off, bits.length - off, 64 + off);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function zvolStats(catalog: Catalog, name: string): { size: number; blockSize: number; used: number; written: number; dedupRatio: number } {
  const rec = catalog.require(name);
  if (!isZvol(rec)) throw new Error(`The fs dataset ${name} is not a zvol.`);
  const { head, dirty } = liveChanges(catalog, name);
  const st = lstatSync(imageFile(catalog, name), { throwIfNoEntry: false });
  let dedupRatio = 1;
  if (head !== EMPTY_BASE) {
    const names = volumeBlocks(manifestOf(catalog, name, head), 0).filter((h) => !zeroRun(h));
    if (names.length) dedupRatio = names.length / new Set(names).size;
  }
  const written = dirty ? dirty.reduce((n, c) => n + Math.min(ZVOL_CHUNK, rec.volsize - c * ZVOL_CHUNK), 0) : rec.volsize;
  return { size: rec.volsize, blockSize: rec.zvol.blockSize, used: st ? st.blocks * 512 : 0, written, dedupRatio };
}

/** A zvol snapshot's content from the store, chunk by chunk; zero runs as one piece without data. */
export async function* readZvolSnapshot(catalog: Catalog, name: string, snapshot: string): AsyncGenerator<{ offset: number; length: number; data: Buffer | null }> {
  const rec = catalog.require(name);
  if (!isZvol(rec)) throw new Error(`The fs dataset ${name} is not a zvol.`);
  const snap = catalog.requireSnapshot(name, snapshot);
  const manifest = manifestOf(catalog, name, snap.id);
  const entry = manifest.entries.find((e) => e.path === VOLUME_FILE)!;
  const store = new BlockStore(catalog.layout.blocksDir(name));
  const breather = new Breather();
  try {
    let at = 0;
    for (const h of entry.blocks!) {
      const zeros = zeroRun(h);
      const length = zeros ? Math.min(zeros * ZVOL_CHUNK, entry.size - at) : Math.min(ZVOL_CHUNK, entry.size - at);
      yield { offset: at, length, data: zeros ? null : store.read(h, `${name}@${snapshot}`) };
      at += length;
      await breather.breathe();
    }
  } finally {
    store.close();
  }
}

/**
 * Content-addressed block store: 1 MiB chunks named by their sha256, kept in
 * pack files, one dataset's store per directory:
 *
 *   <id>.pack   block bytes back to back (appended by one writer, never changed after)
 *   <id>.idx    where each block of the pack is (pack-index.ts); written once the
 *               pack is complete, atomically: a pack is part of the store exactly
 *               when its index exists
 *
 * Why packs: one file per block made a full sync of 20,000 small files create
 * (and rename, and later delete) 20,000 files on each side, which cost far
 * more than the bytes. A pack is one sequential write.
 *
 * All-zero chunks are never stored: manifests say ZERO_BLOCK and the file is
 * rebuilt with a hole there, so a mostly-empty 2 GiB volume costs nothing.
 *
 * One writer at a time: every operation that adds or removes packs holds the
 * dataset's operation lock. Senders read without it (gc.ts pins what they
 * read); a pack that garbage collection rewrote while they were reading is
 * found again in its new pack.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fdatasyncSync, mkdirSync, openSync, readSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { errorCode, writeFileAtomic } from './files.js';
import { encodePackIndex, forgetPackIndex, readPackIndex, type PackEntry } from './pack-index.js';
import { BlockIndex, sealedLayers } from './block-index.js';

export const CHUNK_SIZE = 1 << 20;
/** A zvol's chunk (snapshots, transfer, dedupe): a 4 KiB write costs 64 KiB, not 1 MiB. */
export const ZVOL_CHUNK = 64 << 10;
/** Stands for an all-zero chunk (its length follows from the file size). */
export const ZERO_BLOCK = '0';
/** A writer seals its pack and starts another past this size, so a rewrite by garbage collection stays small. */
export const PACK_LIMIT = 256 << 20;

const ZEROS = Buffer.alloc(CHUNK_SIZE);
const HASH = /^[0-9a-f]{64}$/;
const PACK = /^([0-9a-z]+-[0-9a-f]+)\.pack$/;
const INDEX = /^([0-9a-z]+-[0-9a-f]+)\.idx$/;

export function isBlockHash(h: string): boolean {
  return HASH.test(h);
}

export function isZero(buf: Buffer): boolean {
  return buf.length <= ZEROS.length ? buf.equals(ZEROS.subarray(0, buf.length)) : buf.every((b) => b === 0);
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** The manifest name of a chunk: ZERO_BLOCK or its sha256. */
export function blockName(buf: Buffer): string {
  return isZero(buf) ? ZERO_BLOCK : sha256(buf);
}

/** Pack ids sort by creation time, so among duplicate copies of a block (a rewrite cut short) the newest wins. */
function newPackId(): string {
  return `${Date.now().toString(36).padStart(9, '0')}-${randomBytes(4).toString('hex')}`;
}

interface Pack {
  id: string;
  /** open descriptor (lazily, for reading; from the start for the pack being written) */
  fd: number | null;
  /** bytes in the pack */
  size: number;
  entries: PackEntry[];
  /** its index is written */
  sealed: boolean;
  /** made by this BlockStore instance (discardNew removes it) */
  mine: boolean;
}

export interface PackInfo {
  id: string;
  size: number;
  /** the blocks whose canonical copy is in this pack (a duplicate elsewhere does not count) */
  blocks: { hash: string; length: number }[];
  /** copies of blocks kept canonically in another pack, and their bytes */
  duplicates: number;
  duplicateBytes: number;
}

export class BlockStore {
  private loaded = false;
  private readonly packs = new Map<string, Pack>();
  /** every block's canonical copy */
  private readonly where = new BlockIndex();
  private writing: Pack | null = null;
  /** per-block files of the store's first format (blocks/<hh>/<hash>), read and collected but never written */
  private legacy = false;

  constructor(readonly dir: string) {}

  // ---- reading -------------------------------------------------------------

  private load(): void {
    if (this.loaded) return;
    this.loaded = true;
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return;
      throw error;
    }
    this.legacy = names.some((n) => /^[0-9a-f]{2}$/.test(n));
    const sealed: PackEntry[][] = [];
    for (const name of names.sort()) {
      const id = INDEX.exec(name)?.[1];
      if (!id || this.packs.has(id)) continue;
      const file = path.join(this.dir, name);
      let entries: PackEntry[];
      try {
        entries = readPackIndex(file, id);
      } catch (error) {
        if (errorCode(error) === 'ENOENT') continue; // removed by a collection in another process
        throw error;
      }
      const size = entries.reduce((n, e) => Math.max(n, e.offset + e.length), 0);
      this.packs.set(id, { id, fd: null, size, entries, sealed: true, mine: false });
      sealed.push(entries);
    }
    this.where.setLayers(sealedLayers(this.dir, sealed));
  }

  private add(pack: Pack): void {
    this.packs.set(pack.id, pack);
    for (const e of pack.entries) this.where.set(e.hash, e);
  }

  /** Forget what was loaded and read the indexes again (a collection elsewhere moved blocks). */
  private reload(): void {
    const mine = [...this.packs.values()].filter((p) => p.mine);
    for (const p of this.packs.values()) if (!p.mine && p.fd !== null) closeSync(p.fd);
    this.packs.clear();
    this.where.clear();
    for (const p of mine) this.packs.set(p.id, p); // load() skips them
    this.loaded = false;
    this.load();
    for (const p of mine) this.add(p); // newest: their copies win
  }

  private legacyPath(hash: string): string {
    return path.join(this.dir, hash.slice(0, 2), hash);
  }

  has(hash: string): boolean {
    this.load();
    return this.where.has(hash) || (this.legacy && existsSync(this.legacyPath(hash)));
  }

  private missing(hash: string, what: string): Error {
    return new Error(`The block ${hash} of ${what} is missing from the block store ${this.dir}; that snapshot is damaged.`);
  }

  /** Where a block is, and its pack's open descriptor; null when only a first-format block file has it. */
  private locate(hash: string, what: string): { entry: PackEntry; fd: number } | null {
    this.load();
    for (let attempt = 0; ; attempt++) {
      const entry = this.where.get(hash);
      if (entry) {
        const pack = this.packs.get(entry.pack)!;
        try {
          pack.fd ??= openSync(path.join(this.dir, `${pack.id}.pack`), 'r');
          return { entry, fd: pack.fd };
        } catch (error) {
          if (errorCode(error) !== 'ENOENT' || attempt > 0) throw error;
        }
      } else if (this.legacy && existsSync(this.legacyPath(hash))) {
        return null;
      } else if (attempt > 0) {
        throw this.missing(hash, what);
      }
      // Moved by a garbage collection since the indexes were read: read them again.
      this.reload();
    }
  }

  private readAt(at: { entry: PackEntry; fd: number }, into: Buffer, what: string): number {
    const { offset, length, pack } = at.entry;
    let n = 0;
    while (n < length) {
      const got = readSync(at.fd, into, n, length - n, offset + n);
      if (got === 0) throw new Error(`The pack ${pack} in ${this.dir} ends inside a block of ${what}; the block store is damaged.`);
      n += got;
    }
    return n;
  }

  /** Read a block into `into` (at least CHUNK_SIZE long); returns its length. */
  readInto(hash: string, into: Buffer, what: string): number {
    const at = this.locate(hash, what);
    return at ? this.readAt(at, into, what) : readWhole(this.legacyPath(hash), into);
  }

  read(hash: string, what: string): Buffer {
    const at = this.locate(hash, what);
    if (!at) return readFileSync(this.legacyPath(hash));
    const buf = Buffer.allocUnsafe(at.entry.length);
    this.readAt(at, buf, what);
    return buf;
  }

  // ---- writing -------------------------------------------------------------

  /**
   * Store `data` under `hash` (already computed by the caller); false when
   * the store has it already. It becomes readable at once, and a lasting
   * part of the store when sealed.
   */
  put(hash: string, data: Buffer): boolean {
    if (this.has(hash)) return false;
    if (this.writing && this.writing.size >= PACK_LIMIT) this.seal();
    if (!this.writing) {
      mkdirSync(this.dir, { recursive: true });
      const id = newPackId();
      const fd = openSync(path.join(this.dir, `${id}.pack`), 'wx+', 0o444);
      this.writing = { id, fd, size: 0, entries: [], sealed: false, mine: true };
      this.packs.set(id, this.writing);
    }
    const pack = this.writing;
    let off = 0;
    while (off < data.length) off += writeSync(pack.fd!, data, off, data.length - off, pack.size + off);
    const entry: PackEntry = { pack: pack.id, hash, offset: pack.size, length: data.length };
    pack.entries.push(entry);
    pack.size += data.length;
    this.where.set(hash, entry);
    return true;
  }

  /**
   * Make the blocks put so far a lasting part of the store: flush the
   * pack's data, then write its index. Call before anything that refers to
   * them is listed. Data first: an index (fsynced) naming bytes a power cut
   * took would damage every snapshot that holds one of those blocks, and
   * every later one, which finds them "stored" and does not store them again.
   */
  seal(): void {
    const pack = this.writing;
    if (!pack) return;
    this.writing = null;
    fdatasyncSync(pack.fd!);
    writeFileAtomic(path.join(this.dir, `${pack.id}.idx`), encodePackIndex(pack.entries));
    pack.sealed = true;
  }

  /** the pack being written, if any */
  writingPack(): string | null {
    return this.writing?.id ?? null;
  }

  /** the packs this instance wrote, sealed or not */
  newPacks(): string[] {
    return [...this.packs.values()].filter((p) => p.mine).map((p) => p.id);
  }

  /** Remove every pack this instance wrote, sealed or not (an operation that failed before it was listed). */
  discardNew(): void {
    this.writing = null;
    for (const pack of [...this.packs.values()]) {
      if (!pack.mine) continue;
      this.dropPack(pack.id);
    }
  }

  /**
   * Close the open packs (the instance can be used again: it reopens them).
   * A pack still unsealed stays on disk as a crash would leave it, for the
   * next sweep.
   */
  close(): void {
    this.writing = null;
    for (const p of this.packs.values()) {
      if (p.fd !== null) closeSync(p.fd);
      p.fd = null;
    }
  }

  // ---- garbage collection (gc.ts) ------------------------------------------

  /** The sealed packs and the blocks each holds canonically. */
  packInfo(): PackInfo[] {
    this.load();
    const out: PackInfo[] = [];
    for (const pack of this.packs.values()) {
      if (!pack.sealed) continue;
      const info: PackInfo = { id: pack.id, size: pack.size, blocks: [], duplicates: 0, duplicateBytes: 0 };
      for (const e of pack.entries) {
        if (this.where.get(e.hash) === e) {
          info.blocks.push({ hash: e.hash, length: e.length });
        } else {
          info.duplicates++;
          info.duplicateBytes += e.length;
        }
      }
      out.push(info);
    }
    return out;
  }

  /** Remove a pack: its index first (it leaves the store), then its data. */
  dropPack(id: string): void {
    const pack = this.packs.get(id);
    if (pack) {
      if (pack.fd !== null) closeSync(pack.fd);
      this.packs.delete(id);
      for (const e of pack.entries) if (this.where.get(e.hash) === e) this.where.delete(e.hash);
    }
    forgetPackIndex(path.join(this.dir, `${id}.idx`));
    rmSync(path.join(this.dir, `${id}.idx`), { force: true });
    rmSync(path.join(this.dir, `${id}.pack`), { force: true });
  }

  /**
   * Copy the given blocks of pack `id` into a new pack, seal it, then drop
   * the old one. A crash in between leaves two copies, which the next
   * collection resolves (the newer pack's copy is the canonical one).
   */
  rewrite(id: string, keep: string[]): void {
    if (!this.packs.has(id)) return;
    const before = new Set(this.packs.keys());
    const buf = Buffer.allocUnsafe(CHUNK_SIZE);
    for (const hash of keep) {
      const n = this.readInto(hash, buf, `pack ${id}`);
      this.where.delete(hash); // so that put() stores it again, in the new pack
      this.put(hash, buf.subarray(0, n));
    }
    this.seal();
    // The copies are canonical from here on: a later failure must not discard them.
    for (const [pid, p] of this.packs) if (!before.has(pid)) p.mine = false;
    this.dropPack(id);
  }

  /** Packs without an index: what a writer that crashed left (call with the operation lock held). */
  unsealedPacks(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const sealed = new Set(names.map((n) => INDEX.exec(n)?.[1]).filter(Boolean));
    return names.map((n) => PACK.exec(n)?.[1]).filter((id): id is string => !!id && !sealed.has(id) && id !== this.writing?.id);
  }

  /** Temp files of index writes a crash cut short. */
  clearTemp(): void {
    let names: string[] = [];
    try {
      names = readdirSync(this.dir);
    } catch {
      /* no store yet */
    }
    for (const n of names) if (n.startsWith('.') && n.endsWith('.tmp')) rmSync(path.join(this.dir, n), { force: true });
  }

  /** Blocks still in the first format's per-block files. */
  *legacyBlocks(): Generator<string> {
    this.load();
    if (!this.legacy) return;
    for (const fan of readdirSync(this.dir)) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      for (const name of readdirSync(path.join(this.dir, fan))) if (isBlockHash(name)) yield name;
    }
  }

  /** Remove the first format's empty fan-out directories and its temp directory of half-written blocks. */
  tidyLegacy(): void {
    this.load();
    if (!this.legacy) return;
    rmSync(path.join(this.dir, 'tmp'), { recursive: true, force: true });
    for (const fan of readdirSync(this.dir)) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      try {
        rmdirSync(path.join(this.dir, fan));
      } catch (error) {
        if (errorCode(error) !== 'ENOTEMPTY' && errorCode(error) !== 'EEXIST') throw error;
      }
    }
  }

  /** Delete a first-format block file; returns the bytes freed. */
  removeLegacy(hash: string): number {
    this.load();
    if (!this.legacy) return 0;
    const p = this.legacyPath(hash);
    try {
      const { size } = statSync(p);
      unlinkSync(p);
      return size;
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return 0;
      throw error;
    }
  }
}

function readWhole(file: string, into: Buffer): number {
  const fd = openSync(file, 'r');
  try {
    let n = 0;
    for (;;) {
      const got = readSync(fd, into, n, into.length - n, n);
      if (got === 0) return n;
      n += got;
    }
  } finally {
    closeSync(fd);
  }
}

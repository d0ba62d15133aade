/**
 * A zvol's persistent dirty-chunk map (DataKeeper's bitmap): one bit per
 * 64 KiB chunk, set for every chunk written since the snapshot named in its
 * header (the dataset's head). It is a superset of the changes after any
 * crash: a bit is made durable before the first write to a clean chunk is
 * acknowledged, and the map is only cleared (by a snapshot, receive or
 * rollback) once the image equals the new head.
 *
 *   "SYNCDMAP" u32 version u32 chunkSize f64 chunks, 36 bytes base id (ASCII, NUL-padded), to 64 bytes; then the bits
 *
 * A map whose base is not the dataset's head (a crash between making the
 * image equal a snapshot and clearing the map), or that is missing or
 * damaged, is no map: every chunk counts as dirty.
 */
import { closeSync, fdatasyncSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { errorCode, writeFileAtomic } from './files.js';

const MAGIC = 'SYNCDMAP';
const HEADER = 64;

function header(chunkSize: number, chunks: number, base: string): Buffer {
  const h = Buffer.alloc(HEADER);
  h.write(MAGIC, 0, 'latin1');
  h.writeUInt32LE(1, 8);
  h.writeUInt32LE(chunkSize, 12);
  h.writeDoubleLE(chunks, 16);
  h.write(base, 24, 36, 'latin1');
  return h;
}

export interface MapState {
  base: string;
  chunks: number;
  bits: Buffer;
}

/** Read a map; null when it is missing, damaged or of another geometry. */
export function readDirtyMap(file: string, chunkSize: number, chunks: number): MapState | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;
    throw error;
  }
  try {
    const h = Buffer.alloc(HEADER);
    if (readSync(fd, h, 0, HEADER, 0) !== HEADER || h.toString('latin1', 0, 8) !== MAGIC || h.readUInt32LE(8) !== 1) return null;
    if (h.readUInt32LE(12) !== chunkSize || h.readDoubleLE(16) !== chunks) return null;
    const base = h.toString('latin1', 24, 60).replace(/\0+$/, '');
    const bits = Buffer.alloc(Math.ceil(chunks / 8));
    let n = 0;
    while (n < bits.length) {
      const got = readSync(fd, bits, n, bits.length - n, HEADER + n);
      if (got === 0) return null;
      n += got;
    }
    return { base, chunks, bits };
  } finally {
    closeSync(fd);
  }
}

/** Replace the map with an empty one relative to `base` (atomic: a crash leaves the old map or the new). */
export function writeCleanMap(file: string, chunkSize: number, chunks: number, base: string): void {
  writeFileAtomic(file, Buffer.concat([header(chunkSize, chunks, base), Buffer.alloc(Math.ceil(chunks / 8))]));
}

/** Indexes of the set bits, in order (skipping clean bytes whole, so a mostly clean 1 TiB map is a quick scan). */
export function setBits(bits: Buffer, chunks: number): number[] {
  const out: number[] = [];
  for (let byte = 0; byte < bits.length; byte++) {
    const b = bits[byte];
    if (b === 0) continue;
    for (let k = 0; k < 8; k++) if (b & (1 << k) && byte * 8 + k < chunks) out.push(byte * 8 + k);
  }
  return out;
}

/**
 * The live map of a zvol being written: bits in memory, each set durably
 * before the write that needed it is acknowledged. Concurrent writes to
 * clean chunks share one sync; a write to a chunk already durable costs
 * nothing.
 */
export class LiveDirtyMap {
  private bits: Buffer;
  /** set in memory, not yet synced */
  private pending = new Set<number>();
  /** a bit set among the pending ones: the round must sync (cleared bits alone need not) */
  private pendingSet = false;
  private round: Promise<void> | null = null;
  private queued: Promise<void> | null = null;

  private constructor(
    private fh: FileHandle,
    readonly file: string,
    readonly chunkSize: number,
    readonly chunks: number,
    state: MapState,
  ) {
    this.bits = state.bits;
  }

  /** Open the map for writing, made valid for `head` first (missing or stale: all dirty, written so). */
  static async open(file: string, chunkSize: number, chunks: number, head: string): Promise<LiveDirtyMap> {
    let state = readDirtyMap(file, chunkSize, chunks);
    if (!state || state.base !== head) {
      const all = Buffer.alloc(Math.ceil(chunks / 8), 0xff);
      writeFileAtomic(file, Buffer.concat([header(chunkSize, chunks, head), all]));
      state = { base: head, chunks, bits: all };
    }
    return new LiveDirtyMap(await open(file, 'r+'), file, chunkSize, chunks, state);
  }

  isDirty(chunk: number): boolean {
    return (this.bits[chunk >> 3] & (1 << (chunk & 7))) !== 0;
  }

  /** Resolves once every chunk of [first, last] is durably dirty. */
  async mark(first: number, last: number): Promise<void> {
    let needed = false;
    for (let c = first; c <= last; c++) {
      if (!this.isDirty(c)) {
        this.bits[c >> 3] |= 1 << (c & 7);
        this.pending.add(c);
        this.pendingSet = true;
        needed = true;
      } else if (this.pending.has(c)) {
        needed = true; // set by a write whose sync has not finished: wait for it too
      }
    }
    if (needed) await this.sync();
  }

  /** One sync round after the current one covers everything pending now. */
  private sync(): Promise<void> {
    if (this.queued) return this.queued;
    const start = async (): Promise<void> => {
      this.queued = null;
      const chunks = [...this.pending];
      const mustSync = this.pendingSet;
      this.pending = new Set();
      this.pendingSet = false;
      let lo = Infinity;
      let hi = -1;
      for (const c of chunks) {
        lo = Math.min(lo, c >> 3);
        hi = Math.max(hi, c >> 3);
      }
      if (hi >= 0) {
        await this.fh.write(this.bits, lo, hi - lo + 1, HEADER + lo);
        // a round of cleared bits only is not synced: a bit still set after a crash costs a resend, never a write
        if (mustSync) await this.fh.datasync();
      }
    };
    const prev = this.round ?? Promise.resolve();
    const next = prev.then(start, start);
    this.queued = next;
    this.round = next.finally(() => {
      if (this.round === next) this.round = null;
    });
    return next;
  }

  /**
   * Mark chunks clean again (a mirror target holds them durably, cdp/). The
   * bits go to disk in the same ordered rounds as marks, so a clean written
   * late never undoes a later mark; a bit still set after a crash only costs
   * a resend.
   */
  clean(chunks: Iterable<number>): Promise<void> {
    let any = false;
    for (const c of chunks) {
      if (!this.isDirty(c)) continue;
      this.bits[c >> 3] &= ~(1 << (c & 7));
      this.pending.add(c);
      any = true;
    }
    return any ? this.sync() : Promise.resolve();
  }

  /** a copy of the bits as they are in memory now (one per chunk) */
  copyBits(): Buffer {
    return Buffer.from(this.bits);
  }

  /** how many chunks are dirty */
  dirtyCount(): number {
    let n = 0;
    for (let i = 0; i < this.bits.length; i++) {
      // bits past the last chunk (a fresh all-dirty map sets them) do not count
      let b = i === this.bits.length - 1 && this.chunks % 8 ? this.bits[i] & ((1 << (this.chunks % 8)) - 1) : this.bits[i];
      while (b) {
        b &= b - 1;
        n++;
      }
    }
    return n;
  }

  dirtyChunks(): number[] {
    return setBits(this.bits, this.chunks);
  }

  /** Re-read from disk (another process cleared it while this one was paused). */
  async reload(head: string): Promise<void> {
    await this.fh.close();
    const fresh = await LiveDirtyMap.open(this.file, this.chunkSize, this.chunks, head);
    this.fh = fresh.fh;
    this.bits = fresh.bits;
    this.pending = new Set();
    this.pendingSet = false;
  }

  async close(): Promise<void> {
    await this.round?.catch(() => undefined);
    await this.fh.close();
  }
}

/** fdatasync a file by name (the image, after a write that bypassed the live map). */
export function syncFile(file: string): void {
  const fd = openSync(file, 'r+');
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

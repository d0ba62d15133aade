/**
 * Dedupe-aware transfer (issue 12, `003_…`): a block the target already
 * holds crosses the link as a reference to where it holds it, not as data.
 *
 * The master keeps, per target, a bounded knowledge of which 4 KiB block
 * holds what (a 30-bit key of every whole block it sent there: its CRC-32,
 * a fifth of a sha256's cost on the master's event loop). A WRITE whose
 * aligned blocks are found there by key becomes a DEDUP frame: data pieces
 * and copy pieces (`source` offset + the sha256 of the block hashes of the
 * run, computed for those blocks only). The receiver reads the source, hashes
 * it and copies only when it matches; otherwise it answers MISS and the
 * sender sends the write whole (the knowledge was stale: a collision of
 * keys, a write the target lost in a crash). A wrong block is never written.
 *
 * The knowledge outlives the daemon: saved beside the target's dirty map
 * (HOST.known) at close and every SAVE_MS while it changes, and loaded
 * without the blocks of chunks the map says the target may not hold. A
 * stale entry (a crash after the last save) costs a MISS, like any other.
 */
import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { writeFileAtomic } from '../storage/fs/files.js';

/** the dedupe unit: ext4's and most file systems' block, so a file copied inside them lines up */
export const BLOCK = 4096;
/** blocks remembered per target (1 GiB of distinct content, ~20 MB of maps) */
export const KNOWN_LIMIT = 1 << 18;

export type Piece = { length: number; data: Buffer } | { length: number; source: number; hash: Buffer };

export const sha256 = (b: Buffer): Buffer => hash('sha256', b, 'buffer');

/** the hash a copy piece carries: sha256 over the sha256 of each block of the run */
export function runHash(blockHashes: readonly Buffer[]): Buffer {
  return blockHashes.length === 1 ? blockHashes[0] : sha256(Buffer.concat(blockHashes));
}

/** the same, of a run read back (the receiver's check) */
export function runHashOf(data: Buffer): Buffer {
  const hs: Buffer[] = [];
  for (let at = 0; at < data.length; at += BLOCK) hs.push(sha256(data.subarray(at, at + BLOCK)));
  return runHash(hs);
}

/**
 * the key a block is found by. Only a hint: a copy piece carries the sha256 of the master's own
 * data, and the receiver copies only what hashes so (a key two contents share costs a MISS, as a
 * 30-bit key of the sha256 did)
 */
const keyOf = (block: Buffer) => crc32(block) & 0x3fffffff;

/** K1 files held keys of the sha256: not loaded (the knowledge starts empty once) */
const MAGIC = Buffer.from('SYNCSHK2');
/** how often a changing knowledge is saved (a crash loses at most this much of it: later writes cross whole) */
export const SAVE_MS = 10_000;

/** what one target holds, as far as the master knows (bounded; a stale entry costs a MISS, never a wrong block) */
export class PeerBlocks {
  private readonly byKey = new Map<number, number>();
  private readonly byBlock = new Map<number, number>();
  /** bytes written to the link, and bytes that crossed as references */
  wireBytes = 0;
  dedupedBytes = 0;
  misses = 0;

  constructor(
    private readonly limit = KNOWN_LIMIT,
    /** off: every write crosses whole (the daemon's SYNCSH_CDP_DEDUPE=0) */
    readonly enabled = true,
  ) {}

  /** learnt or forgot something since the last save */
  private changed = false;
  private savedAt = 0;

  get size(): number {
    return this.byBlock.size;
  }

  /**
   * The knowledge saved in `file`, but for blocks `held` says the target may
   * not hold (its chunk is dirty); empty when there is none or it is damaged.
   */
  static load(file: string, enabled: boolean, held: (block: number) => boolean, limit = KNOWN_LIMIT): PeerBlocks {
    const known = new PeerBlocks(limit, enabled);
    if (!enabled) return known;
    let raw: Buffer;
    try {
      raw = readFileSync(file);
    } catch {
      return known;
    }
    if (raw.length < MAGIC.length || !raw.subarray(0, MAGIC.length).equals(MAGIC) || (raw.length - MAGIC.length) % 8) return known;
    for (let at = MAGIC.length; at < raw.length; at += 8) {
      const block = raw.readUInt32LE(at);
      const key = raw.readUInt32LE(at + 4) & 0x3fffffff;
      if (held(block)) known.put(block, key);
    }
    known.changed = false;
    return known;
  }

  /** write the knowledge to `file` (atomic), now or, with `everyMs`, when it changed and the last save is that old */
  save(file: string, everyMs = 0, now = Date.now()): void {
    if (!this.enabled || (everyMs && (!this.changed || now - this.savedAt < everyMs))) return;
    const out = Buffer.alloc(MAGIC.length + this.byKey.size * 8);
    MAGIC.copy(out);
    let at = MAGIC.length;
    // oldest first, so a load keeps the same order of eviction
    for (const [key, block] of this.byKey) {
      if (block > 0xffffffff) continue; // past 16 TiB: not saved (it crosses whole once after a restart)
      out.writeUInt32LE(block, at);
      out.writeUInt32LE(key, at + 4);
      at += 8;
    }
    writeFileAtomic(file, out.subarray(0, at));
    this.changed = false;
    this.savedAt = now;
  }

  /** the block that may hold content of this key there, or -1 */
  private find(key: number): number {
    return this.byKey.get(key) ?? -1;
  }

  private put(block: number, key: number): void {
    this.changed = true;
    this.forgetBlock(block);
    const old = this.byKey.get(key);
    if (old !== undefined) this.byBlock.delete(old);
    this.byKey.set(key, block);
    this.byBlock.set(block, key);
    if (this.byBlock.size > this.limit) {
      const oldest = this.byKey.keys().next().value as number;
      this.byBlock.delete(this.byKey.get(oldest)!);
      this.byKey.delete(oldest);
    }
  }

  /** bytes [offset, offset+length) there changed to something not known */
  forget(offset: number, length: number): void {
    this.changed = true;
    const first = Math.floor(offset / BLOCK);
    const last = Math.floor((offset + length - 1) / BLOCK);
    if (last - first + 1 > this.byBlock.size) {
      for (const b of [...this.byBlock.keys()]) if (b >= first && b <= last) this.forgetBlock(b);
    } else for (let b = first; b <= last; b++) this.forgetBlock(b);
  }

  private forgetBlock(block: number): void {
    const key = this.byBlock.get(block);
    if (key === undefined) return;
    this.byBlock.delete(block);
    if (this.byKey.get(key) === block) this.byKey.delete(key);
  }

  /**
   * A write of `data` at `offset` as pieces (data and copies), learning what
   * the target holds after it. Copies only for whole aligned blocks found
   * at a block the write itself does not overwrite (the receiver checks
   * every copy before it writes anything, against what it held before).
   * null: nothing found, send it as a plain WRITE.
   */
  plan(offset: number, data: Buffer): Piece[] | null {
    const end = offset + data.length;
    const firstBlock = Math.ceil(offset / BLOCK);
    const lastBlock = Math.floor(end / BLOCK) - 1; // whole blocks only
    const block = (i: number) => data.subarray((firstBlock + i) * BLOCK - offset, (firstBlock + i + 1) * BLOCK - offset);
    const keys: number[] = [];
    const sources: number[] = [];
    let found = 0;
    for (let i = 0; i <= lastBlock - firstBlock; i++) {
      const k = keyOf(block(i));
      let s = this.find(k);
      if (s >= 0 && s * BLOCK < end && (s + 1) * BLOCK > offset) s = -1;
      keys.push(k);
      sources.push(s);
      if (s >= 0) found++;
    }
    const pieces: Piece[] | null = found ? [] : null;
    if (pieces) {
      let at = offset; // start of the data not yet in a piece
      const flushData = (upTo: number) => {
        if (upTo > at) pieces.push({ length: upTo - at, data: data.subarray(at - offset, upTo - offset) });
        at = upTo;
      };
      for (let i = 0; i < sources.length; ) {
        if (sources[i] < 0) {
          i++;
          continue;
        }
        let j = i + 1;
        while (j < sources.length && sources[j] === sources[j - 1] + 1) j++;
        const start = (firstBlock + i) * BLOCK;
        flushData(start);
        const hashes: Buffer[] = [];
        for (let k = i; k < j; k++) hashes.push(sha256(block(k)));
        pieces.push({ length: (j - i) * BLOCK, source: sources[i] * BLOCK, hash: runHash(hashes) });
        this.dedupedBytes += (j - i) * BLOCK;
        at = start + (j - i) * BLOCK;
        i = j;
      }
      flushData(end);
    }
    // what the target holds once this write is applied
    this.forget(offset, data.length);
    for (let i = 0; i < keys.length; i++) this.put(firstBlock + i, keys[i]);
    return pieces;
  }
}

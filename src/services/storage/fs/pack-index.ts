/**
 * The index of a pack file (block-store.ts), in binary: a pack of 20,000
 * blocks has an 840 KB index that loads in a millisecond or two, where JSON
 * would be several times larger and slower.
 *
 *   "SYNCIDX1"  u32 count
 *   count x     32-byte sha256, u48 offset, u32 length   (in pack order)
 *   32 bytes    sha256 of everything before it, so a damaged index is refused
 *               instead of pointing at the wrong bytes
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';

export interface PackEntry {
  /** the pack's id */
  pack: string;
  hash: string;
  offset: number;
  length: number;
}

const MAGIC = Buffer.from('SYNCIDX1', 'latin1');
const HEAD = MAGIC.length + 4;
const ENTRY = 32 + 6 + 4;
const SUM = 32;

export function encodePackIndex(entries: PackEntry[]): Buffer {
  const buf = Buffer.allocUnsafe(HEAD + entries.length * ENTRY + SUM);
  MAGIC.copy(buf, 0);
  buf.writeUInt32BE(entries.length, MAGIC.length);
  let at = HEAD;
  for (const e of entries) {
    buf.write(e.hash, at, 32, 'hex');
    buf.writeUIntBE(e.offset, at + 32, 6);
    buf.writeUInt32BE(e.length, at + 38);
    at += ENTRY;
  }
  createHash('sha256').update(buf.subarray(0, at)).digest().copy(buf, at);
  return buf;
}

export function decodePackIndex(buf: Buffer, file: string, pack: string): PackEntry[] {
  const damaged = (why: string) => new Error(`The pack index ${file} is damaged (${why}); the snapshots whose blocks it lists cannot be read.`);
  if (buf.length < HEAD + SUM || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw damaged('not a pack index');
  const count = buf.readUInt32BE(MAGIC.length);
  const end = HEAD + count * ENTRY;
  if (buf.length !== end + SUM) throw damaged(`${buf.length} bytes for ${count} entries`);
  if (!createHash('sha256').update(buf.subarray(0, end)).digest().equals(buf.subarray(end))) throw damaged('its checksum does not match');
  const entries: PackEntry[] = new Array(count);
  for (let i = 0, at = HEAD; i < count; i++, at += ENTRY) {
    entries[i] = { pack, hash: buf.toString('hex', at, at + 32), offset: buf.readUIntBE(at + 32, 6), length: buf.readUInt32BE(at + 38) };
  }
  return entries;
}

/**
 * Indexes already decoded in this process, per file while it is unchanged
 * (an index is written once and never modified): every operation on a
 * dataset opens its store, and decoding 20,000 entries costs more than the
 * rest of opening it.
 */
const decoded = new Map<string, { key: string; entries: PackEntry[] }>();
let decodedEntries = 0;
/** About 100 MB: the indexes of a few hundred GiB of blocks; the least recently used go first. */
const CACHE_ENTRIES = 500_000;

export function readPackIndex(file: string, pack: string): PackEntry[] {
  const fd = openSync(file, 'r');
  try {
    const st = fstatSync(fd);
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const hit = decoded.get(file);
    if (hit?.key === key) {
      decoded.delete(file);
      decoded.set(file, hit);
      return hit.entries;
    }
    const entries = decodePackIndex(readFileSync(fd), file, pack);
    forgetPackIndex(file);
    decoded.set(file, { key, entries });
    decodedEntries += entries.length;
    for (const [f, c] of decoded) {
      if (decodedEntries <= CACHE_ENTRIES) break;
      decoded.delete(f);
      decodedEntries -= c.entries.length;
    }
    return entries;
  } finally {
    closeSync(fd);
  }
}

export function forgetPackIndex(file: string): void {
  const had = decoded.get(file);
  if (!had) return;
  decoded.delete(file);
  decodedEntries -= had.entries.length;
}

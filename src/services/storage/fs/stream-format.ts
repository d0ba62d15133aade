/**
 * The fs send stream, version 5. Integers are big-endian.
 *
 *   preamble   "SYNCSHFS" u32 version
 *   records    u8 type, u32 length, payload
 *     'S' stream header   JSON {snapshot, datasets: [relative names, '' = the sent dataset], createdAt}
 *     per dataset, in that order:
 *       'H' dataset header  JSON {rel, kind, volsize, snapshot {name, id, createdAt}, base {name, id} | null, entries,
 *                           chunks {offered, held}}
 *       'M' manifest part   a piece (<= 1 MiB) of the gzipped StreamManifest JSON: the whole
 *                           manifest, or for an incremental stream only its changes from the base
 *                           plus a digest of the whole, which the receiver rebuilds and checks
 *       'B' block           32-byte sha256 + the block's bytes (only blocks the base lacks, each
 *                           once, in the order the manifest's files use them)
 *       'E' dataset end     JSON {blocks, blockBytes, manifestBytes}
 *     'T' trailer          JSON {datasets, blocks, blockBytes, bytes}
 *   checksum   32 bytes: sha256 of every byte before it except block payloads, which are
 *              bound to their hashes (which it does cover) and checked one by one; hashing
 *              them twice more would double the CPU cost of a transfer for no extra safety
 *
 * A reader can check each block on arrival, knows exactly where the stream
 * must end (anything missing or extra is an error) and gets a final proof
 * that nothing in between was altered. The manifest comes before the blocks
 * (version 2) so that the receiver can write each block straight into the
 * file it belongs to while it arrives (stage.ts).
 *
 * Version 3 carries manifests of format 2 (owners and hard links, see
 * manifest.ts); its records are those of version 2. Version 4 (the same
 * records) follows a chunk negotiation (negotiate.ts): the blocks the
 * receiver said it holds are left out, and each dataset header says how
 * many chunks there were beyond the base and how many were held
 * (`chunks: {offered, held}`), which the receiver checks against the
 * blocks that arrive. Version 5 (the same records) may send a zvol
 * image's block list in an incremental's delta as the chunks changed since
 * the base (`blocksPatch`, block-patch.ts) instead of all its names; a
 * version 4 stream, which has none, is still read. A version 2 stream (an
 * older sender) is still read: its manifest is of format 1, so its files
 * arrive without owners and links, as they did then. Other versions are
 * refused before anything is read.
 */
import { createHash, type Hash } from 'node:crypto';
import { addAbortSignal, type Readable } from 'node:stream';
import type { Entry, Manifest, ManifestDelta } from './manifest.js';
import type { PatchedEntry } from './block-patch.js';

export const MAGIC = Buffer.from('SYNCSHFS', 'latin1');
export const STREAM_VERSION = 5;
/** The oldest version still read. */
export const OLDEST_STREAM_VERSION = 2;

export const REC = {
  stream: 0x53, // S
  dataset: 0x48, // H
  block: 0x42, // B
  manifest: 0x4d, // M
  end: 0x45, // E
  trailer: 0x54, // T
} as const;

const RECORD_NAMES: Record<number, string> = {
  [REC.stream]: 'stream header',
  [REC.dataset]: 'dataset header',
  [REC.block]: 'block',
  [REC.manifest]: 'manifest part',
  [REC.end]: 'dataset end',
  [REC.trailer]: 'trailer',
};

export const MANIFEST_PART = 1 << 20;
const MAX_JSON = 1 << 20;

export interface StreamHeader {
  snapshot: string;
  datasets: string[];
  createdAt: string;
}

export interface DatasetHeader {
  rel: string;
  kind: 'filesystem' | 'volume';
  volsize?: number;
  /** a zvol's block size (its manifest has 64 KiB chunks) */
  blockSize?: number;
  snapshot: { name: string; id: string; createdAt: string };
  base: { name: string; id: string } | null;
  entries: number;
  /** version 4: the chunks beyond the base, and how many of them the receiver said it holds (not sent) */
  chunks?: { offered: number; held: number };
}

/** The manifest as carried: its fields, and either all entries or the delta from the base, with the entries' digest. */
export type StreamManifest = Omit<Manifest, 'entries'> & { entries?: Entry[]; delta?: ManifestDelta | { upserts: (Entry | PatchedEntry)[]; removes: string[] }; digest: string };

export interface DatasetEnd {
  blocks: number;
  blockBytes: number;
  manifestBytes: number;
}

export interface Trailer {
  datasets: number;
  blocks: number;
  blockBytes: number;
  /** bytes before the trailer record */
  bytes: number;
}

export function preamble(): Buffer {
  const b = Buffer.alloc(MAGIC.length + 4);
  MAGIC.copy(b);
  b.writeUInt32BE(STREAM_VERSION, MAGIC.length);
  return b;
}

export function recordHead(type: number, length: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt8(type, 0);
  b.writeUInt32BE(length, 1);
  return b;
}

export function jsonRecord(type: number, value: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(value));
  return Buffer.concat([recordHead(type, payload.length), payload]);
}

/** head of a block record: type, length, raw hash; the block bytes (not part of the stream checksum) follow */
export function blockHead(hash: string, length: number): Buffer {
  return Buffer.concat([recordHead(REC.block, 32 + length), Buffer.from(hash, 'hex')]);
}

export function recordName(type: number): string {
  return RECORD_NAMES[type] ?? `unknown record type 0x${type.toString(16).padStart(2, '0')}`;
}

export class StreamFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StreamFormatError';
  }
}

export interface RawRecord {
  type: number;
  /** for a block record: the block's bytes only */
  payload: Buffer;
  /** for a block record: its 32-byte sha256 */
  blockHash?: Buffer;
}

/**
 * Pulls exact byte counts out of a Readable (pull-based, so backpressure
 * reaches the sender), hashing everything it hands out.
 */
export class StreamReader {
  bytes = 0;
  /** the stream's format version, once the preamble is read */
  version = 0;
  private readonly hash: Hash = createHash('sha256');
  private readonly it: AsyncIterator<Buffer | string>;
  private chunks: Buffer[] = [];
  private have = 0;
  private ended = false;

  constructor(
    stream: Readable,
    private readonly maxBlock: number,
    signal?: AbortSignal,
  ) {
    if (signal) addAbortSignal(signal, stream);
    this.it = stream[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<void> {
    while (this.have < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        break;
      }
      const b = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
      if (b.length) {
        this.chunks.push(b);
        this.have += b.length;
      }
    }
  }

  private take(n: number): Buffer {
    let out: Buffer;
    const first = this.chunks[0];
    if (first.length > n) {
      out = first.subarray(0, n);
      this.chunks[0] = first.subarray(n);
    } else if (first.length === n) {
      out = first;
      this.chunks.shift();
    } else {
      const parts: Buffer[] = [];
      let need = n;
      while (need > 0) {
        const c = this.chunks[0];
        if (c.length <= need) {
          parts.push(c);
          this.chunks.shift();
          need -= c.length;
        } else {
          parts.push(c.subarray(0, need));
          this.chunks[0] = c.subarray(need);
          need = 0;
        }
      }
      out = Buffer.concat(parts, n);
    }
    this.have -= n;
    return out;
  }

  /** exactly n bytes, hashed; a short stream is an error naming what was being read */
  async read(n: number, what: string, hashed = true): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    await this.fill(n);
    if (this.have < n) {
      throw new StreamFormatError(`The stream ended early (truncated) in the middle of the ${what}, after ${this.bytes + this.have} bytes.`);
    }
    const out = this.take(n);
    if (hashed) this.hash.update(out);
    this.bytes += n;
    return out;
  }

  async readPreamble(): Promise<void> {
    const head = await this.read(MAGIC.length + 4, 'stream preamble');
    if (!head.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw new StreamFormatError('This is not a syncsh fs send stream (its first bytes are not "SYNCSHFS").');
    }
    const version = head.readUInt32BE(MAGIC.length);
    if (version < OLDEST_STREAM_VERSION || version > STREAM_VERSION) {
      throw new StreamFormatError(`The stream has format version ${version}, but this syncsh reads versions ${OLDEST_STREAM_VERSION} to ${STREAM_VERSION} only; run the same syncsh version on both appliances.`);
    }
    this.version = version;
  }

  async record(expected: string): Promise<RawRecord> {
    const head = await this.read(5, `header of the next record (${expected})`);
    const type = head.readUInt8(0);
    const length = head.readUInt32BE(1);
    const limit = type === REC.block ? 32 + this.maxBlock : type === REC.manifest ? MANIFEST_PART : MAX_JSON;
    if (!RECORD_NAMES[type]) throw new StreamFormatError(`The stream is corrupt: ${recordName(type)} at byte ${this.bytes - 5}, expected a ${expected}.`);
    if (length > limit || (type === REC.block && length <= 32)) {
      throw new StreamFormatError(`The stream is corrupt: a ${recordName(type)} record at byte ${this.bytes - 5} claims ${length} bytes.`);
    }
    if (type === REC.block) {
      const blockHash = await this.read(32, 'block record');
      return { type, blockHash, payload: await this.read(length - 32, 'block record', false) };
    }
    return { type, payload: await this.read(length, `${recordName(type)} record`) };
  }

  digest(): Buffer {
    return this.hash.copy().digest();
  }

  async expectEnd(): Promise<void> {
    await this.fill(1);
    if (this.have > 0) throw new StreamFormatError(`The stream has ${this.have}+ unexpected bytes after its checksum.`);
  }

  /** stop reading (destroys the source, so a sender waiting on backpressure is released) */
  async close(): Promise<void> {
    await this.it.return?.();
  }
}

export function parseJson<T>(rec: RawRecord, what: string): T {
  try {
    return JSON.parse(rec.payload.toString('utf8')) as T;
  } catch {
    throw new StreamFormatError(`The stream is corrupt: its ${what} is not valid JSON.`);
  }
}

/**
 * Just enough of the ZFS send stream format to know what a stream is before
 * receiving it (its snapshot, full or incremental). Every record is a 312-byte `dmu_replay_record`, in the
 * sender's byte order (told by the BEGIN magic), the same from pool v23 to
 * OpenZFS 2.x:
 *   0 drr_type u32 | 4 drr_payloadlen u32 | 8 magic u64 | 16 versioninfo u64
 *   | 24 creation u64 | 32 objset type u32 | 36 flags u32 | 40 toguid u64
 *   | 48 fromguid u64 | 56 toname char[256]
 * A compound stream (`send -R`, and `send -p` on old ZFS) is a BEGIN whose
 * payload is an nvlist, an END, then the BEGIN of each dataset's substream.
 */
import type { Readable } from 'node:stream';
import { peek } from '../exec.js';

export const RECORD_SIZE = 312;
const DRR_BEGIN = 0;
const DRR_END = 5;
const MAGIC = 0x2f5bacbacn;
/** versioninfo & 3: a plain stream or a `send -R` package of them */
const HDRTYPE_COMPOUND = 2n;

export interface ZfsStreamHeader {
  /** made by `send -R` */
  compound: boolean;
  /** `pool/fs@snap` as named on the sender */
  toName: string;
  /** guid of the snapshot it carries (0 in a compound header) */
  toGuid: string;
  /** guid of the incremental base; '0' for a full stream (and in a compound header) */
  fromGuid: string;
  /** payload bytes after this record (the nvlist of a compound header) */
  payloadLength: number;
}

export class ZfsStreamFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZfsStreamFormatError';
  }
}

export function parseBeginRecord(record: Buffer): ZfsStreamHeader {
  if (record.length < RECORD_SIZE) {
    throw new ZfsStreamFormatError(`The stream ended after ${record.length} bytes, before a whole ZFS stream header.`);
  }
  const little = record.readBigUInt64LE(8) === MAGIC;
  if (!little && record.readBigUInt64BE(8) !== MAGIC) throw new ZfsStreamFormatError('The stream is not a ZFS send stream.');
  const u32 = (at: number) => (little ? record.readUInt32LE(at) : record.readUInt32BE(at));
  const u64 = (at: number) => (little ? record.readBigUInt64LE(at) : record.readBigUInt64BE(at));
  if (u32(0) !== DRR_BEGIN) throw new ZfsStreamFormatError('The stream does not start with a ZFS BEGIN record.');
  const nameBytes = record.subarray(56, RECORD_SIZE);
  const end = nameBytes.indexOf(0);
  return {
    compound: (u64(16) & 3n) === HDRTYPE_COMPOUND,
    toName: nameBytes.subarray(0, end < 0 ? nameBytes.length : end).toString('utf8'),
    toGuid: u64(40).toString(),
    fromGuid: u64(48).toString(),
    payloadLength: u32(4),
  };
}

export interface StreamDescription {
  /** `pool/fs@snap` from the first header: the last snapshot of a compound stream, the first of a plain `-I` one */
  toName: string;
  compound: boolean;
  /** has a base: the destination must hold the base snapshot */
  incremental: boolean;
  /** guid of the snapshot it brings, when the header says (plain streams) */
  toGuid: string | null;
}

/** what a stream brings, read from its first records; `rest` replays the whole stream */
export async function describeStream(stream: Readable): Promise<{ description: StreamDescription; rest: Readable }> {
  const first = await peek(stream, RECORD_SIZE);
  let header: ZfsStreamHeader;
  try {
    header = parseBeginRecord(first.head);
  } catch (error) {
    first.rest.destroy();
    throw error;
  }
  if (!header.compound) {
    const description = { toName: header.toName, compound: false, incremental: header.fromGuid !== '0', toGuid: header.toGuid };
    return { description, rest: first.rest };
  }
  // the first substream's BEGIN tells full from incremental
  const substreamAt = RECORD_SIZE + header.payloadLength + RECORD_SIZE;
  const more = await peek(first.rest, substreamAt + RECORD_SIZE);
  let incremental = false;
  try {
    if (more.head.length >= substreamAt + RECORD_SIZE) {
      incremental = parseBeginRecord(more.head.subarray(substreamAt)).fromGuid !== '0';
    }
  } catch {
    // a package with no substream (or a damaged one): let zfs receive judge it
  }
  return { description: { toName: header.toName, compound: true, incremental, toGuid: null }, rest: more.rest };
}

/** true when an incremental stream carries no change: BEGIN (+ payload) followed directly by END */
export function isEmptyIncremental(prefix: Buffer): boolean {
  const begin = parseBeginRecord(prefix);
  const next = RECORD_SIZE + begin.payloadLength;
  if (prefix.length < next + 4) return false;
  const little = prefix.readBigUInt64LE(8) === MAGIC;
  return (little ? prefix.readUInt32LE(next) : prefix.readUInt32BE(next)) === DRR_END;
}

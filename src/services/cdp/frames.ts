/**
 * The mirror wire format between a master's engine and a target's receiver
 * (after the agent's JSON status line): length-prefixed binary frames, data
 * never in JSON.
 *
 *   u32 length of what follows | u8 type | body
 *
 *   HELLO      JSON {name, createdAt, epoch, role, from, zvol, size}
 *   WELCOME    JSON {epoch}                        the receiver holds the target open
 *   WRITE      u64 seq | u64 offset | data         apply in seq order
 *   ZERO       u64 seq | u64 offset | u64 length   the range reads as zeroes
 *   ACK        u64 seq                             every frame up to seq is durable there
 *   HASHES?    u64 seq | u64 offset | u32 count    ask for sha256 of `count` chunks from offset
 *   HASHES     u64 seq | 32 bytes × count
 *   DEDUP      u64 seq | u64 offset | u32 count | pieces   a write of which some blocks the target holds already (dedupe.ts):
 *              piece = u8 0 | u32 length | data, or u8 1 | u32 length | u64 source | 32-byte hash (copy from source, if it hashes so)
 *   MISS       u64 seq                             a copy did not match: nothing of that frame was applied; the receiver
 *                                                  applies nothing more until the sender sends it again as WRITE seq
 *   ERROR      JSON {message}                      the stream ends after it
 */
import type { Readable } from 'node:stream';
import type { Piece } from './dedupe.js';

export const FrameType = {
  HELLO: 1,
  WELCOME: 2,
  WRITE: 3,
  ZERO: 4,
  ACK: 5,
  HASH_REQUEST: 6,
  HASHES: 7,
  DEDUP: 8,
  MISS: 9,
  ERROR: 10,
} as const;

export type Frame =
  | { type: typeof FrameType.HELLO; hello: MirrorHello }
  | { type: typeof FrameType.WELCOME; epoch: number }
  | { type: typeof FrameType.WRITE; seq: number; offset: number; data: Buffer }
  | { type: typeof FrameType.ZERO; seq: number; offset: number; length: number }
  | { type: typeof FrameType.ACK; seq: number }
  | { type: typeof FrameType.HASH_REQUEST; seq: number; offset: number; count: number }
  | { type: typeof FrameType.HASHES; seq: number; hashes: Buffer[] }
  | { type: typeof FrameType.DEDUP; seq: number; offset: number; pieces: Piece[] }
  | { type: typeof FrameType.MISS; seq: number }
  | { type: typeof FrameType.ERROR; message: string };

export interface MirrorHello {
  name: string;
  createdAt: string;
  epoch: number;
  role: 'master';
  /** the master's appliance id (the agent checked the binding; the receiver checks it is the mirror's master) */
  from: string;
  /** the target zvol the master expects */
  zvol: string;
  size: number;
}

/** a frame's body may not be larger than this: a WRITE carries at most 32 MiB (NBD's maximum) */
export const MAX_FRAME = 33 * 1024 * 1024;

function head(type: number, bodyLength: number): Buffer {
  const h = Buffer.allocUnsafe(5);
  h.writeUInt32BE(bodyLength + 1, 0);
  h.writeUInt8(type, 4);
  return h;
}

const u64 = (n: number) => {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};

/** the buffers of one frame (written with one writev by the caller) */
export function encode(f: Frame): Buffer[] {
  switch (f.type) {
    case FrameType.HELLO:
    case FrameType.ERROR: {
      const json = Buffer.from(JSON.stringify(f.type === FrameType.HELLO ? f.hello : { message: f.message }));
      return [head(f.type, json.length), json];
    }
    case FrameType.WELCOME: {
      const json = Buffer.from(JSON.stringify({ epoch: f.epoch }));
      return [head(f.type, json.length), json];
    }
    case FrameType.WRITE:
      return [head(f.type, 16 + f.data.length), u64(f.seq), u64(f.offset), f.data];
    case FrameType.ZERO:
      return [head(f.type, 24), u64(f.seq), u64(f.offset), u64(f.length)];
    case FrameType.ACK:
    case FrameType.MISS:
      return [head(f.type, 8), u64(f.seq)];
    case FrameType.HASH_REQUEST: {
      const c = Buffer.allocUnsafe(4);
      c.writeUInt32BE(f.count);
      return [head(f.type, 20), u64(f.seq), u64(f.offset), c];
    }
    case FrameType.HASHES:
      return [head(f.type, 8 + 32 * f.hashes.length), u64(f.seq), ...f.hashes];
    case FrameType.DEDUP: {
      const out: Buffer[] = [Buffer.alloc(0), u64(f.seq), u64(f.offset), Buffer.alloc(4)];
      out[3].writeUInt32BE(f.pieces.length);
      let body = 20;
      for (const p of f.pieces) {
        const h = Buffer.allocUnsafe(5);
        h.writeUInt8('data' in p ? 0 : 1, 0);
        h.writeUInt32BE(p.length, 1);
        if ('data' in p) out.push(h, p.data);
        else out.push(h, u64(p.source), p.hash);
        body += 5 + ('data' in p ? p.length : 40);
      }
      out[0] = head(f.type, body);
      return out;
    }
  }
}

function decodeBody(type: number, body: Buffer): Frame {
  const num = (at: number) => Number(body.readBigUInt64BE(at));
  switch (type) {
    case FrameType.HELLO:
      return { type, hello: JSON.parse(body.toString('utf8')) as MirrorHello };
    case FrameType.WELCOME:
      return { type, epoch: Number((JSON.parse(body.toString('utf8')) as { epoch: number }).epoch) };
    case FrameType.ERROR:
      return { type, message: String((JSON.parse(body.toString('utf8')) as { message: unknown }).message) };
    case FrameType.WRITE:
      return { type, seq: num(0), offset: num(8), data: body.subarray(16) };
    case FrameType.ZERO:
      return { type, seq: num(0), offset: num(8), length: num(16) };
    case FrameType.ACK:
    case FrameType.MISS:
      return { type, seq: num(0) };
    case FrameType.HASH_REQUEST:
      return { type, seq: num(0), offset: num(8), count: body.readUInt32BE(16) };
    case FrameType.HASHES: {
      const hashes: Buffer[] = [];
      for (let at = 8; at + 32 <= body.length; at += 32) hashes.push(body.subarray(at, at + 32));
      return { type, seq: num(0), hashes };
    }
    case FrameType.DEDUP: {
      const pieces: Piece[] = [];
      let at = 20;
      for (let n = body.readUInt32BE(16); n > 0; n--) {
        if (at + 5 > body.length) throw new Error('A DEDUP frame ends in the middle of a piece.');
        const kind = body[at];
        const length = body.readUInt32BE(at + 1);
        at += 5;
        const size = kind === 0 ? length : 40;
        if (kind > 1 || at + size > body.length) throw new Error(`A DEDUP frame has a bad piece (kind ${kind}, ${length} bytes).`);
        pieces.push(kind === 0 ? { length, data: body.subarray(at, at + length) } : { length, source: num(at), hash: body.subarray(at + 8, at + 40) });
        at += size;
      }
      return { type, seq: num(0), offset: num(8), pieces };
    }
    default:
      throw new Error(`Unknown mirror frame type ${type}.`);
  }
}

/** the frames of a stream, in order; a frame over MAX_FRAME or a cut one is an error */
export async function* frames(input: Readable): AsyncGenerator<Frame> {
  let buf: Buffer = Buffer.alloc(0);
  for await (const chunk of input as AsyncIterable<Buffer>) {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    let at = 0;
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at);
      if (len < 1 || len > MAX_FRAME) throw new Error(`A mirror frame of ${len} bytes is not allowed (at most ${MAX_FRAME}).`);
      if (buf.length - at - 4 < len) break;
      const type = buf[at + 4];
      // a copy, so the frame does not pin the whole read buffer
      const body = Buffer.from(buf.subarray(at + 5, at + 4 + len));
      at += 4 + len;
      yield decodeBody(type, body);
    }
    buf = at === buf.length ? Buffer.alloc(0) : buf.subarray(at);
  }
  if (buf.length) throw new Error(`The mirror stream was cut in the middle of a frame (${buf.length} bytes left over).`);
}

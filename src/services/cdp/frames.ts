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
 *   APPLIED    u64 seq                             every frame up to seq is written there (it survives the
 *                                                  receiving process; a later ACK makes it durable)
 *   FLUSH      u64 seq                             make every frame up to seq durable now (and ACK it)
 *   HASHES?    u64 seq | u64 offset | u32 count    ask for sha256 of `count` chunks from offset
 *   HASHES     u64 seq | 32 bytes × count
 *   DEDUP      u64 seq | u64 offset | u32 count | pieces   a write of which some blocks the target holds already (dedupe.ts):
 *              piece = u8 0 | u32 length | data, or u8 1 | u32 length | u64 source | 32-byte hash (copy from source, if it hashes so)
 *   MISS       u64 seq                             a copy did not match: nothing of that frame was applied; the receiver
 *                                                  applies nothing more until the sender sends it again as WRITE seq
 *   ERROR      JSON {message}                      the stream ends after it
 *
 * From the slave to its master (the slave's export forwards its clients'
 * writes; the master orders them with its own, applies and mirrors them
 * back on this stream, then answers):
 *   FWD_WRITE  u64 id | u64 offset | data
 *   FWD_ZERO   u64 id | u64 offset | u64 length
 *   FWD_DONE   u64 id | utf8 error                 '' once both copies hold it durably (the WRITE came first)
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
  APPLIED: 11,
  FLUSH: 12,
  FWD_WRITE: 13,
  FWD_ZERO: 14,
  FWD_DONE: 15,
} as const;

export type Frame =
  | { type: typeof FrameType.HELLO; hello: MirrorHello }
  | { type: typeof FrameType.WELCOME; epoch: number }
  | { type: typeof FrameType.WRITE; seq: number; offset: number; data: Buffer; tell?: boolean }
  | { type: typeof FrameType.ZERO; seq: number; offset: number; length: number; tell?: boolean }
  | { type: typeof FrameType.ACK; seq: number }
  | { type: typeof FrameType.APPLIED; seq: number }
  | { type: typeof FrameType.FLUSH; seq: number }
  | { type: typeof FrameType.HASH_REQUEST; seq: number; offset: number; count: number }
  | { type: typeof FrameType.HASHES; seq: number; hashes: Buffer[] }
  | { type: typeof FrameType.DEDUP; seq: number; offset: number; pieces: Piece[]; tell?: boolean }
  | { type: typeof FrameType.MISS; seq: number }
  | { type: typeof FrameType.ERROR; message: string }
  | { type: typeof FrameType.FWD_WRITE; id: number; offset: number; data: Buffer }
  | { type: typeof FrameType.FWD_ZERO; id: number; offset: number; length: number }
  | { type: typeof FrameType.FWD_DONE; id: number; error: string };

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
  /**
   * 'asked': APPLIED only for frames that ask (`tell`, the type's high bit: a sync write waits
   * for it; an async one does not, and an APPLIED per write woke the master for nothing). Absent
   * (an older master): APPLIED for every frame
   */
  applied?: 'asked';
}

/** the type byte's high bit on WRITE, ZERO and DEDUP: answer APPLIED once it is written (MirrorHello.applied) */
const TELL = 0x80;

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
      return [head(f.type | (f.tell ? TELL : 0), 16 + f.data.length), u64(f.seq), u64(f.offset), f.data];
    case FrameType.ZERO:
      return [head(f.type | (f.tell ? TELL : 0), 24), u64(f.seq), u64(f.offset), u64(f.length)];
    case FrameType.ACK:
    case FrameType.APPLIED:
    case FrameType.FLUSH:
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
      out[0] = head(f.type | (f.tell ? TELL : 0), body);
      return out;
    }
    case FrameType.FWD_WRITE:
      return [head(f.type, 16 + f.data.length), u64(f.id), u64(f.offset), f.data];
    case FrameType.FWD_ZERO:
      return [head(f.type, 24), u64(f.id), u64(f.offset), u64(f.length)];
    case FrameType.FWD_DONE: {
      const why = Buffer.from(f.error);
      return [head(f.type, 8 + why.length), u64(f.id), why];
    }
  }
}

function decodeBody(typeByte: number, body: Buffer): Frame {
  const num = (at: number) => Number(body.readBigUInt64BE(at));
  const type = typeByte & ~TELL;
  const tell = typeByte & TELL ? { tell: true } : {};
  if (typeByte & TELL && type !== FrameType.WRITE && type !== FrameType.ZERO && type !== FrameType.DEDUP) throw new Error(`Unknown mirror frame type ${typeByte}.`);
  switch (type) {
    case FrameType.HELLO:
      return { type, hello: JSON.parse(body.toString('utf8')) as MirrorHello };
    case FrameType.WELCOME:
      return { type, epoch: Number((JSON.parse(body.toString('utf8')) as { epoch: number }).epoch) };
    case FrameType.ERROR:
      return { type, message: String((JSON.parse(body.toString('utf8')) as { message: unknown }).message) };
    case FrameType.WRITE:
      return { type, seq: num(0), offset: num(8), data: body.subarray(16), ...tell };
    case FrameType.ZERO:
      return { type, seq: num(0), offset: num(8), length: num(16), ...tell };
    case FrameType.ACK:
    case FrameType.APPLIED:
    case FrameType.FLUSH:
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
      return { type, seq: num(0), offset: num(8), pieces, ...tell };
    }
    case FrameType.FWD_WRITE:
      return { type, id: num(0), offset: num(8), data: body.subarray(16) };
    case FrameType.FWD_ZERO:
      return { type, id: num(0), offset: num(8), length: num(16) };
    case FrameType.FWD_DONE:
      return { type, id: num(0), error: body.subarray(8).toString('utf8') };
    default:
      throw new Error(`Unknown mirror frame type ${type}.`);
  }
}

/** frames up to this are joined into reused buffers when the consumer lets them be (frames' `reuse`) */
const REUSE_MAX = 4 * 1024 * 1024 + 64;

/**
 * the frames of a stream, in order; a frame over MAX_FRAME or a cut one is an error.
 * A large frame arrives in many reads: they are kept aside until it is whole and joined
 * once (joining at every read copied a 1 MiB frame about eight times). `reuse`: the
 * consumer keeps no frame's buffers past the one after it (the receiver reads one frame
 * ahead, and copies what it holds back), so they are joined into two buffers used in turn
 * (a join overwrites the one before last): a fresh
 * 1 MiB buffer per frame, its page faults and its GC cost the target ~4 ms per MiB.
 */
export async function* frames(input: Readable, reuse = false): AsyncGenerator<Frame> {
  /** the two join buffers (reuse); the one joined into last */
  const spare: (Buffer | null)[] = [null, null];
  let turn = 0;
  const join = (list: Buffer[], total: number): Buffer => {
    if (!reuse || total > REUSE_MAX) return Buffer.concat(list, total);
    // the other one holds what the consumer is done with: the frames yielded before the last join (the rest of that join is in `list`)
    turn ^= 1;
    let into = spare[turn];
    if (!into || into.length < total) into = spare[turn] = Buffer.allocUnsafeSlow(Math.max(total, 1024 * 1024 + 64));
    let at = 0;
    for (const b of list) at += b.copy(into, at);
    return into.subarray(0, total);
  };
  let buf: Buffer = Buffer.alloc(0);
  const parts: Buffer[] = [];
  let partBytes = 0;
  /** bytes buf must hold before there is anything to parse */
  let need = 4;
  for await (const chunk of input as AsyncIterable<Buffer>) {
    if (buf.length + partBytes + chunk.length < need) {
      parts.push(chunk);
      partBytes += chunk.length;
      continue;
    }
    buf = buf.length || parts.length ? join([buf, ...parts.splice(0), chunk], buf.length + partBytes + chunk.length) : chunk;
    partBytes = 0;
    let at = 0;
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at);
      if (len < 1 || len > MAX_FRAME) throw new Error(`A mirror frame of ${len} bytes is not allowed (at most ${MAX_FRAME}).`);
      if (buf.length - at - 4 < len) break;
      const type = buf[at + 4];
      // a small frame is copied, so it does not pin the whole read buffer; a large one is most of it
      const view = buf.subarray(at + 5, at + 4 + len);
      const body = len < 4096 ? Buffer.from(view) : view;
      at += 4 + len;
      yield decodeBody(type, body);
    }
    buf = at === buf.length ? Buffer.alloc(0) : buf.subarray(at);
    need = buf.length >= 4 ? 4 + buf.readUInt32BE(0) : 4;
  }
  if (buf.length || partBytes) throw new Error(`The mirror stream was cut in the middle of a frame (${buf.length + partBytes} bytes left over).`);
}

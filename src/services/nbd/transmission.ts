/**
 * The transmission phase (nbdkit's protocol.c): requests are read one after
 * another and run at once, several in flight per connection; each reply is
 * sent when its request completes, so replies come back out of order.
 * Replies completed in the same turn of the event loop leave in one writev
 * (the socket is corked until setImmediate).
 *
 * Every request is checked (refusal()) before the volume sees it: the
 * volume never gets a request past its end, misaligned, too big, or a
 * write to a read-only export. FLUSH calls volume.flush(), which makes every
 * write already completed durable: exactly the writes the client saw
 * replied to before it sent the FLUSH, as the protocol asks.
 */
import type { Socket } from 'node:net';
import { VolumeError, type BlockVolume } from './volume.js';
import { ConnectionClosed, type WireReader } from './wire-reader.js';
import type { Negotiated } from './handshake.js';
import { sharedPool, type Lease } from './buffer-pool.js';
import * as P from './protocol.js';

export interface Request {
  flags: number;
  type: number;
  /** the client's handle, echoed back as is */
  cookie: Buffer;
  offset: number;
  length: number;
}

/** what refusal() needs to know of the export */
export interface ExportShape {
  size: number;
  minBlockSize: number;
  readOnly: boolean;
  structured: boolean;
  allocation: boolean;
}

const KNOWN_FLAGS = P.NBD_CMD_FLAG_FUA | P.NBD_CMD_FLAG_NO_HOLE | P.NBD_CMD_FLAG_DF | P.NBD_CMD_FLAG_REQ_ONE;
const WRITES = new Set([P.NBD_CMD_WRITE, P.NBD_CMD_TRIM, P.NBD_CMD_WRITE_ZEROES]);
const RANGED = new Set([P.NBD_CMD_READ, P.NBD_CMD_WRITE, P.NBD_CMD_TRIM, P.NBD_CMD_WRITE_ZEROES, P.NBD_CMD_BLOCK_STATUS]);
const KNOWN = new Set([...RANGED, P.NBD_CMD_FLUSH, P.NBD_CMD_DISC]);

/** the NBD error a request gets without reaching the volume, or null when it may run */
export function refusal(req: Request, shape: ExportShape): P.NbdErrorName | null {
  const { type, flags, offset, length } = req;
  if (!KNOWN.has(type)) return 'EINVAL';
  if (flags & ~KNOWN_FLAGS) return 'EINVAL';
  if (flags & P.NBD_CMD_FLAG_NO_HOLE && type !== P.NBD_CMD_WRITE_ZEROES) return 'EINVAL';
  if (flags & P.NBD_CMD_FLAG_DF && (type !== P.NBD_CMD_READ || !shape.structured)) return 'EINVAL';
  if (flags & P.NBD_CMD_FLAG_REQ_ONE && type !== P.NBD_CMD_BLOCK_STATUS) return 'EINVAL';
  if ((type === P.NBD_CMD_READ || type === P.NBD_CMD_WRITE) && length > P.MAX_PAYLOAD) return 'EOVERFLOW';
  if (WRITES.has(type) && shape.readOnly) return 'EPERM';
  if (type === P.NBD_CMD_BLOCK_STATUS && !shape.allocation) return 'EINVAL';
  if (!RANGED.has(type)) return null;
  if (length === 0) return 'EINVAL';
  if (offset % shape.minBlockSize || length % shape.minBlockSize) return 'EINVAL';
  if (offset + length > shape.size) return WRITES.has(type) ? 'ENOSPC' : 'EINVAL';
  return null;
}

/** requests in flight per connection before we stop reading new ones */
const MAX_IN_FLIGHT = 64;
/** write payloads held at once per connection */
const MAX_BYTES_IN_FLIGHT = 128 * 1024 * 1024;
/** an oversize write's payload is read and dropped up to this; beyond, the connection is ended */
const MAX_SKIP = 256 * 1024 * 1024;
/** unsent replies before we stop reading new requests (the client is not reading) */
const MAX_UNSENT = 64 * 1024 * 1024;

export class Transmission {
  private readonly volume: BlockVolume;
  private readonly shape: ExportShape;
  private readonly inFlight = new Set<Promise<void>>();
  private bytesInFlight = 0;
  private slot: (() => void) | null = null;
  private corked = false;

  constructor(
    private readonly socket: Socket,
    private readonly reader: WireReader,
    private readonly neg: Negotiated,
    private readonly log: (line: string) => void,
  ) {
    this.volume = neg.volume;
    this.shape = {
      size: neg.volume.size,
      minBlockSize: neg.volume.minBlockSize,
      readOnly: neg.volume.readOnly,
      structured: neg.structured,
      allocation: neg.allocationContext !== null,
    };
  }

  /** Serves until the client disconnects (NBD_CMD_DISC or a closed socket); every request read is replied to first. */
  async run(): Promise<void> {
    try {
      await this.loop();
    } finally {
      await Promise.allSettled([...this.inFlight]);
    }
  }

  private async loop(): Promise<void> {
    for (;;) {
      while (this.inFlight.size >= MAX_IN_FLIGHT || this.socket.writableLength > MAX_UNSENT) await this.nextSlot();
      let head: Buffer;
      try {
        head = await this.reader.take(P.REQUEST_SIZE);
      } catch (error) {
        if (error instanceof ConnectionClosed) return;
        throw error;
      }
      const magic = head.readUInt32BE(0);
      if (magic !== P.REQUEST_MAGIC) {
        this.log(`protocol error: 0x${magic.toString(16)} where a request (magic 0x${P.REQUEST_MAGIC.toString(16)}) belongs; disconnecting`);
        return;
      }
      const req: Request = {
        flags: head.readUInt16BE(4),
        type: head.readUInt16BE(6),
        cookie: head.subarray(8, 16),
        offset: head.readUInt32BE(16) * 2 ** 32 + head.readUInt32BE(20),
        length: head.readUInt32BE(24),
      };
      if (req.type === P.NBD_CMD_DISC) return;
      let payload: Lease | null = null;
      if (req.type === P.NBD_CMD_WRITE) {
        if (req.length > P.MAX_PAYLOAD) {
          if (req.length > MAX_SKIP) {
            this.log(`protocol error: a write of ${req.length} bytes, over the ${P.MAX_PAYLOAD} advertised; disconnecting`);
            return;
          }
          await this.reader.skip(req.length);
        } else {
          while (this.bytesInFlight > 0 && this.bytesInFlight + req.length > MAX_BYTES_IN_FLIGHT) await this.nextSlot();
          payload = await this.reader.takeLease(req.length, sharedPool);
        }
      }
      const refused = refusal(req, this.shape);
      if (refused) {
        payload?.release();
        this.replyError(req, refused, `request refused: ${refused}`);
        continue;
      }
      this.start(req, payload);
    }
  }

  private nextSlot(): Promise<void> {
    return new Promise((resolve) => {
      this.slot = resolve;
      if (this.socket.writableLength > MAX_UNSENT) this.socket.once('drain', () => this.wake());
    });
  }

  private wake(): void {
    const s = this.slot;
    this.slot = null;
    s?.();
  }

  private start(req: Request, payload: Lease | null): void {
    const bytes = payload?.buf.length ?? 0;
    this.bytesInFlight += bytes;
    const done: Promise<void> = this.execute(req, payload)
      .catch((error: unknown) => {
        const code = error instanceof VolumeError ? error.code : 'EIO';
        if (code === 'EIO') this.log(`I/O error on ${commandName(req.type)} at ${req.offset}+${req.length}: ${(error as Error).message}`);
        this.replyError(req, code, (error as Error).message);
      })
      .finally(() => {
        payload?.release(); // the volume is done with it
        this.bytesInFlight -= bytes;
        this.inFlight.delete(done);
        this.wake();
      });
    this.inFlight.add(done);
  }

  private async execute(req: Request, payload: Lease | null): Promise<void> {
    const fua = (req.flags & P.NBD_CMD_FLAG_FUA) !== 0;
    const v = this.volume;
    switch (req.type) {
      case P.NBD_CMD_READ: {
        if (!v.readInto) {
          const data = await v.read(req.offset, req.length);
          if (data.length !== req.length) throw new Error(`the volume returned ${data.length} bytes for a read of ${req.length}`);
          return this.replyRead(req, data);
        }
        const lease = sharedPool.acquire(req.length);
        try {
          await v.readInto(req.offset, lease.buf);
        } catch (error) {
          lease.release();
          throw error;
        }
        return this.replyRead(req, lease.buf, lease.release);
      }
      case P.NBD_CMD_WRITE:
        await v.write(req.offset, payload!.buf, { fua, keep: payload!.hold });
        return this.replyOk(req);
      case P.NBD_CMD_FLUSH:
        await v.flush();
        return this.replyOk(req);
      case P.NBD_CMD_TRIM:
        await v.trim(req.offset, req.length, { fua });
        return this.replyOk(req);
      case P.NBD_CMD_WRITE_ZEROES:
        await v.writeZeroes(req.offset, req.length, { fua, noHole: (req.flags & P.NBD_CMD_FLAG_NO_HOLE) !== 0 });
        return this.replyOk(req);
      case P.NBD_CMD_BLOCK_STATUS:
        return this.replyBlockStatus(req);
    }
  }

  // ---- replies ----

  /** `sent`: called once the socket no longer needs the last part (its buffer may be reused) */
  private out(parts: Buffer[], sent?: () => void): void {
    if (this.socket.destroyed) return void sent?.();
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    for (let i = 0; i < parts.length; i++) {
      if (i === parts.length - 1 && sent) this.socket.write(parts[i], () => sent());
      else this.socket.write(parts[i]);
    }
  }

  private simpleHeader(req: Request, errno: number): Buffer {
    const h = Buffer.allocUnsafe(P.SIMPLE_REPLY_SIZE);
    h.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(errno, 4);
    req.cookie.copy(h, 8);
    return h;
  }

  private chunkHeader(req: Request, flags: number, type: number, length: number, extra = 0): Buffer {
    const h = Buffer.allocUnsafe(P.STRUCTURED_HEADER_SIZE + extra);
    h.writeUInt32BE(P.STRUCTURED_REPLY_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    req.cookie.copy(h, 8);
    h.writeUInt32BE(length, 16);
    return h;
  }

  private replyOk(req: Request): void {
    this.out([this.simpleHeader(req, 0)]);
  }

  private replyRead(req: Request, data: Buffer, sent?: () => void): void {
    if (!this.neg.structured) return this.out([this.simpleHeader(req, 0), data], sent);
    const h = this.chunkHeader(req, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_OFFSET_DATA, 8 + data.length, 8);
    h.writeUInt32BE(Math.floor(req.offset / 2 ** 32), 20);
    h.writeUInt32BE(req.offset >>> 0, 24);
    this.out([h, data], sent);
  }

  private replyError(req: Request, code: P.NbdErrorName, message: string): void {
    const errno = P.NBD_ERRNO[code];
    // structured replies carry a message; a READ must get one once they are agreed
    if (!this.neg.structured || (req.type !== P.NBD_CMD_READ && req.type !== P.NBD_CMD_BLOCK_STATUS)) return this.out([this.simpleHeader(req, errno)]);
    const msg = Buffer.from(message.slice(0, 1024), 'utf8');
    const h = this.chunkHeader(req, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_ERROR, 6 + msg.length, 6);
    h.writeUInt32BE(errno, 20);
    h.writeUInt16BE(msg.length, 24);
    this.out([h, msg]);
  }

  private async replyBlockStatus(req: Request): Promise<void> {
    const end = req.offset + req.length;
    const extents = await this.volume.extents!(req.offset, req.length);
    const descriptors: number[] = [];
    let at = req.offset;
    for (const e of extents) {
      if (at >= end || e.length <= 0) break;
      // never past the end of the export, and at most 4 GiB - 1 per descriptor
      const length = Math.min(e.length, this.shape.size - at, 0xffffffff - (0xffffffff % this.shape.minBlockSize));
      descriptors.push(length, (e.hole ? P.NBD_STATE_HOLE : 0) | (e.zero ? P.NBD_STATE_ZERO : 0));
      at += length;
      if (req.flags & P.NBD_CMD_FLAG_REQ_ONE) break;
    }
    if (!descriptors.length) throw new Error(`the volume described no extent at ${req.offset}`);
    const body = Buffer.allocUnsafe(4 + descriptors.length * 4);
    body.writeUInt32BE(this.neg.allocationContext!, 0);
    descriptors.forEach((n, i) => body.writeUInt32BE(n, 4 + i * 4));
    this.out([this.chunkHeader(req, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_BLOCK_STATUS, body.length), body]);
  }
}

function commandName(type: number): string {
  return ({ 0: 'READ', 1: 'WRITE', 3: 'FLUSH', 4: 'TRIM', 6: 'WRITE_ZEROES', 7: 'BLOCK_STATUS' } as Record<number, string>)[type] ?? `command ${type}`;
}

/**
 * The fixed newstyle handshake (option haggling), as nbdkit's
 * protocol-handshake-newstyle.c: the server greets, the client sends
 * options one at a time, each answered, until NBD_OPT_GO or
 * NBD_OPT_EXPORT_NAME moves the connection to transmission with an open
 * volume, or the client aborts. An option we do not know is refused with
 * NBD_REP_ERR_UNSUP and the haggling goes on; bytes that are not an option
 * at all end the connection (HandshakeError, logged by the server).
 */
import type { Socket } from 'node:net';
import type { BlockVolume, ExportSource } from './volume.js';
import type { WireReader } from './wire-reader.js';
import * as P from './protocol.js';

export class HandshakeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HandshakeError';
  }
}

export interface Negotiated {
  name: string;
  volume: BlockVolume;
  /** NBD_OPT_STRUCTURED_REPLY was agreed */
  structured: boolean;
  /** the id of base:allocation when the client selected it for this export, else null */
  allocationContext: number | null;
  /** NBD_FLAG_C_NO_ZEROES */
  noZeroes: boolean;
}

/** the context id we give base:allocation (any number the server chooses) */
const ALLOCATION_ID = 1;
/** options a client may send before it must choose an export: plenty for any real client */
const MAX_OPTIONS = 256;

/** the transmission flags of an export */
export function transmissionFlags(volume: BlockVolume, structured: boolean): number {
  let flags = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES;
  if (volume.readOnly) flags |= P.NBD_FLAG_READ_ONLY;
  if (structured) flags |= P.NBD_FLAG_SEND_DF;
  if (volume.canMultiConn) flags |= P.NBD_FLAG_CAN_MULTI_CONN;
  return flags;
}

export function maxBlockSize(volume: BlockVolume): number {
  return Math.max(volume.minBlockSize, Math.min(P.MAX_PAYLOAD, volume.size || P.MAX_PAYLOAD));
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** a cursor over one option's data; a read past its end means the option was malformed */
class OptionData {
  private at = 0;
  constructor(private readonly data: Buffer) {}
  private need(n: number): void {
    if (this.at + n > this.data.length) throw new RangeError('short option data');
  }
  u16(): number {
    this.need(2);
    const v = this.data.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.data.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  string(length: number): string {
    if (length > P.MAX_STRING) throw new RangeError('string too long');
    this.need(length);
    const v = this.data.toString('utf8', this.at, this.at + length);
    this.at += length;
    return v;
  }
  get done(): boolean {
    return this.at === this.data.length;
  }
}

export class Handshake {
  private structured = false;
  /** what SET_META_CONTEXT chose, and for which export */
  private meta: { name: string; allocation: boolean } | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly reader: WireReader,
    private readonly exports: ExportSource,
  ) {}

  private send(...parts: Buffer[]): void {
    this.socket.write(parts.length === 1 ? parts[0] : Buffer.concat(parts));
  }

  private reply(option: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.allocUnsafe(20);
    h.writeBigUInt64BE(P.OPTION_REPLY_MAGIC, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(type >>> 0, 12);
    h.writeUInt32BE(data.length, 16);
    this.send(h, data);
  }

  private error(option: number, type: number, message: string): undefined {
    this.reply(option, type, Buffer.from(message, 'utf8'));
    return undefined;
  }

  /** null: the client aborted (or named no export with NBD_OPT_EXPORT_NAME); the caller closes */
  async run(): Promise<Negotiated | null> {
    const greeting = Buffer.allocUnsafe(18);
    greeting.writeBigUInt64BE(P.NBDMAGIC, 0);
    greeting.writeBigUInt64BE(P.IHAVEOPT, 8);
    greeting.writeUInt16BE(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES, 16);
    this.send(greeting);

    const clientFlags = (await this.reader.take(4)).readUInt32BE(0);
    if (!(clientFlags & P.NBD_FLAG_C_FIXED_NEWSTYLE)) throw new HandshakeError(`the client does not speak fixed newstyle (client flags 0x${clientFlags.toString(16)})`);
    if (clientFlags & ~(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES)) throw new HandshakeError(`the client sent unknown client flags 0x${clientFlags.toString(16)}`);
    const noZeroes = (clientFlags & P.NBD_FLAG_C_NO_ZEROES) !== 0;

    for (let count = 0; count < MAX_OPTIONS; count++) {
      const head = await this.reader.take(16);
      const magic = head.readBigUInt64BE(0);
      if (magic !== P.IHAVEOPT) throw new HandshakeError(`the client sent 0x${magic.toString(16).padStart(16, '0')} where an option (IHAVEOPT) belongs`);
      const option = head.readUInt32BE(8);
      const length = head.readUInt32BE(12);
      if (length > P.MAX_OPTION_LENGTH) {
        this.error(option, P.NBD_REP_ERR_TOO_BIG, `option data of ${length} bytes is more than the ${P.MAX_OPTION_LENGTH} this server accepts`);
        throw new HandshakeError(`the client sent option ${option} with ${length} bytes of data`);
      }
      const data = length ? await this.reader.take(length) : Buffer.alloc(0);
      try {
        const done = await this.option(option, data, noZeroes);
        if (done !== undefined) return done;
      } catch (error) {
        if (!(error instanceof RangeError)) throw error;
        this.error(option, P.NBD_REP_ERR_INVALID, `option ${option} is malformed: ${error.message}`);
      }
    }
    throw new HandshakeError(`the client sent more than ${MAX_OPTIONS} options without choosing an export`);
  }

  /** undefined: go on haggling; null: end the connection; else: transmission */
  private async option(option: number, data: Buffer, noZeroes: boolean): Promise<Negotiated | null | undefined> {
    switch (option) {
      case P.NBD_OPT_EXPORT_NAME: {
        const name = data.toString('utf8');
        const volume = await this.exports.open(name);
        if (!volume) return null; // the protocol's only answer: close
        const reply = Buffer.alloc(noZeroes ? 10 : 134);
        reply.writeBigUInt64BE(BigInt(volume.size), 0);
        reply.writeUInt16BE(transmissionFlags(volume, this.structured), 8);
        this.send(reply);
        return this.negotiated(name, volume, noZeroes);
      }
      case P.NBD_OPT_ABORT:
        this.reply(option, P.NBD_REP_ACK);
        return null;
      case P.NBD_OPT_LIST: {
        if (data.length) return this.error(option, P.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
        for (const e of await this.exports.list()) {
          const name = Buffer.from(e.name, 'utf8');
          this.reply(option, P.NBD_REP_SERVER, Buffer.concat([u32(name.length), name, Buffer.from(e.description, 'utf8')]));
        }
        this.reply(option, P.NBD_REP_ACK);
        return undefined;
      }
      case P.NBD_OPT_STRUCTURED_REPLY:
        if (data.length) return this.error(option, P.NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        this.structured = true;
        this.reply(option, P.NBD_REP_ACK);
        return undefined;
      case P.NBD_OPT_INFO:
      case P.NBD_OPT_GO:
        return this.infoOrGo(option, data, noZeroes);
      case P.NBD_OPT_LIST_META_CONTEXT:
      case P.NBD_OPT_SET_META_CONTEXT:
        await this.metaContext(option, data);
        return undefined;
      default:
        // STARTTLS, EXTENDED_HEADERS and anything newer or unknown
        this.error(option, P.NBD_REP_ERR_UNSUP, `option ${option} is not supported by this server`);
        return undefined;
    }
  }

  private negotiated(name: string, volume: BlockVolume, noZeroes: boolean): Negotiated {
    const allocation = this.meta?.name === name && this.meta.allocation && !!volume.extents;
    return { name, volume, structured: this.structured, allocationContext: allocation ? ALLOCATION_ID : null, noZeroes };
  }

  private async infoOrGo(option: number, data: Buffer, noZeroes: boolean): Promise<Negotiated | undefined> {
    const d = new OptionData(data);
    const name = d.string(d.u32());
    const requests = d.u16();
    const wanted = new Set<number>();
    for (let i = 0; i < requests; i++) wanted.add(d.u16());
    if (!d.done) throw new RangeError('trailing bytes after the information requests');

    const volume = await this.exports.open(name);
    if (!volume) {
      this.error(option, P.NBD_REP_ERR_UNKNOWN, `there is no export named "${name}"`);
      return undefined;
    }
    const exp = Buffer.allocUnsafe(12);
    exp.writeUInt16BE(P.NBD_INFO_EXPORT, 0);
    exp.writeBigUInt64BE(BigInt(volume.size), 2);
    exp.writeUInt16BE(transmissionFlags(volume, this.structured), 10);
    this.reply(option, P.NBD_REP_INFO, exp);
    // block size constraints always: a client that did not ask still gets the interoperable 512 / 32 MiB
    const bs = Buffer.allocUnsafe(14);
    bs.writeUInt16BE(P.NBD_INFO_BLOCK_SIZE, 0);
    bs.writeUInt32BE(volume.minBlockSize, 2);
    bs.writeUInt32BE(Math.max(volume.minBlockSize, volume.preferredBlockSize), 6);
    bs.writeUInt32BE(maxBlockSize(volume), 10);
    this.reply(option, P.NBD_REP_INFO, bs);
    if (wanted.has(P.NBD_INFO_NAME)) {
      const info = Buffer.allocUnsafe(2);
      info.writeUInt16BE(P.NBD_INFO_NAME);
      this.reply(option, P.NBD_REP_INFO, Buffer.concat([info, Buffer.from(name, 'utf8')]));
    }
    this.reply(option, P.NBD_REP_ACK);
    if (option === P.NBD_OPT_GO) return this.negotiated(name, volume, noZeroes);
    await volume.close();
    return undefined;
  }

  private async metaContext(option: number, data: Buffer): Promise<void> {
    if (!this.structured) return this.error(option, P.NBD_REP_ERR_INVALID, 'meta contexts need NBD_OPT_STRUCTURED_REPLY first');
    const d = new OptionData(data);
    const name = d.string(d.u32());
    const count = d.u32();
    const queries: string[] = [];
    for (let i = 0; i < count; i++) queries.push(d.string(d.u32()));
    if (!d.done) throw new RangeError('trailing bytes after the queries');

    const volume = await this.exports.open(name);
    if (!volume) return this.error(option, P.NBD_REP_ERR_UNKNOWN, `there is no export named "${name}"`);
    const hasExtents = !!volume.extents;
    await volume.close();

    const listing = option === P.NBD_OPT_LIST_META_CONTEXT;
    // LIST with no queries, or a "base:" query, lists everything in the namespace; SET selects exact names only
    const selected = hasExtents && (listing ? queries.length === 0 || queries.some((q) => q === P.BASE_ALLOCATION || q === 'base:') : queries.includes(P.BASE_ALLOCATION));
    if (selected) {
      const ctxName = Buffer.from(P.BASE_ALLOCATION, 'utf8');
      this.reply(option, P.NBD_REP_META_CONTEXT, Buffer.concat([u32(listing ? 0 : ALLOCATION_ID), ctxName]));
    }
    if (!listing) this.meta = { name, allocation: selected };
    this.reply(option, P.NBD_REP_ACK);
  }
}

/**
 * NBD test helpers: a real NbdServer on a unix socket in a temp dir (closed
 * at teardown), a server in its own process (for kill -9), image files, the
 * gate for the NBD clients, and a raw protocol client for the edge cases no
 * real client sends.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { fileURLToPath } from 'node:url';
import { NbdServer, type NbdServerOptions } from '../../src/services/nbd/server.js';
import { fileExports } from '../../src/services/nbd/exports.js';
import { WireReader } from '../../src/services/nbd/wire-reader.js';
import * as P from '../../src/services/nbd/protocol.js';
import { missingCommand } from './system.js';
import type { Cleanup } from './netns.js';

/** a SystemCheck for the given client programs */
export const nbdClientsMissing =
  (...commands: string[]) =>
  async () => {
    const missing = await missingCommand(...commands);
    return missing ? `${missing} is not installed (Debian packages qemu-utils, libnbd-bin, fio)` : null;
  };

export function nbdTempDir(t: Cleanup, prefix = 'syncsh-nbd-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function makeImage(file: string, size: number): Promise<string> {
  const fh = await open(file, 'w');
  await fh.truncate(size);
  await fh.close();
  return file;
}

export const unixUri = (socket: string, name: string) => `nbd+unix:///${name}?socket=${socket}`;

export interface TestServer {
  server: NbdServer;
  socket: string;
  dir: string;
  logs: string[];
  uri(name: string): string;
}

/** an NbdServer exporting `files` (name → image path) on a socket in a fresh temp dir */
export async function startFileServer(t: Cleanup, files: Record<string, { path: string; readOnly?: boolean }>, extra: Partial<NbdServerOptions> = {}): Promise<TestServer> {
  const dir = nbdTempDir(t);
  const socket = path.join(dir, 'run', 'nbd.sock');
  const logs: string[] = [];
  const server = new NbdServer({ exports: fileExports(files), unixSocket: socket, log: (l) => logs.push(l), ...extra });
  t.teardown(() => server.close());
  await server.start();
  return { server, socket, dir, logs, uri: (name) => unixUri(socket, name) };
}

const SERVE = fileURLToPath(new URL('../fixtures/nbd-serve-file.ts', import.meta.url));

/** the fixture process serving `specs` (NAME=FILE[:ro]); resolved once it listens */
export async function serveInProcess(t: Cleanup, socket: string, specs: string[]): Promise<{ child: ResultPromise }> {
  const child = execa('node', ['--import', 'tsx', SERVE, socket, ...specs], { reject: false });
  t.teardown(() => void child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the NBD fixture exited (${code}) before listening`)));
  });
  return { child }; // wrapped: an async function returning the (thenable) child would wait for its exit
}

// ---- a raw client -------------------------------------------------------

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface Reply {
  error: number;
  cookie: bigint;
  /** READ data, or a structured chunk's payload */
  data: Buffer;
  /** structured chunk type (simple replies: undefined) */
  chunkType?: number;
}

/** speaks the protocol byte by byte, to send what real clients never do */
export class RawClient {
  readonly reader: WireReader;
  private cookie = 1n;
  structured = false;

  private constructor(readonly socket: net.Socket) {
    this.reader = new WireReader(socket);
  }

  static async connect(t: Cleanup, target: string | { host: string; port: number; localAddress?: string }): Promise<RawClient> {
    const socket = typeof target === 'string' ? net.connect(target) : net.connect({ host: target.host, port: target.port, localAddress: target.localAddress });
    t.teardown(() => void socket.destroy());
    socket.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawClient(socket);
  }

  /** read the greeting and send the client flags */
  async greet(clientFlags = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES): Promise<number> {
    const g = await this.reader.take(18);
    if (g.readBigUInt64BE(0) !== P.NBDMAGIC || g.readBigUInt64BE(8) !== P.IHAVEOPT) throw new Error('not an NBD newstyle greeting');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(clientFlags);
    this.socket.write(flags);
    return g.readUInt16BE(16);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(P.IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([h, data]));
  }

  async optionReply(): Promise<OptionReply> {
    const h = await this.reader.take(20);
    if (h.readBigUInt64BE(0) !== P.OPTION_REPLY_MAGIC) throw new Error('bad option reply magic');
    const length = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: length ? await this.reader.take(length) : Buffer.alloc(0) };
  }

  /** all replies to one option, up to and including the final ACK or error */
  async option(option: number, data?: Buffer): Promise<OptionReply[]> {
    this.sendOption(option, data);
    const replies: OptionReply[] = [];
    for (;;) {
      const r = await this.optionReply();
      replies.push(r);
      if (r.type === P.NBD_REP_ACK || r.type >= 2 ** 31) return replies;
    }
  }

  static goData(name: string, infos: number[] = []): Buffer {
    const n = Buffer.from(name);
    const b = Buffer.alloc(4 + n.length + 2 + infos.length * 2);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(infos.length, 4 + n.length);
    infos.forEach((i, k) => b.writeUInt16BE(i, 6 + n.length + k * 2));
    return b;
  }

  /** greet, optionally agree structured replies, GO; returns the size and transmission flags */
  async open(name: string, opts: { structured?: boolean; metaContexts?: string[] } = {}): Promise<{ size: number; flags: number }> {
    await this.greet();
    if (opts.structured) {
      const r = await this.option(P.NBD_OPT_STRUCTURED_REPLY);
      if (r.at(-1)!.type !== P.NBD_REP_ACK) throw new Error('structured replies refused');
      this.structured = true;
    }
    if (opts.metaContexts) {
      const n = Buffer.from(name);
      const parts = [Buffer.alloc(4), n, Buffer.alloc(4)];
      parts[0].writeUInt32BE(n.length);
      parts[2].writeUInt32BE(opts.metaContexts.length);
      for (const q of opts.metaContexts) {
        const l = Buffer.alloc(4);
        l.writeUInt32BE(Buffer.byteLength(q));
        parts.push(l, Buffer.from(q));
      }
      await this.option(P.NBD_OPT_SET_META_CONTEXT, Buffer.concat(parts));
    }
    const replies = await this.option(P.NBD_OPT_GO, RawClient.goData(name));
    const last = replies.at(-1)!;
    if (last.type !== P.NBD_REP_ACK) throw new Error(`GO refused: ${last.data.toString()}`);
    const exp = replies.find((r) => r.type === P.NBD_REP_INFO && r.data.readUInt16BE(0) === P.NBD_INFO_EXPORT)!;
    return { size: Number(exp.data.readBigUInt64BE(2)), flags: exp.data.readUInt16BE(10) };
  }

  /** send a request; returns its cookie */
  send(type: number, offset: number, length: number, opts: { flags?: number; payload?: Buffer } = {}): bigint {
    const cookie = this.cookie++;
    const h = Buffer.alloc(P.REQUEST_SIZE);
    h.writeUInt32BE(P.REQUEST_MAGIC, 0);
    h.writeUInt16BE(opts.flags ?? 0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.socket.write(opts.payload ? Buffer.concat([h, opts.payload]) : h);
    return cookie;
  }

  /** the next reply; `readLength` says how many data bytes a simple READ reply carries */
  async reply(readLength = 0): Promise<Reply> {
    const magic = (await this.reader.take(4)).readUInt32BE(0);
    if (magic === P.SIMPLE_REPLY_MAGIC) {
      const rest = await this.reader.take(12);
      const error = rest.readUInt32BE(0);
      return { error, cookie: rest.readBigUInt64BE(4), data: error === 0 && readLength ? await this.reader.take(readLength) : Buffer.alloc(0) };
    }
    if (magic !== P.STRUCTURED_REPLY_MAGIC) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
    const rest = await this.reader.take(16);
    const chunkType = rest.readUInt16BE(2);
    const length = rest.readUInt32BE(12);
    const data = length ? await this.reader.take(length) : Buffer.alloc(0);
    const error = chunkType >= 2 ** 15 ? data.readUInt32BE(0) : 0;
    return { error, cookie: rest.readBigUInt64BE(4), data, chunkType };
  }

  /** resolves when the server has closed the connection */
  closed(): Promise<void> {
    return new Promise((resolve) => (this.socket.destroyed || this.socket.readableEnded ? resolve() : this.socket.once('close', () => resolve())));
  }
}

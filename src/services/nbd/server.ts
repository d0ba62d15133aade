/**
 * The NBD server: listens on a unix socket (mode 0600 in a 0700 directory:
 * only this user reaches it) and, when asked, on TCP, where a client outside
 * the allow-list is closed before a byte of handshake. Each connection runs
 * the handshake, then the transmission phase on the volume it opened, and
 * closes that volume when it ends. A client that misbehaves is logged and
 * dropped; the others go on.
 */
import net, { type BlockList, type Socket } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { allowList } from './allow-list.js';
import { Handshake, HandshakeError } from './handshake.js';
import { Transmission } from './transmission.js';
import { ConnectionClosed, WireReader } from './wire-reader.js';
import type { BlockVolume, ExportSource } from './volume.js';

export { allowList };

export interface NbdServerOptions {
  exports: ExportSource;
  /** path under $SYNCSH_HOME/run/, e.g. run/nbd.sock */
  unixSocket?: string;
  /** allow: CIDRs; a client outside them is closed before the handshake */
  tcp?: { host: string; port: number; allow: string[] };
  log?(line: string): void;
  onClientsChanged?(clients: NbdClientInfo[]): void;
}

export interface NbdClientInfo {
  export: string;
  client: string;
  since: Date;
}

/** a client that has not chosen an export by then is dropped */
const HANDSHAKE_TIMEOUT_MS = 30_000;

function allowed(list: BlockList, address: string | undefined): boolean {
  if (!address) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return list.check(mapped[1], 'ipv4');
  return list.check(address, net.isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

interface Connection {
  socket: Socket;
  client: string;
  info: NbdClientInfo | null;
  done: Promise<void>;
}

export class NbdServer {
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<Connection>();
  private tcpBound: { host: string; port: number } | null = null;
  private closing = false;

  constructor(private readonly opts: NbdServerOptions) {}

  private log(line: string): void {
    this.opts.log?.(line);
  }

  /** listening when resolved */
  async start(): Promise<void> {
    if (this.opts.unixSocket) await this.listenUnix(this.opts.unixSocket);
    if (this.opts.tcp) await this.listenTcp(this.opts.tcp);
  }

  get tcpAddress(): { host: string; port: number } | null {
    return this.tcpBound;
  }

  clients(): NbdClientInfo[] {
    return [...this.connections].flatMap((c) => (c.info ? [{ ...c.info }] : []));
  }

  /** ends every connection to that export (it was destroyed) */
  async withdraw(name: string): Promise<void> {
    const ending = [...this.connections].filter((c) => c.info?.export === name);
    for (const c of ending) c.socket.destroy();
    await Promise.allSettled(ending.map((c) => c.done));
    if (ending.length) this.log(`export ${name} withdrawn: ${ending.length} client(s) disconnected`);
  }

  /** stops listening, ends connections, closes volumes */
  async close(): Promise<void> {
    this.closing = true;
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const c of this.connections) c.socket.destroy();
    await Promise.allSettled([...closed, ...[...this.connections].map((c) => c.done)]);
    this.servers.length = 0;
    this.tcpBound = null;
  }

  private async listenUnix(file: string): Promise<void> {
    const dir = path.dirname(file);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const old = await lstat(file).catch(() => null);
    if (old) {
      if (!old.isSocket()) throw new Error(`${file} exists and is not a socket; remove it or choose another path for the NBD socket.`);
      if (await socketAnswers(file)) throw new Error(`Another NBD server is already listening on ${file}.`);
      await unlink(file);
    }
    let n = 0;
    const server = net.createServer((s) => this.accept(s, `unix#${++n}`));
    await listen(server, (done) => server.listen(file, done));
    await chmod(file, 0o600);
    this.servers.push(server);
    this.log(`NBD server listening on ${file}`);
  }

  private async listenTcp(tcp: { host: string; port: number; allow: string[] }): Promise<void> {
    const list = allowList(tcp.allow);
    const server = net.createServer((s) => {
      const who = `${s.remoteAddress}:${s.remotePort}`;
      if (!allowed(list, s.remoteAddress)) {
        this.log(`refused NBD client ${who}: not in the allow-list (${tcp.allow.join(', ') || 'empty'})`);
        s.destroy();
        return;
      }
      this.accept(s, who);
    });
    await listen(server, (done) => server.listen(tcp.port, tcp.host, done));
    const addr = server.address() as net.AddressInfo;
    this.tcpBound = { host: addr.address, port: addr.port };
    this.servers.push(server);
    this.log(`NBD server listening on ${addr.address}:${addr.port}`);
  }

  private accept(socket: Socket, client: string): void {
    if (this.closing) return void socket.destroy();
    socket.setNoDelay(true);
    const conn: Connection = { socket, client, info: null, done: Promise.resolve() };
    this.connections.add(conn);
    conn.done = this.serve(conn).finally(() => {
      this.connections.delete(conn);
      if (conn.info) this.changed();
    });
  }

  private changed(): void {
    this.opts.onClientsChanged?.(this.clients());
  }

  private async serve(conn: Connection): Promise<void> {
    const { socket } = conn;
    socket.on('error', () => undefined); // a reset client ends its own connection only; 'close' follows
    const reader = new WireReader(socket);
    let volume: BlockVolume | null = null;
    const timer = setTimeout(() => {
      this.log(`NBD client ${conn.client}: no export chosen within ${HANDSHAKE_TIMEOUT_MS / 1000} s; disconnecting`);
      socket.destroy();
    }, HANDSHAKE_TIMEOUT_MS);
    try {
      const neg = await new Handshake(socket, reader, this.opts.exports).run();
      clearTimeout(timer);
      if (!neg) return;
      volume = neg.volume;
      if (socket.destroyed) return; // withdrawn or closed while the export was opening
      conn.info = { export: neg.name, client: conn.client, since: new Date() };
      this.changed();
      await new Transmission(socket, reader, neg, (line) => this.log(`NBD client ${conn.client} (${neg.name}): ${line}`)).run();
    } catch (error) {
      if (error instanceof HandshakeError) this.log(`NBD client ${conn.client}: handshake error: ${error.message}; disconnecting`);
      else if (!(error instanceof ConnectionClosed)) this.log(`NBD client ${conn.client}: ${(error as Error).message}; disconnecting`);
    } finally {
      clearTimeout(timer);
      await volume?.close().catch((error: Error) => this.log(`closing ${conn.info?.export ?? 'an export'}: ${error.message}`));
      await endSocket(socket);
    }
  }
}

function listen(server: net.Server, start: (done: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    start(() => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** flush what is queued to the client, then close */
function endSocket(socket: Socket): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => socket.destroy(), 5_000);
    socket.once('close', () => {
      clearTimeout(t);
      resolve();
    });
    socket.end();
  });
}

function socketAnswers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

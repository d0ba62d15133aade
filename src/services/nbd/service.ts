/**
 * The appliance's NBD service, run by `syncsh daemon`: one NbdServer on the
 * unix socket `$SYNCSH_HOME/run/nbd.sock` (always), and one on TCP while
 * `setup appliance nbd-listen` names an address. A change of nbd-listen or
 * nbd-allow (appliance.json) restarts the TCP listener only: unix clients
 * are not disturbed. An export that disappears (its volume destroyed) is
 * withdrawn from both servers within `pollMs`.
 */
import { watch, type FSWatcher } from 'node:fs';
import type { Home } from '../home.js';
import { nbdSettings } from '../appliance.js';
import { NbdServer, type NbdClientInfo } from './server.js';
import { goneExports } from './exports.js';
import type { ExportSource } from './volume.js';

import { nbdSocketPath } from './paths.js';

export { nbdSocketPath, nbdUri } from './paths.js';

export interface NbdServiceOptions {
  log?(line: string): void;
  /** the clients of both servers, whenever one comes or goes (the daemon publishes them for `show zvol`) */
  onClientsChanged?(clients: NbdClientInfo[]): void;
  /** how often exports held by clients are checked for withdrawal (ms) */
  pollMs?: number;
}

export class NbdService {
  private unix: NbdServer | null = null;
  private tcp: NbdServer | null = null;
  private tcpKey = 'none';
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** reloads and withdrawals one at a time */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly home: Home,
    /** what is exported: the appliance's zvols (zvol-exports.ts), or fixed files in tests */
    readonly exports: ExportSource,
    private readonly opts: NbdServiceOptions = {},
  ) {}

  private clientsChanged = (): void => {
    this.opts.onClientsChanged?.(this.clients());
  };

  private log(line: string): void {
    this.opts.log?.(line);
  }

  async start(): Promise<void> {
    this.unix = new NbdServer({ exports: this.exports, unixSocket: nbdSocketPath(this.home), log: (l) => this.log(l), onClientsChanged: this.clientsChanged });
    await this.unix.start();
    await this.reload();
    try {
      this.watcher = watch(this.home.config, { persistent: false }, (_e, file) => {
        if (file === 'appliance.json') this.serially(() => this.reload());
      });
    } catch {
      this.watcher = null; // settings then apply at the next poll
    }
    this.timer = setInterval(() => this.serially(() => this.poll()), this.opts.pollMs ?? 2_000);
    this.timer.unref();
  }

  get tcpAddress(): { host: string; port: number } | null {
    return this.tcp?.tcpAddress ?? null;
  }

  clients(): NbdClientInfo[] {
    return [...(this.unix?.clients() ?? []), ...(this.tcp?.clients() ?? [])];
  }

  async withdraw(name: string): Promise<void> {
    await Promise.all([this.unix?.withdraw(name), this.tcp?.withdraw(name)]);
  }

  async close(): Promise<void> {
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    await this.queue;
    await Promise.all([this.unix?.close(), this.tcp?.close()]);
    this.unix = this.tcp = null;
  }

  private serially(fn: () => Promise<void>): void {
    this.queue = this.queue.then(fn).catch((error: Error) => this.log(`NBD: ${error.message}`));
  }

  private async poll(): Promise<void> {
    await this.reload();
    for (const name of await goneExports(
      this.exports,
      this.clients().map((c) => c.export),
    ))
      await this.withdraw(name);
  }

  /** (re)start the TCP listener when nbd-listen or nbd-allow changed */
  private async reload(): Promise<void> {
    const { nbdListen, nbdAllow } = nbdSettings(this.home);
    const key = nbdListen ? JSON.stringify([nbdListen, nbdAllow]) : 'none';
    if (key === this.tcpKey) return;
    this.tcpKey = key;
    if (this.tcp) {
      await this.tcp.close();
      this.tcp = null;
      this.log('NBD TCP listener stopped');
    }
    if (!nbdListen) return;
    const server = new NbdServer({ exports: this.exports, tcp: { ...nbdListen, allow: nbdAllow }, log: (l) => this.log(l), onClientsChanged: this.clientsChanged });
    try {
      await server.start();
      this.tcp = server;
    } catch (error) {
      this.log(`NBD: cannot listen on ${nbdListen.host}:${nbdListen.port}: ${(error as Error).message}`);
      await server.close();
    }
  }
}

/**
 * auto-cdp in `syncsh daemon`: one mirror engine per mirror this appliance
 * is master of (its zvol exported as a MirrorVolume), the receiver socket
 * (`run/cdp.sock`) for mirrors it is a target of (that zvol exported
 * read-only), cdp.json followed every second (mode, pause, targets), and
 * the engines' figures written for `show auto-cdp`.
 */
import { mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Services } from '../index.js';
import type { BlockVolume } from '../nbd/volume.js';
import { parseDataset } from '../datasets.js';
import { readHeaderLine } from '../peer/agent.js';
import type { Outcome } from '../peer/protocol.js';
import { PeerError } from '../peer/transport.js';
import { cdpSocket } from './agent.js';
import { MirrorEngine } from './engine.js';
import { MirrorVolume } from './mirror-volume.js';
import { receiveMirror } from './receiver.js';
import { writeMirrorStatus, type MirrorStatus } from './status.js';
import type { MirrorStream } from './target-link.js';
import type { MirrorConfig } from './model.js';
import { PeerGuard } from './peer-guard.js';
import { DEFAULT_PEER_TIMEOUT_MS } from './heartbeat.js';

export interface VerifyRequest {
  name: string;
  host?: string | null;
  repair?: boolean;
}

export interface CdpDaemonOptions {
  log(line: string): void;
  /** how often cdp.json is looked at and lost links are retried */
  intervalMs?: number;
  /** a target whose link is down this long is lost: its fencing policy decides (SYNCSH_CDP_PEER_TIMEOUT_MS) */
  peerTimeoutMs?: number;
}

export class CdpDaemon {
  private readonly engines = new Map<string, { engine: MirrorEngine; createdAt: string; guard: PeerGuard }>();
  private readonly starting = new Map<string, Promise<MirrorEngine | null>>();
  private server: net.Server | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly streams = new Set<net.Socket>();
  private readonly refreshers = new Map<string, () => void>();

  constructor(
    private readonly services: Services,
    private readonly opts: CdpDaemonOptions,
  ) {}

  async start(): Promise<void> {
    const sock = cdpSocket(this.services.home);
    mkdirSync(path.dirname(sock), { recursive: true, mode: 0o700 });
    rmSync(sock, { force: true });
    this.server = net.createServer((s) => void this.accept(s));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(sock, () => resolve());
    });
    await this.follow();
    this.timer = setInterval(() => void this.follow(), this.opts.intervalMs ?? 1000);
  }

  private async accept(socket: net.Socket): Promise<void> {
    this.streams.add(socket);
    socket.once('close', () => this.streams.delete(socket));
    socket.on('error', () => undefined);
    try {
      const first = JSON.parse(await readHeaderLine(socket)) as { from?: string; verify?: VerifyRequest };
      if (first.verify) {
        await this.answerVerify(socket, first.verify);
        return;
      }
      const from = String(first.from);
      await receiveMirror(
        {
          store: this.services.cdp.store,
          log: this.opts.log,
          open: async (zvol) => {
            const ref = parseDataset(zvol);
            const driver = await this.services.storage.usable(ref.driver);
            return driver.openVolume!(ref.name, { readOnly: false });
          },
        },
        from,
        socket,
        socket,
      );
    } catch (error) {
      this.opts.log(`auto-cdp: a mirror stream failed: ${(error as Error).message}`);
      socket.destroy();
    }
  }

  /** `run auto-cdp :NAME verify` from this appliance's CLI: the engine compares, the answer is one JSON line */
  private async answerVerify(socket: net.Socket, req: VerifyRequest): Promise<void> {
    let reply: unknown;
    try {
      const engine = this.engines.get(req.name)?.engine ?? (await this.engineFor(req.name));
      if (!engine) throw new Error(`auto-cdp:${req.name} is not mirrored by this appliance's daemon (it is not master here).`);
      reply = { ok: true, result: await engine.verify(req.host ?? undefined, Boolean(req.repair)) };
    } catch (error) {
      reply = { ok: false, error: { message: (error as Error).message } };
    }
    socket.end(`${JSON.stringify(reply)}\n`);
  }

  private async dial(host: string): Promise<MirrorStream> {
    const channel = await this.services.peers.channel(host, 'mirror');
    channel.stderr.resume();
    let line: string;
    try {
      line = await readHeaderLine(channel.stdout);
    } catch (error) {
      channel.close();
      throw new PeerError('agent', `${host} did not open the mirror stream: ${(error as Error).message}`);
    }
    const outcome = JSON.parse(line) as Outcome;
    if (!outcome.ok) {
      channel.close();
      throw new PeerError('agent', `${host}: ${outcome.error.message}`);
    }
    return { input: channel.stdout, output: channel.stdin, close: () => channel.close() };
  }

  /** the master mirrors in cdp.json: start engines for new ones, stop those gone; report figures */
  private async follow(): Promise<void> {
    if (this.closed) return;
    let mirrors: MirrorConfig[];
    try {
      mirrors = this.services.cdp.store.list();
    } catch (error) {
      this.opts.log(`auto-cdp: ${(error as Error).message}`);
      return;
    }
    const masters = mirrors.filter((m) => m.role === 'master');
    for (const m of masters) {
      const running = this.engines.get(m.name);
      if (running && running.createdAt !== m.createdAt) await this.stop(m.name);
      if (!this.engines.has(m.name)) await this.engineFor(m.name).catch((e: Error) => this.opts.log(`auto-cdp:${m.name}: not started: ${e.message}`));
    }
    for (const name of [...this.engines.keys()]) if (!masters.some((m) => m.name === name)) await this.stop(name);
    for (const [name, { engine }] of this.engines) {
      this.refreshers.get(name)?.();
      await engine.tick();
    }
    const status: Record<string, MirrorStatus> = {};
    const now = new Date();
    for (const [name, { engine }] of this.engines) status[name] = { updatedAt: now.toISOString(), targets: engine.status(now.getTime()) };
    try {
      writeMirrorStatus(this.services.home, status);
    } catch {
      // figures for show: the next round writes them
    }
  }

  private engineFor(name: string): Promise<MirrorEngine | null> {
    const running = this.engines.get(name);
    if (running) return Promise.resolve(running.engine);
    let p = this.starting.get(name);
    if (!p) {
      p = (async () => {
        const first = this.services.cdp.store.get(name);
        if (!first || first.role !== 'master') return null;
        const ref = parseDataset(first.zvol);
        const driver = await this.services.storage.usable(ref.driver);
        const volume = await driver.openVolume!(ref.name, { readOnly: false });
        // read once a round by follow(), not on every write
        let last = first;
        this.refreshers.set(name, () => {
          try {
            const c = this.services.cdp.store.get(name);
            if (c && c.createdAt === first.createdAt) last = c;
          } catch {
            // a damaged cdp.json: go on with the last good view
          }
        });
        const store = this.services.cdp.store;
        let started: MirrorEngine | null = null;
        const guard = new PeerGuard(name, {
          fencing: this.services.fencing,
          roles: {
            state: () => {
              const c = store.get(name) ?? last;
              return { role: c.role, epoch: c.epoch };
            },
            setState: async (_mirror, next, _why, peer) => {
              await store.update(name, (c) => {
                if (next.role === c.role) return { ...c, epoch: next.epoch };
                // a demotion (003 case 4, or a failed fence): follow the lost peer's copy as master; follow() then stops this engine
                const t = c.targets.find((x) => x.host === peer) ?? c.targets[0];
                return { ...c, role: next.role, epoch: next.epoch, master: t ? { host: t.host, zvol: t.zvol } : c.master, targets: next.role === 'slave' ? [] : c.targets };
              });
            },
          },
          log: (_mirror, line) => {
            this.opts.log(`auto-cdp:${name}: ${line}`);
            try {
              this.services.cdp.log(name).write(line);
            } catch {
              // the mirror was destroyed meanwhile
            }
          },
          linkUp: (host) => started?.linkUp(host) ?? false,
          paused: (host) => Boolean(last.targets.find((t) => t.host === host)?.paused),
          linkError: (host) => started?.linkError(host) ?? null,
          peerTimeoutMs: this.opts.peerTimeoutMs ?? DEFAULT_PEER_TIMEOUT_MS,
        });
        const engine = await MirrorEngine.start(
          {
            away: (host) => guard.away(host),
            me: this.services.appliance.id,
            mapDir: path.join(this.services.home.root, 'cdp', name),
            config: () => last,
            dial: (host) => this.dial(host),
            resynced: (host) => void this.services.cdp.store.update(name, (c) => ({ ...c, targets: c.targets.map((t) => (t.host === host ? { ...t, fullSync: 'none', state: 'mirroring' } : t)) })).catch(() => undefined),
            log: (line) => {
              this.opts.log(line);
              try {
                this.services.cdp.log(name).write(line.replace(/^auto-cdp:\S+: /, ''));
              } catch {
                // the mirror was destroyed meanwhile
              }
            },
            retryMs: this.opts.intervalMs,
            history: (entry) => this.services.cdp.history(name).append(entry),
            // SYNCSH_CDP_DEDUPE=0: every write crosses whole (saves the hashing, README.md here)
            dedupe: process.env.SYNCSH_CDP_DEDUPE !== '0',
          },
          volume,
        );
        started = engine;
        guard.watch(first.targets.map((t) => t.host));
        this.engines.set(name, { engine, createdAt: first.createdAt, guard });
        this.opts.log(`auto-cdp:${name}: mirroring ${first.zvol} to ${first.targets.map((t) => t.host).join(', ')} (${first.mode})`);
        return engine;
      })().finally(() => this.starting.delete(name));
      this.starting.set(name, p);
    }
    return p;
  }

  private async stop(name: string): Promise<void> {
    const e = this.engines.get(name);
    if (!e) return;
    this.engines.delete(name);
    this.refreshers.delete(name);
    await e.guard.close();
    await e.engine.close();
    this.opts.log(`auto-cdp:${name}: stopped`);
  }

  /**
   * The export for a zvol in a mirror: the master's goes through its engine,
   * a slave's is read-only (writes there go to the master, later); null for
   * a zvol in no mirror here.
   */
  async exportFor(qualified: string, open: (readOnly: boolean) => Promise<BlockVolume>): Promise<BlockVolume | null> {
    const m = this.services.cdp.store.list().find((c) => c.zvol === qualified);
    if (!m) return null;
    if (m.role !== 'master') return open(true);
    const engine = await this.engineFor(m.name);
    return engine ? new MirrorVolume(engine) : open(true);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const name of [...this.engines.keys()]) await this.stop(name);
    for (const s of this.streams) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

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
import { VolumeError, type BlockVolume } from '../nbd/volume.js';
import { parseDataset } from '../datasets.js';
import { readHeaderLine } from '../peer/agent.js';
import type { Outcome } from '../peer/protocol.js';
import { PeerError } from '../peer/transport.js';
import { withTimeout } from '../auto-sync/contact.js';
import { cdpSocket, connectReceiver } from './agent.js';
import { MirrorEngine } from './engine.js';
import { MirrorVolume } from './mirror-volume.js';
import { receiveMirror, type ForwardSession } from './receiver.js';
import { SlaveVolume } from './slave-volume.js';
import { writeMirrorStatus, type MirrorStatus } from './status.js';
import type { MirrorStream } from './target-link.js';
import type { MirrorConfig, MirrorTarget } from './model.js';
import { mapFileOf, markEngine, unmarkEngine } from './owed.js';
import { PeerGuard } from './peer-guard.js';
import { meetPeer, type MirrorRoles } from './peer-loss.js';
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
  private readonly engines = new Map<string, { engine: MirrorEngine; createdAt: string }>();
  /** one per mirror, kept across role changes: a loss's verdict (and its one fence run) holds for both of this copy's roles */
  private readonly guards = new Map<string, PeerGuard>();
  /** the master's stream of each mirror this copy is slave of: its export forwards writes through it */
  private readonly sessions = new Map<string, ForwardSession>();
  /** mirrors whose master copy is meeting a peer that refused its stream (no engine is started for them meanwhile) */
  private readonly meeting = new Set<string>();
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
          attach: (name, session) => {
            this.sessions.set(name, session);
            this.guardFor(name).watch([session.from]);
            return () => {
              if (this.sessions.get(name) === session) this.sessions.delete(name);
            };
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

  /**
   * the stream to a target's receiver: a local-bind peer's daemon socket directly (its binding
   * checked by a control request to its agent first, which it answers only while it keeps this
   * appliance bound), else through the peer's agent `mirror` channel. Each frame through an
   * agent crossed one more process both ways (issue 12's latency).
   */
  private async dial(host: string, name: string): Promise<MirrorStream> {
    const peer = this.services.peers.store.find(host);
    if (peer?.transport === 'local' && peer.agent.home) {
      await withTimeout(this.services.peers.call(host, 'cdp.get', { name }), this.peerTimeoutOf(this.services.cdp.store.get(name)), host);
      let socket: net.Socket;
      try {
        socket = await connectReceiver(path.join(peer.agent.home, 'run', 'cdp.sock'), this.services.appliance.id);
      } catch (error) {
        throw new PeerError('agent', `${host}: ${(error as Error).message}`);
      }
      socket.on('error', () => socket.destroy());
      return { input: socket, output: socket, close: () => socket.destroy() };
    }
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
      if (!this.engines.has(m.name) && !this.meeting.has(m.name)) await this.engineFor(m.name).catch((e: Error) => this.opts.log(`auto-cdp:${m.name}: not started: ${e.message}`));
    }
    for (const name of [...this.engines.keys()]) if (!masters.some((m) => m.name === name)) await this.stop(name);
    for (const [name, guard] of [...this.guards]) {
      const m = mirrors.find((x) => x.name === name);
      if (m && guard.peerTimeoutMs === this.peerTimeoutOf(m)) continue;
      // gone, or its --peer-timeout changed: the next write or stream watches with the new one
      this.guards.delete(name);
      await guard.close();
    }
    for (const [name, { engine }] of this.engines) {
      this.refreshers.get(name)?.();
      await engine.tick();
      for (const t of engine.status()) if (engine.refusedBy(t.host) && !this.meeting.has(name)) void this.meet(name, t.host);
    }
    const status: Record<string, MirrorStatus> = {};
    const now = new Date();
    for (const [name, { engine }] of this.engines) status[name] = { updatedAt: now.toISOString(), targets: engine.status(now.getTime()) };
    try {
      await writeMirrorStatus(this.services.home, status);
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
        if (first?.role !== 'master') return null;
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
        const engine = await MirrorEngine.start(
          {
            away: (host) => this.guardFor(name).away(host),
            // a link gone silent is down within the peer timeout, so the fencing rules decide instead of a write waiting for good
            silentMs: () => this.guardFor(name).peerTimeoutMs,
            me: this.services.appliance.id,
            mapDir: path.join(this.services.home.root, 'cdp', name),
            config: () => last,
            dial: (host) => this.dial(host, name),
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
        markEngine(this.services.home.root, name);
        this.engines.set(name, { engine, createdAt: first.createdAt });
        this.guardFor(name).watch(first.targets.map((t) => t.host));
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
    await e.engine.close();
    unmarkEngine(this.services.home.root, name);
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
    const name = m.name;
    if (m.role !== 'master') {
      const store = this.services.cdp.store;
      return new SlaveVolume(await open(true), {
        mirror: name,
        session: () => this.sessions.get(name) ?? null,
        deadlineMs: () => this.guardFor(name).peerTimeoutMs,
        unanswered: async (s, why) => {
          await s.abandon(new Error(why));
          this.guardFor(name).unanswered(s.from, why);
        },
        isMaster: () => store.get(name)?.role === 'master',
        away: async () => {
          const c = store.get(name);
          if (!c?.master) throw new VolumeError('EIO', `auto-cdp:${name}: this copy is slave and names no master: the write is refused.`);
          await this.guardFor(name).away(c.master.host);
        },
        master: async () => {
          const engine = await this.engineFor(name);
          return engine ? new MirrorVolume(engine) : null;
        },
      });
    }
    const engine = await this.engineFor(name);
    return engine ? new MirrorVolume(engine) : open(true);
  }

  /** the mirror's --peer-timeout (its property; SYNCSH_CDP_PEER_TIMEOUT_MS only where the property is unset, for tests) */
  private peerTimeoutOf(m: MirrorConfig | undefined): number {
    return m?.peerTimeoutMs ?? this.opts.peerTimeoutMs ?? DEFAULT_PEER_TIMEOUT_MS;
  }

  /**
   * A target refused this master's stream: ask its copy's role and epoch
   * (cdp.get) and meet it (peer-loss.ts meetPeer). At a newer epoch (it took
   * over while this copy was cut off) this copy stops taking writes first,
   * keeps what it wrote meanwhile as a held orphan snapshot of its zvol,
   * becomes its slave at that epoch; the new master then compares every
   * chunk's hash with this copy's and sends only those that differ (its
   * target was set to compare at the takeover).
   */
  private async meet(name: string, host: string): Promise<void> {
    this.meeting.add(name);
    try {
      const mine = this.services.cdp.store.get(name);
      if (mine?.role !== 'master') return;
      const theirs = await withTimeout(this.services.peers.call<MirrorConfig | null>(host, 'cdp.get', { name }), this.peerTimeoutOf(mine), host);
      if (!theirs || theirs.createdAt !== mine.createdAt || theirs.epoch <= mine.epoch) return;
      const wrote =
        (this.engines
          .get(name)
          ?.engine.status()
          .find((t) => t.host === host)?.dirtyChunks ?? 1) > 0;
      await this.stop(name); // no write is taken here past this point: the orphan holds all of them
      const plan = await meetPeer(
        name,
        host,
        { role: theirs.role, epoch: theirs.epoch },
        {
          roles: this.rolesOf(name),
          wroteWhileCut: async () => wrote,
          zvol: async () => {
            const ref = parseDataset(mine.zvol);
            return { driver: await this.services.storage.usable(ref.driver), dataset: ref.name };
          },
          resync: async () => this.mirrorLog(name, `${host} compares every chunk with this copy and sends those that differ`),
          log: (_m, line) => this.mirrorLog(name, line),
        },
      );
      // what this copy's map for the peer recorded is the orphan's now, and the new master's compare makes every chunk
      // its own: kept, the map would have this copy owe the new master those chunks (owed.ts) and refuse its next switch
      if (plan.kind === 'demote') rmSync(mapFileOf(this.services.home.root, name, host), { force: true });
    } catch (error) {
      this.mirrorLog(name, `could not meet ${host} (${(error as Error).message}); tried again next round`);
    } finally {
      this.meeting.delete(name);
    }
  }

  /** the mirror's role and epoch in cdp.json, for the peer-loss and meet-peer doers */
  private rolesOf(name: string): MirrorRoles {
    const store = this.services.cdp.store;
    const log = (line: string) => this.mirrorLog(name, line);
    return {
      state: () => {
        const c = store.get(name);
        if (!c) throw new Error(`auto-cdp:${name} is gone`);
        return { role: c.role, epoch: c.epoch };
      },
      setState: async (_mirror, next, why, peer) => {
        await store.update(name, (c) => {
          if (next.role === c.role) return { ...c, epoch: next.epoch };
          if (next.role === 'master') {
            // a takeover: the lost master's copy is this one's target, compared chunk by chunk when it is back
            const m = c.master ?? { host: peer ?? '', zvol: c.zvol };
            // a map left from an earlier term as master says nothing of now: none is every chunk compared
            rmSync(mapFileOf(this.services.home.root, name, m.host), { force: true });
            const target: MirrorTarget = { host: m.host, zvol: m.zvol, state: 'logging', reason: 'took over while it was lost', paused: false, fullSync: 'compare', addedAt: new Date().toISOString() };
            return { ...c, role: 'master', epoch: next.epoch, master: null, targets: [target] };
          }
          // a demotion (003 case 4, or a failed fence): follow the lost peer's copy as master; follow() then stops this engine
          const t = c.targets.find((x) => x.host === peer) ?? c.targets[0];
          return { ...c, role: next.role, epoch: next.epoch, master: t ? { host: t.host, zvol: t.zvol } : c.master, targets: next.role === 'slave' ? [] : c.targets };
        });
        log(`Role ${next.role} at epoch ${next.epoch}: ${why}`);
      },
    };
  }

  private mirrorLog(name: string, line: string): void {
    this.opts.log(`auto-cdp:${name}: ${line}`);
    try {
      this.services.cdp.log(name).write(line);
    } catch {
      // the mirror was destroyed meanwhile
    }
  }

  /**
   * The mirror's peer guard, for either role: its heartbeat is the engine's
   * link to the target (master) or the master's stream here (slave); a loss
   * is decided once (peer-loss.ts) and stored in cdp.json before the write
   * goes on: a demotion follows the lost peer's copy, a takeover makes the
   * lost master's copy this one's target (compared, not resent whole).
   */
  private guardFor(name: string): PeerGuard {
    let guard = this.guards.get(name);
    if (guard) return guard;
    const store = this.services.cdp.store;
    const log = (line: string) => this.mirrorLog(name, line);
    guard = new PeerGuard(name, {
      fencing: this.services.fencing,
      roles: this.rolesOf(name),
      log: (_mirror, line) => log(line),
      linkUp: (host) => {
        const engine = this.engines.get(name)?.engine;
        return engine ? engine.linkUp(host) : this.sessions.get(name)?.from === host;
      },
      paused: (host) => Boolean(store.get(name)?.targets.find((t) => t.host === host)?.paused),
      linkError: (host) => this.engines.get(name)?.engine.linkError(host) ?? (this.sessions.has(name) ? null : `no mirror stream from ${host}`),
      peerTimeoutMs: this.peerTimeoutOf(store.get(name)),
    });
    this.guards.set(name, guard);
    return guard;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const name of [...this.engines.keys()]) await this.stop(name);
    for (const g of this.guards.values()) await g.close();
    this.guards.clear();
    for (const s of this.streams) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

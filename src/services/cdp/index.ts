/**
 * auto-cdp: live mirrors of zvols to other appliances (README.md here).
 * This is the service the commands call: create / show / setup / destroy a
 * mirror, kept on both appliances (cdp.json). The daemon's mirror engine
 * (engine.ts) reads the same configuration and moves the blocks.
 */
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import type { Home } from '../home.js';
import type { ApplianceInfo } from '../appliance.js';
import type { ZvolService } from '../zvols.js';
import type { PeerService } from '../peer/index.js';
import { PeerError } from '../peer/transport.js';
import { formatDataset, parseDataset } from '../datasets.js';
import type { DriverName } from '../storage/driver.js';
import { nextInstanceName } from '../auto-sync/naming.js';
import { ServiceLog } from '../service-log.js';
import { MirrorStore } from './store.js';
import { History } from '../history.js';
import { mirrorOfZvol, parsePeerTimeout, slaveView, MIRROR_PROPERTIES, type MirrorConfig, type MirrorMode, type MirrorTarget } from './model.js';
import { readMirrorStatus, type MirrorStatus } from './status.js';
import { cdpSocket } from './socket.js';

export interface CreateMirror {
  zvol: string;
  toHost: string;
  toZvol?: string;
  mode: MirrorMode;
  /** the target holds an older copy or a seed: compare chunk hashes, send differences */
  noFullSync?: boolean;
  /** --peer-timeout in ms (absent: DEFAULT_PEER_TIMEOUT_MS) */
  peerTimeoutMs?: number;
}

export interface MirrorView {
  config: MirrorConfig;
  /** what the daemon's engine last reported (lag, sync progress), or null when it is not running it */
  status: MirrorStatus | null;
}

/** the agent methods this module adds to the peer protocol (agent.ts answers them) */
export interface AttachRequest {
  config: MirrorConfig;
  blockSize: number;
  noFullSync: boolean;
}

export class CdpService {
  readonly store: MirrorStore;

  constructor(
    readonly home: Home,
    private readonly appliance: ApplianceInfo,
    private readonly zvols: ZvolService,
    private readonly peers: PeerService,
    private readonly defaultDriver: DriverName = 'fs',
  ) {
    this.store = new MirrorStore(home);
  }

  log(name: string): ServiceLog {
    this.config(name);
    return new ServiceLog(path.join(this.home.logs, `auto-cdp-${name}.log`));
  }

  /** the master's resyncs to its targets (one entry each: level, or stopped with why), newest first with list() */
  history(name: string): History {
    this.config(name);
    return new History(path.join(this.home.history, `auto-cdp-${name}.send.jsonl`));
  }

  names(): string[] {
    return this.store.names();
  }

  config(name: string): MirrorConfig {
    const c = this.store.get(name);
    if (!c) {
      const known = this.store.names();
      throw new Error(`There is no auto-cdp service named ':${name}'${known.length ? ` (there are ${known.map((k) => `:${k}`).join(', ')})` : ''}.`);
    }
    return c;
  }

  list(): MirrorView[] {
    const status = readMirrorStatus(this.home);
    return this.store.list().map((config) => ({ config, status: status[config.name] ?? null }));
  }

  one(name: string): MirrorView {
    const config = this.config(name);
    return { config, status: readMirrorStatus(this.home)[name] ?? null };
  }

  private qualify(dataset: string): string {
    return formatDataset(parseDataset(dataset, this.defaultDriver));
  }

  async create(req: CreateMirror): Promise<MirrorConfig> {
    const z = await this.zvols.one(req.zvol);
    const inUse = mirrorOfZvol(this.store.list(), z.name);
    if (inUse) throw new Error(`The zvol ${z.name} is already mirrored by auto-cdp:${inUse.name} (${inUse.role}); a zvol is in one mirror at most.`);
    if (req.toHost === this.appliance.id || req.toHost === 'localhost') throw new Error(`auto-cdp mirrors to another appliance: "${req.toHost}" is this one.`);
    const unbound = this.peers.checkBound(req.toHost);
    if (unbound) throw new Error(`Cannot mirror to ${req.toHost}: ${unbound}.`);
    const peer = this.peers.store.find(req.toHost)!;
    const toZvol = this.qualify(req.toZvol ?? z.name);
    const now = new Date().toISOString();
    const target: MirrorTarget = { host: peer.id, zvol: toZvol, state: 'syncing', reason: null, paused: false, fullSync: req.noFullSync ? 'compare' : 'all', addedAt: now };
    const name = nextInstanceName(parseDataset(z.name), this.store.names());
    const config: MirrorConfig = {
      name,
      zvol: z.name,
      size: z.size,
      mode: req.mode,
      role: 'master',
      epoch: 1,
      master: null,
      targets: [target],
      description: '',
      createdAt: now,
      ...(req.peerTimeoutMs ? { peerTimeoutMs: req.peerTimeoutMs } : {}),
    };
    // the peer checks its side (size, data, another mirror) and takes its copy first: a refusal there changes nothing here
    const attach: AttachRequest = { config: slaveView(config, this.appliance.id, target), blockSize: z.blockSize, noFullSync: Boolean(req.noFullSync) };
    const { created } = await this.peers.call<{ created: boolean }>(peer.id, 'cdp.attach', attach);
    try {
      await this.store.change(`creating auto-cdp:${name}`, (m) => {
        if (m[name] || mirrorOfZvol(Object.values(m), z.name)) throw new Error(`auto-cdp:${name} or another mirror of ${z.name} was created meanwhile; nothing was created.`);
        return { mirrors: { ...m, [name]: config }, result: undefined };
      });
    } catch (error) {
      await this.peers.call(peer.id, 'cdp.detach', { name, createdAt: now }).catch(() => undefined);
      throw error;
    }
    this.logLine(name, `Created auto-cdp:${name}: ${z.name} => ${peer.id}:${toZvol}, mode ${req.mode}${created ? ` (${toZvol} created on ${peer.id})` : ''}${req.noFullSync ? ', no full sync: chunk hashes compared first' : ''}`);
    return config;
  }

  /** a change the slave copies must see too (mode, properties) */
  private async changeBoth(name: string, what: string, fn: (c: MirrorConfig) => MirrorConfig): Promise<{ config: MirrorConfig; unreached: string[] }> {
    const current = this.config(name);
    if (current.role !== 'master') throw new Error(`auto-cdp:${name} is the slave copy of ${current.master?.host}'s mirror: ${what} there.`);
    const config = await this.store.update(name, fn);
    const unreached: string[] = [];
    for (const t of config.targets) {
      try {
        await this.peers.call(t.host, 'cdp.update', { config: slaveView(config, this.appliance.id, t) });
      } catch (error) {
        unreached.push(`${t.host} (${(error as Error).message})`);
      }
    }
    return { config, unreached };
  }

  async setMode(name: string, mode: MirrorMode): Promise<{ config: MirrorConfig; unreached: string[] }> {
    const before = this.config(name);
    if (before.mode === mode) throw new Error(`auto-cdp:${name} is already in ${mode} mode.`);
    const r = await this.changeBoth(name, 'change its mode', (c) => ({ ...c, mode }));
    this.logLine(name, `Mode changed from ${before.mode} to ${mode}`);
    return r;
  }

  async setProperty(name: string, key: string, value: string): Promise<MirrorConfig> {
    if (!(MIRROR_PROPERTIES as readonly string[]).includes(key)) throw new Error(`An auto-cdp service has no property "${key}": use ${MIRROR_PROPERTIES.join(', ')} (and 'setup auto-cdp :${name} mode sync|async' for the mode).`);
    let change: (c: MirrorConfig) => MirrorConfig;
    if (key === 'peer_timeout') {
      const ms = parsePeerTimeout(value, `peer_timeout of auto-cdp:${name}`);
      change = (c) => ({ ...c, peerTimeoutMs: ms });
    } else {
      if (value.length > 200 || /[\n\r]/.test(value)) throw new Error(`The description of auto-cdp:${name} must be one line of at most 200 characters.`);
      change = (c) => ({ ...c, description: value });
    }
    const { config } = await this.changeBoth(name, 'set its properties', change);
    this.logLine(name, `Property ${key} set to "${value}"`);
    return config;
  }

  private targetsNamed(c: MirrorConfig, host: string | undefined): MirrorTarget[] {
    if (c.role !== 'master') throw new Error(`auto-cdp:${c.name} is the slave copy of ${c.master?.host}'s mirror: pause or resume it there.`);
    if (host === undefined) return c.targets;
    const t = c.targets.find((x) => x.host === host);
    if (!t) throw new Error(`auto-cdp:${c.name} has no target on "${host}" (its targets: ${c.targets.map((x) => x.host).join(', ') || 'none'}).`);
    return [t];
  }

  /** pause (or resume) mirroring to one target or all: the dirty map of a paused target keeps growing, resume sends only those chunks */
  async setPaused(name: string, host: string | undefined, paused: boolean): Promise<MirrorConfig> {
    const chosen = this.targetsNamed(this.config(name), host).map((t) => t.host);
    const already = this.config(name).targets.filter((t) => chosen.includes(t.host) && t.paused === paused);
    if (already.length === chosen.length) throw new Error(`auto-cdp:${name} is already ${paused ? 'paused' : 'not paused'} to ${chosen.join(', ')}.`);
    const config = await this.store.update(name, (c) => ({
      ...c,
      targets: c.targets.map((t) => (chosen.includes(t.host) ? { ...t, paused, state: paused ? 'paused' : t.state === 'paused' ? 'logging' : t.state, reason: null } : t)),
    }));
    this.logLine(name, `${paused ? 'Paused' : 'Resumed'} mirroring to ${chosen.join(', ')}`);
    return config;
  }

  /**
   * destroy the mirror here and its copies on the targets (both zvols stay).
   * A target that cannot be reached keeps its slave copy; `left` names them.
   */
  async destroy(name: string): Promise<{ left: string[] }> {
    const c = this.config(name);
    if (c.role !== 'master') throw new Error(`auto-cdp:${name} is the slave copy of ${c.master?.host}'s mirror: destroy it there (the copy here goes with it).`);
    const left: string[] = [];
    for (const t of c.targets) {
      try {
        await this.peers.call(t.host, 'cdp.detach', { name, createdAt: c.createdAt });
      } catch (error) {
        if (!(error instanceof PeerError)) throw error;
        left.push(`${t.host} (${error.message})`);
      }
    }
    await this.store.remove(name);
    this.logLine(name, `Destroyed auto-cdp:${name}; the zvols stay${left.length ? `; the copy on ${left.join(', ')} stays until removed there` : ''}`);
    return { left };
  }

  /**
   * another target (DataKeeper's 3rd node): the peer takes its part as at
   * create; the daemon's engine then syncs it (full, or compared with
   * --no-full-sync) while the mirror goes on
   */
  async extend(name: string, host: string, opts: { toZvol?: string; noFullSync?: boolean } = {}): Promise<MirrorConfig> {
    const c = this.config(name);
    if (c.role !== 'master') throw new Error(`auto-cdp:${name} is the slave copy of ${c.master?.host}'s mirror: extend it there.`);
    if (host === this.appliance.id || host === 'localhost') throw new Error(`auto-cdp mirrors to another appliance: "${host}" is this one.`);
    const unbound = this.peers.checkBound(host);
    if (unbound) throw new Error(`Cannot mirror to ${host}: ${unbound}.`);
    const peer = this.peers.store.find(host)!;
    if (c.targets.some((t) => t.host === peer.id)) throw new Error(`auto-cdp:${name} already mirrors to ${peer.id}.`);
    if (c.master === null && c.targets.length >= 8) throw new Error(`auto-cdp:${name} has ${c.targets.length} targets already, the most a mirror has.`);
    const z = await this.zvols.one(c.zvol);
    const target: MirrorTarget = { host: peer.id, zvol: this.qualify(opts.toZvol ?? c.zvol), state: 'syncing', reason: null, paused: false, fullSync: opts.noFullSync ? 'compare' : 'all', addedAt: new Date().toISOString() };
    const next = { ...c, targets: [...c.targets, target] };
    await this.peers.call(peer.id, 'cdp.attach', { config: slaveView(next, this.appliance.id, target), blockSize: z.blockSize, noFullSync: Boolean(opts.noFullSync) } satisfies AttachRequest);
    const config = await this.store.update(name, (cur) => ({ ...cur, targets: [...cur.targets.filter((t) => t.host !== peer.id), target] }));
    this.logLine(name, `Extended to ${peer.id}:${target.zvol}${opts.noFullSync ? ' (no full sync: chunk hashes compared first)' : ''}`);
    return config;
  }

  /** stop mirroring to one target: its slave copy goes there (its zvol stays); the last target goes only with destroy */
  async detach(name: string, host: string): Promise<{ config: MirrorConfig; left: string | null }> {
    const c = this.config(name);
    const [t] = this.targetsNamed(c, host);
    if (c.targets.length === 1) throw new Error(`${t.host} is the only target of auto-cdp:${name}: destroy the mirror instead ('destroy auto-cdp :${name}').`);
    let left: string | null = null;
    try {
      await this.peers.call(t.host, 'cdp.detach', { name, createdAt: c.createdAt });
    } catch (error) {
      if (!(error instanceof PeerError)) throw error;
      left = `${t.host} (${error.message})`;
    }
    const config = await this.store.update(name, (cur) => ({ ...cur, targets: cur.targets.filter((x) => x.host !== t.host) }));
    this.logLine(name, `Detached ${t.host}; its zvol ${t.zvol} stays there`);
    return { config, left };
  }

  /** DRBD's online verify, run by the daemon's engine (it holds the zvol); repair resyncs what differs */
  async verify(name: string, host: string | undefined, repair: boolean): Promise<{ host: string; checked: number; outOfSync: number[]; repaired: boolean }[]> {
    const c = this.config(name);
    if (c.role !== 'master') throw new Error(`auto-cdp:${name} is the slave copy of ${c.master?.host}'s mirror: verify it there.`);
    if (host !== undefined) this.targetsNamed(c, host);
    const socket = net.connect(cdpSocket(this.home));
    try {
      await once(socket, 'connect');
    } catch (error) {
      throw new Error(`The daemon of this appliance is not running (${(error as Error).message}): verify runs in the daemon that mirrors auto-cdp:${name}; start 'syncsh daemon'.`);
    }
    socket.write(`${JSON.stringify({ verify: { name, host: host ?? null, repair } })}\n`);
    let text = '';
    for await (const chunk of socket) text += String(chunk);
    const reply = JSON.parse(text) as { ok: boolean; result?: Awaited<ReturnType<CdpService['verify']>>; error?: { message: string } };
    if (!reply.ok) throw new Error(reply.error!.message);
    return reply.result!;
  }

  private logLine(name: string, text: string): void {
    new ServiceLog(path.join(this.home.logs, `auto-cdp-${name}.log`)).write(text);
  }
}

/**
 * How this appliance reaches others (DESIGN.md, src/services/peer): binding
 * and unbinding peers, their reachability, and the PeerResolver the auto-sync
 * runs use to work on a dataset over there as if it were here.
 *
 * Connections are opened on first use and shared by everything a process
 * does with that peer (one SSH connection per peer, a channel per
 * conversation); one closes a moment after its last use, or, in a
 * long-lived process (keepWarm: the daemon, the shell, serve), after `warmMs` idle,
 * so that the next run pays no SSH handshake and no agent start. A
 * connection that sat idle is pinged before it is used again; a dead one is
 * replaced once by a fresh connection (host key checked again), so a stale
 * connection is never taken for a peer that is down.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { homeKind, resolveHome, type Home } from '../home.js';
import { defaultApplianceId, loadAppliance, type ApplianceInfo } from '../appliance.js';
import { LOCAL_ACCESS, resolvePath, type Access } from '../access.js';
import type { PeerResolver } from '../auto-sync/index.js';
import type { PeerSide } from '../auto-sync/run.js';
import type { Driver, DriverName } from '../storage/driver.js';
import { AgentLink, RemoteDriver, RemotePeerSide, type LinkLease } from './client.js';
import { ensureKeyPair, readKeyPair, type AgentCommand } from './keys.js';
import { PROTOCOL_VERSION, type HelloReply } from './protocol.js';
import type { Codec } from '../wire/codec-names.js';
import { PeerStore, type InboundPeer, type OutboundPeer } from './store.js';
import { LocalTransport, PeerError, SshTransport, type Channel, type HostKeySeen, type SshTarget, type Transport } from './transport.js';
import { removeAuthorizedKey } from './keys.js';
import { SYNCSH_SCRIPT } from '../installation.js';

export { PeerError } from './transport.js';
export { PeerStore } from './store.js';
export type { OutboundPeer, InboundPeer } from './store.js';

/** bin/syncsh.js of this installation (found from src/, dist/ or the bundle alike: installation.ts) */
export { SYNCSH_SCRIPT } from '../installation.js';

export interface PeerOptions {
  /** SSH handshake deadline */
  connectTimeoutMs: number;
  /** SSH keepalive interval and how many may go unanswered before the link counts as lost */
  keepaliveMs: number;
  keepaliveCount: number;
  /** a data channel gives up after this long without a byte moving */
  dataIdleTimeoutMs: number;
  /** a connection closes this long after its last use */
  lingerMs: number;
  /** ...or this long, in a process that keeps its connections warm (keepWarm) */
  warmMs: number;
  /** a connection idle this long is pinged before it is used again */
  probeAfterMs: number;
  /** a ping unanswered for this long marks the connection dead: a fresh one replaces it */
  probeMs: number;
  /** with warm connections, a send or receive agent is started ahead for the next run (AgentLink spareChannels) */
  spareAgents: boolean;
  /** the protocol version this side announces (a test hook for version mismatches) */
  protocolVersion: number;
}

const num = (v: string | undefined, fallback: number) => (v && Number.isFinite(Number(v)) && Number(v) >= 0 ? Number(v) : fallback);

export function peerOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): PeerOptions {
  return {
    connectTimeoutMs: num(env.SYNCSH_PEER_CONNECT_TIMEOUT_MS, 10_000),
    keepaliveMs: num(env.SYNCSH_PEER_KEEPALIVE_MS, 5_000),
    keepaliveCount: num(env.SYNCSH_PEER_KEEPALIVE_COUNT, 3),
    dataIdleTimeoutMs: num(env.SYNCSH_PEER_IDLE_TIMEOUT_MS, 120_000),
    lingerMs: num(env.SYNCSH_PEER_LINGER_MS, 2_000),
    warmMs: num(env.SYNCSH_PEER_WARM_MS, 10 * 60_000),
    probeAfterMs: num(env.SYNCSH_PEER_PROBE_AFTER_MS, 1_000),
    probeMs: num(env.SYNCSH_PEER_PROBE_MS, 5_000),
    spareAgents: env.SYNCSH_PEER_SPARE_AGENTS !== '0',
    protocolVersion: num(env.SYNCSH_PEER_PROTOCOL, PROTOCOL_VERSION),
  };
}

export interface BindRequest {
  /** host name or address of the peer */
  host: string;
  port?: number;
  user?: string;
  /** the peer's password, read from this file (scripts, tests); else asked if the key is not accepted */
  passwordFile?: string;
  /** the peer's syncsh home (default: its default, $SYNCSH_HOME or /var/lib/syncsh) */
  remoteHome?: string;
  /** the peer's bin/syncsh.js (default: the same path as here) */
  remoteSyncsh?: string;
}

/** what binding asks of the person (the command layer answers with dialogs) */
export interface BindQuestions {
  /** trust this host key? `previous` is the fingerprint bound before, when it changed */
  trustHostKey(seen: HostKeySeen & { host: string; port: number; previous: string | null }): Promise<boolean>;
  /** the password of user@host, or null when there is none to give */
  password(prompt: string): Promise<string | null>;
}

export interface BindResult {
  peer: OutboundPeer;
  /** how this appliance logged in to install its key */
  via: 'key' | 'password' | 'local';
  /** the authorized_keys file on the peer */
  authorizedKeys: string | null;
  rebound: boolean;
}

export interface BindingView {
  id: string;
  /** outbound: this appliance reaches it; inbound: it reaches this one */
  direction: 'outbound' | 'inbound';
  transport: 'ssh' | 'local';
  address: string;
  port: number | null;
  user: string | null;
  fingerprint: string | null;
  boundAt: string;
  /** outbound only: reachable now, and why not */
  reachable: boolean | null;
  reason: string | null;
}

interface PoolEntry {
  /** the link once open (and, after an idle spell, pinged): null when that ping found it dead */
  link: Promise<AgentLink | null>;
  /** the link, once open */
  resolved: AgentLink | null;
  refs: number;
  timer: NodeJS.Timeout | null;
  /** the peer's record the connection was made from: a change (re-bound by another process) makes a new one */
  record: string;
  /** when its last user gave it back (0 while in use or opening) */
  idleSince: number;
}

/** what a pooled connection depends on in a peer's record */
const recordOf = (p: OutboundPeer) => JSON.stringify([p.transport, p.address, p.port, p.user, p.fingerprint, p.agent]);

export class PeerService implements PeerResolver {
  readonly store: PeerStore;
  private readonly pool = new Map<string, PoolEntry>();
  /** the pool entry of each open link, also once it left the pool */
  private readonly entries = new WeakMap<AgentLink, PoolEntry>();
  /** how long an unused connection stays open (keepWarm lengthens it) */
  private idleMs: number;
  private warm = false;

  constructor(
    private readonly home: Home,
    private readonly appliance: ApplianceInfo,
    readonly options: PeerOptions = peerOptionsFromEnv(),
  ) {
    this.store = new PeerStore(home);
    this.idleMs = options.lingerMs;
  }

  /**
   * Keep unused connections open for `warmMs` (a long-lived process: the
   * daemon, the shell). A short-lived one keeps the short linger: it exits
   * once its command is done, and a connection would only hold it back.
   */
  keepWarm(): void {
    this.idleMs = Math.max(this.options.lingerMs, this.options.warmMs);
    this.warm = true;
  }

  /** this appliance's public key (the pair is made on first use) */
  publicKey(): string {
    return ensureKeyPair(this.home, this.appliance.id).publicKey;
  }

  /** how this appliance's own agent is started (what a peer's authorized_keys line runs) */
  ownAgent(): AgentCommand {
    return { node: process.execPath, script: SYNCSH_SCRIPT, home: this.home.root };
  }

  // ---- PeerResolver --------------------------------------------------------

  checkBound(host: string): string | null {
    return this.store.find(host) ? null : `${this.store.whyNot(host)}: bind it with ${this.store.bindHint(host)}`;
  }

  transportOf(host: string): 'ssh' | 'local' | null {
    return this.store.find(host)?.transport ?? null;
  }

  async side(host: string, driver: DriverName): Promise<{ driver: Driver; peer: PeerSide }> {
    const peer = this.require(host);
    const lease = this.lease(peer);
    return { driver: new RemoteDriver(driver, lease, peer.id, this.options.dataIdleTimeoutMs), peer: new RemotePeerSide(lease) };
  }

  /** the trail/config/role side of a peer, for callers beyond a run (reverse-direction) */
  peerSide(host: string): RemotePeerSide {
    return new RemotePeerSide(this.lease(this.require(host)));
  }

  /** null when a bound peer can run `codec`, else its sentence saying why not */
  async codecUnavailable(host: string, codec: Codec): Promise<string | null> {
    return (await this.call<{ reason: string | null }>(host, 'codec.check', { codec })).reason;
  }

  /** one control request to a bound peer's agent (auto-cdp's `cdp.*` methods) */
  async call<T = unknown>(host: string, method: string, params?: unknown): Promise<T> {
    const lease = this.lease(this.require(host));
    const link = await lease.acquire();
    try {
      return await link.call<T>(method, params);
    } finally {
      lease.release(link);
    }
  }

  /**
   * a data channel to a bound peer's agent with its header sent (auto-cdp's
   * `mirror` stream); the connection stays open until the channel ends
   */
  async channel(host: string, sub: 'mirror'): Promise<Channel> {
    const lease = this.lease(this.require(host));
    const link = await lease.acquire();
    try {
      const channel = await link.data(sub, this.hello() as never);
      void channel.done.finally(() => lease.release(link));
      return channel;
    } catch (error) {
      lease.release(link);
      throw error;
    }
  }

  private require(host: string): OutboundPeer {
    const peer = this.store.find(host);
    if (!peer) throw new PeerError('not-bound', `The appliance "${host}" is not bound to this one (${this.store.whyNot(host)}): bind it with ${this.store.bindHint(host)}.`);
    return peer;
  }

  private lease(peer: OutboundPeer): LinkLease {
    return { acquire: () => this.acquire(peer), release: (link) => this.release(peer.id, link) };
  }

  // ---- the connection pool -------------------------------------------------

  private hello() {
    return { protocol: this.options.protocolVersion, from: this.appliance.id, version: this.appliance.version };
  }

  private async acquire(peer: OutboundPeer, retried = false): Promise<AgentLink> {
    const pooled = this.pool.get(peer.id);
    if (pooled && pooled.record !== recordOf(peer)) this.retire(peer.id, pooled);
    const entry = this.pool.get(peer.id);
    if (!entry) return this.openEntry(peer);
    entry.refs++;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    // Idle for a while, it may have died unnoticed (a cut link, the peer rebooted): one ping says so
    // before a run relies on it. Everyone waiting meanwhile shares the answer.
    if (entry.idleSince && Date.now() - entry.idleSince >= this.options.probeAfterMs) entry.link = entry.link.then((l) => (l ? this.alive(l) : null));
    entry.idleSince = 0;
    const link = await entry.link; // an open that failed is the verdict for everyone waiting on it
    if (link && (!link.closed || retried)) return link;
    if (retried) throw new PeerError('link', `The connection to ${peer.id} was lost as soon as it was made.`);
    // dead: closed, and replaced once by a fresh connection whose failure, if any, is the one to report
    entry.refs--;
    if (this.pool.get(peer.id) === entry) this.pool.delete(peer.id);
    entry.resolved?.close();
    return this.acquire(peer, true);
  }

  private async openEntry(peer: OutboundPeer): Promise<AgentLink> {
    const entry: PoolEntry = { link: this.open(peer), resolved: null, refs: 1, timer: null, record: recordOf(peer), idleSince: 0 };
    this.pool.set(peer.id, entry);
    try {
      const link = (await entry.link)!;
      entry.resolved = link;
      this.entries.set(link, entry);
      link.transport.onClose(() => {
        if (this.pool.get(peer.id) === entry) this.pool.delete(peer.id);
      });
      return link;
    } catch (error) {
      if (this.pool.get(peer.id) === entry) this.pool.delete(peer.id);
      throw error;
    }
  }

  /** the link if its agent answers a ping within probeMs, else null (a refusal is an answer: the link is alive) */
  private async alive(link: AgentLink): Promise<AgentLink | null> {
    if (link.closed) return null;
    let timer: NodeJS.Timeout | undefined;
    const answered = await Promise.race([
      link.call('ping').then(
        () => true,
        (error: Error) => !(error instanceof PeerError && error.code === 'link'),
      ),
      new Promise<false>((resolve) => {
        timer = setTimeout(resolve, this.options.probeMs, false);
      }),
    ]);
    clearTimeout(timer);
    return answered && !link.closed ? link : null;
  }

  /** out of the pool, closed once its users are done (its record changed: re-bound by another process) */
  private retire(id: string, entry: PoolEntry): void {
    if (this.pool.get(id) === entry) this.pool.delete(id);
    if (entry.refs === 0) this.closeEntry(entry);
  }

  private closeEntry(entry: PoolEntry): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.link.then(
      (l) => l?.close(),
      () => undefined,
    );
  }

  private release(id: string, link: AgentLink): void {
    const entry = this.entries.get(link);
    if (!entry) return;
    entry.refs = Math.max(0, entry.refs - 1);
    if (entry.refs > 0) return;
    // a retired link closes with its last user; one dropped (unbound, closed) was closed when it was dropped
    if (this.pool.get(id) !== entry) return void link.close();
    entry.idleSince = Date.now();
    entry.timer = setTimeout(() => {
      if (this.pool.get(id) === entry && entry.refs === 0) this.pool.delete(id);
      link.close();
    }, this.idleMs);
    entry.timer.unref();
  }

  /** close every connection now */
  close(): void {
    for (const [id, entry] of this.pool) {
      this.pool.delete(id);
      this.closeEntry(entry);
    }
  }

  private async open(peer: OutboundPeer): Promise<AgentLink> {
    const transport = await this.connect(peer);
    return new AgentLink(transport, {
      expectId: peer.id,
      name: peer.id,
      hello: this.hello(),
      idleTimeoutMs: this.options.dataIdleTimeoutMs,
      rebind: this.store.bindHint(peer.id),
      spareChannels: this.warm && this.options.spareAgents,
    });
  }

  private target(peer: OutboundPeer): SshTarget {
    return { name: peer.id, host: peer.address, port: peer.port, user: peer.user };
  }

  private async connect(peer: OutboundPeer): Promise<Transport> {
    if (peer.transport === 'local') {
      if (!existsSync(peer.agent.home)) throw new PeerError('unreachable', `Cannot reach the appliance ${peer.id}: its home ${peer.agent.home} is gone.`);
      return new LocalTransport(peer.agent);
    }
    const keys = readKeyPair(this.home);
    if (!keys) {
      throw new PeerError(
        'no-key',
        `This appliance has no SSH key (${path.join(this.home.root, 'ssh', 'id_ed25519')} is missing), so it cannot log in to ${peer.id}. Bind it again with 'setup network ssh-bind ${peer.address}${peer.port === 22 ? '' : ` --port ${peer.port}`}' to make and install a new key.`,
      );
    }
    return SshTransport.connect(this.target(peer), {
      verify: (seen) =>
        seen.fingerprint === peer.fingerprint
          ? true
          : new PeerError(
              'host-key',
              `The host key of the appliance ${peer.id} at ${peer.address}:${peer.port} has changed: it was ${peer.fingerprint} when bound, it is now ${seen.type} ${seen.fingerprint}. syncsh refuses to talk to it until it is bound again: check the new key with its operator, then run 'setup network ssh-bind ${peer.address}${peer.port === 22 ? '' : ` --port ${peer.port}`}'.`,
            ),
      auth: { privateKey: keys.privateKey },
      agent: peer.agent,
      connectTimeoutMs: this.options.connectTimeoutMs,
      keepaliveMs: this.options.keepaliveMs,
      keepaliveCount: this.options.keepaliveCount,
    });
  }

  // ---- binding -------------------------------------------------------------

  /**
   * Pair with the appliance at host:port: trust its host key (asked), log in
   * with this appliance's key or else the password (asked once, never kept),
   * have its agent install our key restricted to the agent and record us,
   * check that the key alone now works, and record it here.
   */
  async bind(req: BindRequest, ask: BindQuestions): Promise<BindResult> {
    const port = req.port ?? 22;
    const user = req.user ?? os.userInfo().username;
    const keys = ensureKeyPair(this.home, this.appliance.id);
    const target: SshTarget = { name: req.host, host: req.host, port, user };
    const previous = this.store.outbound().find((p) => p.transport === 'ssh' && p.address === req.host && p.port === port) ?? null;
    const agent: AgentCommand = {
      node: req.remoteSyncsh ? 'node' : process.execPath,
      script: req.remoteSyncsh ?? SYNCSH_SCRIPT,
      home: req.remoteHome ?? '',
    };
    const common = { agent, connectTimeoutMs: this.options.connectTimeoutMs, keepaliveMs: this.options.keepaliveMs, keepaliveCount: this.options.keepaliveCount };

    // 1. The host key, fetched on a connection that goes no further, then trusted (or not) with no clock running.
    const seen = await this.hostKeyOf(target, common);
    if (!(previous && previous.fingerprint === seen.fingerprint)) {
      const trusted = await ask.trustHostKey({ ...seen, host: req.host, port, previous: previous?.fingerprint ?? null });
      if (!trusted) throw new PeerError('host-key', `The host key ${seen.fingerprint} of ${req.host}:${port} was not trusted: nothing was changed.`);
    }
    const verify = (k: HostKeySeen) =>
      k.fingerprint === seen.fingerprint ? (true as const) : new PeerError('host-key', `The host key of ${req.host}:${port} changed while binding (${seen.fingerprint}, then ${k.fingerprint}): nothing was changed.`);

    // 2. Log in: this appliance's key if it is accepted already, else the password.
    let transport: SshTransport;
    let via: BindResult['via'] = 'key';
    try {
      transport = await SshTransport.connect(target, { ...common, verify, auth: { privateKey: keys.privateKey } });
    } catch (error) {
      if (!(error instanceof PeerError) || error.code !== 'auth') throw error;
      const password = req.passwordFile ? readPassword(req.passwordFile) : await ask.password(`Password for ${user}@${req.host}`);
      if (password === null)
        throw new PeerError('auth', `${req.host}:${port} does not accept this appliance's key for ${user} yet, and no password was given: give it with --password-file FILE, or run the command on a terminal to be asked.`);
      via = 'password';
      transport = await SshTransport.connect(target, { ...common, verify, auth: { password } });
    }

    // 3. The peer's agent installs the key and records this appliance.
    let reply: HelloReply;
    let accepted: { agent: AgentCommand; authorizedKeys: string | null };
    const link = new AgentLink(transport, { expectId: null, name: req.host, hello: { ...this.hello(), purpose: 'bind' }, idleTimeoutMs: this.options.dataIdleTimeoutMs });
    try {
      await link.session();
      if (link.refused) throw link.refused;
      reply = link.reply!;
      this.refuseSelf(reply.id);
      accepted = await link.call('peer.accept', { transport: 'ssh', publicKey: keys.publicKey });
    } catch (error) {
      throw this.startFailure(error, req.host);
    } finally {
      link.close();
    }

    // 4. The key alone must now reach the agent.
    const peer: OutboundPeer = {
      id: reply.id,
      transport: 'ssh',
      address: req.host,
      port,
      user,
      fingerprint: seen.fingerprint,
      hostKeyType: seen.type,
      agent: accepted.agent,
      boundAt: new Date().toISOString(),
    };
    const check = await SshTransport.connect({ ...target, name: reply.id }, { ...common, agent: accepted.agent, verify, auth: { privateKey: keys.privateKey } }).catch((error: Error) => {
      throw new PeerError('auth', `${reply.id} accepted this appliance's key but logging in with it failed: ${error.message}`);
    });
    const checkLink = new AgentLink(check, { expectId: reply.id, name: reply.id, hello: this.hello(), idleTimeoutMs: this.options.dataIdleTimeoutMs });
    try {
      await checkLink.call('ping');
    } finally {
      checkLink.close();
    }

    this.dropPooled(reply.id);
    const rebound = Boolean(this.store.outboundPeer(reply.id));
    for (const other of this.store.outbound()) {
      if (other.id !== reply.id && other.transport === 'ssh' && other.address === req.host && other.port === port) await this.store.removeOutbound(other.id);
    }
    await this.store.putOutbound(peer);
    return { peer, via, authorizedKeys: accepted.authorizedKeys, rebound };
  }

  /**
   * Bind an appliance on this machine by its home: its agent runs as a child
   * process. Only a directory that is an appliance home already, or an empty
   * (or missing) one with `create`, and only what `access` allows: all of it
   * checked before anything is written there.
   */
  async bindLocal(home: string, opts: { create?: boolean; access?: Access } = {}): Promise<BindResult> {
    const dir = (opts.access ?? LOCAL_ACCESS).home(home);
    const agent: AgentCommand = { node: process.execPath, script: SYNCSH_SCRIPT, home: resolvePath(dir) };
    if (agent.home === resolvePath(this.home.root)) throw new Error(`${agent.home} is this appliance's own home: an appliance cannot be bound to itself.`);
    const found = homeKind(agent.home);
    const refused = (why: string) => new Error(`${agent.home} is not an appliance home: ${why}. Nothing was written there.`);
    if (found.kind === 'other') throw refused(`${found.why}; give the home of an appliance (its appliance.json names it), or an empty directory with --create`);
    if (found.kind !== 'home' && !opts.create) throw refused(`it ${found.kind === 'missing' ? 'does not exist' : 'is empty'}; add --create to make a new appliance there`);
    if (found.kind === 'home' && found.id === this.appliance.id) throw sameId(agent.home, found.id);
    if (found.kind !== 'home') this.createHome(agent.home);
    const link = new AgentLink(new LocalTransport(agent), { expectId: null, name: agent.home, hello: { ...this.hello(), purpose: 'bind' }, idleTimeoutMs: this.options.dataIdleTimeoutMs });
    let reply: HelloReply;
    try {
      await link.session();
      if (link.refused) throw link.refused;
      reply = link.reply!;
      if (reply.id === this.appliance.id) throw sameId(agent.home, reply.id);
      await link.call('peer.accept', { transport: 'local' });
    } finally {
      link.close();
    }
    const peer: OutboundPeer = {
      id: reply.id,
      transport: 'local',
      address: 'local',
      port: 0,
      user: os.userInfo().username,
      fingerprint: null,
      hostKeyType: null,
      agent,
      boundAt: new Date().toISOString(),
    };
    this.dropPooled(reply.id);
    const rebound = Boolean(this.store.outboundPeer(reply.id));
    await this.store.putOutbound(peer);
    return { peer, via: 'local', authorizedKeys: null, rebound };
  }

  /**
   * Undo a binding. An outbound one: the peer forgets this appliance and
   * removes its key line, then it is forgotten here (with `force`, here only
   * when the peer cannot be reached). An inbound one: forget that appliance
   * and remove its key line from this appliance's authorized_keys.
   */
  async unbind(host: string, opts: { force?: boolean } = {}): Promise<{ id: string; direction: 'outbound' | 'inbound'; peerForgot: boolean; reason: string | null }> {
    const peer = this.store.find(host);
    if (peer) {
      let peerForgot = false;
      let reason: string | null = null;
      try {
        const link = await this.acquire(peer);
        try {
          await link.session();
          if (!link.refused) await link.call('peer.forget');
          peerForgot = true;
        } finally {
          this.release(peer.id, link);
        }
      } catch (error) {
        reason = (error as Error).message;
        if (!opts.force) throw new PeerError((error as PeerError).code ?? 'link', `${reason} Nothing was changed; use --force to forget ${peer.id} here only (its record of this appliance and the key line stay there).`);
      }
      this.dropPooled(peer.id);
      await this.store.removeOutbound(peer.id);
      return { id: peer.id, direction: 'outbound', peerForgot, reason };
    }
    const inbound = this.store.inboundPeer(host) ?? this.store.inbound().find((p) => p.address === host) ?? null;
    if (inbound) {
      await this.forgetInbound(inbound);
      return { id: inbound.id, direction: 'inbound', peerForgot: false, reason: null };
    }
    throw new Error(`No appliance "${host}" is bound to this one, in either direction.`);
  }

  /** what the agent does for `peer.forget`, and `unbind` for an inbound peer */
  async forgetInbound(peer: InboundPeer): Promise<number> {
    let removed = 0;
    if (peer.transport === 'ssh') removed = await removeAuthorizedKey(peer.authorizedKeys ?? this.store.authorizedKeysFile(), peer.id, peer.publicKey);
    await this.store.removeInbound(peer.id);
    return removed;
  }

  /** reach a bound peer's agent now; throws why not (unbound, refused, down) */
  async ping(host: string): Promise<void> {
    const peer = this.require(host);
    const link = await this.acquire(peer);
    try {
      await link.call('ping');
    } finally {
      this.release(peer.id, link);
    }
  }

  /** every binding, outbound ones probed for reachability now (in parallel) */
  async bindings(opts: { probe?: boolean } = {}): Promise<BindingView[]> {
    const probe = opts.probe ?? true;
    const outbound = await Promise.all(
      this.store.outbound().map(async (p): Promise<BindingView> => {
        let reachable: boolean | null = null;
        let reason: string | null = null;
        if (probe) {
          try {
            await this.ping(p.id);
            reachable = true;
          } catch (error) {
            reachable = false;
            reason = (error as Error).message;
          }
        }
        return {
          id: p.id,
          direction: 'outbound',
          transport: p.transport,
          address: p.address,
          port: p.transport === 'ssh' ? p.port : null,
          user: p.user,
          fingerprint: p.fingerprint,
          boundAt: p.boundAt,
          reachable,
          reason,
        };
      }),
    );
    const inbound = this.store.inbound().map(
      (p): BindingView => ({
        id: p.id,
        direction: 'inbound',
        transport: p.transport,
        address: p.address,
        port: null,
        user: null,
        fingerprint: p.keyFingerprint,
        boundAt: p.boundAt,
        reachable: null,
        reason: null,
      }),
    );
    return [...outbound, ...inbound];
  }

  // ---- helpers ---------------------------------------------------------------

  private async hostKeyOf(target: SshTarget, common: Omit<Parameters<typeof SshTransport.connect>[1], 'verify' | 'auth'>): Promise<HostKeySeen> {
    let seen: HostKeySeen | null = null;
    const stop = new PeerError('host-key', 'fetched');
    try {
      const t = await SshTransport.connect(target, {
        ...common,
        auth: { password: '' },
        verify: (k) => {
          seen = k;
          return stop;
        },
      });
      t.close();
    } catch (error) {
      if (!seen) throw error;
    }
    return seen!;
  }

  /** a new appliance in an empty home, with an id of its own (the host name is likely this one's) */
  private createHome(dir: string): void {
    mkdirSync(dir, { recursive: true });
    const home = resolveHome({ SYNCSH_HOME: dir });
    const wanted = defaultApplianceId();
    loadAppliance(home, { SYNCSH_APPLIANCE_ID: wanted === this.appliance.id ? `${wanted.slice(0, 56)}-${randomBytes(3).toString('hex')}` : wanted });
  }

  private refuseSelf(id: string): void {
    if (id === this.appliance.id) throw new Error(`The appliance there is this one (${id}): an appliance cannot be bound to itself.`);
  }

  private startFailure(error: unknown, host: string): Error {
    if (error instanceof PeerError && error.code === 'agent') {
      return new PeerError('agent', `Could not start the syncsh agent on ${host}: ${error.message} Give its bin/syncsh.js with --remote-syncsh and its home with --remote-home.`);
    }
    return error as Error;
  }

  private dropPooled(id: string): void {
    const entry = this.pool.get(id);
    if (!entry) return;
    this.pool.delete(id);
    this.closeEntry(entry);
  }
}

/** two homes on one machine both took the host name as their id */
function sameId(home: string, id: string): Error {
  return new Error(
    `The appliance at ${home} has the same id as this one (${id}): two homes on one machine both took the host name. Give one of them its own id before binding, e.g. 'SYNCSH_HOME=${home} syncsh -c "setup appliance id ${id}-2"' (refused once that appliance is bound to any other). Nothing was changed.`,
  );
}

function readPassword(file: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (error) {
    throw new Error(`Cannot read the password file ${file}: ${(error as Error).message}`);
  }
}

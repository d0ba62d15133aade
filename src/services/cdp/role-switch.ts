/**
 * `setup auto-cdp :NAME role master|slave` (qsync -s NAME -m ROLE) and
 * `setup auto-cdp role master|slave --all` (qsync -f -m ROLE): ask the
 * peer's copy (`cdp.get`) for its role and epoch, plan with
 * roles.ts's planRoleSwitch (never two masters while the peer answers, a
 * promotion bumps the epoch past both copies'), then carry the plan out on
 * this copy and tell the peer (`cdp.update`, which refuses an older epoch).
 *
 * A role switch is between two copies: a master with several targets is
 * refused (detach all but one first). A peer that answers but refuses this
 * appliance (not bound back, changed key) is not down: the switch is refused
 * (auto-sync's PeerRefused), as nothing can know its role.
 */
import { rmSync } from 'node:fs';
import { NOT_DOWN, PeerRefused, withTimeout } from '../auto-sync/contact.js';
import type { PeerService } from '../peer/index.js';
import type { CdpService } from './index.js';
import { DEFAULT_PEER_TIMEOUT_MS, slaveView, type MirrorConfig, type MirrorTarget } from './model.js';
import { hasMap, mapFileOf } from './owed.js';
import { parseRole, planRoleSwitch, planRoleSwitchAll, type CdpRole, type PeerOwes, type PeerView, type RoleSwitchPlan } from './roles.js';

export interface PreparedSwitch {
  name: string;
  peerHost: string;
  config: MirrorConfig;
  peer: PeerView;
  plan: Extract<RoleSwitchPlan, { ok: true }>;
}

export interface SwitchResult {
  name: string;
  config: MirrorConfig;
  /** the peer could not be told (it was away, or refused): why */
  peerNotTold: string | null;
}

export { parseRole };

export class CdpRoleSwitch {
  constructor(
    private readonly cdp: CdpService,
    private readonly peers: PeerService,
    private readonly selfId: string,
    /** for a mirror that sets no --peer-timeout */
    private readonly defaultTimeoutMs = DEFAULT_PEER_TIMEOUT_MS,
  ) {}

  /** a peer that has not answered by the mirror's own --peer-timeout does not answer, as its heartbeat would say */
  private timeoutOf(c: MirrorConfig): number {
    return c.peerTimeoutMs ?? this.defaultTimeoutMs;
  }

  /** the other copy of a two-copy mirror */
  peerOf(c: MirrorConfig): { host: string; zvol: string } {
    if (c.role === 'slave') {
      if (!c.master) throw new Error(`auto-cdp:${c.name} is a slave copy that names no master; it cannot switch roles.`);
      return c.master;
    }
    if (c.targets.length !== 1) {
      throw new Error(
        `auto-cdp:${c.name} mirrors to ${c.targets.length} targets (${c.targets.map((t) => t.host).join(', ') || 'none'}): a role switch is between two copies; detach all targets but one first ('setup auto-cdp :${c.name} detach HOST'). Nothing was changed.`,
      );
    }
    return { host: c.targets[0].host, zvol: c.targets[0].zvol };
  }

  /** the peer's copy now: its role and epoch, or why it does not answer; throws PeerRefused when it answers and refuses */
  async peerView(c: MirrorConfig, host: string): Promise<PeerView> {
    let theirs: MirrorConfig | null;
    try {
      theirs = await withTimeout(this.peers.call<MirrorConfig | null>(host, 'cdp.get', { name: c.name }), this.timeoutOf(c), host);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (typeof code === 'string' && NOT_DOWN.has(code)) throw new PeerRefused(host, code, (error as Error).message);
      return { reachable: false, why: (error as Error).message };
    }
    if (!theirs || theirs.createdAt !== c.createdAt) throw new Error(`${host} answers but holds no copy of auto-cdp:${c.name} (it was destroyed or made again there): no role is switched. Nothing was changed.`);
    return { reachable: true, state: { role: theirs.role, epoch: theirs.epoch }, owes: await this.owedBy(c, host) };
  }

  /** what `host`'s copy holds that this one may lack (owed.ts); null when it cannot tell, or answers no such question (an older syncsh); 'running' while its engine still takes writes */
  private async owedBy(c: MirrorConfig, host: string): Promise<PeerOwes> {
    try {
      const r = await withTimeout(this.peers.call<{ chunks: number | null; running?: boolean } | null>(host, 'cdp.owed', { name: c.name }), this.timeoutOf(c), host);
      if (r?.running === true) return 'running';
      return r && (r.chunks === null || Number.isSafeInteger(r.chunks)) ? r.chunks : null;
    } catch {
      return null;
    }
  }

  async prepare(name: string, target: CdpRole): Promise<PreparedSwitch> {
    const config = this.cdp.config(name);
    const other = this.peerOf(config);
    const peer = await this.peerView(config, other.host);
    const plan = planRoleSwitch(name, other.host, { role: config.role, epoch: config.epoch }, target, peer);
    if (!plan.ok) throw new Error(plan.error);
    return { name, peerHost: other.host, config, peer, plan };
  }

  /** every mirror, or an error and none */
  async prepareAll(target: CdpRole): Promise<PreparedSwitch[]> {
    const names = this.cdp.names();
    if (!names.length) throw new Error('There is no auto-cdp mirror on this appliance. Nothing was changed.');
    const found: { name: string; peerHost: string; config: MirrorConfig; peer: PeerView }[] = [];
    for (const name of names) {
      const config = this.cdp.config(name);
      const other = this.peerOf(config);
      found.push({ name, peerHost: other.host, config, peer: await this.peerView(config, other.host) });
    }
    const all = planRoleSwitchAll(
      found.map((f) => ({ name: f.name, peerHost: f.peerHost, here: { role: f.config.role, epoch: f.config.epoch }, peer: f.peer })),
      target,
    );
    if (!all.ok) throw new Error(all.error);
    return found.map((f, i) => ({ ...f, plan: all.plans[i].plan }));
  }

  /** carry out a prepared switch: this copy first (stored), then the peer is told */
  async apply(p: PreparedSwitch): Promise<SwitchResult> {
    if (!p.plan.change) return { name: p.name, config: p.config, peerNotTold: null };
    const { role, epoch } = p.plan.here;
    const other = this.peerOf(p.config);
    const now = new Date().toISOString();
    let config: MirrorConfig;
    if (role === 'master') {
      // the old master's copy becomes this mirror's target. It answered, and this copy lacks nothing of it (planRoleSwitch):
      // this copy's map from its last term as master is what it lacks (it took no write of its own since); with no map,
      // every chunk is compared. It did not answer: what it wrote since is unknown, so a map here says nothing of now:
      // every chunk is compared. Only chunks that differ are sent; never 'mirroring' over chunks that differ
      const root = this.cdp.home.root;
      if (!p.peer.reachable) rmSync(mapFileOf(root, p.name, other.host), { force: true });
      const partial = p.peer.reachable && hasMap(root, p.config, other.host);
      const target: MirrorTarget = {
        host: other.host,
        zvol: other.zvol,
        state: 'logging',
        reason: partial ? 'role switched: catching up' : 'role switched: comparing every chunk',
        paused: false,
        fullSync: partial ? 'none' : 'compare',
        addedAt: now,
      };
      config = await this.cdp.store.update(p.name, (c) => {
        if (c.epoch !== p.config.epoch || c.role !== p.config.role) throw new Error(`auto-cdp:${p.name} changed meanwhile (now ${c.role} at epoch ${c.epoch}). Nothing was changed.`);
        return { ...c, role: 'master', epoch, master: null, targets: [target] };
      });
    } else {
      config = await this.cdp.store.update(p.name, (c) => {
        if (c.epoch !== p.config.epoch || c.role !== p.config.role) throw new Error(`auto-cdp:${p.name} changed meanwhile (now ${c.role} at epoch ${c.epoch}). Nothing was changed.`);
        return { ...c, role: 'slave', epoch, master: other, targets: [] };
      });
    }
    this.cdp.log(p.name).write(`Role switched to ${role} at epoch ${epoch} (was ${p.config.role} at epoch ${p.config.epoch}); peer ${p.peerHost} ${p.peer.reachable ? `is ${p.peer.state.role}` : 'did not answer'}`);
    let peerNotTold: string | null = p.peer.reachable ? null : `${p.peerHost} did not answer: it meets epoch ${epoch} when it is back`;
    if (role === 'master' && p.peer.reachable) {
      try {
        await withTimeout(this.peers.call(p.peerHost, 'cdp.update', { config: slaveView(config, this.selfId, config.targets[0]) }), this.timeoutOf(config), p.peerHost);
      } catch (error) {
        peerNotTold = `${p.peerHost} was not told (${(error as Error).message}): it meets epoch ${epoch} at the next contact`;
      }
    }
    return { name: p.name, config, peerNotTold };
  }
}

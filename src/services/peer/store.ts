/**
 * The appliances this one is bound to (peers.json in the home, kept with
 * conf like the other configuration):
 *  - outbound: appliances this one reaches (it ran `setup network ssh-bind`),
 *    with the address, port, user and the host-key fingerprint it trusted;
 *  - inbound: appliances that bound themselves to this one, with the key
 *    they were given; the agent refuses any other;
 *  - settings: where this appliance's authorized_keys file is.
 */
import { ConfigFile } from '../config-file.js';
import os from 'node:os';
import path from 'node:path';
import type { Home } from '../home.js';
import { LOCAL_ACCESS, type Access } from '../access.js';
import { withLock } from '../lock.js';
import type { AgentCommand } from './keys.js';

export interface OutboundPeer {
  /** the peer's appliance id */
  id: string;
  transport: 'ssh' | 'local';
  /** ssh: host name or address; local: 'local' */
  address: string;
  port: number;
  user: string;
  /** ssh: the host key fingerprint trusted at bind time (SHA256:…) */
  fingerprint: string | null;
  hostKeyType: string | null;
  /** how the agent is started there: over SSH only when the key is not restricted; locally always */
  agent: AgentCommand;
  boundAt: string;
}

export interface InboundPeer {
  id: string;
  transport: 'ssh' | 'local';
  /** where it connected from (SSH_CLIENT), or 'local' */
  address: string;
  /** the public key installed for it (ssh) */
  publicKey: string | null;
  keyFingerprint: string | null;
  /** the authorized_keys file the line went to */
  authorizedKeys: string | null;
  boundAt: string;
}

export interface NetworkSettings {
  /** this appliance's authorized_keys file (default ~/.ssh/authorized_keys of the user running syncsh) */
  authorizedKeys?: string;
}

type PeersFile = { outbound: Record<string, OutboundPeer>; inbound: Record<string, InboundPeer>; settings: NetworkSettings };

export class PeerStore {
  private readonly conf: ConfigFile<PeersFile>;
  private readonly lockFile: string;

  constructor(home: Home) {
    this.conf = new ConfigFile<PeersFile>({
      cwd: home.config,
      configName: 'peers',
      projectName: 'syncsh',
      defaults: { outbound: {}, inbound: {}, settings: {} },
    });
    this.lockFile = path.join(home.locks, 'peers.lock');
  }

  outbound(): OutboundPeer[] {
    return Object.values(this.conf.get('outbound')).sort((a, b) => a.id.localeCompare(b.id));
  }

  inbound(): InboundPeer[] {
    return Object.values(this.conf.get('inbound')).sort((a, b) => a.id.localeCompare(b.id));
  }

  inboundPeer(id: string): InboundPeer | null {
    return this.conf.get('inbound')[id] ?? null;
  }

  outboundPeer(id: string): OutboundPeer | null {
    return this.conf.get('outbound')[id] ?? null;
  }

  /** a bound peer by appliance id, `address`, or `address:port` */
  find(host: string): OutboundPeer | null {
    const all = this.outbound();
    const byId = all.find((p) => p.id === host);
    if (byId) return byId;
    const byAddressPort = all.filter((p) => `${p.address}:${p.port}` === host);
    if (byAddressPort.length === 1) return byAddressPort[0];
    const byAddress = all.filter((p) => p.address === host);
    return byAddress.length === 1 ? byAddress[0] : null;
  }

  /** an appliance bound to this one (it reaches this one) by id or address */
  findInbound(host: string): InboundPeer | null {
    return this.inboundPeer(host) ?? this.inbound().find((p) => p.address === host) ?? null;
  }

  /** why `host` does not name one bound peer (several at one address, bound the other way only, or none) */
  whyNot(host: string): string {
    const all = this.outbound();
    const same = all.filter((p) => p.address === host);
    if (same.length > 1) return `${same.length} appliances are bound at ${host} (${same.map((p) => `${p.id} on port ${p.port}`).join(', ')}); name one by its id`;
    const inbound = this.findInbound(host);
    if (inbound) return `${inbound.id} is bound to this one, but this one is not bound to ${inbound.id}: a binding goes one way, and this appliance cannot reach ${inbound.id} until it binds back`;
    if (!all.length) return 'no appliance is bound to this one';
    return `the bound appliances are ${all.map((p) => `${p.id} (${p.address}${p.transport === 'ssh' ? `:${p.port}` : ''})`).join(', ')}`;
  }

  /** how to bind `host` from this appliance, quoted as a command: local-bind for one on this machine, else ssh-bind */
  bindHint(host: string): string {
    const out = this.find(host);
    if (out) return out.transport === 'local' ? `'setup network local-bind ${out.agent.home}'` : `'setup network ssh-bind ${out.address}${out.port === 22 ? '' : ` --port ${out.port}`}'`;
    const inbound = this.findInbound(host);
    if (inbound?.transport === 'local') return `'setup network local-bind DIR' (DIR: the home of ${inbound.id} on this machine)`;
    return `'setup network ssh-bind ${inbound?.address ?? host}'`;
  }

  async putOutbound(peer: OutboundPeer): Promise<void> {
    await this.locked('binding an appliance', () => this.conf.set('outbound', { ...this.conf.get('outbound'), [peer.id]: peer }));
  }

  async removeOutbound(id: string): Promise<OutboundPeer | null> {
    return this.locked('unbinding an appliance', () => {
      const all = { ...this.conf.get('outbound') };
      const was = all[id] ?? null;
      delete all[id];
      this.conf.set('outbound', all);
      return was;
    });
  }

  async putInbound(peer: InboundPeer): Promise<void> {
    await this.locked('accepting an appliance', () => this.conf.set('inbound', { ...this.conf.get('inbound'), [peer.id]: peer }));
  }

  async removeInbound(id: string): Promise<InboundPeer | null> {
    return this.locked('forgetting an appliance', () => {
      const all = { ...this.conf.get('inbound') };
      const was = all[id] ?? null;
      delete all[id];
      this.conf.set('inbound', all);
      return was;
    });
  }

  settings(): NetworkSettings {
    return this.conf.get('settings') ?? {};
  }

  authorizedKeysFile(): string {
    return this.settings().authorizedKeys ?? path.join(os.homedir(), '.ssh', 'authorized_keys');
  }

  /** where peers' key lines will be written (by the agent, as root): `access` decides whether this session may name that file */
  async setAuthorizedKeysFile(file: string | null, access: Access = LOCAL_ACCESS): Promise<void> {
    if (file !== null && !path.isAbsolute(file)) throw new Error(`The authorized_keys file must be an absolute path, not "${file}".`);
    const target = file === null ? null : access.writeFile(file);
    await this.locked('changing the network settings', () => {
      const next = { ...this.settings() };
      if (target === null) delete next.authorizedKeys;
      else next.authorizedKeys = target;
      this.conf.set('settings', next);
    });
  }

  private locked<T>(purpose: string, fn: () => T): Promise<T> {
    return withLock(this.lockFile, 'The list of bound appliances', purpose, fn);
  }
}

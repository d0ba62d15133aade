/**
 * Reverse-direction (DESIGN.md, "Roles, epochs and reverse-direction"; the
 * NexentaStor "Auto-Sync in reverse" document): enabling it (the service
 * config copied to the peer, non-master there), and the four cases of
 * `setup auto-sync :NAME reverse-direction`. The seed names them by role,
 * for its local-to-remote services where the master holds the source; here
 * they go by which copy this appliance holds, so that remote-to-local
 * services (run by the destination) reverse too:
 *
 *   1. source here, peer up (the seed's master): unmount the source, sync
 *      the last delta, verify, swap source and destination and hand the
 *      master role over at epoch+1, mount the new source on the peer.
 *   2. source here, peer down: refused; this copy stays writable.
 *   3. destination here, peer up (the seed's non-master): the same
 *      hand-over, driven from this side.
 *   4. destination here, peer down (disaster recovery): after confirmation
 *      this copy becomes the source, this appliance master at epoch+1. The
 *      old source, back, is demoted on contact (contact.ts) and keeps what
 *      it wrote since the last replication as an orphan.
 *
 * Write order of a hand-over: the journal (handover-journal.ts), the peer's
 * config, ours, the mount, then the journal is removed. The higher epoch
 * is the truth and names exactly one master; a crash at any step is settled
 * on the next contact (contact.ts): finished if an epoch moved, undone if
 * none did. Each step has a failpoint (../failpoints.ts) for the tests that
 * kill the process there.
 *
 * The commands call ReverseService (`services.reverse`); the epoch rule it
 * applies on contact is contact.ts, the pure decisions ../roles.ts.
 */
import type { Home } from '../home.js';
import type { ApplianceInfo } from '../appliance.js';
import type { Storage } from '../storage/registry.js';
import type { PeerService } from '../peer/index.js';
import type { Driver } from '../storage/driver.js';
import { parseDataset } from '../datasets.js';
import { ServiceLog } from '../service-log.js';
import { failpoint } from '../failpoints.js';
import { flip } from '../roles.js';
import type { AutoSyncService } from './index.js';
import type { AutoSyncConfig, Endpoint } from './model.js';
import { directionOf } from './model.js';
import { findProperty } from './properties.js';
import { HandOverJournal } from './handover-journal.js';
import { contactBeforeRun, PeerRefused, mountIfNot, contactTimeoutMs, withTimeout, keepAndRollBack, rd, type ContactDeps } from './contact.js';
import { holdsSource, localEndpoint, peerHostOf, remoteEndpoint, shortDirection, toPeerView } from './endpoints.js';
import { destroyOrphan, listOrphans, orphanPlace, type OrphanView } from './orphans.js';
import { describeMaintenance, inSplitBrain } from './maintenance.js';

export type ReverseCase = 'source-up' | 'source-down' | 'destination-up' | 'disaster-recovery';

export interface ReverseResult {
  case: ReverseCase;
  config: AutoSyncConfig;
  message: string;
}

/** asks the operator; `warning`, when given, is shown first, as the seed's DR warning is */
export type Confirm = (question: string, help: string, warning?: string) => Promise<boolean>;

export type Winner = 'here' | 'peer';

/** what ReverseService works with: the appliance, its auto-sync services and its peers */
export interface ReverseDeps {
  home: Home;
  appliance: ApplianceInfo;
  storage: Storage;
  peers: PeerService;
  autoSync: AutoSyncService;
}

/** reverse-direction, split brain, orphans and the properties both copies share: what the commands call */
export class ReverseService {
  private readonly home: Home;
  private readonly appliance: ApplianceInfo;
  private readonly storage: Storage;
  private readonly peers: PeerService;
  private readonly autoSync: AutoSyncService;

  constructor(deps: ReverseDeps) {
    this.home = deps.home;
    this.appliance = deps.appliance;
    this.storage = deps.storage;
    this.peers = deps.peers;
    this.autoSync = deps.autoSync;
  }

  private contactDeps(): ContactDeps {
    const deps = this.autoSync.contactDeps();
    if (!deps) throw new Error('This appliance has no peers: reverse-direction needs a service between two appliances.');
    return deps;
  }

  private async sideOf(endpoint: Endpoint): Promise<{ driver: Driver; dataset: string }> {
    const ref = parseDataset(endpoint.dataset);
    if (endpoint.host === 'localhost') return { driver: await this.storage.usable(ref.driver), dataset: ref.name };
    return { driver: (await this.peers.side(endpoint.host, ref.driver)).driver, dataset: ref.name };
  }

  /** an endpoint as the operator knows it: appliance:dataset */
  private named = (e: Endpoint) => `${e.host === 'localhost' ? this.appliance.id : e.host}:${e.dataset}`;

  private checkReversible(config: AutoSyncConfig): void {
    if (config.direction === 'local-to-local') throw new Error(`auto-sync:${config.name} is local-to-local: reverse-direction needs a service between two appliances.`);
  }

  /**
   * A reverse-capable service is kept on both appliances, and each must reach
   * the other: reverse-direction on either side tells "the other is down"
   * (disaster recovery) from "it cannot be asked" only so. Asks the peer to
   * reach this appliance back; throws, saying how to bind back, when it cannot.
   */
  async checkBothWays(host: string): Promise<void> {
    const me = this.appliance.id;
    let back: { ok: boolean; reason: string | null };
    try {
      back = await withTimeout(this.peers.peerSide(host).reachBack(), contactTimeoutMs(), host);
    } catch (error) {
      throw new Error(`${host} cannot be reached (${(error as Error).message}): a reverse-capable service needs both appliances up and bound to each other. Nothing was changed.`);
    }
    if (back.ok) return;
    const out = this.peers.store.find(host);
    const how = out?.transport === 'local' ? `'setup network local-bind ${this.home.root}'` : `'setup network ssh-bind ADDRESS' (ADDRESS: this appliance's address as ${host} reaches it)`;
    throw new Error(
      `${host} cannot reach this appliance (${me}) back: ${back.reason}. A reverse-capable service is kept on both appliances, and each must reach the other, so that reverse-direction on one tells the other being down from it not being bound. Bind back on ${host} with ${how}, then run this again. Nothing was changed.`,
    );
  }

  /**
   * Turn reverse capability on: the config is copied to the peer, non-master
   * there and master here, at the same epoch. The peer must be up, and reach
   * this appliance back.
   */
  async enable(name: string): Promise<AutoSyncConfig> {
    const config = this.autoSync.config(name);
    this.checkReversible(config);
    if (config.role !== 'master') throw new Error(`auto-sync:${name} is non-master here: enable reverse-direction on its master.`);
    const host = peerHostOf(config);
    const next: AutoSyncConfig = { ...config, reverseCapable: true };
    await this.checkBothWays(host);
    const peer = this.peers.peerSide(host);
    const theirs = await peer.config(name);
    if (theirs && theirs.epoch > config.epoch) throw new Error(`${host} already holds auto-sync:${name} at a newer epoch (${theirs.epoch}); run the service here once so that it takes that view.`);
    await peer.putConfig(toPeerView(next, this.appliance.id));
    await this.autoSync.store.update(name, () => next);
    ServiceLog.forService(this.home.logs, name).write(`Reverse-direction enabled: the configuration of auto-sync:${name} is kept on ${host} too (non-master there), epoch ${next.epoch}`);
    return next;
  }

  /** is the peer up, and the epoch rule applied; then which of the four cases this is */
  private async reverseCase(name: string): Promise<{ case: ReverseCase; config: AutoSyncConfig }> {
    const deps = this.contactDeps();
    const log = deps.log(name);
    let config = this.autoSync.config(name);
    if (!config.reverseCapable) throw new Error(`Reverse-direction feature is currently disabled for auto-sync:${name}.`);
    log.write(rd(`working with fmri: auto-sync:${name}`));
    // a peer behind us that still holds its copy as the source refuses this too: no last delta goes into it
    const outcome = await contactBeforeRun(name, deps, { refusedThrows: true }).catch((error: Error) => {
      if (error instanceof PeerRefused) log.write(rd(`remote appliance: refused this one (${error.message})`));
      throw error instanceof PeerRefused ? new Error(`${error.message} Nothing was changed: reverse-direction takes over from ${error.host} only when it cannot be reached.`) : error;
    });
    const up = outcome !== 'unreachable';
    log.write(rd(`remote appliance: ${up ? 'alive' : 'down'}`));
    config = this.autoSync.config(name);
    if (outcome === 'split-brain' || inSplitBrain(config)) throw new Error(describeMaintenance(config.maintenance!));
    this.checkReversible(config);
    const pending = deps.journal.get(name);
    if (pending && pending.pid !== process.pid) {
      throw new Error(
        HandOverJournal.abandoned(pending)
          ? `A hand-over of auto-sync:${name} was interrupted (process ${pending.pid}, started ${pending.startedAt}) and is settled on the next contact with ${peerHostOf(config)}, which is down: until then the copy it unmounted stays unmounted. Nothing was changed.`
          : `A hand-over of auto-sync:${name} is in progress (process ${pending.pid}, since ${pending.startedAt}). Nothing was changed.`,
      );
    }
    const source = holdsSource(config);
    const c: ReverseCase = source ? (up ? 'source-up' : 'source-down') : up ? 'destination-up' : 'disaster-recovery';
    return { case: c, config };
  }

  /**
   * `setup auto-sync :NAME reverse-direction`: asks before a hand-over (the
   * source is unmounted while the last delta goes) and, after its warning,
   * before disaster recovery. A no changes nothing.
   */
  async direction(name: string, confirm: Confirm): Promise<ReverseResult | null> {
    const { case: c, config } = await this.reverseCase(name);
    const log = ServiceLog.forService(this.home.logs, name);
    const host = peerHostOf(config);
    switch (c) {
      case 'source-down': {
        log.write(rd(`${shortDirection(config)}, ${config.role}, remote_down. Refused`));
        const needs = config.role === 'master' ? 'reverse-direction on the master' : 'reverse-direction on the appliance that holds the source';
        throw new Error(
          `The other appliance of auto-sync:${name} (${host}) is down: ${needs} needs it up, to sync the last delta and hand it the source. Nothing was changed; this appliance stays ${config.role} and its copy stays writable. Bring ${host} up (see 'show network ssh-bindings'), then run this again.`,
        );
      }
      case 'source-up':
      case 'destination-up': {
        const ep = (e: Endpoint) => this.named(e);
        const master = config.role === 'master' ? host : 'this appliance';
        const question = `Reverse direction of 'auto-sync:${name}' to ${ep(config.destination)} => ${ep(config.source)}, master ${master}?`;
        const help = `${ep(config.source)} is unmounted while the last delta is synced; then ${ep(config.destination)} is mounted and becomes the source, and the master role moves to ${master} (epoch ${config.epoch + 1}).`;
        if (!(await confirm(question, help))) return null;
        return this.handOver(config, c);
      }
      case 'disaster-recovery': {
        // the copy that becomes the orphan is the other appliance's, named as 'show auto-sync orphans' names it there
        const theirs = remoteEndpoint(config).dataset;
        const where = `${host}:${theirs} (kept in ${orphanPlace(theirs, name)})`;
        const seed = config.role === 'non-master';
        const from = seed ? 'non-master appliance' : 'the destination appliance (this one runs the service, which pulls from the other)';
        const other = seed ? 'master appliance' : `source appliance ${host}`;
        const keptOn = seed ? 'master' : 'source appliance';
        const becomes = seed ? 'non-master' : 'the destination';
        const warning = `IMPORTANT! You are about to reverse direction of 'auto-sync:${name}' from ${from}. If ${other} is up and running well, please run this command from there. If you have disaster recovery scenario, note that changes made on the ${other} since the last successful replication are NOT here: they WILL BE KEPT on the ${keptOn}, as an orphan snapshot of ${where}, when it comes back and becomes ${becomes} ('show auto-sync :${name} orphans' there). BE SURE YOU AWARE OF CONSEQUENCES`;
        const help = `Yes makes this appliance master of auto-sync:${name} at epoch ${config.epoch + 1} and ${localEndpoint(config).dataset} the source; no changes nothing.`;
        if (!(await confirm(`Proceed reversing 'auto-sync:${name}'?`, help, warning))) return null;
        return this.disasterRecovery(config);
      }
    }
  }

  private async handOver(config: AutoSyncConfig, c: 'source-up' | 'destination-up'): Promise<ReverseResult> {
    const name = config.name;
    const log = ServiceLog.forService(this.home.logs, name);
    const journal = this.contactDeps().journal;
    const host = peerHostOf(config);
    const fromSource = c === 'source-up';
    log.write(rd(`${shortDirection(config)}, ${config.role}, remote_up.`));
    const src = await this.sideOf(config.source);
    const dst = await this.sideOf(config.destination);
    journal.put({ service: name, epoch: config.epoch, oldSource: fromSource ? 'here' : 'peer', pid: process.pid, startedAt: new Date().toISOString() });
    failpoint('handover.journaled');
    log.write(rd('Unmounting master copy of a folder'));
    await src.driver.unmount(src.dataset);
    failpoint('handover.unmounted');
    let marker: string;
    try {
      log.write(rd('Syncing last delta before changing direction'));
      // as the master would (a non-master drives it too); reverseCase made the contact already
      const result = await this.autoSync.run(name, {}, true);
      marker = result.marker;
      failpoint('handover.synced');
      // verify: the destination holds the marker, with its identity, and the (unmounted) source did not move since
      const sent = (await src.driver.listSnapshots(src.dataset)).find((s) => s.name === marker);
      const got = (await dst.driver.listSnapshots(dst.dataset)).find((s) => s.name === marker);
      if (!sent || !got || sent.id !== got.id) throw new Error(`The destination does not hold ${marker} as sent; the direction was not changed.`);
      if (await src.driver.changedSince(src.dataset, marker)) throw new Error(`The source changed after the last delta ${marker}; the direction was not changed.`);
    } catch (error) {
      await src.driver.mount(src.dataset).catch(() => undefined);
      journal.clear(name);
      log.write(rd(`last delta failed, the master copy was mounted again: ${(error as Error).message}`));
      throw error;
    }
    const epoch = config.epoch + 1;
    const ours: AutoSyncConfig = { ...config, source: config.destination, destination: config.source, direction: directionOf(config.destination, config.source), role: flip(config.role), epoch, maintenance: null };
    // The peer's first (see the header): the higher epoch always names exactly one master.
    await this.peers.peerSide(host).putConfig(toPeerView(ours, this.appliance.id));
    failpoint('handover.peer-committed');
    await this.autoSync.store.update(name, () => ours);
    failpoint('handover.committed');
    log.write(`Rereading configuration: auto-sync:${name} is now ${ours.role} here at epoch ${epoch}, ${ours.source.host}/${ours.source.dataset} => ${ours.destination.host}/${ours.destination.dataset}`);
    // the copy that is now the source is the one to work with
    log.write(rd(fromSource ? 'Mounting folder on remote side' : 'Mounting folder on this side'));
    await dst.driver.mount(dst.dataset);
    failpoint('handover.mounted');
    journal.clear(name);
    const master = ours.role === 'master' ? 'here' : host;
    return { case: c, config: ours, message: `Reversed direction for 1 auto-sync instance: ${this.named(ours.source)} => ${this.named(ours.destination)}, master ${master} (epoch ${epoch}), last delta ${marker}.` };
  }

  private async disasterRecovery(config: AutoSyncConfig): Promise<ReverseResult> {
    const name = config.name;
    const log = ServiceLog.forService(this.home.logs, name);
    log.write(rd(config.role === 'non-master' ? 'DR scenario. We are non-master and remote is down' : 'DR scenario. We are the destination (master, R2L) and remote is down'));
    const here = await this.sideOf(localEndpoint(config));
    // a receive cut short leaves the copy at its previous snapshot; finish or clean it up first
    for (const line of await here.driver.recover(here.dataset)) log.write(`Recovered ${here.dataset}: ${line}`);
    const epoch = config.epoch + 1;
    const ours: AutoSyncConfig = { ...config, source: localEndpoint(config), destination: remoteEndpoint(config), direction: 'local-to-remote', role: 'master', epoch, maintenance: null };
    await this.autoSync.store.update(name, () => ours);
    // an interrupted hand-over this appliance drove is superseded: the new epoch is the truth
    this.contactDeps().journal.clear(name);
    log.write('Rereading configuration.');
    await here.driver.mount(here.dataset);
    log.write(`auto-sync:${name} is master here at epoch ${epoch}; ${here.dataset} is mounted. When ${peerHostOf(config)} comes back it becomes the destination (non-master) and data flows into it.`);
    return { case: 'disaster-recovery', config: ours, message: 'Reversed direction for 1 auto-sync instance' };
  }

  /** resolve-split-brain has something to resolve, or says why not */
  checkSplitBrain(config: AutoSyncConfig): void {
    if (!inSplitBrain(config)) throw new Error(`auto-sync:${config.name} is not in split brain${config.maintenance ? ` (maintenance: ${config.maintenance.reason})` : ''}; nothing to resolve.`);
  }

  /**
   * After split brain (contact.ts): the operator keeps one copy. The winner's
   * appliance becomes master of a service from its copy at epoch+1; the
   * loser's copy keeps what it wrote since the last common snapshot as an
   * orphan, is rolled back to that snapshot and receives from then on. The
   * loser's config is written first, so a crash in between leaves the
   * winner's view at the higher epoch, or both at the old one (still in
   * maintenance: run the command again).
   */
  async resolveSplitBrain(name: string, winner: Winner): Promise<{ config: AutoSyncConfig; message: string }> {
    const deps = this.contactDeps();
    const config = this.autoSync.config(name);
    this.checkSplitBrain(config);
    const host = peerHostOf(config);
    const peer = this.peers.peerSide(host);
    const theirs = await peer.config(name).catch((error: Error) => {
      throw new Error(`${host} cannot be reached (${error.message}): resolving split brain needs both appliances up. Nothing was changed.`);
    });
    if (!theirs || theirs.epoch !== config.epoch)
      throw new Error(`${host} holds auto-sync:${name} at epoch ${theirs?.epoch ?? 'none'}, not ${config.epoch}: run 'run auto-sync :${name}' so that the epoch rule settles it. Nothing was changed.`);
    const log = deps.log(name);
    const mine = localEndpoint(config);
    const other = remoteEndpoint(config);
    const [keep, lose] = winner === 'here' ? [mine, other] : [other, mine];
    log.write(`Split brain: the operator keeps the copy ${winner === 'here' ? 'here' : `on ${host}`} (${keep.dataset}); the other one keeps its changes as an orphan and becomes the destination`);
    const common = await keepAndRollBack(name, lose, keep, config.recursive, deps, log);
    const epoch = config.epoch + 1;
    const ours: AutoSyncConfig = { ...config, source: keep, destination: lose, direction: directionOf(keep, lose), role: winner === 'here' ? 'master' : 'non-master', epoch, maintenance: null };
    const peerView = toPeerView(ours, this.appliance.id);
    const first = () => peer.putConfig(peerView);
    const second = () => this.autoSync.store.update(name, () => ours);
    // the loser's config first (see above)
    if (winner === 'here') {
      await first();
      await second();
    } else {
      await second();
      await first();
    }
    await mountIfNot(await this.sideOf(keep));
    const rolled = common ? `rolled back to @${common.name}` : 'not rolled back (no common snapshot: the next run asks for a resync)';
    log.write(`Split brain resolved: auto-sync:${name} is ${ours.role} here at epoch ${epoch}, ${ours.source.host}/${ours.source.dataset} => ${ours.destination.host}/${ours.destination.dataset}; the other copy was ${rolled}`);
    return {
      config: ours,
      message: `Split brain resolved for auto-sync:${name}: the copy ${winner === 'here' ? 'here' : `on ${host}`} is the source, master ${ours.role === 'master' ? 'here' : host} (epoch ${epoch}); the other copy was ${rolled}, its changes kept as an orphan ('show auto-sync :${name} orphans' ${winner === 'here' ? `on ${host}` : 'here'}).`,
    };
  }

  /**
   * A property set here goes to the peer's copy of a reverse-capable service
   * too, so that whichever appliance runs it next runs it the same way.
   * Returns null, or why the peer's copy was not changed (it is down, or at
   * another epoch: the epoch rule settles that first).
   */
  async shareProperty(name: string, key: string, value: string): Promise<string | null> {
    const config = this.autoSync.config(name);
    if (!config.reverseCapable || config.direction === 'local-to-local') return null;
    const host = peerHostOf(config);
    const log = ServiceLog.forService(this.home.logs, name);
    try {
      const peer = this.peers.peerSide(host);
      const theirs = await withTimeout(peer.config(name), contactTimeoutMs(), host);
      if (!theirs) throw new Error(`${host} has no copy of auto-sync:${name}`);
      if (theirs.epoch !== config.epoch) throw new Error(`${host} holds auto-sync:${name} at epoch ${theirs.epoch}, not ${config.epoch}`);
      await peer.putConfig(findProperty(key).set!(theirs, value));
      log.write(`Property ${key} copied to ${host}`);
      return null;
    } catch (error) {
      const why = `${key} was set here only (${(error as Error).message}); set it on ${host} too once it answers`;
      log.write(`WARNING: ${why}`);
      return why;
    }
  }

  /** orphans of a service on this appliance's copy */
  async orphans(name: string): Promise<OrphanView[]> {
    const here = await this.sideOf(localEndpoint(this.autoSync.config(name)));
    return listOrphans(name, here.driver, here.dataset);
  }

  async removeOrphan(name: string, snapshot: string): Promise<void> {
    const config = this.autoSync.config(name);
    const here = await this.sideOf(localEndpoint(config));
    await destroyOrphan(name, here.driver, here.dataset, snapshot, config.recursive);
    ServiceLog.forService(this.home.logs, name).write(`Orphan ${here.dataset}@${snapshot} destroyed by the operator`);
  }
}

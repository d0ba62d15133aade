/**
 * Reverse-direction (DESIGN.md, "Roles, epochs and reverse-direction"; the
 * NexentaStor "Auto-Sync in reverse" document): enabling it (the service
 * config copied to the peer, non-master there), and the four cases of
 * `setup auto-sync :NAME reverse-direction`:
 *
 *   1. master, peer up: unmount the source, sync the last delta, verify,
 *      swap source and destination, hand the master role to the peer at
 *      epoch+1, mount on the peer.
 *   2. master, peer down: refused.
 *   3. non-master, peer up: the same hand-over, driven from this side.
 *   4. non-master, peer down (disaster recovery): after confirmation, this
 *      appliance becomes master at epoch+1 and mounts its copy writable.
 *      The old master, back, demotes itself on contact (epochs.ts) and keeps
 *      what it wrote since the last replication as an orphan.
 *
 * Write order of a hand-over: the peer's config first, then ours. A crash
 * between the two writes leaves the configs at different epochs; the higher
 * one is the truth and names exactly one master, and the other appliance
 * takes it (epochs.ts) on contact, before doing anything else, at the start
 * of a run or in the daemon's tick. In case 1 that is: peer master at e+1,
 * we still master at e, our source unmounted; our next run (or tick)
 * contacts the peer first and demotes us; if it cannot reach the peer, it
 * cannot send to it either. In case 3: the peer non-master at e+1, we
 * non-master at e; on contact we take its view, which makes us the master.
 */
import type { Services } from '../index.js';
import type { Driver } from '../storage/driver.js';
import { parseDataset } from '../datasets.js';
import { ServiceLog } from '../service-log.js';
import type { AutoSyncConfig, Endpoint } from './model.js';
import { directionOf } from './model.js';
import { bracket, checkOnContact, flip, localEndpoint, peerHostOf, rd, remoteEndpoint, toPeerView, contactTimeoutMs, type ContactDeps } from './epochs.js';
import { destroyOrphan, listOrphans, type OrphanView } from './orphans.js';

export type ReverseCase = 'master-up' | 'master-down' | 'non-master-up' | 'disaster-recovery';

export function contactDeps(services: Services): ContactDeps {
  return {
    store: services.autoSync.store,
    log: (name) => ServiceLog.forService(services.home.logs, name),
    side: (endpoint) => sideOf(services, endpoint),
    peer: (host) => services.peers.peerSide(host),
    timeoutMs: contactTimeoutMs(),
  };
}

export async function sideOf(services: Services, endpoint: Endpoint): Promise<{ driver: Driver; dataset: string }> {
  const ref = parseDataset(endpoint.dataset);
  if (endpoint.host === 'localhost') return { driver: await services.storage.usable(ref.driver), dataset: ref.name };
  return { driver: (await services.peers.side(endpoint.host, ref.driver)).driver, dataset: ref.name };
}

function checkReversible(config: AutoSyncConfig): void {
  if (config.direction === 'local-to-local') throw new Error(`auto-sync:${config.name} is local-to-local: reverse-direction needs a service between two appliances.`);
  const expected = config.role === 'master' ? 'local-to-remote' : 'remote-to-local';
  if (config.direction !== expected) {
    throw new Error(`auto-sync:${config.name} is ${config.direction} on its ${config.role} appliance: currently only local-to-remote services (run from their source) support reverse-direction. Create it on the source appliance with --to-host.`);
  }
}

/**
 * Turn reverse capability on: the config is copied to the peer, non-master
 * there and master here, at the same epoch. The peer must be up.
 */
export async function enableReverse(services: Services, name: string): Promise<AutoSyncConfig> {
  const config = services.autoSync.config(name);
  checkReversible({ ...config, role: 'master' });
  const host = peerHostOf(config);
  const next: AutoSyncConfig = { ...config, reverseCapable: true, role: 'master' };
  const peer = services.peers.peerSide(host);
  const theirs = await peer.config(name);
  if (theirs && theirs.epoch > config.epoch) throw new Error(`${host} already holds auto-sync:${name} at a newer epoch (${theirs.epoch}); run the service here once so that it takes that view.`);
  await peer.putConfig(toPeerView(next, services.appliance.id));
  await services.autoSync.store.update(name, () => next);
  ServiceLog.forService(services.home.logs, name).write(`Reverse-direction enabled: the configuration of auto-sync:${name} is kept on ${host} too (non-master there), epoch ${next.epoch}`);
  return next;
}

/** is the peer up, and the epoch rule applied; then which of the four cases this is */
export async function reverseCase(services: Services, name: string): Promise<{ case: ReverseCase; config: AutoSyncConfig }> {
  const deps = contactDeps(services);
  const log = deps.log(name);
  let config = services.autoSync.config(name);
  if (!config.reverseCapable) throw new Error(`Reverse-direction feature is currently disabled for auto-sync:${name}.`);
  log.write(rd(`working with fmri: auto-sync:${name}`));
  const outcome = await checkOnContact(name, deps);
  const up = outcome !== 'unreachable';
  log.write(rd(`remote appliance: ${up ? 'alive' : 'down'}`));
  if (outcome === 'split-brain') throw new Error(services.autoSync.config(name).maintenance!);
  config = services.autoSync.config(name);
  checkReversible(config);
  const c: ReverseCase = config.role === 'master' ? (up ? 'master-up' : 'master-down') : up ? 'non-master-up' : 'disaster-recovery';
  return { case: c, config };
}

export interface ReverseResult {
  case: ReverseCase;
  config: AutoSyncConfig;
  message: string;
}

/**
 * `setup auto-sync :NAME reverse-direction`. `confirmDr` is asked only in
 * the disaster-recovery case, after the warning it is given.
 */
export async function reverseDirection(services: Services, name: string, confirmDr: (warning: string, question: string) => Promise<boolean>): Promise<ReverseResult | null> {
  const { case: c, config } = await reverseCase(services, name);
  const log = ServiceLog.forService(services.home.logs, name);
  const host = peerHostOf(config);
  switch (c) {
    case 'master-down':
      log.write(rd('L2R, master, remote_down. Refused'));
      throw new Error(`The other appliance of auto-sync:${name} (${host}) is down: reverse-direction on the master needs it up, to sync the last delta and hand it the master role. Nothing was changed; this appliance stays master and its copy stays writable. Bring ${host} up (see 'show network ssh-bindings'), then run this again.`);
    case 'master-up':
    case 'non-master-up':
      return handOver(services, config, c);
    case 'disaster-recovery': {
      const where = `${localEndpoint(config).dataset} on ${host}`;
      const warning = `IMPORTANT! You are about to reverse direction of 'auto-sync:${name}' from non-master appliance. If master appliance is up and running well, please run this command from there. If you have disaster recovery scenario, note that changes made on the master appliance since the last successful replication are NOT here: they WILL BE KEPT on the master, as an orphan snapshot of ${where}, when it comes back and becomes non-master ('show auto-sync :${name} orphans' there). BE SURE YOU AWARE OF CONSEQUENCES`;
      if (!(await confirmDr(warning, `Proceed reversing 'auto-sync:${name}'?`))) return null;
      return disasterRecovery(services, config);
    }
  }
}

async function handOver(services: Services, config: AutoSyncConfig, c: 'master-up' | 'non-master-up'): Promise<ReverseResult> {
  const name = config.name;
  const log = ServiceLog.forService(services.home.logs, name);
  const host = peerHostOf(config);
  const fromMaster = c === 'master-up';
  log.write(rd(fromMaster ? 'L2R, master, remote_up.' : 'R2L, non-master, remote_up.'));
  const src = await sideOf(services, config.source);
  const dst = await sideOf(services, config.destination);
  log.write(rd('Unmounting master copy of a folder'));
  await src.driver.unmount(src.dataset);
  let marker: string;
  try {
    log.write(rd('Syncing last delta before changing direction'));
    const result = await services.autoSync.run(name, {}, !fromMaster);
    marker = result.marker;
    // verify: the destination holds the marker, with its identity, and the (unmounted) source did not move since
    const sent = (await src.driver.listSnapshots(src.dataset)).find((s) => s.name === marker);
    const got = (await dst.driver.listSnapshots(dst.dataset)).find((s) => s.name === marker);
    if (!sent || !got || sent.id !== got.id) throw new Error(`The destination does not hold ${marker} as sent; the direction was not changed.`);
    if (await src.driver.changedSince(src.dataset, marker)) throw new Error(`The source changed after the last delta ${marker}; the direction was not changed.`);
  } catch (error) {
    await src.driver.mount(src.dataset).catch(() => undefined);
    log.write(rd(`last delta failed, the master copy was mounted again: ${(error as Error).message}`));
    throw error;
  }
  const epoch = config.epoch + 1;
  const ours: AutoSyncConfig = { ...config, source: config.destination, destination: config.source, direction: directionOf(config.destination, config.source), role: flip(config.role), epoch, maintenance: null };
  // The peer's first (see the header): the higher epoch always names exactly one master.
  await services.peers.peerSide(host).putConfig(toPeerView(ours, services.appliance.id));
  await services.autoSync.store.update(name, () => ours);
  log.write(`Rereading configuration: auto-sync:${name} is now ${ours.role} here at epoch ${epoch}, ${ours.source.host}/${ours.source.dataset} => ${ours.destination.host}/${ours.destination.dataset}`);
  // the copy that is now the source is the one to work with
  const newSrc = await sideOf(services, ours.source);
  log.write(rd(fromMaster ? 'Mounting folder on remote side' : 'Mounting folder on this side'));
  await newSrc.driver.mount(newSrc.dataset);
  return { case: c, config: ours, message: `Reversed direction for 1 auto-sync instance: ${ours.source.host}/${ours.source.dataset} => ${ours.destination.host}/${ours.destination.dataset}, master ${fromMaster ? host : 'here'} (epoch ${epoch}), last delta ${marker}.` };
}

async function disasterRecovery(services: Services, config: AutoSyncConfig): Promise<ReverseResult> {
  const name = config.name;
  const log = ServiceLog.forService(services.home.logs, name);
  log.write(rd('DR scenario. We are non-master and remote is down'));
  const here = await sideOf(services, localEndpoint(config));
  // a receive cut short leaves the copy at its previous snapshot; finish or clean it up first
  for (const line of await here.driver.recover(here.dataset)) log.write(`Recovered ${here.dataset}: ${line}`);
  const epoch = config.epoch + 1;
  const ours: AutoSyncConfig = { ...config, source: localEndpoint(config), destination: remoteEndpoint(config), direction: 'local-to-remote', role: 'master', epoch, maintenance: null };
  await services.autoSync.store.update(name, () => ours);
  log.write(bracket('Rereading configuration.'));
  await here.driver.mount(here.dataset);
  log.write(`auto-sync:${name} is master here at epoch ${epoch}; ${here.dataset} is mounted. When ${peerHostOf(config)} comes back it becomes non-master and data flows into it.`);
  return { case: 'disaster-recovery', config: ours, message: 'Reversed direction for 1 auto-sync instance' };
}

/** orphans of a service on this appliance's copy */
export async function orphans(services: Services, name: string): Promise<OrphanView[]> {
  const here = await sideOf(services, localEndpoint(services.autoSync.config(name)));
  return listOrphans(name, here.driver, here.dataset);
}

export async function removeOrphan(services: Services, name: string, snapshot: string): Promise<void> {
  const config = services.autoSync.config(name);
  const here = await sideOf(services, localEndpoint(config));
  await destroyOrphan(name, here.driver, here.dataset, snapshot, config.recursive);
  ServiceLog.forService(services.home.logs, name).write(`Orphan ${here.dataset}@${snapshot} destroyed by the operator`);
}

/** the epoch rule for the daemon's tick: at most one look per service per interval */
const lastLook = new Map<string, number>();
export function contactInBackground(services: Services, config: AutoSyncConfig, now = Date.now(), everyMs = 30_000): void {
  if (!config.reverseCapable || config.direction === 'local-to-local') return;
  const key = `${services.home.root}:${config.name}`;
  if (now - (lastLook.get(key) ?? 0) < everyMs) return;
  lastLook.set(key, now);
  void services.autoSync.contact(config.name).catch(() => undefined);
}


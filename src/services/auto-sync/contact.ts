/**
 * The epoch rule on contact with the peer (roles.ts decides; this does):
 * at the start of every run (run.ts, `beforeRun`), in the daemon's tick and
 * before a reverse-direction. A peer that does not answer within
 * `contactTimeoutMs` counts as down; one that answers and refuses does not
 * (PeerRefused).
 *
 * When the demoted appliance held the source (disaster recovery, then
 * failback), whatever it wrote after the last common snapshot is kept as an
 * orphan snapshot (orphans.ts) before it rolls back to that snapshot; it is
 * never destroyed without `destroy auto-sync :NAME orphan SNAPSHOT`. What is
 * rolled back and kept is always the copy that stops being the source.
 *
 * A hand-over a crash interrupted (handover-journal.ts) is settled first, on
 * the next contact: finished when an epoch moved past it, undone when none did.
 */
import type { ServiceLog } from '../service-log.js';
import type { Driver, SnapshotInfo } from '../storage/driver.js';
import { epochRule, settleHandOverRule, type RoleView } from '../roles.js';
import type { AutoSyncConfig, Endpoint } from './model.js';
import { fromPeerView, holdsSource, localEndpoint, peerHostOf, remoteEndpoint } from './endpoints.js';
import { newestCommon } from './markers.js';
import { isOrphanOf, keepOrphan } from './orphans.js';
import type { ServiceStore } from './store.js';
import { HandOverJournal, type HandOverEntry } from './handover-journal.js';
import { buries, type Tombstone } from './tombstones.js';
import { describeMaintenance, maintenance } from './maintenance.js';

/** what the peer is asked about a service (RemotePeerSide has these) */
export interface PeerConfigSide {
  config(service: string): Promise<AutoSyncConfig | null>;
  putConfig(config: AutoSyncConfig): Promise<void>;
  /** the peer's tombstone of a service it destroyed (tombstones.ts), or null */
  tombstone?(service: string): Promise<Tombstone | null>;
}

export interface ContactDeps {
  store: ServiceStore;
  log(name: string): ServiceLog;
  /** the driver and driver-local dataset of an endpoint, here or on the peer */
  side(endpoint: Endpoint): Promise<{ driver: Driver; dataset: string }>;
  peer(host: string): PeerConfigSide;
  /** hand-overs in flight, or left behind by a crash */
  journal: HandOverJournal;
  /** how long a peer may take to answer before it counts as down */
  timeoutMs?: number;
  /** remove this appliance's copy of a service the peer destroyed (its markers released, its data kept) */
  forget?(name: string, why: string): Promise<void>;
}

/** a reverse-direction log line (ServiceLog brackets every line, as NMC does) */
export const rd = (text: string) => `Reverse-direction: ${text}`;

/** mount a copy that is not mounted (a missing one is left alone) */
export async function mountIfNot(side: { driver: Driver; dataset: string }): Promise<void> {
  const info = await side.driver.getDataset(side.dataset);
  if (info && !info.mounted) await side.driver.mount(side.dataset);
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${Math.round(ms / 1000)} sec.`)), ms);
      timer.unref();
    }),
  ]);
}

/**
 * The peer answered, or this appliance knows it would, but the two are not
 * bound both ways (or the key, host key or protocol is refused): it is not
 * down, so nothing may treat it as down (disaster recovery).
 */
export class PeerRefused extends Error {
  constructor(
    readonly host: string,
    readonly code: string,
    cause: string,
  ) {
    super(
      code === 'not-bound'
        ? `This appliance cannot ask ${host} whether it is up: ${cause} Until both appliances are bound to each other, ${host} does not count as down.`
        : code === 'unbound'
          ? `${host} does not know this appliance: ${cause.replace(/^The appliance \S+ refused this one: /, '')} It is up, so it does not count as down.`
          : `${host} is up but refused this appliance: ${cause} It does not count as down.`,
    );
    this.name = 'PeerRefused';
  }
}

/** PeerError codes (src/services/peer/transport.ts) that say the peer is there, only not willing or not bound */
/** PeerError codes (src/services/peer/transport.ts) that say the peer is there, only not willing or not bound */
export const NOT_DOWN: ReadonlySet<string> = new Set(['not-bound', 'unbound', 'identity', 'host-key', 'auth', 'no-key', 'protocol']);

/** the peer's copy of the service, or null when it cannot be reached (or has none); throws PeerRefused when it is not down */
export async function peerConfig(deps: ContactDeps, config: AutoSyncConfig): Promise<{ reachable: boolean; config: AutoSyncConfig | null }> {
  const host = peerHostOf(config);
  try {
    const c = await withTimeout(deps.peer(host).config(config.name), deps.timeoutMs ?? 15_000, host);
    return { reachable: true, config: c };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && NOT_DOWN.has(code)) throw new PeerRefused(host, code, (error as Error).message);
    return { reachable: false, config: null };
  }
}

export type ContactOutcome = 'unreachable' | 'same' | 'demoted' | 'adopted' | 'split-brain' | 'peer-behind' | 'destroyed';

/**
 * The epoch rule, on contact with the peer. Returns what happened; throws
 * when preserving or rolling back fails (then nothing was adopted and the
 * next contact tries again), and PeerRefused when the peer is not down but
 * will not talk (not bound both ways, refused key).
 */
export async function checkOnContact(name: string, deps: ContactDeps): Promise<ContactOutcome> {
  const config = deps.store.get(name);
  if (!config?.reverseCapable || config.direction === 'local-to-local') return 'same';
  const host = peerHostOf(config);
  const seen = await peerConfig(deps, config);
  if (!seen.reachable) return 'unreachable';
  const journaled = deps.journal.get(name);
  if (journaled && journaled.pid !== process.pid) {
    // a hand-over another live process drives decides the roles; one a crash left is settled now
    return HandOverJournal.abandoned(journaled) ? settleHandOver(journaled, config, seen.config, deps) : 'same';
  }
  if (!seen.config) {
    // the peer destroyed the service (destroy auto-sync there, while this one was away): it goes here too
    const tomb = await deps
      .peer(host)
      .tombstone?.(name)
      .catch(() => null);
    if (!tomb || !buries(tomb, config) || !deps.forget) return 'same';
    await deps.forget(name, `auto-sync:${name} was destroyed on ${host} at ${tomb.destroyedAt} (epoch ${tomb.epoch}, ours ${config.epoch}); this copy goes too`);
    return 'destroyed';
  }
  const theirs = seen.config;
  const log = deps.log(name);
  const verdict = epochRule(roleView(config), roleView(theirs));
  switch (verdict.kind) {
    case 'adopt': {
      const adopted: AutoSyncConfig = { ...fromPeerView(theirs, host), enabled: config.enabled, maintenance: null };
      if (verdict.demote) {
        // Disaster recovery, then failback: the peer became master while we were away.
        log.write(rd('sync_configuration_with_remote_side() - DR case, rolling back to last synced state'));
        const started = Date.now();
        const synced = await keepAndRollBack(name, localEndpoint(adopted), remoteEndpoint(adopted), adopted.recursive, deps, log);
        if (synced) log.write(`RECOVERED => ${host}:${remoteEndpoint(adopted).dataset}@${synced.name} OK (${Math.round((Date.now() - started) / 1000)} sec)`);
        await deps.store.update(name, () => adopted);
        log.write(`Epoch ${theirs.epoch} on ${host} is newer than ours (${config.epoch}): this appliance is now non-master of auto-sync:${name}; data flows from ${host}.`);
        return 'demoted';
      }
      await deps.store.update(name, () => adopted);
      log.write(`Epoch ${theirs.epoch} on ${host} is newer than ours (${config.epoch}): took its view, this appliance is ${adopted.role} of auto-sync:${name}.`);
      return 'adopted';
    }
    case 'peer-behind':
      // The peer was away when this appliance took over (disaster recovery) and
      // still writes to its copy as the source: sending into it would roll back
      // what it wrote. It must meet our epoch first and keep that as an orphan.
      log.write(`${host} still holds auto-sync:${name} as its source at epoch ${theirs.epoch} (ours: ${config.epoch}): nothing is sent to it until it has met the newer epoch and kept its own changes`);
      return 'peer-behind';
    case 'split-brain-if-both-wrote':
      return (await splitBrain(name, config, theirs, deps, log)) ? 'split-brain' : 'same';
    case 'same':
      return 'same';
  }
}

/** a config as the epoch rule sees it (each appliance's own view) */
const roleView = (c: AutoSyncConfig): RoleView => ({ epoch: c.epoch, role: c.role, holdsSource: holdsSource(c) });

/** snapshots of `mine` after `common` that the other side does not hold (orphans aside) */
function writtenAfter(mine: SnapshotInfo[], theirs: SnapshotInfo[], common: SnapshotInfo, service: string): SnapshotInfo[] {
  const at = mine.findIndex((s) => s.id === common.id);
  const ids = new Set(theirs.map((s) => s.id));
  return mine.slice(at + 1).filter((s) => !ids.has(s.id) && !isOrphanOf(service, s.name));
}

/**
 * Keep what the `loser` copy (here or on the peer) had written after the
 * last snapshot it shares with `winner` as an orphan snapshot (held), roll
 * it back to that snapshot and unmount it: it is now a destination. Returns
 * the common snapshot, or null when there is none (then nothing is touched;
 * the next run reports the broken chain).
 */
export async function keepAndRollBack(name: string, loser: Endpoint, winner: Endpoint, recursive: boolean, deps: ContactDeps, log: ServiceLog): Promise<SnapshotInfo | null> {
  const here = await deps.side(loser);
  const there = await deps.side(winner);
  const where = loser.host === 'localhost' ? '' : `${loser.host}:`;
  if (!(await here.driver.getDataset(here.dataset))) return null;
  const mine = await here.driver.listSnapshots(here.dataset);
  const theirs = (await there.driver.getDataset(there.dataset)) ? await there.driver.listSnapshots(there.dataset) : [];
  const common = newestCommon(theirs, mine);
  if (!common) {
    log.write(`WARNING: ${where}${here.dataset} has no snapshot in common with ${winner.host}:${there.dataset}; nothing was rolled back.`);
    return null;
  }
  const mineCommon = mine.find((s) => s.id === common.id)!;
  const after = writtenAfter(mine, theirs, mineCommon, name);
  const changed = (await here.driver.changedSince(here.dataset, mineCommon.name)) || after.length > 0;
  const kept = await keepOrphan(name, here.driver, here.dataset, new Date(), recursive, changed);
  if (kept.length) {
    const on = loser.host === 'localhost' ? 'here' : `on ${loser.host}`;
    const list = kept.map((o) => `${where}${o.dataset}@${o.snapshot}`).join(', ');
    log.write(
      `Kept the changes made ${on} since the last successful replication (@${mineCommon.name}) as ${list}${after.length ? ` (they include snapshot(s) ${after.map((s) => s.name).join(', ')})` : ''}: see 'show auto-sync :${name} orphans'${loser.host === 'localhost' ? '' : ` on ${loser.host}`}.`,
    );
  }
  await here.driver.rollback(here.dataset, mineCommon.name);
  await here.driver.unmount(here.dataset).catch((e: Error) => log.write(`WARNING: could not unmount ${where}${here.dataset}: ${e.message}`));
  return mineCommon;
}

/**
 * Same epoch, both master (or both holding the source): split brain when
 * both wrote after the last common snapshot. The service goes to
 * maintenance on both sides; nothing is rolled back: the operator picks the
 * winner (`setup auto-sync :NAME resolve-split-brain`, reverse.ts).
 */
async function splitBrain(name: string, ours: AutoSyncConfig, theirs: AutoSyncConfig, deps: ContactDeps, log: ServiceLog): Promise<boolean> {
  const here = await deps.side(localEndpoint(ours));
  const there = await deps.side(remoteEndpoint(ours));
  const mine = (await here.driver.getDataset(here.dataset)) ? await here.driver.listSnapshots(here.dataset) : [];
  const other = (await there.driver.getDataset(there.dataset)) ? await there.driver.listSnapshots(there.dataset) : [];
  const common = newestCommon(other, mine);
  const wrote = async (side: typeof here, snaps: SnapshotInfo[], others: SnapshotInfo[]) => {
    if (!common) return snaps.length > 0;
    const local = snaps.find((s) => s.id === common.id)!;
    return writtenAfter(snaps, others, local, name).length > 0 || (await side.driver.changedSince(side.dataset, local.name));
  };
  if (!(await wrote(here, mine, other)) || !(await wrote(there, other, mine))) return false;
  const reason = maintenance(
    'split-brain',
    name,
    `Split brain: both appliances are master of auto-sync:${name} at epoch ${ours.epoch} and both wrote after the last common snapshot${common ? ` @${common.name}` : ''}. Nothing was rolled back.`,
  );
  await deps.store.update(name, (c) => ({ ...c, maintenance: reason }));
  await deps
    .peer(peerHostOf(ours))
    .putConfig({ ...theirs, maintenance: reason })
    .catch(() => undefined);
  log.write(`ALERT: auto-sync:${name} put in maintenance: ${describeMaintenance(reason)}`);
  return true;
}

/** how long a peer may take to answer a contact before it counts as down */
export function contactTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.SYNCSH_PEER_CONNECT_TIMEOUT_MS);
  return (Number.isFinite(v) && v > 0 ? v : 10_000) + 5_000;
}

/** a store whose copy of the service says master: the hand-over's last delta, run from the non-master */
export function asMasterStore(store: ServiceStore): ServiceStore {
  const wrapped = Object.create(store) as ServiceStore;
  wrapped.get = (name: string) => {
    const c = store.get(name);
    return c ? { ...c, role: 'master' } : c;
  };
  return wrapped;
}

/**
 * A hand-over whose process died (handover-journal.ts), met on contact. The
 * epoch in force decides: ours moved past the journal's (we committed), or
 * the peer's did (it committed, we take its view, as the epoch rule would,
 * minus a rollback: the old source was unmounted and did not change), or
 * none did (nothing committed: the hand-over is undone). Either way the
 * source of the config in force is mounted and the journal removed.
 */
async function settleHandOver(entry: HandOverEntry, ours: AutoSyncConfig, theirs: AutoSyncConfig | null, deps: ContactDeps): Promise<ContactOutcome> {
  const name = entry.service;
  const log = deps.log(name);
  const host = peerHostOf(ours);
  let inForce = ours;
  let outcome: ContactOutcome = 'same';
  let what: string;
  switch (settleHandOverRule(entry.epoch, ours.epoch, theirs?.epoch ?? null)) {
    case 'here':
      what = `it had committed here (epoch ${ours.epoch}): finishing it`;
      break;
    case 'peer':
      inForce = { ...fromPeerView(theirs!, host), enabled: ours.enabled, maintenance: null };
      await deps.store.update(name, () => inForce);
      outcome = 'adopted';
      what = `${host} had committed it (epoch ${theirs!.epoch}): took its view, this appliance is ${inForce.role}`;
      break;
    case 'undo':
      what = `neither appliance had committed it (epoch ${ours.epoch}): undoing it, this appliance stays ${ours.role}`;
      break;
  }
  log.write(rd(`interrupted hand-over found (started ${entry.startedAt} by process ${entry.pid}); ${what}`));
  await mountIfNot(await deps.side(inForce.source));
  deps.journal.clear(name);
  log.write(rd(`Mounted ${inForce.source.host === 'localhost' ? 'here' : `on ${inForce.source.host}`}: ${inForce.source.dataset} is the source again; auto-sync:${name} is ${inForce.role} here at epoch ${inForce.epoch}`));
  return outcome;
}

/**
 * The epoch rule before a run: as checkOnContact, and a peer that is behind
 * and still holds its copy as the source refuses the run (nothing is sent
 * into a copy with writes that are not kept yet), whatever `force` says.
 * A peer that refuses this appliance counts as unreachable for a run (which
 * then fails on that refusal), unless `refusedThrows` (reverse-direction:
 * a refusing peer is no disaster).
 */
export async function contactBeforeRun(name: string, deps: ContactDeps, opts: { refusedThrows?: boolean } = {}): Promise<ContactOutcome> {
  const before = deps.store.get(name);
  const host = before && before.direction !== 'local-to-local' ? peerHostOf(before) : 'the other appliance';
  let outcome: ContactOutcome;
  try {
    outcome = await checkOnContact(name, deps);
  } catch (error) {
    // a run goes on to fail on the refusal itself, recorded in both trails
    if (error instanceof PeerRefused && !opts.refusedThrows) return 'unreachable';
    throw error;
  }
  if (outcome === 'destroyed') throw new Error(`auto-sync:${name} was destroyed on ${host}: its copy on this appliance was removed too (data and snapshots kept). Nothing was run.`);
  if (outcome === 'peer-behind') {
    throw new Error(
      `${host} still holds auto-sync:${name} as its source at an older epoch (it was away when this appliance took over): nothing was sent. It becomes the destination, keeping what it wrote as an orphan, at its next contact: its daemon does it within a minute, or run 'run auto-sync :${name}' on ${host}.`,
    );
  }
  return outcome;
}

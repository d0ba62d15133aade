/**
 * The auto-sync service layer: what the commands call. It decides; the
 * drivers do; the shell renders what it returns.
 */
import { codecUnavailable, parseCodec, type Codec } from '../wire/codecs.js';
import { parseRate } from '../wire/rate-limit.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { parseDataset, formatDataset, type DatasetRef } from '../datasets.js';
import { ServiceLog } from '../service-log.js';
import type { Home } from '../home.js';
import type { Storage } from '../storage/registry.js';
import { ServiceStore } from './store.js';
import { endpointLabel, nextInstanceName } from './naming.js';
import { describe as describeSchedule } from '../schedule.js';
import { directionOf, EMPTY_RUN_STATE, type AutoSyncConfig, type Direction, type ServiceSchedule, type Endpoint, type RunState, type ScheduleType, type ServiceState } from './model.js';
import { excludesFor, findProperty, parseKind, PROPERTIES } from './properties.js';
// run.ts (and the send and receive helpers under it) loads with the first run: listing services does not need it
import type { PeerSide, Progress, RunOptions, RunResult, Side } from './run.js';
import { runLockFile } from './run-lock.js';
import type { Driver, DriverName } from '../storage/driver.js';
import { History, type HistoryEntry } from '../history.js';
import { healthOf, type Health, type HealthReport } from './status.js';
import path from 'node:path';
import { readdir } from 'node:fs/promises';
import { isMarkerOf, newestCommon } from './markers.js';
import { applyPrune, listSide, planPrune, type SidePlan } from './prune.js';
import { parseRetention, storedRetention } from './retention.js';
import { processAlive, tryLock, LockBusyError, type LockOwner } from '../lock.js';
import { HandOverJournal } from './handover-journal.js';
import { asMasterStore, checkOnContact, contactBeforeRun, contactTimeoutMs, withTimeout, type ContactDeps, type ContactOutcome, type PeerConfigSide } from './contact.js';
import { localEndpoint, peerHostOf } from './endpoints.js';
import { TombstoneStore, tombstoneOf, type Tombstone } from './tombstones.js';
import { IncomingStore } from './incoming.js';
import { describeMaintenance } from './maintenance.js';

// What the commands use besides the services, so that they import from this one module.
export { EDITABLE_KEYS, PROPERTIES, parseCount, parseScheduleType, parseYesNo } from './properties.js';
export { RETENTION_HELP, parseRetention, storedRetention } from './retention.js';
export type { SidePlan } from './prune.js';
export { isOrphanOf } from './orphans.js';
export { endpointLabel, localEndpoint, peerHostOf } from './endpoints.js';
export { SCHEDULE_TYPES, type AutoSyncConfig, type ScheduleType } from './model.js';
export type { Confirm, ReverseResult, Winner } from './reverse.js';

/** How auto-sync reaches other appliances; src/services/peer implements it. */
export interface PeerResolver {
  /** null when `host` (an appliance id or address) is bound, else why not and how to bind it */
  checkBound(host: string): string | null;
  /** how a bound peer is reached: over SSH, or on this machine (local-bind) */
  transportOf?(host: string): 'ssh' | 'local' | null;
  /** null when a bound peer can run `codec` (its end of the wire), else its sentence saying why not */
  codecUnavailable?(host: string, codec: Codec): Promise<string | null>;
  /** the peer's driver, proxied over the agent protocol, and its trail/state writer */
  side(host: string, driver: DriverName): Promise<{ driver: Driver; peer: PeerSide }>;
  /** the peer's copy of a service's config (reverse-direction, contact.ts), its tombstones and its incoming services */
  peerSide?(host: string): PeerConfigSide & {
    removeConfig(service: string, tombstone: Tombstone | null): Promise<{ removed: boolean; kept: string | null }>;
    putIncoming(config: AutoSyncConfig): Promise<void>;
  };
}

/** a codec this appliance cannot use is refused when it is chosen, not at a run */
async function requireCodec(codec: Codec): Promise<void> {
  const why = await codecUnavailable(codec);
  if (why) throw new Error(why);
}

/** the rate limit and codec fields of a new config (absent when they are the defaults' none) */
function wireOptions(direction: Direction, rateLimit: number | string | undefined, compress: Codec): Pick<AutoSyncConfig, 'rateLimit' | 'compress'> {
  const rate = typeof rateLimit === 'string' ? parseRate(rateLimit, 'rate-limit') : (rateLimit ?? 0);
  if (!Number.isInteger(rate) || rate < 0) throw new Error(`The rate limit must be a whole number of bytes per second, not ${rate}.`);
  return { ...(rate ? { rateLimit: rate } : {}), ...(compress !== 'none' || direction !== 'local-to-local' ? { compress } : {}) };
}

export interface CreateRequest {
  fromHost?: string;
  fromFs: string;
  toHost?: string;
  toFs: string;
  type?: ScheduleType;
  period?: number;
  /** a five-field cron expression, instead of type and period */
  cron?: string;
  /** a single run at this date-time, instead of a repeating schedule */
  onceAt?: string;
  /** a count or a grid (retention.ts) */
  keepSrc?: number | string;
  keepDst?: number | string;
  /** gitignore-style patterns left out of the fs driver's snapshots */
  exclude?: string[];
  /** bytes per second, or a rate as typed (20M); 0: no limit */
  rateLimit?: number | string;
  /** the wire's codec; default none locally, zstd (where installed) to or from another appliance */
  compress?: string;
  recursive?: boolean;
  reverseCapable?: boolean;
  maxDelay?: number;
  comment?: string;
}

export interface ServiceView {
  config: AutoSyncConfig;
  state: ServiceState;
  run: RunState;
  status: Health;
  /** the run in progress, if any */
  runningSince: string | null;
  /** a service of another appliance received here (incoming.ts): that appliance, else null (or absent) */
  receivedFrom?: string | null;
}

/** what destroy did on the other appliance */
export interface DestroyedOnPeer {
  host: string;
  removed: boolean;
  /** why its copy stays, or that it is removed at the next contact */
  note: string | null;
}

export const DEFAULTS = { type: 'hour' as ScheduleType, period: 1, keepSrc: 3, keepDst: 3, maxDelay: 0 };

export class AutoSyncService {
  readonly store: ServiceStore;
  readonly tombstones: TombstoneStore;
  readonly incoming: IncomingStore;

  constructor(
    private readonly home: Home,
    private readonly storage: Storage,
    private readonly defaultDriver: DatasetRef['driver'] = 'fs',
    /** how other appliances are reached; without it, services are local-to-local only */
    private readonly peers: PeerResolver | null = null,
  ) {
    this.store = new ServiceStore(home);
    this.tombstones = new TombstoneStore(home);
    this.incoming = new IncomingStore(home);
  }

  names(): string[] {
    return this.store.names();
  }

  log(name: string): ServiceLog {
    this.lookup(name);
    return ServiceLog.forService(this.home.logs, name);
  }

  /** a service of this appliance; one only received here is read-only, and says so */
  config(name: string): AutoSyncConfig {
    const config = this.store.get(name);
    if (config) return config;
    const received = this.incoming.get(name);
    if (received) throw new Error(`auto-sync:${name} is received from ${received.source.host}, which runs it: it is read-only here ('show auto-sync :${name}', its 'history' and 'status' work). Change it on ${received.source.host}.`);
    throw new Error(`No auto-sync service named :${name}.`);
  }

  /** a service of this appliance, or one received here (for the read-only views) */
  private lookup(name: string): AutoSyncConfig {
    const received = this.store.get(name) ? null : this.incoming.get(name);
    return received ?? this.config(name);
  }

  view(name: string): ServiceView {
    const config = this.lookup(name);
    const view = this.viewOf(config);
    return this.store.get(name) ? view : { ...view, receivedFrom: config.source.host };
  }

  /** services of other appliances that replicate into this one (incoming.ts), that have no namesake here */
  received(): ServiceView[] {
    const incoming = this.incoming.list();
    if (incoming.length === 0) return [];
    const states = this.store.runStates();
    const here = new Set(this.store.names());
    return incoming.filter((c) => !here.has(c.name)).map((c) => ({ ...this.viewOf(c, states[c.name] ?? { ...EMPTY_RUN_STATE }), receivedFrom: c.source.host }));
  }

  list(): ServiceView[] {
    const states = this.store.runStates();
    const locks = this.lockFiles();
    return this.store.list().map((c) => this.viewOf(c, states[c.name] ?? { ...EMPTY_RUN_STATE }, locks));
  }

  /** checks a dataset name for an endpoint and says what is wrong in a sentence */
  parseEndpoint(which: 'source' | 'destination', host: string | undefined, dataset: string): { endpoint: Endpoint; ref: DatasetRef } {
    const h = (host ?? 'localhost').trim() || 'localhost';
    if (h !== 'localhost') {
      const why = this.peers ? this.peers.checkBound(h) : `no appliance is bound to this one: bind it with 'setup network ssh-bind ${h}'`;
      if (why) throw new Error(`The ${which} host "${h}" is not a bound appliance (${why}), or use localhost.`);
    }
    const ref = parseDataset(dataset, this.defaultDriver);
    return { endpoint: { host: h, dataset: formatDataset(ref) }, ref };
  }

  /** Validate a request completely without changing anything; returns the config it would create. */
  /** the source endpoint, checked to exist */
  async checkSource(host: string | undefined, dataset: string): Promise<{ endpoint: Endpoint; ref: DatasetRef }> {
    const src = this.parseEndpoint('source', host, dataset);
    const { driver } = await this.side(src.endpoint);
    if (!(await driver.getDataset(src.ref.name))) {
      throw new Error(`The source dataset ${src.endpoint.dataset} does not exist on ${src.endpoint.host}: create it with 'create folder ${src.endpoint.dataset}'.`);
    }
    return src;
  }

  async plan(req: CreateRequest): Promise<AutoSyncConfig> {
    return (await this.planned(req)).config;
  }

  /** the config a request would create, and what create's log says of the choices made for it */
  private async planned(req: CreateRequest): Promise<{ config: AutoSyncConfig; notes: string[] }> {
    const src = await this.checkSource(req.fromHost, req.fromFs);
    const dst = this.parseEndpoint('destination', req.toHost, req.toFs);
    if (src.ref.driver !== dst.ref.driver) {
      throw new Error(`The source is ${src.ref.driver} and the destination ${dst.ref.driver}: both ends of a service must use the same driver.`);
    }
    const sameHost = src.endpoint.host === dst.endpoint.host;
    if (sameHost && (src.ref.name === dst.ref.name || dst.ref.name.startsWith(`${src.ref.name}/`) || src.ref.name.startsWith(`${dst.ref.name}/`))) {
      throw new Error(`The destination ${dst.endpoint.dataset} must not be the source ${src.endpoint.dataset} or inside it, nor contain it.`);
    }
    for (const other of this.store.list()) {
      if (other.destination.host === dst.endpoint.host && other.destination.dataset === dst.endpoint.dataset) {
        throw new Error(`The destination ${dst.endpoint.dataset} already receives auto-sync:${other.name}; two services must not write to one dataset.`);
      }
    }
    await this.checkDestination(dst.endpoint, dst.ref, src.endpoint);
    const direction = directionOf(src.endpoint, dst.endpoint);
    if (req.reverseCapable && direction === 'local-to-local') {
      throw new Error('Reverse capability needs a service between two appliances; this one is local-to-local.');
    }
    const wire = await this.compressFor(direction, peerHostOf({ source: src.endpoint, destination: dst.endpoint }), req.compress);
    const count = (label: string, value: number | undefined, fallback: number, min: number) => {
      const v = value ?? fallback;
      if (!Number.isInteger(v) || v < min) throw new Error(`${label} must be a whole number of at least ${min}, not ${v}.`);
      return v;
    };
    const config: AutoSyncConfig = {
      name: nextInstanceName(src.ref, this.store.names()),
      source: src.endpoint,
      destination: dst.endpoint,
      direction,
      schedule: this.scheduleOf(req),
      keepSrc: storedRetention(parseRetention('keep-src', String(req.keepSrc ?? DEFAULTS.keepSrc))),
      keepDst: storedRetention(parseRetention('keep-dst', String(req.keepDst ?? DEFAULTS.keepDst))),
      recursive: this.recursiveFor(src.ref.driver, req.recursive),
      ...(req.exclude?.length ? { exclude: excludesFor(src.endpoint.dataset, req.exclude) } : {}),
      ...wireOptions(direction, req.rateLimit, wire.codec),
      reverseCapable: req.reverseCapable ?? false,
      maxDelay: count('max-delay', req.maxDelay, DEFAULTS.maxDelay, 0),
      comment: req.comment ?? '',
      force: false,
      enabled: true,
      role: 'master',
      epoch: 1,
      maintenance: null,
      createdAt: new Date().toISOString(),
    };
    return { config, notes: wire.note ? [wire.note] : [] };
  }

  /**
   * A destination is received into on the first run: it must not exist yet
   * (its parent must) or be an empty dataset with no snapshots. Anything
   * else would be overwritten, so it is refused here, before a service exists.
   */
  private async checkDestination(endpoint: Endpoint, ref: DatasetRef, source: Endpoint): Promise<void> {
    const { driver } = await this.side(endpoint);
    const existing = await driver.getDataset(ref.name);
    if (!existing) {
      const parent = ref.name.replace(/\/[^/]+$/, '');
      if (parent !== ref.name && parent !== '' && !(await driver.getDataset(parent))) {
        throw new Error(`The destination's parent ${ref.driver}:${parent} does not exist on ${endpoint.host}: create it first with 'create folder ${ref.driver}:${parent}'.`);
      }
      return;
    }
    const snapshots = await driver.listSnapshots(ref.name);
    const files = existing.mountpoint ? (await readdir(existing.mountpoint).catch(() => [])).length : 0;
    // A seed (a zvol made from an image exported by the source): it holds one of the source's snapshots, so the first run is incremental from it.
    if (existing.kind === 'volume' && snapshots.length) {
      const src = await this.side(source);
      const ids = new Set((await src.driver.listSnapshots(src.dataset)).map((s) => s.id));
      if (snapshots.every((s) => ids.has(s.id))) return;
    }
    if (snapshots.length || files) {
      throw new Error(`The destination ${endpoint.dataset} already holds data (${snapshots.length} snapshot(s), ${files} entries): the first sync would overwrite it. Choose a new dataset, or empty it first.`);
    }
  }

  /**
   * The codec a new service uses: the one asked for (refused if this appliance
   * lacks it), else none on this machine and zstd (level 1, all cores) to or
   * from another appliance where zstd is installed. Measured with
   * `npm run bench:compress` (fs driver over SSH, a veth pair): log text
   * crosses at 0.08 of its size (goal ≤ 0.4); random data went as fast as
   * with none, within the run-to-run spread of the machine (README). zstd
   * stores incompressible blocks as they are, so its cost there is a copy.
   */
  /**
   * none on this machine (local-to-local, or a local-bind peer: nothing
   * crosses a wire), zstd over SSH when both ends have it. A codec asked for
   * that either end lacks is refused here, naming the end; the default falls
   * back to none when the peer lacks zstd, and create's log says so (an
   * operator who asked for nothing gets a service that runs, not a refusal).
   */
  private async compressFor(direction: Direction, peer: string, wanted: string | undefined): Promise<{ codec: Codec; note?: string }> {
    const remote = this.crossesWire(direction, peer);
    if (wanted !== undefined) {
      const codec = parseCodec(wanted, 'compress');
      await requireCodec(codec);
      if (remote) await this.requirePeerCodec(peer, codec);
      return { codec };
    }
    if (!remote || (await codecUnavailable('zstd'))) return { codec: 'none' };
    const why = await this.peerCodecUnavailable(peer, 'zstd');
    return why ? { codec: 'none', note: `The wire is not compressed (compress none): ${why}` } : { codec: 'zstd' };
  }

  /** the service's bytes cross a wire to `peer` (not local-to-local, not a local-bind peer on this machine) */
  private crossesWire(direction: Direction, peer: string): boolean {
    return direction !== 'local-to-local' && this.peers?.transportOf?.(peer) !== 'local';
  }

  /** null when the peer can run `codec` on its end of the wire, else why not (an agent too old to answer counts as lacking it) */
  private async peerCodecUnavailable(peer: string, codec: Codec): Promise<string | null> {
    if (codec === 'none' || codec === 'gzip' || !this.peers?.codecUnavailable) return null;
    try {
      return await this.peers.codecUnavailable(peer, codec);
    } catch (error) {
      return `${peer} could not say whether it has ${codec} (${(error as Error).message}); upgrade syncsh there, or use gzip or none.`;
    }
  }

  private async requirePeerCodec(peer: string, codec: Codec): Promise<void> {
    const why = await this.peerCodecUnavailable(peer, codec);
    if (why) throw new Error(`compress ${codec} needs ${codec} at both ends of the wire: ${why}`);
  }

  /** child datasets are included by default, except on btrfs, whose send leaves nested subvolumes out */
  private recursiveFor(driver: DriverName, wanted: boolean | undefined): boolean {
    if (driver !== 'btrfs') return wanted ?? true;
    if (wanted) throw new Error('A btrfs service cannot be recursive: btrfs send leaves nested subvolumes out. Create one service per subvolume, with --recursive no.');
    return false;
  }

  private scheduleOf(req: CreateRequest): ServiceSchedule {
    const kinds = [req.cron !== undefined, req.onceAt !== undefined, req.type !== undefined || req.period !== undefined].filter(Boolean).length;
    if (kinds > 1) throw new Error('Give one schedule: --type and --period, or --cron, or --once-at.');
    if (req.cron !== undefined) return parseKind('cron', req.cron, 'cron');
    if (req.onceAt !== undefined) return parseKind('once-at', req.onceAt, 'onceAt');
    const period = req.period ?? DEFAULTS.period;
    if (!Number.isInteger(period) || period < 1) throw new Error(`The period must be a whole number of at least 1, not ${period}.`);
    return { type: req.type ?? DEFAULTS.type, period };
  }

  /** `note`: told what create's log says of a choice made for the operator (a default codec the peer cannot run) */
  async create(req: CreateRequest, note: (line: string) => void = () => undefined): Promise<AutoSyncConfig> {
    const { config: planned, notes } = await this.planned(req);
    const config = await this.store.add((existing) => ({ ...planned, name: nextInstanceName(parseDataset(planned.source.dataset), Object.keys(existing)) }));
    const log = ServiceLog.forService(this.home.logs, config.name);
    log.write(`Created auto-sync:${config.name}: ${endpointLabel(config.source)} => ${endpointLabel(config.destination)}, ${describeSchedule(config.schedule)}`);
    for (const line of notes) {
      log.write(line);
      note(line);
    }
    // the destination appliance lists it as received (a reverse-capable one gets the whole config instead)
    if (config.direction === 'local-to-remote' && !config.reverseCapable && this.peers?.peerSide) {
      await withTimeout(this.peers.peerSide(config.destination.host).putIncoming(config), contactTimeoutMs(), config.destination.host).catch((error: Error) =>
        log.write(`WARNING: ${config.destination.host} was not told of auto-sync:${config.name} (${error.message}); it does not list it as received`),
      );
    }
    return config;
  }

  getProperty(name: string, key?: string): { key: string; value: string; description: string; editable: boolean }[] {
    const config = this.lookup(name);
    const specs = key ? [findProperty(key)] : PROPERTIES;
    return specs.map((p) => ({ key: p.key, value: p.get(config), description: p.description, editable: Boolean(p.set) }));
  }

  async setProperty(name: string, key: string, value: string): Promise<AutoSyncConfig> {
    const spec = findProperty(key);
    if (!spec.set) throw new Error(`The property ${key} is read-only: ${spec.description}.`);
    const wanted = spec.set(this.config(name), value);
    if (key === 'compress') {
      const codec = wanted.compress ?? 'none';
      await requireCodec(codec);
      const current = this.config(name);
      const peer = peerHostOf(current);
      if (this.crossesWire(current.direction, peer)) await this.requirePeerCodec(peer, codec);
    }
    const next = await this.store.update(name, (c) => spec.set!(c, value));
    this.log(name).write(`Property ${key} set to "${spec.get(next)}"`);
    return next;
  }

  async setEnabled(name: string, enabled: boolean): Promise<AutoSyncConfig> {
    const before = this.config(name);
    if (enabled && before.maintenance?.kind === 'split-brain') {
      throw new Error(`auto-sync:${name} is in maintenance for split brain, which enable does not clear: ${describeMaintenance(before.maintenance)}`);
    }
    const next = await this.store.update(name, (c) => ({ ...c, enabled, maintenance: enabled ? null : c.maintenance }));
    const cleared = enabled && before.maintenance ? ` (maintenance cleared: ${before.maintenance.reason})` : '';
    this.log(name).write(`${enabled ? 'Enabled' : 'Disabled'} auto-sync:${name}${cleared}`);
    return next;
  }

  /** A run marked in flight whose process is gone is recorded as failed (interrupted); false when there is none or a run holds the service. */
  async recoverInterrupted(name: string, now = Date.now()): Promise<boolean> {
    let lock;
    try {
      lock = tryLock(runLockFile(this.home.locks, name), `auto-sync:${name}`, 'recording an interrupted run');
    } catch (error) {
      if (error instanceof LockBusyError) return false;
      throw error;
    }
    try {
      const { recordInterrupted } = await import('./run.js');
      return await recordInterrupted(name, { store: this.store, log: ServiceLog.forService(this.home.logs, name), sendHistory: this.history(name, 'send') }, now);
    } finally {
      lock.release();
    }
  }

  /** `handOver`: the last delta of a reverse-direction hand-over (reverse.ts), run as the master's, after the contact it made */
  run(name: string, opts: RunOptions = {}, handOver = false): Promise<RunResult> {
    this.config(name);
    const contact = this.contactDeps();
    const deps = {
      store: handOver ? asMasterStore(this.store) : this.store,
      beforeRun: contact && !handOver ? () => contactBeforeRun(name, contact) : undefined,
      log: ServiceLog.forService(this.home.logs, name),
      lockDir: this.home.locks,
      sendHistory: this.history(name, 'send'),
      receiveHistory: this.history(name, 'receive'),
      progressFile: this.progressFile(name),
      resolveSide: (endpoint: Endpoint) => this.side(endpoint),
    };
    return import('./run.js').then(({ runService }) => runService(name, deps, opts));
  }

  /**
   * Forget the service; its markers and data stay, released so they can be
   * destroyed by hand. A reverse-capable one goes on the other appliance
   * too: a tombstone (tombstones.ts) is written first, so that the other
   * copy, if it cannot be removed now, goes at the next contact and never
   * brings the service back. The destination of a plain one forgets it as
   * received.
   */
  async destroy(name: string): Promise<{ keptMarkers: number; peer: DestroyedOnPeer | null }> {
    const config = this.config(name);
    const owner = this.runOwner(name);
    if (owner) throw new Error(`auto-sync:${name} is running (process ${owner.pid} since ${owner.since}); wait for it to end or disable it first.`);
    const host = config.direction === 'local-to-local' ? null : peerHostOf(config);
    const tomb = host && config.reverseCapable ? tombstoneOf(config, host) : null;
    if (tomb) await this.tombstones.put(tomb);
    const kept = await this.releaseMarkers(name, [config.source, config.destination]);
    await this.store.remove(name);
    const log = ServiceLog.forService(this.home.logs, name);
    log.write(`Destroyed auto-sync:${name}; ${kept} marker snapshot(s) kept`);
    const told = tomb || config.direction === 'local-to-remote';
    const peer = host && told ? await this.destroyOnPeer(name, host, tomb) : null;
    if (peer?.note) log.write(`${peer.removed ? '' : 'WARNING: '}${peer.note}`);
    return { keptMarkers: kept, peer };
  }

  private async destroyOnPeer(name: string, host: string, tomb: Tombstone | null): Promise<DestroyedOnPeer> {
    try {
      if (!this.peers?.peerSide) throw new Error('no appliance is bound to this one');
      const r = await withTimeout(this.peers.peerSide(host).removeConfig(name, tomb), contactTimeoutMs(), host);
      if (tomb && !r.kept) await this.tombstones.put({ ...tomb, peerDone: true });
      return { host, removed: r.removed, note: r.kept ? `${host} kept its copy: ${r.kept}.` : null };
    } catch (error) {
      const why = (error as Error).message;
      return {
        host,
        removed: false,
        note: tomb
          ? `${host} cannot be reached (${why}): its copy of auto-sync:${name} is removed at its next contact with this appliance, and cannot bring the service back.`
          : `${host} cannot be reached (${why}): it still lists auto-sync:${name} as received.`,
      };
    }
  }

  /** this appliance's copy goes (the other appliance destroyed the service): markers released, data kept */
  async forgetCopy(name: string, why: string): Promise<void> {
    const config = this.store.get(name);
    if (!config) return;
    const kept = await this.releaseMarkers(name, [localEndpoint(config)]);
    await this.store.remove(name);
    ServiceLog.forService(this.home.logs, name).write(`Destroyed auto-sync:${name}: ${why}; ${kept} marker snapshot(s) kept`);
  }

  /** release the holds on a service's markers on these endpoints; a side that cannot be reached keeps its markers held */
  private async releaseMarkers(name: string, endpoints: Endpoint[]): Promise<number> {
    let kept = 0;
    for (const endpoint of endpoints) {
      try {
        const side = await this.side(endpoint);
        if (!(await side.driver.getDataset(side.dataset))) continue;
        for (const snap of await side.driver.listSnapshots(side.dataset)) {
          if (!isMarkerOf(name, snap.name)) continue;
          kept++;
          if (snap.held) await side.driver.holdSnapshot(side.dataset, snap.name, false);
        }
      } catch {
        /* a side we cannot reach keeps its markers held */
      }
    }
    return kept;
  }

  /**
   * What each side's retention keeps and what the next prune removes
   * (`show auto-sync :NAME snapshots`); nothing is changed.
   */
  async retention(name: string, now = Date.now()): Promise<{ source: SidePlan; destination: SidePlan }> {
    const config = this.config(name);
    const [src, dst] = [await this.side(config.source), await this.side(config.destination)];
    const [srcSnaps, dstSnaps] = [await listSide(src), await listSide(dst)];
    const common = newestCommon(srcSnaps, dstSnaps);
    const dstCommon = common ? (dstSnaps.find((s) => s.id === common.id)?.name ?? null) : null;
    return {
      source: await planPrune(name, src, config.keepSrc, common?.name ?? null, now, srcSnaps),
      destination: await planPrune(name, dst, config.keepDst, dstCommon, now, dstSnaps),
    };
  }

  /**
   * `run auto-sync :NAME prune [--dry-run]`: thin both sides now, as a run
   * would after its transfer; under the run lock, on the master only.
   */
  async prune(name: string, opts: { dryRun?: boolean; now?: number } = {}): Promise<{ source: SidePlan; destination: SidePlan; pruned: string[] }> {
    const config = this.config(name);
    if (opts.dryRun) return { ...(await this.retention(name, opts.now)), pruned: [] };
    if (config.role !== 'master') throw new Error(`This appliance is the non-master of auto-sync:${name}: prune it on the master, or look with --dry-run.`);
    const lock = tryLock(runLockFile(this.home.locks, name), `auto-sync:${name}`, 'a prune');
    try {
      const plans = await this.retention(name, opts.now);
      const log = ServiceLog.forService(this.home.logs, name);
      const pruned: string[] = [];
      for (const [endpoint, plan] of [
        [config.source, plans.source],
        [config.destination, plans.destination],
      ] as const) {
        const side = await this.side(endpoint);
        for (const snap of await applyPrune(side, plan, config.recursive, log)) pruned.push(`${side.host}/${side.dataset.replace(/^\/+/, '')}@${snap}`);
      }
      log.write(`Pruned ${pruned.length} marker(s) by hand${pruned.length ? `: ${pruned.join(', ')}` : ''}`);
      return { ...plans, pruned };
    } finally {
      lock.release();
    }
  }

  /** what the epoch rule needs (null without peers) */
  contactDeps(): ContactDeps | null {
    const peers = this.peers;
    if (!peers?.peerSide) return null;
    return {
      store: this.store,
      log: (n) => ServiceLog.forService(this.home.logs, n),
      side: (endpoint) => this.side(endpoint),
      peer: (host) => peers.peerSide!(host),
      journal: new HandOverJournal(path.join(this.home.root, 'handovers')),
      timeoutMs: contactTimeoutMs(),
      forget: (n, why) => this.forgetCopy(n, why),
    };
  }

  /** the epoch rule outside a run (the daemon's tick): skipped while a run holds the service */
  async contact(name: string): Promise<ContactOutcome> {
    const deps = this.contactDeps();
    if (!deps) return 'same';
    let lock;
    try {
      lock = tryLock(runLockFile(this.home.locks, name), `auto-sync:${name}`, 'a contact with the peer');
    } catch (error) {
      if (error instanceof LockBusyError) return 'same';
      throw error;
    }
    try {
      const { recordInterrupted } = await import('./run.js');
      await recordInterrupted(name, { store: this.store, log: ServiceLog.forService(this.home.logs, name), sendHistory: this.history(name, 'send') });
      return await checkOnContact(name, deps);
    } finally {
      lock.release();
    }
  }

  history(name: string, direction: 'send' | 'receive'): History {
    return new History(path.join(this.home.history, `auto-sync-${name}.${direction}.jsonl`));
  }

  /** both trails of a service, newest first */
  histories(name: string, limit = 50): HistoryEntry[] {
    this.lookup(name);
    const all = [...this.history(name, 'send').list(limit), ...this.history(name, 'receive').list(limit)];
    return all.sort((a, b) => b.startedAt.localeCompare(a.startedAt) || a.direction.localeCompare(b.direction)).slice(0, limit * 2);
  }

  /** health, lag, the last error and the transfer in flight */
  status(name: string, now = Date.now()): HealthReport & { view: ServiceView; progress: Progress | null } {
    const view = this.view(name);
    return { ...healthOf(view.config, view.run, now), view, progress: this.progress(name) };
  }

  progressFile(name: string): string {
    return path.join(this.home.progress, `auto-sync-${name}.json`);
  }

  /** the transfer in flight, if its process is alive */
  progress(name: string): Progress | null {
    try {
      const p = JSON.parse(readFileSync(this.progressFile(name), 'utf8')) as Progress;
      return processAlive(p.pid) ? p : null;
    } catch {
      return null;
    }
  }

  private async side(endpoint: Endpoint): Promise<Side> {
    const ref = parseDataset(endpoint.dataset);
    if (endpoint.host === 'localhost') return { host: endpoint.host, driver: await this.storage.usable(ref.driver), dataset: ref.name };
    if (!this.peers) throw new Error(`The appliance "${endpoint.host}" is not bound to this one.`);
    const remote = await this.peers.side(endpoint.host, ref.driver);
    return { host: endpoint.host, driver: remote.driver, peer: remote.peer, dataset: ref.name };
  }

  /** the lock files there are now, in one read of the directory (listing 1,000 services must not stat 1,000 files); null when it cannot be read */
  private lockFiles(): Set<string> | null {
    try {
      return new Set(readdirSync(this.home.locks));
    } catch {
      return null;
    }
  }

  /** `locks`: the lock directory's files (lockFiles), so that a service without one is not looked up */
  private runOwner(name: string, locks?: Set<string> | null): LockOwner | null {
    const file = runLockFile(this.home.locks, name);
    if (locks ? !locks.has(path.basename(file)) : !existsSync(file)) return null;
    try {
      const owner = JSON.parse(readFileSync(file, 'utf8')) as LockOwner;
      return processAlive(owner.pid) ? owner : null;
    } catch {
      return null;
    }
  }

  private viewOf(config: AutoSyncConfig, known?: RunState, locks?: Set<string> | null): ServiceView {
    const run = known ?? this.store.runState(config.name);
    const owner = this.runOwner(config.name, locks);
    const state: ServiceState = config.maintenance ? 'maintenance' : owner ? 'running' : config.enabled ? 'online' : 'disabled';
    const status = healthOf(config, run, Date.now()).health;
    return { config, state, run, status, runningSince: owner?.since ?? null, receivedFrom: null };
  }
}

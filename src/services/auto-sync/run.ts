/**
 * One run of an auto-sync service (DESIGN.md, "A run"): lock, snapshot with
 * a new marker, find the newest common snapshot by identity, send full or
 * incremental, verify, record state, protect the new common marker, prune.
 * A failed run leaves the destination at its previous snapshot; a broken
 * chain puts the service in maintenance instead of silently starting over.
 */
import { Transform } from 'node:stream';
import { withQueryCache } from '../storage/query-cache.js';
import { rateLimiter } from '../wire/rate-limit.js';
import { rmSync, writeFileSync, renameSync } from 'node:fs';
import type { History, HistoryEntry } from '../history.js';
import { tryLock } from '../lock.js';
import { failpoint } from '../failpoints.js';
import type { ChunkAnswer, Driver, SnapshotInfo } from '../storage/driver.js';
import { countHeld, isSeed } from '../storage/fs/negotiate.js';
import type { ServiceLog } from '../service-log.js';
import type { ServiceStore } from './store.js';
import type { AutoSyncConfig, RunState } from './model.js';
import { isMarkerOf, markerName, newestCommon } from './markers.js';
import { applyPrune, planPrune } from './prune.js';
import { describeMaintenance, maintenance } from './maintenance.js';
import { planRun, type RunFacts } from './plan.js';
import { runLockFile } from './run-lock.js';

/** one end of a run: where the dataset is and the driver that serves it */
export interface Side {
  host: string;
  driver: Driver;
  /** driver-local dataset name */
  dataset: string;
  /** present when this end is another appliance: its own trail and state are written there */
  peer?: PeerSide;
}

/** what a run asks of a remote appliance besides its driver */
export interface PeerSide {
  appendHistory(entry: HistoryEntry): Promise<void>;
  recordState(service: string, state: RunState): Promise<void>;
}

export interface RunDeps {
  store: ServiceStore;
  log: ServiceLog;
  lockDir: string;
  /** the send trail (kept where the source is) and the receive trail (where the destination is) */
  sendHistory: History;
  receiveHistory: History;
  /** where the transfer's progress is published while it runs */
  progressFile: string;
  resolveSide(endpoint: AutoSyncConfig['source']): Promise<Side>;
  /** the epoch rule on contact with the peer (contact.ts), before anything else: it may demote this appliance */
  beforeRun?(): Promise<unknown>;
}

export interface RunOptions {
  /** `setup auto-sync :NAME resync`: a full sync even though the chain is broken */
  resync?: boolean;
  signal?: AbortSignal;
  /** bytes sent so far, as the transfer goes */
  onProgress?(bytes: number): void;
  /** the time, for runs scheduled on another clock (the daemon's) */
  now?: () => number;
}

/** what `show auto-sync :NAME status` reads while a run is in flight */
export interface Progress {
  pid: number;
  startedAt: string;
  updatedAt: string;
  bytes: number;
  /** bytes per second over the run so far */
  rate: number;
}

export interface RunResult {
  marker: string;
  full: boolean;
  bytes: number;
  durationMs: number;
}

export class BrokenChainError extends Error {
  constructor(
    service: string,
    readonly reason: string,
    readonly kind: 'broken-chain' | 'not-a-seed' = 'broken-chain',
  ) {
    super(`${reason} Nothing was sent. Run 'setup auto-sync :${service} resync' to start over with a full sync.`);
    this.name = 'BrokenChainError';
  }
}

export { runLockFile };

const where = (side: Side) => `${side.host}/${side.dataset.replace(/^\/+/, '')}`;
const seconds = (ms: number) => Math.round(ms / 1000);

export const INTERRUPTED = "interrupted (process ended): the run's process ended before the run did; it is retried.";

/**
 * Called holding the service lock: a run still marked in flight then belongs
 * to a process that is gone (kill -9, a crash, a power cut). Record it as
 * failed, in the state, the send trail and the log, once. True when it did.
 */
export async function recordInterrupted(name: string, deps: Pick<RunDeps, 'store' | 'log' | 'sendHistory'>, now = Date.now()): Promise<boolean> {
  const state = deps.store.runState(name);
  const config = deps.store.get(name);
  if (!state.inFlight || !config) return false;
  await deps.store.updateRunState(name, (s) => ({ ...s, inFlight: false, lastResult: 'failure', lastError: INTERRUPTED, failures: s.failures + 1, consecutiveFailures: s.consecutiveFailures + 1 }));
  const startedAt = state.lastRunAt ?? new Date(now).toISOString();
  const peer = config.source.host === 'localhost' ? config.destination.host : config.source.host;
  deps.sendHistory.append({ direction: 'send', service: name, peer, startedAt, endedAt: new Date(now).toISOString(), result: 'failure', bytes: state.lastBytes, rateBytesPerSec: 0, snapshot: null, error: INTERRUPTED });
  deps.log.write(`FAILURE: auto-sync:${name}: the run started ${startedAt} was ${INTERRUPTED}`);
  return true;
}

export async function runService(name: string, deps: RunDeps, opts: RunOptions = {}): Promise<RunResult> {
  const lock = tryLock(runLockFile(deps.lockDir, name), `auto-sync:${name}`, 'a run');
  try {
    await recordInterrupted(name, deps, (opts.now ?? Date.now)());
    return await withQueryCache(() => runLocked(name, deps, opts));
  } finally {
    lock.release();
  }
}

async function runLocked(name: string, deps: RunDeps, opts: RunOptions): Promise<RunResult> {
  const { store, log } = deps;
  if (deps.beforeRun) await deps.beforeRun();
  const config = store.get(name);
  if (!config) throw new Error(`No auto-sync service named :${name}.`);
  if (config.role !== 'master') {
    throw new Error(`This appliance is the non-master of auto-sync:${name}: it runs on the master (${config.source.host === 'localhost' ? config.destination.host : config.source.host}).`);
  }
  if (config.maintenance && !opts.resync) {
    throw new Error(`auto-sync:${name} is in maintenance: ${describeMaintenance(config.maintenance)}`);
  }
  const now = opts.now ?? Date.now;
  const started = now();
  const startedIso = new Date(started).toISOString();
  let src: Side;
  let dst: Side;
  try {
    src = await deps.resolveSide(config.source);
    dst = await deps.resolveSide(config.destination);
  } catch (error) {
    // The other appliance cannot be reached (or is not bound): still a failed attempt, on record.
    const message = (error as Error).message;
    await store.updateRunState(name, (s) => ({ ...s, lastRunAt: startedIso, lastResult: 'failure', lastError: message, failures: s.failures + 1, consecutiveFailures: s.consecutiveFailures + 1 }));
    const peer = config.source.host === 'localhost' ? config.destination.host : config.source.host;
    const endedAt = new Date(now()).toISOString();
    deps.sendHistory.append({ direction: 'send', service: name, peer, startedAt: startedIso, endedAt, result: 'failure', bytes: 0, rateBytesPerSec: 0, snapshot: null, error: message });
    log.write(`FAILURE: ${config.source.host}/${config.source.dataset} => ${config.destination.host}/${config.destination.dataset}: ${message}`);
    throw error;
  }
  const route = `${where(src)} => ${where(dst)}`;
  const state = await store.updateRunState(name, (s) => ({ ...s, sequence: s.sequence + 1, lastRunAt: startedIso, inFlight: true }));
  const trail = (result: HistoryEntry['result'], bytes: number, snapshot: string | null, error: string | null) => {
    const endedAt = now();
    const seconds = Math.max(0.001, (endedAt - started) / 1000);
    const base = { service: name, startedAt: startedIso, endedAt: new Date(endedAt).toISOString(), result, bytes, rateBytesPerSec: Math.round(bytes / seconds), snapshot, error };
    return Promise.all([record(src, deps.sendHistory, { ...base, direction: 'send', peer: dst.host }), record(dst, deps.receiveHistory, { ...base, direction: 'receive', peer: src.host })]);
  };
  let sent = 0;
  const publish = progressPublisher(deps.progressFile, started);
  let marker: SnapshotInfo | null = null;
  /** the destination holds the new marker: from here on it is the common snapshot and must never be dropped */
  let delivered = false;
  /** what the run was doing, for the sentence a full disk gets */
  let phase: Phase = 'check';
  const bestEffort = (what: string) => (error: Error) => log.write(`WARNING: could not ${what}: ${error.message}`);
  try {
    if (!(await src.driver.getDataset(src.dataset))) throw new Error(`The source dataset ${config.source.dataset} does not exist.`);
    // A snapshot cut short on the source (kill -9, a crash) left blocks no snapshot lists: reclaim them there too.
    // Best effort: another service may be snapshotting the same source right now, and this run must not fail for that.
    try {
      for (const line of await src.driver.recover(src.dataset)) log.write(`Recovered ${where(src)}: ${line}`);
    } catch (error) {
      log.write(`WARNING: could not recover ${where(src)} before the run: ${(error as Error).message}`);
    }
    // A receive cut short earlier (crash, lost link) must not block this one: finish or clean it first. Also where
    // the destination looks missing: a btrfs swap cut between its two renames leaves no live path until recover
    // finishes it; skipped, the run sent everything again and the cut swap's subvolumes stayed, full copies, for good.
    const recoverDst = async () => {
      for (const line of await dst.driver.recover(dst.dataset)) log.write(`Recovered ${where(dst)}: ${line}`);
    };
    if (await dst.driver.getDataset(dst.dataset)) await recoverDst();
    else await recoverDst().catch((error: Error) => log.write(`WARNING: could not recover ${where(dst)} before the run: ${error.message}`));
    let dstInfo = await dst.driver.getDataset(dst.dataset);
    // zfs: a receive cut earlier resumes from its token, or (a zfs without `receive -s`) starts over; the log says which.
    const resumedBytes = await resumeOrRestart(src, dst, config, log, state.lastResult === 'failure' && state.lastBytes > 0, opts);
    if (resumedBytes) dstInfo = await dst.driver.getDataset(dst.dataset);
    const dstSnaps = dstInfo ? await dst.driver.listSnapshots(dst.dataset) : [];
    const srcSnaps = await src.driver.listSnapshots(src.dataset);
    const found = newestCommon(srcSnaps, dstSnaps);
    const plan = planRun({
      source: config.source.dataset,
      destination: config.destination.dataset,
      srcSnapshots: srcSnaps,
      dstExists: Boolean(dstInfo),
      dstSnapshots: dstSnaps,
      everSynced: state.lastMarker !== null,
      resync: Boolean(opts.resync),
      force: config.force,
      dstChanged: Boolean(dstInfo && found && (await dst.driver.changedSince(dst.dataset, dstSnaps.find((s) => s.id === found.id)!.name))),
      brokenChildren: config.recursive && dstInfo && found ? await brokenChildren(src, dst, found.name) : [],
    });
    const stampNow = new Date(now()).toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
    let common: SnapshotInfo | null = null;
    switch (plan.kind) {
      case 'broken-chain':
        throw new BrokenChainError(name, plan.reason);
      case 'refused':
        throw new Error(plan.reason);
      case 'resync-aside': {
        // Start over, but never by destroying: the old destination is kept under a new name.
        const aside = `${dst.dataset}-resync-${stampNow}`;
        await dst.driver.renameDataset(dst.dataset, aside);
        log.write(`Resync: the previous destination ${where(dst)} is kept as ${aside}; starting a full sync`);
        break;
      }
      case 'resync-children': {
        // Only the broken children start over, kept aside beside the destination (never destroyed); the rest stays incremental.
        for (const child of plan.children) {
          const aside = `${dst.dataset}-resync-${stampNow}-${child.replaceAll('/', '-')}`;
          await dst.driver.renameDataset(`${dst.dataset}/${child}`, aside);
          log.write(`Resync: the child ${where(dst)}/${child} is kept as ${aside}; it is sent in full, the rest incrementally`);
        }
        // Moving a child out removes its mount point directory from the parent (zfs): that is the only change, ours.
        const base = dstSnaps.find((s) => s.id === plan.base.id)!.name;
        if (await dst.driver.changedSince(dst.dataset, base)) await dst.driver.rollback(dst.dataset, base);
        common = plan.base;
        break;
      }
      case 'incremental':
        common = plan.base;
        break;
      case 'full':
        break;
    }

    phase = 'snapshot';
    marker = await src.driver.createSnapshot(src.dataset, markerName(name, state.sequence), { recursive: config.recursive, ...(config.exclude?.length ? { exclude: config.exclude } : {}) });
    // Replicated all the same (the files are whole), but nobody is told "OK" about a moment that never was.
    if (marker.notPointInTime) log.write(`WARNING: ${src.dataset}@${marker.name} is not point-in-time: ${marker.notPointInTime}`);
    const base = common;
    const full = !base;
    const flags = config.recursive ? '-R ' : '';
    log.write(
      full
        ? `Starting full ${src.driver.name} send/recv of ${flags}${src.dataset}@${marker.name} => ${dst.dataset}`
        : `Starting incremental ${src.driver.name} send/recv of delta ${flags}-I ${src.dataset}@${base.name}:${src.dataset}@${marker.name} => ${dst.dataset}`,
    );

    phase = 'receive';
    // A zvol with data and no snapshot (a raw image, an older copy): a partial resync if it is a seed of the source.
    const seed = plan.kind === 'full' && dstInfo?.kind === 'volume' && dstSnaps.length === 0 && ((await dst.driver.volumeStats?.(dst.dataset))?.used ?? 0) > 0;
    const bytes =
      resumedBytes +
      (await transfer(
        src,
        dst,
        marker.name,
        common?.name,
        config,
        log,
        { seed, service: name },
        {
          ...opts,
          onProgress: (n) => {
            sent = n;
            publish(n, now());
            opts.onProgress?.(n);
          },
        },
      ));
    failpoint('run.received');
    phase = 'verify';
    const received = (await dst.driver.listSnapshots(dst.dataset)).find((s) => s.name === marker!.name);
    if (!received || received.id !== marker.id) {
      throw new Error(`The destination ${config.destination.dataset} does not hold ${marker.name} after the receive (expected id ${marker.id}).`);
    }
    delivered = true;
    const durationMs = now() - started;
    log.write(`${src.dataset}@${marker.name} => ${where(dst)} OK (${seconds(durationMs)} sec)`);

    const heldMarkers = (snaps: SnapshotInfo[]) => snaps.filter((s) => s.held && isMarkerOf(name, s.name)).map((s) => s.name);
    await protectNewCommon(src, dst, marker.name, { src: heldMarkers(srcSnaps), dst: heldMarkers(dstSnaps) }).catch(bestEffort('protect the new common snapshot'));
    await prune(name, src, config.keepSrc, marker.name, config.recursive, log, now());
    await prune(name, dst, config.keepDst, marker.name, config.recursive, log, now());

    await store.updateRunState(name, (s) => ({
      ...s,
      lastMarker: marker!.name,
      lastMarkerId: marker!.id,
      lastSuccessAt: new Date(now()).toISOString(),
      lastResult: 'success',
      lastError: null,
      lastBytes: bytes,
      lastDurationMs: durationMs,
      consecutiveFailures: 0,
      inFlight: false,
    }));
    await trail('success', bytes, marker.name, null).catch(bestEffort('write the trail'));
    const recorded = store.runState(name);
    for (const side of [src, dst]) await side.peer?.recordState(name, recorded).catch(bestEffort(`record the state on ${side.host}`));
    if (opts.resync && config.maintenance) await store.update(name, (c) => ({ ...c, maintenance: null }));
    log.write(`SUCCESS: ${route} OK (${seconds(durationMs)} sec)${marker.notPointInTime ? ', but the snapshot is not point-in-time (see the WARNING above)' : ''}`);
    return { marker: marker.name, full, bytes, durationMs };
  } catch (caught) {
    const error = explainFull(whyEnded(caught, opts.signal), phase, phase === 'snapshot' ? config.source : config.destination, delivered);
    const message = error.message;
    const durationMs = now() - started;
    if (marker && !delivered) {
      if (await resumable(dst)) {
        // zfs kept the part received: the next run finishes it from the token, which needs this snapshot.
        log.write(`Kept ${src.dataset}@${marker.name}: the destination kept the part it received, and the next run resumes from it`);
      } else if (!(await mayHold(dst, marker, phase))) {
        // The marker never reached the destination: drop it so it is not mistaken for a synced state.
        await src.driver.destroySnapshot(src.dataset, marker.name, { recursive: config.recursive }).catch(() => undefined);
      }
    }
    await store.updateRunState(name, (s) => ({
      ...s,
      lastResult: 'failure',
      lastError: message,
      lastDurationMs: durationMs,
      lastBytes: sent,
      failures: s.failures + 1,
      consecutiveFailures: s.consecutiveFailures + 1,
      inFlight: false,
    }));
    await trail('failure', sent, marker?.name ?? null, message).catch(() => undefined);
    if (error instanceof BrokenChainError) {
      const why = error.kind === 'broken-chain' ? `Broken chain: ${error.reason}` : error.reason;
      await store.update(name, (c) => ({ ...c, maintenance: maintenance(error.kind, name, why) }));
      log.write(`ALERT: auto-sync:${name} put in maintenance: ${message}`);
    }
    log.write(`FAILURE: ${route}: ${message} (${seconds(durationMs)} sec)`);
    throw error;
  } finally {
    rmSync(deps.progressFile, { force: true });
  }
}

type Phase = 'check' | 'snapshot' | 'receive' | 'verify';
const PHASE_TEXT: Record<Phase, string> = { check: 'checking the datasets', snapshot: 'taking the source snapshot', receive: 'receiving', verify: 'checking the received snapshot' };

/**
 * A full disk says where and when, and what it left, not a bare
 * "ENOSPC: no space left on device, write" (from a peer, "On HOST: …").
 */
/**
 * Whether the destination may hold the marker of a failed run: a receive
 * that completed there before the failure (a link lost while the answer was
 * on its way) leaves it the newest snapshot on the destination. Dropping it
 * on the source then would leave the next run no common snapshot but an
 * older one the destination has moved past: refused as "written to", an
 * operator needed. Kept unless the destination says it does not have it.
 */
async function mayHold(dst: Side, marker: SnapshotInfo, phase: Phase): Promise<boolean> {
  if (phase === 'snapshot' || phase === 'check') return false;
  try {
    if (!(await dst.driver.getDataset(dst.dataset))) return false;
    return (await dst.driver.listSnapshots(dst.dataset)).some((s) => s.id === marker.id);
  } catch {
    return true;
  }
}

function explainFull(error: Error, phase: Phase, where: AutoSyncConfig['source'], delivered: boolean): Error {
  if (delivered || !/\bENOSPC\b|\bEDQUOT\b|no space left on device/i.test(error.message)) return error;
  const host = where.host === 'localhost' ? '' : ` on ${where.host}`;
  const left = phase === 'snapshot' ? 'no snapshot was kept and the destination was not touched' : 'the destination stays at its previous snapshot';
  return new Error(`No space left for ${where.dataset}${host} while ${PHASE_TEXT[phase]}: nothing was changed (${left}). Free space there, then run again.`);
}

/**
 * An aborted run fails with the abort's reason (a stall, the daemon stopping),
 * not with the bare "The operation was aborted" of whatever stream noticed it.
 */
function whyEnded(error: unknown, signal?: AbortSignal): Error {
  if (signal?.aborted && signal.reason instanceof Error && !(error instanceof BrokenChainError)) return signal.reason;
  return error as Error;
}

/** writes the progress file at most a few times a second: other processes read it (status, dashboard) */
function progressPublisher(file: string, started: number): (bytes: number, now: number) => void {
  let last = 0;
  return (bytes, now) => {
    if (now - last < 250) return;
    last = now;
    const seconds = Math.max(0.001, (now - started) / 1000);
    const progress: Progress = { pid: process.pid, startedAt: new Date(started).toISOString(), updatedAt: new Date(now).toISOString(), bytes, rate: Math.round(bytes / seconds) };
    writeFileSync(`${file}.tmp`, JSON.stringify(progress));
    renameSync(`${file}.tmp`, file);
  };
}

/** a trail entry where that side keeps its trail: here, or on the peer */
async function record(side: Side, local: History, entry: HistoryEntry): Promise<void> {
  if (side.peer) await side.peer.appendHistory(entry);
  else local.append(entry);
}

/**
 * fs on both sides: the receiver says which of the chunks the send would
 * carry it holds already (its store, chunks kept from an interrupted
 * receive), and those are left out (storage/fs/negotiate.ts).
 */
async function negotiate(src: Side, dst: Side, snapshot: string, from: string | undefined, recursive: boolean): Promise<{ answer: ChunkAnswer; held: number; offered: number } | null> {
  if (src.driver.name !== 'fs' || dst.driver.name !== 'fs' || !src.driver.offerChunks || !dst.driver.heldChunks) return null;
  const offer = await src.driver.offerChunks(src.dataset, snapshot, { from, recursive });
  const answer = await dst.driver.heldChunks(dst.dataset, offer);
  return { answer, ...countHeld(answer, offer) };
}

/** zfs on both sides: does the destination hold a cut receive it can resume? */
async function resumable(dst: Side): Promise<boolean> {
  if (dst.driver.name !== 'zfs' || !dst.driver.receiveResume) return false;
  return dst.driver.receiveResume(dst.dataset).then(
    (r) => r.token !== null,
    () => false,
  );
}

/**
 * zfs: finish a receive a cut run left resumable (`zfs send -t TOKEN`, the
 * snapshot kept on the source for it); a zfs without `receive -s`
 * (zfs-fuse) restarts from the start, and says so. Returns the bytes sent.
 */
async function resumeOrRestart(src: Side, dst: Side, config: AutoSyncConfig, log: ServiceLog, interrupted: boolean, opts: RunOptions): Promise<number> {
  if (src.driver.name !== 'zfs' || dst.driver.name !== 'zfs' || !dst.driver.receiveResume) return 0;
  const { supported, token } = await dst.driver.receiveResume(dst.dataset);
  if (token) {
    const kept = (await src.driver.listSnapshots(src.dataset)).at(-1);
    if (!kept) throw new Error(`The destination ${where(dst)} holds a resumable receive, but ${where(src)} has no snapshot to resume it from.`);
    log.write(`The interrupted receive into ${where(dst)} is resumed from token (${src.dataset}@${kept.name})`);
    const bytes = await transfer(src, dst, kept.name, undefined, config, log, { service: '', resumeToken: token }, opts);
    log.write(`resumed from token: ${bytes} more bytes`);
    return bytes;
  }
  if (interrupted) {
    log.write(supported ? 'The previous transfer was cut and left nothing to resume: sent again from the start' : 'The previous transfer was cut, and this ZFS cannot resume a receive: sent again from the start');
  }
  return 0;
}

async function transfer(src: Side, dst: Side, snapshot: string, from: string | undefined, config: AutoSyncConfig, log: ServiceLog, how: { seed?: boolean; service: string; resumeToken?: string }, opts: RunOptions): Promise<number> {
  const { resumeToken } = how;
  const chunks = resumeToken ? null : await negotiate(src, dst, snapshot, from, config.recursive);
  if (how.seed && chunks) {
    const lacking = chunks.offered - chunks.held;
    if (!isSeed(chunks)) {
      throw new BrokenChainError(
        how.service,
        `The destination ${where(dst)} shares no snapshot with the source and lacks ${lacking} of the ${chunks.offered} chunks it would be sent: it is not a seed of ${where(src)} (more than half of the chunks differ).`,
        'not-a-seed',
      );
    }
    log.write(`Partial resync: ${where(dst)} shares no snapshot with the source but holds ${chunks.held} of its ${chunks.offered} chunks; only the other ${lacking} are sent`);
  }
  const abort = new AbortController();
  const onAbort = () => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      opts.onProgress?.(bytes);
      done(null, chunk);
    },
  });
  // the codec is applied where the wire is: a peer's driver compresses or decompresses at its channel
  const stream = src.driver.send(src.dataset, snapshot, { from, recursive: config.recursive, signal: abort.signal, compress: config.compress, ...(chunks ? { held: chunks.answer } : {}), ...(resumeToken ? { resumeToken } : {}) });
  const limit = config.rateLimit ? rateLimiter(config.rateLimit) : null;
  const paced = limit ? stream.pipe(limit) : stream;
  stream.on('error', (error) => counter.destroy(error));
  limit?.on('error', (error) => counter.destroy(error));
  paced.pipe(counter);
  try {
    await dst.driver.receive(dst.dataset, counter, { force: config.force, recursive: config.recursive, signal: abort.signal, compress: config.compress });
    if (chunks) log.write(`sent ${chunks.offered - chunks.held} of ${chunks.offered} chunks (${(bytes / 1e6).toFixed(1)} MB)${chunks.held ? `; the other ${chunks.held} were on the destination already` : ''}`);
    return bytes;
  } catch (error) {
    abort.abort(error);
    stream.destroy();
    limit?.destroy();
    throw error;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** children of a recursive service that lack the common snapshot on one side (a new child on the source is not broken) */
async function brokenChildren(src: Side, dst: Side, common: string): Promise<RunFacts['brokenChildren']> {
  const broken: RunFacts['brokenChildren'] = [];
  const has = async (side: Side, dataset: string) => (await side.driver.listSnapshots(dataset)).some((s) => s.name === common);
  const dstNames = new Set((await dst.driver.listDatasets(dst.dataset)).map((d) => d.name));
  for (const { name } of await src.driver.listDatasets(src.dataset)) {
    if (!name.startsWith(`${src.dataset}/`)) continue;
    const child = name.slice(src.dataset.length + 1);
    const there = `${dst.dataset}/${child}`;
    if (!dstNames.has(there)) continue;
    if (!(await has(src, name))) broken.push({ child, missingOn: 'source' });
    else if (!(await has(dst, there))) broken.push({ child, missingOn: 'destination' });
  }
  return broken;
}

/**
 * Hold the new common marker on both sides and release every other marker of
 * the service held there before the run (as listed then): the previous common
 * one, and any a run killed between its hold and its release left held, which
 * retention would otherwise keep for good.
 */
async function protectNewCommon(src: Side, dst: Side, marker: string, heldBefore: { src: string[]; dst: string[] }): Promise<void> {
  for (const [side, held] of [
    [src, heldBefore.src],
    [dst, heldBefore.dst],
  ] as const) {
    await side.driver.holdSnapshot(side.dataset, marker, true);
    failpoint('run.held');
    for (const old of held) if (old !== marker) await side.driver.holdSnapshot(side.dataset, old, false).catch(() => undefined);
  }
}

/** thin one side's markers as its retention says (prune.ts); the new common marker always stays */
async function prune(service: string, side: Side, keep: number | string, protect: string, recursive: boolean, log: ServiceLog, now: number): Promise<void> {
  try {
    await applyPrune(side, await planPrune(service, side, keep, protect, now), recursive, log);
  } catch (error) {
    log.write(`WARNING: could not prune ${where(side)}: ${(error as Error).message}`);
  }
}

/**
 * The `fs` driver: syncsh's built-in replication engine for plain
 * directories. See layout.ts for the on-disk layout, stream-format.ts for
 * the send stream, journal.ts for how receives and rollbacks commit.
 *
 * Volumes are directories holding one image file, `volume.img`
 * (`<root>/<name>/volume.img`), so they snapshot, send and receive exactly
 * like filesystems; zero chunks are stored as holes, so sparse images stay
 * cheap. Unmounting moves a dataset's files into its metadata area and
 * leaves an empty, read-only directory at the mountpoint.
 */
import { randomUUID } from 'node:crypto';
import { accessSync, chmodSync, constants, existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { ChunkAnswer, ChunkOffer, CreateDatasetOptions, DatasetInfo, Driver, ReceiveOptions, ReceiveResult, SnapshotOptions, SendOptions, SnapshotInfo, VolumeStats } from '../driver.js';
import { BlockStore } from './block-store.js';
import { Catalog, type DatasetRecord, type SnapshotRecord } from './catalog.js';
import { firstDifference } from './compare.js';
import { checkExcludes, excludeMatcher } from './excludes.js';
import { isEmptyDir, lstatOrNull, removeTree } from './files.js';
import { collectDestroyed, describeFreed, markUnswept, needsSweep, sweep } from './gc.js';
import { tidyUnregistered } from './partial.js';
import { faultsFromEnv, hasJournal, runJournal, writeJournals, type Faults, type Journal } from './journal.js';
import { Layout, VOLUME_FILE } from './layout.js';
import { lockDatasets, staleLockOwner } from './lock.js';
import { checkReceivedManifest, readManifest, referencedBytes, withoutCache, writeManifest, type Manifest } from './manifest.js';
import { checkDatasetName, checkSnapshotName, isDescendant, parentOf, poolOf } from './names.js';
import { planApply } from './plan.js';
import { stageFiles } from './stage.js';
import { receiveStream } from './receiver.js';
import { finishRename, pendingRenameTouching, renameDataset, renameNames } from './rename.js';
import { scanTree } from './scan.js';
import { offerChunks, sendStream } from './sender.js';
import { heldChunks } from './negotiate.js';
import { takeSnapshot } from './snapshot.js';
import { ZVOL_CHUNK } from './block-store.js';
import { writeCleanMap } from './dirty-map.js';
import { checkZvolGeometry, chunksOf, dirtyMapFile, EMPTY_BASE, differingChunks, growZvol, isZvol, patchPlan, readZvolSnapshot, volumeBlocks, resetDirtyMap, takeZvolSnapshot, zvolDifference, zvolStats } from './zvol.js';
import { refuseServed, withWritesPaused, ZvolVolume } from './zvol-writer.js';
import type { BlockVolume } from '../../nbd/volume.js';
import { failpoint } from '../../failpoints.js';
import { commitTarget, createVersionedRoot, dropUnregisteredLink, relink, tidyVersions, versionOf } from './versions.js';

/** scans of a tree that keeps changing before its snapshot is taken as it is and reported as not point-in-time */
const SNAPSHOT_ATTEMPTS = 3;

export interface FsDriverOptions {
  /** test hook: crash a commit part-way (see journal.ts); also SYNCSH_FS_CRASH_AFTER_STEPS */
  faults?: Faults;
}

export function createFsDriver(root: string, options: FsDriverOptions = {}): Driver {
  return new FsDriver(path.resolve(root), options.faults ?? faultsFromEnv());
}

class FsDriver implements Driver {
  readonly name = 'fs' as const;
  private readonly layout: Layout;
  private readonly catalog: Catalog;

  constructor(
    readonly root: string,
    private readonly faults: Faults,
  ) {
    this.layout = new Layout(root);
    this.catalog = new Catalog(this.layout);
  }

  async unavailableReason(): Promise<string | null> {
    try {
      mkdirSync(this.root, { recursive: true });
      accessSync(this.root, constants.W_OK | constants.X_OK);
      return null;
    } catch (error) {
      return `the fs pool root ${this.root} is not a writable directory (${(error as Error).message}).`;
    }
  }

  // ---- datasets ----------------------------------------------------------

  private info(rec: DatasetRecord): DatasetInfo {
    const mounted = this.catalog.mounted(rec.name);
    const info: DatasetInfo = {
      name: rec.name,
      kind: rec.kind,
      mountpoint: rec.kind === 'filesystem' && mounted ? this.layout.mountpoint(rec.name) : null,
      mounted,
      readonly: false,
    };
    if (rec.kind === 'volume') {
      const img = lstatOrNull(path.join(this.catalog.liveDir(rec.name), VOLUME_FILE));
      info.volsize = img ? img.size : rec.volsize;
    }
    return info;
  }

  async listDatasets(under?: string): Promise<DatasetInfo[]> {
    if (under !== undefined) checkDatasetName(under);
    const names = this.catalog.all(under === undefined ? undefined : poolOf(under));
    return names
      .filter((n) => under === undefined || n === under || isDescendant(n, under))
      .map((n) => this.catalog.record(n))
      .filter((r): r is DatasetRecord => !!r)
      .map((r) => this.info(r));
  }

  async getDataset(name: string): Promise<DatasetInfo | null> {
    checkDatasetName(name);
    const rec = this.catalog.record(name);
    return rec ? this.info(rec) : null;
  }

  async createDataset(name: string, opts: CreateDatasetOptions = {}): Promise<DatasetInfo> {
    checkDatasetName(name);
    const { volumeSize } = opts;
    if (volumeSize !== undefined && (!Number.isSafeInteger(volumeSize) || volumeSize <= 0)) {
      throw new Error(`The volume size must be a positive whole number of bytes: ${String(volumeSize)}.`);
    }
    if (opts.zvol) checkZvolGeometry(name, volumeSize, opts.zvol.blockSize);
    if (this.catalog.record(name)) throw new Error(`The fs dataset ${name} already exists.`);
    const parent = parentOf(name);
    if (parent && !this.catalog.record(parent)) {
      if (opts.parents) await this.createDataset(parent, { parents: true });
      else if (!parent.includes('/')) throw new Error(`The pool ${parent} does not exist; create it first (create the dataset ${parent}), or create ${name} with its parents.`);
      else throw new Error(`The parent dataset ${parent} does not exist; create it first, or create ${name} with its parents.`);
    }
    if (parent) {
      if (this.catalog.record(parent)!.kind === 'volume') throw new Error(`The dataset ${parent} is a volume; ${name} cannot be created inside it.`);
      if (!this.catalog.mounted(parent)) throw new Error(`The parent dataset ${parent} is unmounted; mount it before creating ${name}.`);
    }
    mkdirSync(this.root, { recursive: true });
    const lock = lockDatasets(this.layout, [name], 'a dataset creation');
    try {
      await this.settle([name]); // an interrupted receive may have been creating it
      if (this.catalog.record(name)) throw new Error(`The fs dataset ${name} already exists.`);
      const mp = this.layout.mountpoint(name);
      dropUnregisteredLink(this.layout, name);
      const st = lstatOrNull(mp);
      if (st && !st.isDirectory()) throw new Error(`The mountpoint ${mp} of ${name} is taken by a file; move it away first.`);
      if (st && !isEmptyDir(mp)) throw new Error(`The directory ${mp} already has files; move them away or choose another name than ${name}.`);
      const meta = this.layout.datasetMeta(name);
      if (existsSync(meta)) removeTree(meta); // leftovers of an attempt that never registered
      mkdirSync(this.layout.manifestsDir(name), { recursive: true });
      mkdirSync(this.layout.blocksDir(name), { recursive: true });
      if (volumeSize === undefined) {
        // A link to the first version of its tree (versions.ts), in the place of the empty directory, if there was one.
        if (st) rmdirSync(mp);
        mkdirSync(path.dirname(mp), { recursive: true });
        createVersionedRoot(this.layout, name, 0o755);
      } else {
        // a volume stays a directory: the NBD server holds its image open, a commit patches it in place
        mkdirSync(mp, { recursive: true, mode: 0o755 });
        const fh = await open(path.join(mp, VOLUME_FILE), 'wx', 0o600);
        await fh.truncate(volumeSize);
        await fh.close();
      }
      const zvol = opts.zvol && volumeSize !== undefined ? { blockSize: opts.zvol.blockSize, chunkSize: ZVOL_CHUNK } : undefined;
      if (zvol) writeCleanMap(dirtyMapFile(this.layout, name), ZVOL_CHUNK, chunksOf(volumeSize!), EMPTY_BASE);
      this.catalog.writeIndex(name, { head: null, nextSeq: 1, snapshots: [] });
      const rec: DatasetRecord = {
        format: 1,
        name,
        kind: volumeSize !== undefined ? 'volume' : 'filesystem',
        ...(volumeSize !== undefined ? { volsize: volumeSize } : {}),
        ...(zvol ? { zvol } : {}),
        createdAt: new Date().toISOString(),
      };
      this.catalog.register(rec); // the dataset exists from here
      return this.info(rec);
    } finally {
      lock.release();
    }
  }

  async destroyDataset(name: string, opts: { recursive?: boolean } = {}): Promise<void> {
    checkDatasetName(name);
    this.catalog.require(name);
    const children = this.catalog.descendants(name);
    if (children.length && !opts.recursive) {
      throw new Error(`The fs dataset ${name} has child datasets (${children.join(', ')}); destroy them first, or destroy ${name} recursively.`);
    }
    const own = this.catalog.index(name).snapshots;
    if (own.length && !opts.recursive) {
      throw new Error(`The fs dataset ${name} has ${own.length} snapshot(s); destroy them first, or destroy ${name} recursively.`);
    }
    const all = [name, ...children];
    this.refuseHeld(all, `destroying ${name}`);
    for (const n of all) refuseServed(this.catalog, n, `destroying ${n}`);
    const lock = lockDatasets(this.layout, all, 'a dataset destruction');
    try {
      this.refuseHeld(all, `destroying ${name}`);
      for (const ds of [...all].reverse()) this.removeDataset(ds);
    } finally {
      lock.release();
    }
    if (!name.includes('/')) removeTree(this.layout.poolMeta(name));
  }

  /** See rename.ts: the live tree and the metadata of the dataset and its children move, journaled. */
  async renameDataset(from: string, to: string): Promise<void> {
    checkDatasetName(from);
    for (const n of [from, ...this.catalog.descendants(from)]) refuseServed(this.catalog, n, `renaming ${n}`);
    return renameDataset({ catalog: this.catalog, faults: this.faults, settle: (names) => this.settle(names) }, from, to);
  }

  private refuseHeld(names: string[], doing: string): void {
    for (const n of names) {
      const held = this.catalog.index(n).snapshots.find((s) => s.held);
      if (held) throw new Error(`The snapshot ${n}@${held.name} is held; release the hold before ${doing}.`);
    }
  }

  /** Unregister first, then delete; a crash in between leaves a marker recover finishes. */
  private removeDataset(name: string): void {
    writeFileSync(this.layout.destroyingMarker(name), '');
    removeTree(this.layout.recordFile(name));
    this.finishDestroy(name);
  }

  private finishDestroy(name: string): void {
    const meta = this.layout.datasetMeta(name);
    const mp = this.layout.mountpoint(name);
    const versions = [versionOf(mp), versionOf(this.layout.unmountedDir(name)), versionOf(this.layout.spareLink(name))].filter((v): v is string => !!v);
    if (lstatOrNull(mp)) {
      // Out of sight in one rename, then deleted at leisure.
      const doomed = path.join(meta, 'doomed-live');
      removeTree(doomed);
      renameSync(mp, doomed);
    }
    removeTree(meta);
    for (const v of versions) removeTree(path.join(this.layout.treesDir(poolOf(name)), v));
  }

  // ---- snapshots ---------------------------------------------------------

  private snapshotInfo(dataset: string, s: SnapshotRecord): SnapshotInfo {
    return { dataset, name: s.name, id: s.id, createdAt: new Date(s.createdAt), size: s.referenced, held: s.held };
  }

  async listSnapshots(dataset: string): Promise<SnapshotInfo[]> {
    checkDatasetName(dataset);
    this.catalog.require(dataset);
    return [...this.catalog.index(dataset).snapshots].sort((a, b) => a.seq - b.seq).map((s) => this.snapshotInfo(dataset, s));
  }

  /** Finish commits a crash left behind before anything else touches these datasets. */
  private async settle(names: string[]): Promise<void> {
    // A rename cut short has the files and the metadata under different names: recover must finish it first.
    const pending = pendingRenameTouching(this.catalog, names);
    if (pending) {
      const { intent, name } = pending;
      throw new Error(`An interrupted rename of ${intent.from} to ${intent.to} is not finished; run recover on ${intent.from} before using ${name}.`);
    }
    for (const n of names) if (hasJournal(this.catalog, n)) await runJournal(this.catalog, n);
  }

  async createSnapshot(dataset: string, name: string, opts: SnapshotOptions): Promise<SnapshotInfo> {
    checkDatasetName(dataset);
    checkSnapshotName(dataset, name);
    this.catalog.require(dataset);
    const all = opts.recursive ? [dataset, ...this.catalog.descendants(dataset)] : [dataset];
    const lock = lockDatasets(this.layout, all, 'a snapshot');
    const made: string[] = [];
    /** datasets whose tree kept changing under every scan: their snapshot is not point-in-time */
    const unsteady = new Map<string, string[]>();
    try {
      await this.settle(all);
      for (const n of all) if (this.catalog.snapshot(n, name)) throw new Error(`The snapshot ${n}@${name} already exists.`);
      for (const n of all) {
        let store = new BlockStore(this.layout.blocksDir(n));
        const swept = markUnswept(this.catalog, n);
        try {
          const zvol = isZvol(this.catalog.record(n));
          const excluded = checkExcludes(opts.exclude ?? []);
          const take = async () => {
            let manifest: Manifest;
            if (zvol) manifest = await takeZvolSnapshot(this.catalog, n, name, store);
            else {
              let changed: string[];
              ({ manifest, changed } = await takeSnapshot(this.catalog, n, name, store, undefined, excluded));
              // The tree changed under the scan: take it again (unchanged files are not read twice), a few times.
              for (let attempt = 1; changed.length && attempt < SNAPSHOT_ATTEMPTS; attempt++) {
                store.discardNew();
                store.close();
                store = new BlockStore(this.layout.blocksDir(n));
                ({ manifest, changed } = await takeSnapshot(this.catalog, n, name, store, undefined, excluded));
              }
              if (changed.length) unsteady.set(n, changed);
            }
            failpoint('fs.snapshot.blocks-stored');
            // Blocks, then the manifest naming them, then the listing: a crash leaves only unlisted leftovers.
            store.seal();
            writeManifest(this.layout.manifestFile(n, manifest.id), manifest);
            await this.catalog.updateIndex(n, (index) => {
              index.snapshots.push({ name, id: manifest.id, createdAt: manifest.createdAt, seq: index.nextSeq++, held: false, referenced: referencedBytes(manifest) });
              index.head = manifest.id;
            });
            // Listed: the chunks written so far are in it; the map starts again from it.
            if (zvol) resetDirtyMap(this.catalog, n, manifest.id);
          };
          // A served zvol's writes stop for the length of it: every acknowledged write is in, none after.
          await (zvol ? withWritesPaused(this.catalog, n, take) : take());
          swept();
        } catch (error) {
          store.discardNew(); // the blocks stored for the failed snapshot (an orphan manifest waits for the sweep)
          throw error;
        } finally {
          store.close();
        }
        made.push(n);
      }
    } catch (error) {
      // All or nothing, like a recursive zfs snapshot.
      for (const n of made) await this.unlistAndCollect(n, name).catch(() => undefined);
      throw error;
    } finally {
      lock.release();
    }
    const info = this.snapshotInfo(dataset, this.catalog.snapshot(dataset, name)!);
    if (!unsteady.size) return info;
    const where = [...unsteady].map(([n, paths]) => `${n} (${paths.join(', ')})`).join('; ');
    return { ...info, notPointInTime: `the tree changed while the snapshot was taken, ${SNAPSHOT_ATTEMPTS} times in a row: ${where}` };
  }

  /** Unlist a snapshot, then free what only it used (order matters for senders, see gc.ts). */
  private async unlistAndCollect(dataset: string, name: string): Promise<void> {
    let id = '';
    await this.catalog.updateIndex(dataset, (index) => {
      const at = index.snapshots.findIndex((s) => s.name === name);
      if (at < 0) throw new Error(`The snapshot ${dataset}@${name} does not exist.`);
      if (index.snapshots[at].held) throw new Error(`The snapshot ${dataset}@${name} is held; release the hold before destroying it.`);
      id = index.snapshots[at].id;
      index.snapshots.splice(at, 1);
      if (index.head === id) index.head = null;
    });
    collectDestroyed(this.catalog, dataset, id);
  }

  async destroySnapshot(dataset: string, name: string, opts: { recursive: boolean }): Promise<void> {
    checkDatasetName(dataset);
    checkSnapshotName(dataset, name);
    this.catalog.requireSnapshot(dataset, name);
    const all = (opts.recursive ? [dataset, ...this.catalog.descendants(dataset)] : [dataset]).filter((n) => this.catalog.snapshot(n, name));
    const lock = lockDatasets(this.layout, all, 'a snapshot destruction');
    try {
      await this.settle(all);
      for (const n of all) {
        const s = this.catalog.snapshot(n, name);
        if (s?.held) throw new Error(`The snapshot ${n}@${name} is held; release the hold before destroying it.`);
      }
      for (const n of all) await this.unlistAndCollect(n, name);
    } finally {
      lock.release();
    }
  }

  async holdSnapshot(dataset: string, name: string, held: boolean): Promise<void> {
    checkDatasetName(dataset);
    checkSnapshotName(dataset, name);
    this.catalog.require(dataset);
    await this.catalog.updateIndex(dataset, (index) => {
      const s = index.snapshots.find((x) => x.name === name);
      if (!s) throw new Error(`The snapshot ${dataset}@${name} does not exist.`);
      s.held = held;
    });
  }

  async rollback(dataset: string, name: string): Promise<void> {
    checkDatasetName(dataset);
    checkSnapshotName(dataset, name);
    this.catalog.require(dataset);
    this.catalog.requireSnapshot(dataset, name);
    refuseServed(this.catalog, dataset, `rolling it back`);
    const lock = lockDatasets(this.layout, [dataset], 'a rollback');
    try {
      await this.settle([dataset]);
      refuseServed(this.catalog, dataset, `rolling it back`);
      const snap = this.catalog.requireSnapshot(dataset, name);
      const index = this.catalog.index(dataset);
      const target = readManifest(this.layout.manifestFile(dataset, snap.id), `${dataset}@${name}`);
      const head = index.head && index.head !== snap.id && index.snapshots.some((s) => s.id === index.head) ? index.head : null;
      const caches = head ? [readManifest(this.layout.manifestFile(dataset, head), `${dataset} (${head})`)] : [];
      const liveDir = this.catalog.liveDir(dataset);
      const exclude = this.catalog.childMountNames(dataset);
      const plan = patchPlan(this.catalog, dataset, planApply(await scanTree(liveDir, exclude), liveDir, target, caches, exclude), target);
      const staging = path.join(this.layout.stagingRoot(dataset), randomUUID());
      const store = new BlockStore(this.layout.blocksDir(dataset));
      try {
        await stageFiles(plan, target, path.join(staging, 'files'), store, `${dataset}@${name}`);
      } catch (error) {
        removeTree(staging);
        throw error;
      } finally {
        store.close();
      }
      const journal: Journal = {
        format: 2,
        op: 'rollback',
        dataset,
        ...commitTarget(this.catalog, dataset, { kind: this.catalog.require(dataset).kind, patch: !!plan.patch, create: false, current: liveDir }),
        staging,
        snapshot: { name, id: snap.id, createdAt: snap.createdAt },
        plan,
      };
      await writeJournals(this.catalog, [journal]);
      await runJournal(this.catalog, dataset, this.faults);
    } finally {
      lock.release();
    }
  }

  async changedSince(dataset: string, name: string): Promise<boolean> {
    checkDatasetName(dataset);
    checkSnapshotName(dataset, name);
    this.catalog.require(dataset);
    const snap = this.catalog.requireSnapshot(dataset, name);
    const manifest = readManifest(this.layout.manifestFile(dataset, snap.id), `${dataset}@${name}`);
    const quick = zvolDifference(this.catalog, dataset, manifest);
    if (quick !== undefined) return quick !== null;
    // What the snapshot left out by its patterns is not a change of the live tree.
    return (await firstDifference(this.catalog.liveDir(dataset), manifest, this.catalog.childMountNames(dataset), excludeMatcher(manifest.exclude))) !== null;
  }

  // ---- replication -------------------------------------------------------

  async offerChunks(dataset: string, snapshot: string, opts: { from?: string; recursive: boolean }): Promise<ChunkOffer> {
    return offerChunks(this.catalog, dataset, snapshot, opts);
  }

  async heldChunks(dataset: string, offer: ChunkOffer): Promise<ChunkAnswer> {
    return heldChunks(this.catalog, dataset, offer);
  }

  send(dataset: string, snapshot: string, opts: SendOptions): Readable {
    return sendStream(this.catalog, dataset, snapshot, opts);
  }

  receive(dataset: string, stream: Readable, opts: ReceiveOptions): Promise<ReceiveResult> {
    return receiveStream(
      {
        catalog: this.catalog,
        faults: this.faults,
        settle: (names) => this.settle(names),
        snapshotInfo: (ds, s) => this.snapshotInfo(ds, s),
      },
      dataset,
      stream,
      opts,
    );
  }

  async recover(dataset: string): Promise<string[]> {
    checkDatasetName(dataset);
    const lines: string[] = [];
    if (!existsSync(this.layout.poolMeta(poolOf(dataset)))) return lines;
    // A rename cut short first: it decides under which name the dataset's files and metadata are.
    for (let pending = pendingRenameTouching(this.catalog, [dataset]); pending; pending = pendingRenameTouching(this.catalog, [dataset])) {
      const lock = lockDatasets(this.layout, renameNames(pending.intent), 'a recovery');
      try {
        lines.push(`Finished an interrupted rename: ${finishRename(this.catalog, pending.intent)}`);
      } finally {
        lock.release();
      }
    }
    const names = [...new Set([dataset, ...this.catalog.metaNames(poolOf(dataset)).filter((n) => isDescendant(n, dataset))])].filter((n) => existsSync(this.layout.datasetMeta(n)) || existsSync(this.layout.lockFile(n)));
    for (const n of names) {
      const pid = staleLockOwner(this.layout.lockFile(n));
      if (pid !== null) lines.push(`Removed the stale lock of ${n} left by process ${pid}.`);
    }
    if (!names.length) return lines;
    const lock = lockDatasets(this.layout, names, 'a recovery');
    try {
      for (const n of names) lines.push(...(await this.recoverOne(n)));
    } finally {
      lock.release();
    }
    return lines;
  }

  private async recoverOne(name: string): Promise<string[]> {
    const lines: string[] = [];
    const meta = this.layout.datasetMeta(name);
    if (!existsSync(meta)) return lines;
    if (existsSync(this.layout.destroyingMarker(name))) {
      removeTree(this.layout.recordFile(name));
      this.finishDestroy(name);
      return [`Finished destroying ${name}.`];
    }
    if (hasJournal(this.catalog, name)) {
      const done = await runJournal(this.catalog, name);
      lines.push(`Finished an interrupted commit: ${done}`);
    }
    // A link moved (mount, unmount) but not yet written for its new place.
    for (const link of [this.layout.mountpoint(name), this.layout.unmountedDir(name)]) relink(this.layout, name, link);
    const versions = tidyVersions(this.catalog, poolOf(name));
    if (versions) lines.push(`Removed ${versions} version(s) of trees in the pool ${poolOf(name)} that no reader is sent to any more.`);
    let staged: string[] = [];
    try {
      staged = readdirSync(this.layout.stagingRoot(name));
    } catch {
      /* none */
    }
    for (const s of staged) {
      removeTree(path.join(this.layout.stagingRoot(name), s));
      lines.push(`Removed the staging area ${s} of an interrupted receive or rollback of ${name}.`);
    }
    if (!this.catalog.record(name)) {
      const kept = tidyUnregistered(this.layout, name);
      lines.push(kept ?? `Removed the leftovers of ${name}, which was never completely created.`);
      return lines;
    }
    if (!this.catalog.mounted(name) && !lstatOrNull(this.layout.mountpoint(name)) && (!parentOf(name) || this.catalog.mounted(parentOf(name)!))) {
      mkdirSync(this.layout.mountpoint(name), { mode: 0o555 });
      lines.push(`Recreated the empty mountpoint of the unmounted ${name}.`);
    }
    if (!needsSweep(this.catalog, name)) return lines;
    const freed = describeFreed(sweep(this.catalog, name), name);
    if (freed) lines.push(freed);
    return lines;
  }

  // ---- zvols -------------------------------------------------------------

  async isZvol(dataset: string): Promise<boolean> {
    checkDatasetName(dataset);
    return isZvol(this.catalog.record(dataset));
  }

  async volumeStats(dataset: string): Promise<VolumeStats> {
    checkDatasetName(dataset);
    return zvolStats(this.catalog, dataset);
  }

  async resizeVolume(dataset: string, size: number): Promise<void> {
    checkDatasetName(dataset);
    const lock = lockDatasets(this.layout, [dataset], 'a resize');
    try {
      await this.settle([dataset]);
      refuseServed(this.catalog, dataset, 'resizing it');
      growZvol(this.catalog, dataset, size);
    } finally {
      lock.release();
    }
  }

  readVolume(dataset: string, snapshot: string): AsyncIterable<{ offset: number; length: number; data: Buffer | null }> {
    checkDatasetName(dataset);
    checkSnapshotName(dataset, snapshot);
    return readZvolSnapshot(this.catalog, dataset, snapshot);
  }

  async volumeSeed(dataset: string, snapshot: string): Promise<string> {
    checkDatasetName(dataset);
    checkSnapshotName(dataset, snapshot);
    if (!isZvol(this.catalog.record(dataset))) throw new Error(`The fs dataset ${dataset} is not a zvol.`);
    const snap = this.catalog.requireSnapshot(dataset, snapshot);
    const m = readManifest(this.layout.manifestFile(dataset, snap.id), `${dataset}@${snapshot}`);
    return JSON.stringify({ ...m, entries: m.entries.map(withoutCache) });
  }

  async adoptVolumeSeed(dataset: string, seed: string): Promise<SnapshotInfo> {
    checkDatasetName(dataset);
    const rec = this.catalog.require(dataset);
    if (!isZvol(rec)) throw new Error(`The fs dataset ${dataset} is not a zvol.`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(seed);
    } catch (error) {
      throw new Error(`The seed of ${dataset} is not JSON: ${(error as Error).message}.`);
    }
    const manifest = checkReceivedManifest(parsed, `the seed of ${dataset}`);
    const entry = manifest.entries.find((e) => e.path === VOLUME_FILE);
    if (manifest.kind !== 'volume' || manifest.chunkSize !== ZVOL_CHUNK || entry?.size !== rec.volsize) {
      throw new Error(`The seed of ${dataset} describes ${manifest.kind === 'volume' ? `a ${entry?.size ?? 0}-byte volume` : 'a filesystem'}, not this ${rec.volsize}-byte zvol.`);
    }
    checkSnapshotName(dataset, manifest.name);
    const lock = lockDatasets(this.layout, [dataset], 'adopting a seed');
    const store = new BlockStore(this.layout.blocksDir(dataset));
    try {
      await this.settle([dataset]);
      if (this.catalog.index(dataset).snapshots.length) throw new Error(`The zvol fs:${dataset} already has snapshots; a seed is adopted only by a zvol just created from its image.`);
      const swept = markUnswept(this.catalog, dataset);
      const read = await withWritesPaused(this.catalog, dataset, () => takeZvolSnapshot(this.catalog, dataset, manifest.name, store));
      const want = volumeBlocks(manifest, chunksOf(rec.volsize));
      const got = read.entries.find((e) => e.path === VOLUME_FILE)!.blocks!;
      const differ = differingChunks(got, want, chunksOf(rec.volsize));
      if (differ.length) {
        store.discardNew();
        swept();
        throw new Error(`The zvol fs:${dataset} is not the snapshot @${manifest.name} its seed describes: ${differ.length} of ${chunksOf(rec.volsize)} chunks differ (the first at byte ${differ[0] * ZVOL_CHUNK}).`);
      }
      store.seal();
      writeManifest(this.layout.manifestFile(dataset, manifest.id), manifest);
      await this.catalog.updateIndex(dataset, (index) => {
        index.snapshots.push({ name: manifest.name, id: manifest.id, createdAt: manifest.createdAt, seq: index.nextSeq++, held: false, referenced: referencedBytes(manifest) });
        index.head = manifest.id;
      });
      resetDirtyMap(this.catalog, dataset, manifest.id);
      swept();
    } finally {
      store.close();
      lock.release();
    }
    return this.snapshotInfo(dataset, this.catalog.snapshot(dataset, manifest.name)!);
  }

  async openVolume(dataset: string, opts: { readOnly?: boolean } = {}): Promise<BlockVolume> {
    checkDatasetName(dataset);
    return ZvolVolume.open(this.catalog, dataset, opts.readOnly);
  }

  // ---- mounting ----------------------------------------------------------

  async mount(dataset: string): Promise<void> {
    checkDatasetName(dataset);
    this.catalog.require(dataset);
    if (this.catalog.mounted(dataset)) return;
    const parent = parentOf(dataset);
    if (parent && !this.catalog.mounted(parent)) throw new Error(`The parent dataset ${parent} is unmounted; mount it before ${dataset}.`);
    const lock = lockDatasets(this.layout, [dataset], 'a mount');
    try {
      await this.settle([dataset]); // a pending commit names the files' current place
      const mp = this.layout.mountpoint(dataset);
      const st = lstatOrNull(mp);
      if (st) {
        if (!st.isDirectory() || !isEmptyDir(mp)) throw new Error(`The mountpoint ${mp} of ${dataset} is not empty; move its files away before mounting.`);
        rmdirSync(mp);
      }
      renameSync(this.layout.unmountedDir(dataset), mp);
      relink(this.layout, dataset, mp); // a relative link, moved to another depth
    } finally {
      lock.release();
    }
  }

  async unmount(dataset: string): Promise<void> {
    checkDatasetName(dataset);
    this.catalog.require(dataset);
    if (!this.catalog.mounted(dataset)) return;
    const mounted = this.catalog.descendants(dataset).filter((c) => this.catalog.mounted(c));
    if (mounted.length) throw new Error(`The fs dataset ${dataset} has mounted child datasets (${mounted.join(', ')}); unmount them first.`);
    refuseServed(this.catalog, dataset, 'unmounting it');
    const lock = lockDatasets(this.layout, [dataset], 'an unmount');
    try {
      await this.settle([dataset]);
      const mp = this.layout.mountpoint(dataset);
      renameSync(mp, this.layout.unmountedDir(dataset));
      relink(this.layout, dataset, this.layout.unmountedDir(dataset));
      // An empty, read-only directory stands in, as a mountpoint without a file system would.
      mkdirSync(mp, { mode: 0o555 });
      chmodSync(mp, 0o555);
    } finally {
      lock.release();
    }
  }
}

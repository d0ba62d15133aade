/**
 * receive: read and verify the whole stream before the live tree is touched.
 *
 *  1. preamble, stream header; lock every destination dataset (fail fast)
 *  2. per dataset: check the destination can take it (base present with the
 *     same id, not changed since unless force, no data overwritten by a full
 *     stream); verify each block's sha256 and store the ones we lack; read
 *     and check the manifest and the per-dataset counts
 *  3. trailer counts and the checksum over the whole stream; nothing after it
 *  4. plan the changes, build the new files in staging, write the journals
 *     (commit point), run them (journal.ts)
 *
 * Before 4 only new blocks, staging (and the metadata directory of a
 * dataset being created) are written, so any failure is undone by deleting
 * them; the live tree and the snapshot index are untouched.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import type { ReceiveOptions, ReceiveResult, SnapshotInfo } from '../driver.js';
import { BlockStore, CHUNK_SIZE, sha256 } from './block-store.js';
import type { Catalog, SnapshotRecord } from './catalog.js';
import { differenceFrom } from './compare.js';
import { Breather, isEmptyDir, lstatOrNull, removeTree, writeJsonAtomic } from './files.js';
import { SimulatedCrash, runJournal, writeJournal, type Faults, type Journal, type StagedManifest } from './journal.js';
import { lockDatasets, type Lock } from './lock.js';
import { applyDelta, blocksOf, checkReceivedManifest, entriesDigest, readManifest, type Entry, type Manifest } from './manifest.js';
import { checkDatasetName, checkSnapshotName, parentOf, poolOf } from './names.js';
import { planApply, stageFiles } from './plan.js';
import { scanTree, type LiveNode } from './scan.js';
import {
  REC, StreamFormatError, StreamReader, parseJson, recordName,
  type DatasetEnd, type DatasetHeader, type RawRecord, type StreamHeader, type StreamManifest, type Trailer,
} from './stream-format.js';

interface Incoming {
  target: string;
  header: DatasetHeader;
  create: boolean;
  /** the destination's own copy of the base manifest (with its stat caches) */
  baseManifest: Manifest | null;
  staging: string;
  /** blocks this receive added to the dataset's store: removed again if it fails before the commit */
  newBlocks: string[];
  /** the live tree as scanned when it was checked (reused to plan the change) */
  live: LiveNode[] | null;
  manifest: Manifest | null;
  /** the manifest as it will be staged for the journal */
  staged: StagedManifest | null;
  /** this receive made the dataset's metadata directory (a new dataset): remove it on failure */
  madeMeta: boolean;
}

export interface ReceiveContext {
  catalog: Catalog;
  faults: Faults;
  settle(names: string[]): Promise<void>;
  snapshotInfo(dataset: string, rec: SnapshotRecord): SnapshotInfo;
}

function corrupt(message: string): StreamFormatError {
  return new StreamFormatError(`The stream is corrupt: ${message}`);
}

async function expectRecord(reader: StreamReader, type: number): Promise<RawRecord> {
  const rec = await reader.record(recordName(type));
  if (rec.type !== type) throw corrupt(`found a ${recordName(rec.type)} record where a ${recordName(type)} was expected.`);
  return rec;
}

function checkStreamHeader(sh: StreamHeader, dataset: string): string[] {
  if (!sh || typeof sh.snapshot !== 'string' || !Array.isArray(sh.datasets) || sh.datasets[0] !== '') throw corrupt('its stream header is malformed.');
  checkSnapshotName(dataset, sh.snapshot);
  const names: string[] = [];
  for (const rel of sh.datasets) {
    if (typeof rel !== 'string') throw corrupt('its stream header is malformed.');
    const name = rel ? `${dataset}/${rel}` : dataset;
    checkDatasetName(name);
    // Parents before children, each once: the order datasets are created and committed in.
    if (names.includes(name) || (rel && !names.includes(parentOf(name)!))) throw corrupt(`its list of datasets is out of order at ${JSON.stringify(rel)}.`);
    names.push(name);
  }
  return names;
}

/** Can `target` take this dataset of the stream? Throws a sentence naming both sides when not. */
async function preflight(ctx: ReceiveContext, target: string, h: DatasetHeader, force: boolean, targets: string[]): Promise<Incoming> {
  const { catalog } = ctx;
  const { layout } = catalog;
  if (h.kind !== 'filesystem' && h.kind !== 'volume') throw corrupt(`unknown dataset kind ${JSON.stringify(h.kind)}.`);
  if (!h.snapshot || typeof h.snapshot.id !== 'string' || !h.snapshot.id) throw corrupt('a dataset header has no snapshot id.');
  checkSnapshotName(target, h.snapshot.name);
  const incoming = (create: boolean, baseManifest: Manifest | null, madeMeta: boolean, live: LiveNode[] | null = null): Incoming => {
    const staging = path.join(layout.stagingRoot(target), randomUUID());
    mkdirSync(staging, { recursive: true });
    return { target, header: h, create, baseManifest, staging, newBlocks: [], live, manifest: null, staged: null, madeMeta };
  };
  const rec = catalog.record(target);
  if (!rec) {
    if (h.base) {
      throw new Error(`The destination ${target} does not exist, but the stream is incremental from @${h.base.name} (id ${h.base.id}); send a full stream first.`);
    }
    const parent = parentOf(target);
    if (parent && !targets.slice(0, targets.indexOf(target)).includes(parent)) {
      const prec = catalog.record(parent);
      if (!prec) throw new Error(`The parent dataset ${parent} of ${target} does not exist on this appliance; create it first.`);
      if (prec.kind === 'volume') throw new Error(`The parent dataset ${parent} of ${target} is a volume; datasets cannot be received inside it.`);
      if (!catalog.mounted(parent)) throw new Error(`The parent dataset ${parent} of ${target} is unmounted; mount it before receiving into it.`);
    }
    const mp = layout.mountpoint(target);
    const st = lstatOrNull(mp);
    if (st && (!st.isDirectory() || !isEmptyDir(mp))) {
      throw new Error(`The destination ${target} does not exist, but its mountpoint ${mp} is already taken by other files; move them away first.`);
    }
    // Leftovers of an earlier attempt that never registered the dataset.
    const meta = layout.datasetMeta(target);
    if (existsSync(meta)) removeTree(meta);
    mkdirSync(meta, { recursive: true });
    return incoming(true, null, true);
  }

  if (rec.kind !== h.kind) throw new Error(`The destination ${target} is a ${rec.kind}, but the stream carries a ${h.kind}.`);
  const { snapshots } = catalog.index(target);
  const same = snapshots.find((s) => s.id === h.snapshot.id);
  if (same) throw new Error(`The destination ${target} already has this snapshot: @${same.name} (id ${same.id}).`);
  const clash = snapshots.find((s) => s.name === h.snapshot.name);
  if (clash) throw new Error(`The destination ${target} already has a different snapshot named @${clash.name} (id ${clash.id}, the stream's is ${h.snapshot.id}).`);
  const liveDir = catalog.liveDir(target);
  const exclude = catalog.childMountNames(target);

  if (!h.base) {
    if (snapshots.length) {
      throw new Error(`The destination ${target} already has ${snapshots.length} snapshot(s) (newest @${snapshots.at(-1)!.name}); a full stream is only received into a new or empty dataset, never over existing data. Send incrementally from a common snapshot, or destroy ${target} first.`);
    }
    const live = await scanTree(liveDir, exclude);
    if (live && live.some((n) => n.path !== '')) {
      throw new Error(`The destination ${target} already has files in ${liveDir}; a full stream is never received over existing data. Move them away or destroy ${target} first.`);
    }
    return incoming(false, null, false, live);
  }

  const base = snapshots.find((s) => s.id === h.base!.id);
  if (!base) {
    const sameName = snapshots.find((s) => s.name === h.base!.name);
    if (sameName) {
      throw new Error(`The destination ${target} has @${sameName.name} with id ${sameName.id}, but the stream's base @${h.base.name} has id ${h.base.id}: they are different snapshots, so this incremental stream cannot be applied.`);
    }
    const newest = snapshots.at(-1);
    throw new Error(`The destination ${target} does not have the base snapshot @${h.base.name} (id ${h.base.id}) of this incremental stream; ${newest ? `its newest snapshot is @${newest.name} (id ${newest.id})` : 'it has no snapshots'}.`);
  }
  const baseManifest = readManifest(layout.manifestFile(target, base.id), `${target}@${base.name}`);
  const live = await scanTree(liveDir, exclude);
  const difference = await differenceFrom(live, liveDir, baseManifest, exclude);
  if (difference && !force) {
    throw new Error(`The destination ${target} was changed since its snapshot @${base.name}, the base of this stream (${difference}); nothing was changed. Receive with force to roll those changes back.`);
  }
  return incoming(false, baseManifest, false, live);
}

/** The manifest of the stream: whole, or rebuilt from the destination's base and the delta, proven by the digest. */
function decodeManifest(parts: Buffer[], inc: Incoming): { manifest: Manifest; staged: StagedManifest } {
  const where = `${inc.target}@${inc.header.snapshot.name}`;
  let json: string;
  try {
    json = gunzipSync(Buffer.concat(parts), { maxOutputLength: 2 ** 31 - 1 }).toString('utf8');
  } catch {
    throw corrupt(`the manifest for ${where} cannot be unpacked.`);
  }
  let body: StreamManifest;
  try {
    body = JSON.parse(json) as StreamManifest;
  } catch {
    throw corrupt(`the manifest for ${where} is not valid JSON.`);
  }
  const { entries, delta, digest, ...fields } = body ?? {};
  let staged: StagedManifest;
  let rebuilt: Entry[] | undefined = entries;
  if (delta) {
    if (!inc.baseManifest || !Array.isArray(delta.upserts) || !Array.isArray(delta.removes)) throw corrupt(`the manifest for ${where} is a delta without a usable base.`);
    rebuilt = applyDelta(inc.baseManifest, delta);
    staged = { fields, baseId: inc.baseManifest.id, delta };
  } else {
    staged = { fields, entries };
  }
  const manifest = checkReceivedManifest({ ...fields, entries: rebuilt }, where);
  if (entriesDigest(manifest.entries) !== digest) {
    throw new StreamFormatError(delta
      ? `The manifest of ${where} rebuilt from this appliance's copy of @${inc.baseManifest!.name} does not match the sender's (its digest differs): the two copies of the base snapshot are not the same.`
      : `The stream is corrupt: the manifest for ${where} does not match its digest.`);
  }
  return { manifest, staged };
}

/**
 * Blocks and manifest of one dataset of the stream, verified. Each block is
 * checked against its sha256 and, when new, stored at once: a block is only
 * ever stored under its true hash, and one that no manifest lists is
 * invisible (and removed again if the receive fails).
 */
async function readDataset(reader: StreamReader, inc: Incoming, catalog: Catalog, signal?: AbortSignal): Promise<{ blocks: number; bytes: number }> {
  const store = new BlockStore(catalog.layout.blocksDir(inc.target));
  const breather = new Breather();
  const arrived = new Set<string>();
  let blocks = 0;
  let bytes = 0;
  let rec = await reader.record('block or manifest part');
  while (rec.type === REC.block) {
    const hash = rec.blockHash!.toString('hex');
    const data = rec.payload;
    blocks++;
    if (sha256(data) !== hash) throw corrupt(`block ${blocks} for ${inc.target} does not match its sha256 ${hash}.`);
    if (!arrived.has(hash) && store.put(hash, data)) inc.newBlocks.push(hash);
    arrived.add(hash);
    bytes += data.length;
    signal?.throwIfAborted();
    await breather.breathe();
    rec = await reader.record('block or manifest part');
  }
  const parts: Buffer[] = [];
  while (rec.type === REC.manifest) {
    parts.push(Buffer.from(rec.payload));
    rec = await reader.record('manifest part or dataset end');
  }
  if (rec.type !== REC.end) throw corrupt(`found a ${recordName(rec.type)} record inside the data for ${inc.target}.`);
  const end = parseJson<DatasetEnd>(rec, 'dataset end');
  const manifestBytes = parts.reduce((n, p) => n + p.length, 0);
  if (end.blocks !== blocks || end.blockBytes !== bytes || end.manifestBytes !== manifestBytes) {
    throw corrupt(`the data for ${inc.target} has ${blocks} blocks (${bytes} bytes) and a ${manifestBytes}-byte manifest, but the sender counted ${end.blocks}, ${end.blockBytes} and ${end.manifestBytes}.`);
  }
  const where = `${inc.target}@${inc.header.snapshot.name}`;
  const { manifest, staged } = decodeManifest(parts, inc);
  if (manifest.id !== inc.header.snapshot.id || manifest.name !== inc.header.snapshot.name || manifest.kind !== inc.header.kind) {
    throw corrupt(`the manifest for ${where} does not belong to the snapshot its header announced.`);
  }
  // Blocks of the base are in the store (a listed snapshot's always are); anything else must have arrived or be there.
  const inBase = new Set(inc.baseManifest ? blocksOf(inc.baseManifest) : []);
  for (const h of new Set(blocksOf(manifest))) {
    if (!arrived.has(h) && !inBase.has(h) && !store.has(h)) throw new StreamFormatError(`The stream for ${where} refers to block ${h}, which it does not carry and the destination does not have.`);
  }
  inc.manifest = manifest;
  inc.staged = staged;
  return { blocks, bytes };
}

/** Plan and stage the change of one verified dataset; returns its journal (not yet written). */
async function prepare(catalog: Catalog, inc: Incoming, all: Incoming[], signal?: AbortSignal): Promise<Journal> {
  const targets = all.map((i) => i.target);
  const { layout } = catalog;
  const manifest = inc.manifest!;
  const liveDir = inc.create ? layout.mountpoint(inc.target) : catalog.liveDir(inc.target);
  // Child datasets already here or arriving in this stream keep their own mountpoints.
  const exclude = new Set(catalog.childMountNames(inc.target));
  for (const t of targets) if (parentOf(t) === inc.target) exclude.add(t.slice(inc.target.length + 1));
  // The tree as checked before the transfer: a change made since is kept, like one made just after.
  const live = inc.live ?? (await scanTree(liveDir, exclude));
  const plan = planApply(live, liveDir, manifest, inc.baseManifest ? [inc.baseManifest] : [], exclude);
  await stageFiles(plan, manifest, path.join(inc.staging, 'files'), new BlockStore(layout.blocksDir(inc.target)), `${inc.target}@${manifest.name}`, signal);
  writeJsonAtomic(path.join(inc.staging, 'manifest.json'), inc.staged);
  const h = inc.header;
  // Creating this dataset's directory touches the parent's; put the parent's mtime back afterwards.
  let parentDir: Journal['parentDir'];
  const parent = parentOf(inc.target);
  if (parent && plan.mkdir.includes('')) {
    const incomingParent = all.find((i) => i.target === parent)?.manifest?.entries[0];
    const mtimeNs = incomingParent?.mtimeNs ?? lstatSync(path.dirname(liveDir), { bigint: true, throwIfNoEntry: false })?.mtimeNs.toString();
    if (mtimeNs) parentDir = { path: path.dirname(liveDir), mtimeNs };
  }
  return {
    format: 1,
    op: 'receive',
    dataset: inc.target,
    liveDir,
    staging: inc.staging,
    snapshot: { name: h.snapshot.name, id: h.snapshot.id, createdAt: typeof h.snapshot.createdAt === 'string' ? h.snapshot.createdAt : new Date().toISOString() },
    plan,
    ...(parentDir ? { parentDir } : {}),
    ...(inc.create ? { create: { kind: h.kind, ...(h.volsize !== undefined ? { volsize: h.volsize } : {}) } } : {}),
    ...(h.kind === 'volume' && h.volsize !== undefined ? { volsize: h.volsize } : {}),
  };
}

export async function receiveStream(ctx: ReceiveContext, dataset: string, stream: Readable, opts: ReceiveOptions): Promise<ReceiveResult> {
  const { catalog } = ctx;
  const { layout } = catalog;
  checkDatasetName(dataset);
  const reader = new StreamReader(stream, CHUNK_SIZE, opts.signal);
  const incoming: Incoming[] = [];
  const poolMetaExisted = existsSync(layout.poolMeta(poolOf(dataset)));
  let lock: Lock | null = null;
  let committed = false;
  const journals: Journal[] = [];
  try {
    await reader.readPreamble();
    const sh = parseJson<StreamHeader>(await expectRecord(reader, REC.stream), 'stream header');
    const targets = checkStreamHeader(sh, dataset);
    if (targets.length > 1 && !opts.recursive) {
      throw new Error(`The stream carries ${targets.length - 1} child dataset(s) of ${dataset} (it was sent recursively); receive it recursively.`);
    }
    if (dataset.includes('/') && !catalog.record(poolOf(dataset))) {
      throw new Error(`The pool ${poolOf(dataset)} does not exist on this appliance; create it before receiving ${dataset}.`);
    }
    lock = lockDatasets(layout, targets, 'a receive');
    await ctx.settle(targets);

    let blocks = 0;
    let blockBytes = 0;
    for (let i = 0; i < targets.length; i++) {
      const h = parseJson<DatasetHeader>(await expectRecord(reader, REC.dataset), 'dataset header');
      if (h.rel !== sh.datasets[i]) throw corrupt(`dataset ${i + 1} is ${JSON.stringify(h.rel)}, but its header announced ${JSON.stringify(sh.datasets[i])}.`);
      if (h.snapshot?.name !== sh.snapshot) throw corrupt(`dataset ${JSON.stringify(h.rel)} carries @${h.snapshot?.name}, not @${sh.snapshot}.`);
      const inc = await preflight(ctx, targets[i], h, opts.force, targets);
      incoming.push(inc);
      const got = await readDataset(reader, inc, catalog, opts.signal);
      blocks += got.blocks;
      blockBytes += got.bytes;
    }
    const before = reader.bytes;
    const trailer = parseJson<Trailer>(await expectRecord(reader, REC.trailer), 'trailer');
    const digest = reader.digest();
    const checksum = await reader.read(32, 'checksum', false);
    if (!checksum.equals(digest)) throw corrupt('its checksum does not match its content (it was altered on the way).');
    if (trailer.datasets !== targets.length || trailer.blocks !== blocks || trailer.blockBytes !== blockBytes || trailer.bytes !== before) {
      throw corrupt(`the trailer counts ${trailer.datasets} datasets, ${trailer.blocks} blocks and ${trailer.bytes} bytes, but ${targets.length}, ${blocks} and ${before} arrived.`);
    }
    await reader.expectEnd();
    opts.signal?.throwIfAborted();

    for (const inc of incoming) journals.push(await prepare(catalog, inc, incoming, opts.signal));
    opts.signal?.throwIfAborted();
    // Commit point. From here on the receive is finished, now or by recover.
    for (const j of journals) {
      writeJournal(catalog, j);
      committed = true;
    }
    for (const j of journals) await commitOne(catalog, j, ctx.faults);
    const top = catalog.snapshot(dataset, sh.snapshot)!;
    return { snapshot: ctx.snapshotInfo(dataset, top), bytes: reader.bytes };
  } catch (error) {
    await reader.close().catch(() => undefined);
    if (error instanceof SimulatedCrash) throw error;
    if (committed) {
      throw new Error(`The receive into fs dataset ${dataset} stopped while committing: ${(error as Error).message} Run recover on ${dataset} to finish it.`);
    }
    for (const inc of incoming) {
      removeTree(inc.staging);
      if (inc.madeMeta && !catalog.record(inc.target)) removeTree(layout.datasetMeta(inc.target));
      else {
        const store = new BlockStore(layout.blocksDir(inc.target));
        for (const h of inc.newBlocks) store.remove(h);
      }
    }
    const message = (error as Error).message;
    if (error instanceof StreamFormatError || (error as Error).name === 'AbortError') {
      throw new Error(`${message} Nothing was changed on fs dataset ${dataset}.`, { cause: error });
    }
    throw error;
  } finally {
    // A pool this receive was to create and did not: nothing of it stays (we hold its only lock).
    if (lock && !poolMetaExisted && !committed && !catalog.record(poolOf(dataset))) removeTree(layout.poolMeta(poolOf(dataset)));
    lock?.release();
  }
}

/** Run a written journal; one retry covers a transient error, a second failure is left for recover. */
async function commitOne(catalog: Catalog, j: Journal, faults: Faults): Promise<void> {
  try {
    await runJournal(catalog, j.dataset, faults);
  } catch (error) {
    if (error instanceof SimulatedCrash) throw error;
    await runJournal(catalog, j.dataset);
  }
}

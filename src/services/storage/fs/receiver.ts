/**
 * receive: read and verify the whole stream before the live tree is touched.
 *
 *  1. preamble, stream header; lock every destination dataset (fail fast)
 *  2. per dataset: check the destination can take it (preflight.ts); read
 *     and check the manifest, plan the change; verify each block's sha256,
 *     store the ones we lack and build the staged files as they arrive
 *     (stage.ts); check the per-dataset counts
 *  3. trailer counts and the checksum over the whole stream; nothing after it
 *  4. seal the new blocks into the stores, write the journals (commit
 *     point), run them (journal.ts)
 *
 * Before 4 only new packs, staging (and the metadata directory of a
 * dataset being created) are written, so any failure is undone by deleting
 * them; the live tree and the snapshot index are untouched.
 */
import { existsSync, lstatSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { unpackBlockPatches } from './block-patch.js';
import type { ReceiveOptions, ReceiveResult, SnapshotInfo } from '../driver.js';
import { CHUNK_SIZE, ZVOL_CHUNK, sha256 } from './block-store.js';
import { patchPlan } from './zvol.js';
import type { Catalog, SnapshotRecord } from './catalog.js';
import { Breather, removeTree, writeFileSynced } from './files.js';
import { markUnswept, sweep } from './gc.js';
import { SEAL_EVERY, dropPartial, keepPacks, sealIntervalMs, tidyUnregistered } from './partial.js';
import { SimulatedCrash, runJournal, writeJournals, type Faults, type Journal, type StagedManifest } from './journal.js';
import { lockDatasets, type Lock } from './lock.js';
import { applyDelta, blocksOf, checkReceivedManifest, entriesDigest, withoutCache, type Entry, type Manifest } from './manifest.js';
import { checkDatasetName, parentOf, poolOf } from './names.js';
import { planApply, planIsEmpty } from './plan.js';
import { checkStreamHeader, corrupt, preflight, type Incoming } from './preflight.js';
import { scanTree } from './scan.js';
import { Stager } from './stage.js';
import { commitTarget } from './versions.js';
import { REC, StreamFormatError, StreamReader, parseJson, recordName, type DatasetEnd, type DatasetHeader, type RawRecord, type StreamHeader, type StreamManifest, type Trailer } from './stream-format.js';

export interface ReceiveContext {
  catalog: Catalog;
  faults: Faults;
  settle(names: string[]): Promise<void>;
  snapshotInfo(dataset: string, rec: SnapshotRecord): SnapshotInfo;
}

async function expectRecord(reader: StreamReader, type: number): Promise<RawRecord> {
  const rec = await reader.record(recordName(type));
  if (rec.type !== type) throw corrupt(`found a ${recordName(rec.type)} record where a ${recordName(type)} was expected.`);
  return rec;
}

/** The manifest of the stream: whole, or rebuilt from the destination's base and the delta, proven by the digest. */
function decodeManifest(parts: Buffer[], inc: Incoming, version: number): { manifest: Manifest; staged: StagedManifest } {
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
  const { entries: sent, delta, digest, ...fields } = body ?? {};
  // Owners and hard links came with version 3: an older stream's manifest has neither.
  if (version < 3 && fields.format !== 1) throw corrupt(`the manifest for ${where} has format ${String(fields.format)}, which a version ${version} stream does not carry.`);
  // A stat cache vouches for a file on this appliance only: one in a stream is never believed.
  const fromStream = (list: unknown): Entry[] => (Array.isArray(list) ? list.map((e: Entry) => (e && typeof e === 'object' ? withoutCache(e) : e)) : (list as Entry[]));
  const entries = sent === undefined ? undefined : fromStream(sent);
  let staged: StagedManifest;
  let rebuilt: Entry[] | undefined = entries;
  if (delta) {
    if (!inc.baseManifest || !Array.isArray(delta.upserts) || !Array.isArray(delta.removes)) throw corrupt(`the manifest for ${where} is a delta without a usable base.`);
    // Version 5 sends a zvol image's block list as a patch of the base's (block-patch.ts).
    delta.upserts = fromStream(version >= 5 ? unpackBlockPatches(delta.upserts, inc.baseManifest, (why) => corrupt(`the manifest for ${where} has ${why}.`)) : delta.upserts);
    rebuilt = applyDelta(inc.baseManifest, delta);
    staged = { fields, baseId: inc.baseManifest.id, delta };
  } else {
    staged = { fields, entries };
  }
  const manifest = checkReceivedManifest({ ...fields, entries: rebuilt }, where);
  if (entriesDigest(manifest.entries) !== digest) {
    throw new StreamFormatError(
      delta
        ? `The manifest of ${where} rebuilt from this appliance's copy of @${inc.baseManifest!.name} does not match the sender's (its digest differs): the two copies of the base snapshot are not the same.`
        : `The stream is corrupt: the manifest for ${where} does not match its digest.`,
    );
  }
  return { manifest, staged };
}

/** Where the dataset's files are, and the plan that turns them into the received snapshot. */
async function planFor(catalog: Catalog, inc: Incoming, targets: string[]): Promise<{ liveDir: string; plan: ReturnType<typeof planApply> }> {
  const liveDir = inc.create ? catalog.layout.mountpoint(inc.target) : catalog.liveDir(inc.target);
  // Child datasets already here or arriving in this stream keep their own mountpoints.
  const exclude = new Set(catalog.childMountNames(inc.target));
  for (const t of targets) if (parentOf(t) === inc.target) exclude.add(t.slice(inc.target.length + 1));
  // The tree as checked before the transfer: a change made since is kept, like one made just after.
  const live = inc.live ?? (await scanTree(liveDir, exclude));
  return { liveDir, plan: patchPlan(catalog, inc.target, planApply(live, liveDir, inc.manifest!, inc.baseManifest ? [inc.baseManifest] : [], exclude), inc.manifest!) };
}

/**
 * One dataset of the stream, verified: its manifest, then its blocks. Each
 * block is checked against its sha256 and, when new, stored at once (only
 * ever under its true hash) and handed to the stager, which writes it into
 * the staged file that needs it. Nothing here is visible before the commit.
 */
async function readDataset(reader: StreamReader, inc: Incoming, catalog: Catalog, targets: string[], signal?: AbortSignal): Promise<{ blocks: number; bytes: number }> {
  const where = `${inc.target}@${inc.header.snapshot.name}`;
  const parts: Buffer[] = [];
  let rec = await expectRecord(reader, REC.manifest);
  while (rec.type === REC.manifest) {
    parts.push(Buffer.from(rec.payload));
    rec = await reader.record('manifest part or block');
  }
  const { manifest, staged } = decodeManifest(parts, inc, reader.version);
  if (manifest.id !== inc.header.snapshot.id || manifest.name !== inc.header.snapshot.name || manifest.kind !== inc.header.kind) {
    throw corrupt(`the manifest for ${where} does not belong to the snapshot its header announced.`);
  }
  inc.manifest = manifest;
  inc.staged = staged;
  const { liveDir, plan } = await planFor(catalog, inc, targets);
  inc.liveDir = liveDir;
  inc.plan = plan;
  const stager = new Stager(plan, manifest, path.join(inc.staging, 'files'), inc.store, where);
  inc.stager = stager;
  stager.advance();

  const { store } = inc;
  const breather = new Breather();
  const arrived = new Set<string>();
  let blocks = 0;
  let bytes = 0;
  let unsealed = 0;
  const interval = sealIntervalMs();
  let sealedAt = Date.now();
  while (rec.type === REC.block) {
    const hash = rec.blockHash!.toString('hex');
    const data = rec.payload;
    blocks++;
    if (sha256(data) !== hash) throw corrupt(`block ${blocks} for ${inc.target} does not match its sha256 ${hash}.`);
    if (!arrived.has(hash)) {
      arrived.add(hash);
      if (store.put(hash, data) && (unsealed += data.length) >= SEAL_EVERY && Date.now() - sealedAt >= interval) {
        // Sealed as it goes: a cut keeps what arrived (partial.ts), and the next transfer sends only the rest.
        keepVerified(catalog, inc);
        unsealed = 0;
        sealedAt = Date.now();
      }
      stager.arrived(hash, data);
    }
    bytes += data.length;
    signal?.throwIfAborted();
    await breather.breathe();
    rec = await reader.record('block or dataset end');
  }
  if (rec.type !== REC.end) throw corrupt(`found a ${recordName(rec.type)} record inside the data for ${inc.target}.`);
  const end = parseJson<DatasetEnd>(rec, 'dataset end');
  const manifestBytes = parts.reduce((n, p) => n + p.length, 0);
  if (end.blocks !== blocks || end.blockBytes !== bytes || end.manifestBytes !== manifestBytes) {
    throw corrupt(`the data for ${inc.target} has ${blocks} blocks (${bytes} bytes) and a ${manifestBytes}-byte manifest, but the sender counted ${end.blocks}, ${end.blockBytes} and ${end.manifestBytes}.`);
  }
  if (reader.version >= 4) {
    const c = inc.header.chunks;
    if (!c || !Number.isSafeInteger(c.offered) || !Number.isSafeInteger(c.held) || c.held < 0 || c.held > c.offered) throw corrupt(`the header of ${inc.target} does not say how many chunks it offered and the receiver held.`);
    if (blocks !== c.offered - c.held) throw corrupt(`${blocks} blocks arrived for ${inc.target}, but its header announced ${c.offered - c.held} (${c.offered} chunks, ${c.held} held here).`);
  }
  // Blocks of the base are in the store (a listed snapshot's always are), so a delta's entries are all that need looking at;
  // the held ones were there or kept; anything else must have arrived.
  const delta = inc.staged.delta;
  for (const h of new Set(delta ? blocksOf({ entries: delta.upserts } as Manifest) : blocksOf(manifest))) {
    if (!store.has(h)) throw new StreamFormatError(`The stream for ${where} refers to block ${h}, which it does not carry and the destination does not have.`);
  }
  await stager.finish(signal);
  // Private to this receive until its journal names the staging directory: no rename needed.
  writeFileSynced(path.join(inc.staging, 'manifest.json'), JSON.stringify(inc.staged));
  return { blocks, bytes };
}

/** Seal the blocks stored so far and list their pack as kept for the next receive; false when this receive stored none. */
function keepVerified(catalog: Catalog, inc: Incoming): boolean {
  const writing = inc.store.writingPack();
  if (writing) keepPacks(catalog.layout, inc.target, [writing]);
  inc.store.seal();
  return inc.store.newPacks().length > 0;
}

/** The journal of one verified and staged dataset (not yet written). */
function prepare(catalog: Catalog, inc: Incoming, all: Incoming[]): Journal {
  const plan = inc.plan!;
  const h = inc.header;
  const liveDir = inc.liveDir!;
  // Creating or replacing this dataset's directory touches the parent's; put the parent's mtime back afterwards.
  let parentDir: Journal['parentDir'];
  const parent = parentOf(inc.target);
  const incomingParent = parent ? all.find((i) => i.target === parent)?.manifest?.entries[0] : undefined;
  // Versioned (versions.ts): built beside the live tree and swapped in; the swap puts the parent's mtime back.
  const target = commitTarget(catalog, inc.target, { kind: h.kind, patch: !!plan.patch, create: inc.create, current: liveDir, unchanged: planIsEmpty(plan), ...(incomingParent ? { parentMtimeNs: incomingParent.mtimeNs } : {}) });
  if (!target.swap && parent && (plan.mkdir.includes('') || plan.tree)) {
    const mtimeNs = incomingParent?.mtimeNs ?? lstatSync(path.dirname(liveDir), { bigint: true, throwIfNoEntry: false })?.mtimeNs.toString();
    if (mtimeNs) parentDir = { path: path.dirname(liveDir), mtimeNs };
  }
  return {
    format: 2,
    op: 'receive',
    dataset: inc.target,
    ...target,
    staging: inc.staging,
    snapshot: { name: h.snapshot.name, id: h.snapshot.id, createdAt: typeof h.snapshot.createdAt === 'string' ? h.snapshot.createdAt : new Date().toISOString() },
    plan,
    ...(parentDir ? { parentDir } : {}),
    ...(inc.create
      ? { create: { kind: h.kind, ...(h.volsize !== undefined ? { volsize: h.volsize } : {}), ...(inc.manifest?.chunkSize === ZVOL_CHUNK ? { zvol: { blockSize: h.blockSize ?? ZVOL_CHUNK, chunkSize: ZVOL_CHUNK } } : {}) } }
      : {}),
    ...(h.kind === 'volume' && h.volsize !== undefined ? { volsize: h.volsize } : {}),
    ...(inc.baseManifest ? { baseId: inc.baseManifest.id } : {}),
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
      const inc = await preflight(catalog, targets[i], h, opts.force, targets);
      incoming.push(inc);
      inc.swept = markUnswept(catalog, inc.target);
      const got = await readDataset(reader, inc, catalog, targets, opts.signal);
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

    for (const inc of incoming) journals.push(prepare(catalog, inc, incoming));
    opts.signal?.throwIfAborted();
    // The new blocks become part of the stores before anything that names them is committed.
    for (const inc of incoming) inc.store.seal();
    // Commit point. From here on the receive is finished, now or by recover.
    await writeJournals(catalog, journals, () => (committed = true));
    for (const [i, j] of journals.entries()) await commitOne(catalog, j, ctx.faults, incoming[i].manifest!);
    for (const inc of incoming) {
      inc.swept();
      // Chunks kept from an interrupted transfer: what this one did not use goes now.
      if (dropPartial(layout, inc.target)) sweep(catalog, inc.target);
    }
    const top = catalog.snapshot(dataset, sh.snapshot)!;
    return { snapshot: ctx.snapshotInfo(dataset, top), bytes: reader.bytes };
  } catch (error) {
    await reader.close().catch(() => undefined);
    if (error instanceof SimulatedCrash) throw error;
    if (committed) {
      throw new Error(`The receive into fs dataset ${dataset} stopped while committing: ${(error as Error).message} Run recover on ${dataset} to finish it.`);
    }
    for (const inc of incoming) {
      inc.stager?.abort();
      removeTree(inc.staging);
      // Every stored block was verified against its hash: kept (unlisted) for the next attempt, which is sent only the rest.
      const kept = keepVerified(catalog, inc);
      inc.store.close();
      if (inc.madeMeta && !catalog.record(inc.target)) tidyUnregistered(layout, inc.target);
      else if (!kept) inc.swept();
    }
    const message = (error as Error).message;
    if (error instanceof StreamFormatError || (error as Error).name === 'AbortError') {
      throw new Error(`${message} Nothing was changed on fs dataset ${dataset}.`, { cause: error });
    }
    throw error;
  } finally {
    // A pool this receive was to create and did not: nothing of it stays (we hold its only lock).
    if (lock && !poolMetaExisted && !committed && !catalog.record(poolOf(dataset))) removeTree(layout.poolMeta(poolOf(dataset)));
    for (const inc of incoming) inc.store.close();
    lock?.release();
  }
}

/** Run a written journal; one retry covers a transient error, a second failure is left for recover. */
async function commitOne(catalog: Catalog, j: Journal, faults: Faults, manifest: Manifest): Promise<void> {
  try {
    await runJournal(catalog, j.dataset, faults, manifest);
  } catch (error) {
    if (error instanceof SimulatedCrash) throw error;
    await runJournal(catalog, j.dataset);
  }
}

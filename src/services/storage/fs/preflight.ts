/**
 * The checks a receive makes before it reads any data: the stream's list of
 * datasets, and for each dataset whether the destination can take it (base
 * present with the same id, not changed since unless forced, never a full
 * stream over existing data). Each refusal is a sentence naming both sides.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { BlockStore } from './block-store.js';
import type { Catalog } from './catalog.js';
import { differenceFrom } from './compare.js';
import { isZvol, zvolDifference } from './zvol.js';
import { VOLUME_FILE } from './layout.js';
import { isSeed } from './negotiate.js';
import { refuseServed } from './zvol-writer.js';
import { isEmptyDir, lstatOrNull } from './files.js';
import { tidyUnregistered } from './partial.js';
import type { StagedManifest } from './journal.js';
import { readManifest, type Manifest } from './manifest.js';
import { checkDatasetName, checkSnapshotName, parentOf } from './names.js';
import type { Plan } from './plan.js';
import { scanTree, type LiveNode } from './scan.js';
import type { Stager } from './stage.js';
import { StreamFormatError, type DatasetHeader, type StreamHeader } from './stream-format.js';
import { dropUnregisteredLink } from './versions.js';

/** One dataset of the stream on its way in. */
export interface Incoming {
  target: string;
  header: DatasetHeader;
  create: boolean;
  /** the destination's own copy of the base manifest (with its stat caches) */
  baseManifest: Manifest | null;
  staging: string;
  /** the dataset's block store; what this receive adds is discarded again if it fails before the commit */
  store: BlockStore;
  /** the live tree as scanned when it was checked (reused to plan the change) */
  live: LiveNode[] | null;
  manifest: Manifest | null;
  /** the manifest as it will be staged for the journal */
  staged: StagedManifest | null;
  /** where its files are (the mountpoint, or the hidden tree of an unmounted dataset) */
  liveDir: string | null;
  plan: Plan | null;
  /** builds the plan's files as the blocks arrive */
  stager: Stager | null;
  /** this receive made the dataset's metadata directory (a new dataset): remove it on failure */
  madeMeta: boolean;
  /** clears the dataset's unswept marker (gc.ts) once what this receive wrote is listed or discarded */
  swept: () => void;
}

export function corrupt(message: string): StreamFormatError {
  return new StreamFormatError(`The stream is corrupt: ${message}`);
}

/** The destination names of the stream's datasets, parents first. */
export function checkStreamHeader(sh: StreamHeader, dataset: string): string[] {
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
export async function preflight(catalog: Catalog, target: string, h: DatasetHeader, force: boolean, targets: string[]): Promise<Incoming> {
  const { layout } = catalog;
  if (h.kind !== 'filesystem' && h.kind !== 'volume') throw corrupt(`unknown dataset kind ${JSON.stringify(h.kind)}.`);
  if (h.blockSize !== undefined && (!Number.isSafeInteger(h.blockSize) || h.blockSize < 512 || h.blockSize > 65536 || (h.blockSize & (h.blockSize - 1)) !== 0)) throw corrupt(`bad zvol block size ${JSON.stringify(h.blockSize)}.`);
  if (!h.snapshot || typeof h.snapshot.id !== 'string' || !h.snapshot.id) throw corrupt('a dataset header has no snapshot id.');
  checkSnapshotName(target, h.snapshot.name);
  const incoming = (create: boolean, baseManifest: Manifest | null, madeMeta: boolean, live: LiveNode[] | null = null): Incoming => {
    const staging = path.join(layout.stagingRoot(target), randomUUID());
    mkdirSync(staging, { recursive: true });
    const store = new BlockStore(layout.blocksDir(target));
    return { target, header: h, create, baseManifest, staging, store, live, manifest: null, staged: null, liveDir: null, plan: null, stager: null, madeMeta, swept: () => undefined };
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
    dropUnregisteredLink(layout, target);
    const st = lstatOrNull(mp);
    if (st && (!st.isDirectory() || !isEmptyDir(mp))) {
      throw new Error(`The destination ${target} does not exist, but its mountpoint ${mp} is already taken by other files; move them away first.`);
    }
    // Leftovers of an earlier attempt that never registered the dataset; the chunks it verified stay (partial.ts).
    const meta = layout.datasetMeta(target);
    if (existsSync(meta)) tidyUnregistered(layout, target);
    mkdirSync(meta, { recursive: true });
    return incoming(true, null, true);
  }

  if (rec.kind !== h.kind) throw new Error(`The destination ${target} is a ${rec.kind}, but the stream carries a ${h.kind}.`);
  refuseServed(catalog, target, 'receiving into it');
  const { snapshots } = catalog.index(target);
  const same = snapshots.find((s) => s.id === h.snapshot.id);
  if (same) throw new Error(`The destination ${target} already has this snapshot: @${same.name} (id ${same.id}).`);
  const clash = snapshots.find((s) => s.name === h.snapshot.name);
  if (clash) throw new Error(`The destination ${target} already has a different snapshot named @${clash.name} (id ${clash.id}, the stream's is ${h.snapshot.id}).`);
  const liveDir = catalog.liveDir(target);
  const exclude = catalog.childMountNames(target);

  if (!h.base) {
    if (snapshots.length) {
      throw new Error(
        `The destination ${target} already has ${snapshots.length} snapshot(s) (newest @${snapshots.at(-1)!.name}); a full stream is only received into a new or empty dataset, never over existing data. Send incrementally from a common snapshot, or destroy ${target} first.`,
      );
    }
    const live = await scanTree(liveDir, exclude);
    if (isZvol(rec) && h.kind === 'volume') {
      // A zvol with data but no snapshot takes a full stream only as a partial resync of a seed (negotiate.ts).
      if (h.volsize !== rec.volsize) throw new Error(`The destination zvol ${target} has ${rec.volsize} bytes, but the stream's volume has ${h.volsize}; a seed must be of the same size.`);
      const empty = (lstatSync(path.join(liveDir, VOLUME_FILE), { throwIfNoEntry: false })?.blocks ?? 0) === 0;
      if (!empty && (!h.chunks || !isSeed(h.chunks))) {
        throw new Error(
          `The destination zvol ${target} has data but no snapshot, and ${h.chunks ? `holds only ${h.chunks.held} of the ${h.chunks.offered} chunks of the stream` : 'the stream does not say which of its chunks it holds'}: it is not a seed of this source, and is never overwritten by a full stream. Destroy it, or receive into another dataset.`,
        );
      }
      return incoming(false, null, false, live);
    }
    if (live?.some((n) => n.path !== '')) {
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
  // A zvol's dirty map says which chunks to compare; anything it cannot vouch for is compared whole.
  const quick = zvolDifference(catalog, target, baseManifest);
  const difference = quick !== undefined ? quick : await differenceFrom(live, liveDir, baseManifest, exclude);
  if (difference && !force) {
    throw new Error(`The destination ${target} was changed since its snapshot @${base.name}, the base of this stream (${difference}); nothing was changed. Receive with force to roll those changes back.`);
  }
  return incoming(false, baseManifest, false, live);
}

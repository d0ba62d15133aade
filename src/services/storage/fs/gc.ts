/**
 * Garbage collection of a dataset's block store, and the pins that keep a
 * snapshot's blocks alive while it is being sent.
 *
 * Destroying a snapshot frees what only it used, right away. Anything else
 * unused (a crash between writing blocks and listing the snapshot, a
 * snapshot destroyed while it was being sent) is found by a full sweep,
 * which recover runs only when the dataset's `unswept` marker says there may
 * be something: every writer of blocks sets it first and clears it when
 * what it wrote is listed or discarded. So the recover a run makes before
 * each sync costs nothing when all is well.
 *
 * Blocks live in packs (block-store.ts): a pack nothing uses any more is
 * deleted, one less than half used is rewritten (its live blocks copied to
 * a new pack, then the old one deleted), so space comes back in large steps
 * and a block is copied only a few times over its life.
 *
 * Every writer of a block store (snapshot, receive, destroy, recover)
 * holds the dataset's operation lock, and each dataset has its own store,
 * so collection never races a writer. A sender does not take that lock (a
 * long send must not block snapshots); it pins the snapshot first and only
 * then reads the index, while destroy unlists the snapshot first and only
 * then reads the pins, so one of the two always sees the other. A pack
 * rewritten under a sender's feet is found again in its new pack.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { BlockStore } from './block-store.js';
import type { Catalog } from './catalog.js';
import { blocksOf, forEachBlockBeyond, forgetManifest, readManifest, type Manifest } from './manifest.js';
import { processAlive } from './lock.js';
import { dropPartial, keptPacks } from './partial.js';

interface Pin {
  pid: number;
  host: string;
  id: string;
}

export function pinSnapshot(catalog: Catalog, dataset: string, id: string): () => void {
  const dir = catalog.layout.pinsDir(dataset);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${process.pid}-${randomBytes(6).toString('hex')}.json`);
  const pin: Pin = { pid: process.pid, host: os.hostname(), id };
  writeFileSync(file, JSON.stringify(pin));
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      unlinkSync(file);
    } catch {
      /* already gone */
    }
  };
}

/** The pins of live senders; pins of dead processes are removed. */
function livePins(catalog: Catalog, dataset: string): Pin[] {
  const dir = catalog.layout.pinsDir(dataset);
  const pins: Pin[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return pins;
  }
  for (const n of names) {
    const file = path.join(dir, n);
    let pin: Pin;
    try {
      pin = JSON.parse(readFileSync(file, 'utf8')) as Pin;
    } catch {
      continue; // being written right now
    }
    if (pin.host !== os.hostname() || processAlive(pin.pid)) pins.push(pin);
    else {
      try {
        unlinkSync(file);
      } catch {
        /* raced with another cleaner */
      }
    }
  }
  return pins;
}

/** ids pinned by live senders. */
export function pinnedIds(catalog: Catalog, dataset: string): Set<string> {
  return new Set(livePins(catalog, dataset).map((p) => p.id));
}

/** The processes sending a snapshot of the dataset right now. */
export function senders(catalog: Catalog, dataset: string): number[] {
  return [...new Set(livePins(catalog, dataset).map((p) => p.pid))];
}

/** Say that blocks are about to be written; returns a function that clears the marker again, unless it was there before. */
export function markUnswept(catalog: Catalog, dataset: string): () => void {
  const file = catalog.layout.unsweptMarker(dataset);
  if (existsSync(file)) return () => undefined; // leftovers of an earlier operation: the sweep is still owed
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, '');
  return () => rmSync(file, { force: true });
}

/** Might the store hold blocks nothing lists? (the marker, or a pack a crashed writer left unsealed) */
export function needsSweep(catalog: Catalog, dataset: string): boolean {
  if (existsSync(catalog.layout.unsweptMarker(dataset))) return true;
  return new BlockStore(catalog.layout.blocksDir(dataset)).unsealedPacks().length > 0;
}

export interface Freed {
  blocks: number;
  bytes: number;
  /** packs a crashed writer left without an index (their blocks cannot be counted), and their bytes */
  halfWritten: number;
  halfWrittenBytes: number;
  manifests: number;
}

/** What a sweep freed, as a sentence; null when it freed nothing. */
export function describeFreed(freed: Freed, dataset: string): string | null {
  const parts: string[] = [];
  if (freed.blocks) parts.push(`${freed.blocks} unreferenced block(s) (${freed.bytes} bytes)`);
  if (freed.halfWritten) parts.push(`${freed.halfWritten} half-written pack(s) (${freed.halfWrittenBytes} bytes)`);
  if (freed.manifests) parts.push(`${freed.manifests} orphan manifest(s)`);
  return parts.length ? `Freed ${parts.join(', ')} of ${dataset}.` : null;
}

/** A pack is rewritten once less than this fraction of it is still used. */
export const REWRITE_BELOW = 0.5;

/** The block names kept by the listed snapshots and by pinned ones. */
function liveBlocks(catalog: Catalog, dataset: string, ids: Iterable<string>): Set<string> {
  const keep = new Set<string>();
  for (const id of ids) {
    let m;
    try {
      m = readManifest(catalog.layout.manifestFile(dataset, id), `${dataset} (${id})`);
    } catch {
      continue;
    }
    for (const h of blocksOf(m)) keep.add(h);
  }
  return keep;
}

/**
 * Free the packs (all of them, or those in `only`) of what `keep` does not
 * use: a pack nothing uses is deleted, a mostly unused one rewritten.
 */
function collectPacks(store: BlockStore, keep: Set<string>, freed: Freed, kept: Set<string>, only?: Set<string>): void {
  for (const pack of store.packInfo()) {
    if (only && !only.has(pack.id)) continue;
    if (kept.has(pack.id)) continue; // chunks an interrupted receive kept for the next one (partial.ts)
    const live = pack.blocks.filter((b) => keep.has(b.hash));
    const liveBytes = live.reduce((n, b) => n + b.length, 0);
    if (live.length === pack.blocks.length && pack.duplicateBytes === 0) continue;
    if (liveBytes > 0 && liveBytes >= pack.size * REWRITE_BELOW) continue;
    if (live.length)
      store.rewrite(
        pack.id,
        live.map((b) => b.hash),
      );
    else store.dropPack(pack.id);
    freed.blocks += pack.blocks.length - live.length + pack.duplicates;
    freed.bytes += pack.size - liveBytes;
  }
}

/** Every stored block of `destroyed` is in the snapshot `otherId` at the same path (a merge walk of the two manifests). */
function sharesEveryBlock(catalog: Catalog, dataset: string, destroyed: Manifest, otherId: string | undefined): boolean {
  if (otherId === undefined) return false;
  let other: Manifest;
  try {
    other = readManifest(catalog.layout.manifestFile(dataset, otherId), `${dataset} (${otherId})`);
  } catch {
    return false; // the full computation says what to do about a damaged snapshot
  }
  let shares = true;
  forEachBlockBeyond(destroyed, other, () => {
    shares = false;
    return false;
  });
  return shares;
}

/**
 * After a snapshot was unlisted: free the blocks only it used, then remove
 * its manifest. Only the packs holding such blocks are looked at. Call with
 * the operation lock held.
 */
export function collectDestroyed(catalog: Catalog, dataset: string, destroyedId: string): Freed {
  const pinned = pinnedIds(catalog, dataset);
  const freed: Freed = { blocks: 0, bytes: 0, halfWritten: 0, halfWrittenBytes: 0, manifests: 0 };
  if (pinned.has(destroyedId)) {
    markUnswept(catalog, dataset); // a sender still reads it; the sweep of the next recover frees it
    return freed;
  }
  const file = catalog.layout.manifestFile(dataset, destroyedId);
  let destroyed;
  try {
    destroyed = readManifest(file, `${dataset} (${destroyedId})`);
  } catch {
    return freed;
  }
  const others = catalog
    .index(dataset)
    .snapshots.map((s) => s.id)
    .filter((id) => id !== destroyedId);
  // Most often the next snapshot has the same block list at every path (nothing changed in between): nothing to free, and no set of every block.
  const unused = new Set<string>();
  let keep = new Set<string>();
  if (!sharesEveryBlock(catalog, dataset, destroyed, others[0])) {
    keep = liveBlocks(catalog, dataset, [...others, ...pinned]);
    for (const h of blocksOf(destroyed)) if (!keep.has(h)) unused.add(h);
  }
  if (unused.size) {
    const store = new BlockStore(catalog.layout.blocksDir(dataset));
    const done = markUnswept(catalog, dataset); // a rewrite cut short leaves two copies of some blocks
    try {
      const affected = new Set(
        store
          .packInfo()
          .filter((p) => p.blocks.some((b) => unused.has(b.hash)))
          .map((p) => p.id),
      );
      collectPacks(store, keep, freed, keptPacks(catalog.layout, dataset), affected);
      for (const h of unused) {
        const bytes = store.removeLegacy(h);
        if (bytes) {
          freed.blocks++;
          freed.bytes += bytes;
        }
      }
      done();
    } finally {
      store.close();
    }
  }
  unlinkSync(file);
  forgetManifest(file);
  freed.manifests++;
  return freed;
}

/**
 * Full mark-and-sweep: every block and manifest not reachable from a listed
 * or pinned snapshot goes (leftovers of a crashed snapshot or receive, or of
 * a snapshot destroyed while it was being sent). Call with the operation
 * lock held.
 */
export function sweep(catalog: Catalog, dataset: string): Freed {
  const pinned = pinnedIds(catalog, dataset);
  const listed = catalog.index(dataset).snapshots.map((s) => s.id);
  const reachable = new Set([...listed, ...pinned]);
  const keep = liveBlocks(catalog, dataset, reachable);
  const store = new BlockStore(catalog.layout.blocksDir(dataset));
  const freed: Freed = { blocks: 0, bytes: 0, halfWritten: 0, halfWrittenBytes: 0, manifests: 0 };
  const kept = keptPacks(catalog.layout, dataset);
  if (!kept.size) dropPartial(catalog.layout, dataset); // past its grace: those chunks go now
  try {
    store.clearTemp();
    for (const id of store.unsealedPacks()) {
      freed.halfWritten++;
      freed.halfWrittenBytes += statSync(path.join(store.dir, `${id}.pack`), { throwIfNoEntry: false })?.size ?? 0;
      store.dropPack(id);
    }
    collectPacks(store, keep, freed, kept);
    for (const h of [...store.legacyBlocks()]) {
      if (keep.has(h)) continue;
      freed.bytes += store.removeLegacy(h);
      freed.blocks++;
    }
    store.tidyLegacy();
  } finally {
    store.close();
  }
  let manifests: string[] = [];
  try {
    manifests = readdirSync(catalog.layout.manifestsDir(dataset));
  } catch {
    /* none yet */
  }
  for (const n of manifests) {
    const id = n.replace(/\.json$/, '');
    if (n.endsWith('.json') && !reachable.has(id)) {
      unlinkSync(path.join(catalog.layout.manifestsDir(dataset), n));
      freed.manifests++;
    } else if (n.endsWith('.tmp')) {
      unlinkSync(path.join(catalog.layout.manifestsDir(dataset), n));
    }
  }
  // The blocks of a snapshot destroyed while a sender still reads it were kept: that sweep is still owed.
  // So is the one of kept chunks, once their grace has passed.
  if (!kept.size && ![...pinned].some((id) => !listed.includes(id))) rmSync(catalog.layout.unsweptMarker(dataset), { force: true });
  return freed;
}

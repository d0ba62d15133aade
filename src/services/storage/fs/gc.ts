/**
 * Garbage collection of a dataset's block store, and the pins that keep a
 * snapshot's blocks alive while it is being sent.
 *
 * Every writer of a block store (snapshot, receive, rollback, destroy,
 * recover) holds the dataset's operation lock, and each dataset has its own
 * store, so collection never races a writer. A sender does not take that
 * lock (a long send must not block snapshots); it pins the snapshot first
 * and only then reads the index, while destroy unlists the snapshot first
 * and only then reads the pins, so one of the two always sees the other.
 */
import { mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { BlockStore } from './block-store.js';
import type { Catalog } from './catalog.js';
import { blocksOf, readManifest } from './manifest.js';
import { processAlive } from './lock.js';

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

/** ids pinned by live senders; pins of dead processes are removed. */
export function pinnedIds(catalog: Catalog, dataset: string): Set<string> {
  const dir = catalog.layout.pinsDir(dataset);
  const ids = new Set<string>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return ids;
  }
  for (const n of names) {
    const file = path.join(dir, n);
    let pin: Pin;
    try {
      pin = JSON.parse(readFileSync(file, 'utf8')) as Pin;
    } catch {
      continue; // being written right now
    }
    if (pin.host !== os.hostname() || processAlive(pin.pid)) ids.add(pin.id);
    else {
      try {
        unlinkSync(file);
      } catch {
        /* raced with another cleaner */
      }
    }
  }
  return ids;
}

export interface Freed {
  blocks: number;
  bytes: number;
  manifests: number;
}

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
 * After a snapshot was unlisted: delete its blocks that no other listed or
 * pinned snapshot uses, then its manifest. Cheap: only the destroyed
 * snapshot's blocks are candidates. Call with the operation lock held.
 */
export function collectDestroyed(catalog: Catalog, dataset: string, destroyedId: string): Freed {
  const pinned = pinnedIds(catalog, dataset);
  const freed: Freed = { blocks: 0, bytes: 0, manifests: 0 };
  if (pinned.has(destroyedId)) return freed; // a sender still reads it; a later sweep frees it
  const file = catalog.layout.manifestFile(dataset, destroyedId);
  let destroyed;
  try {
    destroyed = readManifest(file, `${dataset} (${destroyedId})`);
  } catch {
    return freed;
  }
  const others = catalog.index(dataset).snapshots.map((s) => s.id).filter((id) => id !== destroyedId);
  const keep = liveBlocks(catalog, dataset, [...others, ...pinned]);
  const store = new BlockStore(catalog.layout.blocksDir(dataset));
  for (const h of new Set(blocksOf(destroyed))) {
    if (keep.has(h)) continue;
    const bytes = store.remove(h);
    if (bytes) {
      freed.blocks++;
      freed.bytes += bytes;
    }
  }
  unlinkSync(file);
  freed.manifests++;
  return freed;
}

/**
 * Full mark-and-sweep: every block and manifest not reachable from a listed
 * or pinned snapshot goes (leftovers of a crashed snapshot or receive).
 * Call with the operation lock held.
 */
export function sweep(catalog: Catalog, dataset: string): Freed {
  const pinned = pinnedIds(catalog, dataset);
  const listed = catalog.index(dataset).snapshots.map((s) => s.id);
  const reachable = new Set([...listed, ...pinned]);
  const keep = liveBlocks(catalog, dataset, reachable);
  const store = new BlockStore(catalog.layout.blocksDir(dataset));
  const freed: Freed = { blocks: 0, bytes: 0, manifests: 0 };
  store.clearTmp();
  for (const h of [...store.all()]) {
    if (keep.has(h)) continue;
    freed.bytes += store.remove(h);
    freed.blocks++;
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
  return freed;
}

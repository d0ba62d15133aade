/**
 * Chunks an interrupted receive verified, kept for the next one (issue 13).
 *
 * A receive seals the blocks it stored as it goes (SEAL_EVERY) and lists
 * those packs in `partial.json` before each seal, so whatever cuts it (kill
 * -9 of either side, a dropped link, a stall) the sealed packs survive.
 * Nothing lists their blocks, so garbage collection would take them: it
 * leaves the listed packs alone while the record is younger than the grace.
 * The next receive says it holds those chunks (negotiate.ts) and is sent
 * only the rest. Reclaimed: by the next receive that completes (its sweep
 * frees what it did not use), or once the grace has passed (a transfer
 * never resumed: the service destroyed, the source gone).
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { BlockStore } from './block-store.js';
import { readJson, removeTree, writeJsonAtomic } from './files.js';
import type { Layout } from './layout.js';

/**
 * Seal the blocks received so far once this many bytes and this much time
 * have gone by: a kill -9 costs at most about a second of the transfer.
 * Each seal costs two fsyncs of small files (index, record; ~18 ms on this
 * busy machine), so sealing every 8 MiB regardless would add seconds per
 * GiB to a fast local sync. SYNCSH_FS_SEAL_INTERVAL_MS overrides the
 * interval (tests: 0, seal every 8 MiB).
 */
export const SEAL_EVERY = 8 << 20;
export function sealIntervalMs(): number {
  const ms = Number(process.env.SYNCSH_FS_SEAL_INTERVAL_MS);
  return process.env.SYNCSH_FS_SEAL_INTERVAL_MS && Number.isFinite(ms) && ms >= 0 ? ms : 1000;
}

/** How long kept chunks wait for the transfer to resume (SYNCSH_FS_PARTIAL_GRACE_S overrides it, for tests). */
export function partialGraceMs(): number {
  const s = Number(process.env.SYNCSH_FS_PARTIAL_GRACE_S);
  return Number.isFinite(s) && s >= 0 && process.env.SYNCSH_FS_PARTIAL_GRACE_S !== '' ? s * 1000 : 7 * 24 * 3600 * 1000;
}

interface PartialRecord {
  packs: string[];
  updatedAt: string;
}

function read(layout: Layout, dataset: string): PartialRecord | null {
  const rec = readJson<PartialRecord>(layout.partialFile(dataset));
  return rec && Array.isArray(rec.packs) && typeof rec.updatedAt === 'string' ? rec : null;
}

/** The kept packs still within the grace (none once it has passed). */
export function keptPacks(layout: Layout, dataset: string, now = Date.now()): Set<string> {
  const rec = read(layout, dataset);
  if (!rec || now - Date.parse(rec.updatedAt) > partialGraceMs()) return new Set();
  return new Set(rec.packs);
}

/** List packs as kept (before they are sealed: a listed pack without an index is still swept as half-written). */
export function keepPacks(layout: Layout, dataset: string, ids: string[], now = Date.now()): void {
  const before = read(layout, dataset)?.packs ?? [];
  writeJsonAtomic(layout.partialFile(dataset), { packs: [...new Set([...before, ...ids])], updatedAt: new Date(now).toISOString() } satisfies PartialRecord);
}

/** Forget the kept packs (their unused blocks go at the next sweep); true when there were some. */
export function dropPartial(layout: Layout, dataset: string): boolean {
  const had = existsSync(layout.partialFile(dataset));
  rmSync(layout.partialFile(dataset), { force: true });
  return had;
}

/**
 * The metadata of a dataset that was never registered (a first full
 * receive cut short): its kept chunks stay within the grace, everything
 * else goes. Returns a sentence saying what was kept, or null when the
 * whole directory was removed.
 */
export function tidyUnregistered(layout: Layout, dataset: string, now = Date.now()): string | null {
  const meta = layout.datasetMeta(dataset);
  const kept = keptPacks(layout, dataset, now);
  if (!kept.size) {
    removeTree(meta);
    return null;
  }
  const keep = new Set([path.basename(layout.blocksDir(dataset)), path.basename(layout.partialFile(dataset)), 'unswept']);
  for (const n of readdirSync(meta)) if (!keep.has(n)) removeTree(path.join(meta, n));
  const store = new BlockStore(layout.blocksDir(dataset));
  let bytes = 0;
  try {
    for (const id of store.unsealedPacks()) store.dropPack(id);
    for (const p of store.packInfo()) {
      if (kept.has(p.id)) bytes += p.size;
      else store.dropPack(p.id);
    }
  } finally {
    store.close();
  }
  return `Kept ${(bytes / 1e6).toFixed(1)} MB of chunks an interrupted receive into ${dataset} verified, for the next run.`;
}

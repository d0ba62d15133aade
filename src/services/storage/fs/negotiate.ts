/**
 * The chunk negotiation before a send (stream version 4): the sender offers
 * the chunks the snapshot needs beyond the base, the receiver answers which
 * it holds already (its block store, which includes the chunks an
 * interrupted receive kept: partial.ts), and the stream carries only the
 * rest. Both lists are computed from immutable manifests, so the offer made
 * before the send and the blocks the send walks are the same list, and the
 * answer can be a bitmap over it. A receiver that lacks a chunk it claimed
 * refuses the stream (it checks every needed block): a wrong answer costs a
 * failed run, never data.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import type { ChunkAnswer, ChunkOffer } from '../driver.js';
import { BlockStore, ZVOL_CHUNK, sha256 } from './block-store.js';
import type { Catalog } from './catalog.js';
import { markUnswept } from './gc.js';
import { VOLUME_FILE } from './layout.js';
import { lockDatasets } from './lock.js';
import { blocksOf, forEachBlockBeyond, type Manifest } from './manifest.js';
import { checkDatasetName } from './names.js';
import { SEAL_EVERY, keepPacks, keptPacks } from './partial.js';
import { isZvol } from './zvol.js';
import { refuseServed } from './zvol-writer.js';

const HASH_HEX = 64;

/**
 * Does some file of `manifest` have a stored block outside the block list of
 * the file at its path in `base`? When nothing changed (most runs of a quiet
 * tree) no set of the base's blocks is built. False proves the stream
 * carries no chunk; true only says it may.
 */
export function mayCarryChunks(manifest: Manifest, base: Manifest): boolean {
  let found = false;
  forEachBlockBeyond(manifest, base, () => {
    found = true;
    return false;
  });
  return found;
}

/** Lists already made, per manifest and base (both read-only, shared by manifest.ts's cache): a run asks for its offer, then sends. */
const toSend = new WeakMap<Manifest, WeakMap<Manifest | typeof NO_BASE, readonly string[]>>();
const NO_BASE = { entries: [] } as unknown as Manifest;

/** The chunks a stream of `manifest` carries beyond `base`: each once, in the order its files use them (do not modify the list). */
export function chunksToSend(manifest: Manifest, base: Manifest | null): readonly string[] {
  let byBase = toSend.get(manifest);
  if (!byBase) toSend.set(manifest, (byBase = new WeakMap()));
  let list = byBase.get(base ?? NO_BASE);
  if (!list) byBase.set(base ?? NO_BASE, (list = listChunks(manifest, base)));
  return list;
}

function listChunks(manifest: Manifest, base: Manifest | null): string[] {
  if (base && !mayCarryChunks(manifest, base)) return [];
  const skip = new Set(base ? blocksOf(base) : []);
  const out: string[] = [];
  for (const h of blocksOf(manifest)) {
    if (skip.has(h)) continue;
    skip.add(h);
    out.push(h);
  }
  return out;
}

export function packChunks(list: readonly string[]): string {
  return list.join('');
}

function unpackChunks(packed: unknown, where: string): string[] {
  if (typeof packed !== 'string' || packed.length % HASH_HEX !== 0 || !/^[0-9a-f]*$/.test(packed)) {
    throw new Error(`The chunk offer for ${where} is malformed: it must be sha256 names (64 lowercase hex digits each) back to back.`);
  }
  const out: string[] = [];
  for (let at = 0; at < packed.length; at += HASH_HEX) out.push(packed.slice(at, at + HASH_HEX));
  return out;
}

function checkOffer(offer: unknown, dataset: string): { rel: string; chunks: string }[] {
  const list = (offer as ChunkOffer | null)?.datasets;
  if (!Array.isArray(list)) throw new Error(`The chunk offer for ${dataset} is malformed: it has no list of datasets.`);
  for (const d of list) {
    if (!d || typeof d.rel !== 'string') throw new Error(`The chunk offer for ${dataset} is malformed: a dataset has no name.`);
    checkDatasetName(d.rel ? `${dataset}/${d.rel}` : dataset);
  }
  return list;
}

/** Receiver: a bitmap per offered dataset of the chunks its block store holds. */
export function heldChunks(catalog: Catalog, dataset: string, offer: ChunkOffer): ChunkAnswer {
  checkDatasetName(dataset);
  const datasets = checkOffer(offer, dataset).map(({ rel, chunks }) => {
    const target = rel ? `${dataset}/${rel}` : dataset;
    const list = unpackChunks(chunks, target);
    const bits = Buffer.alloc(Math.ceil(list.length / 8));
    // A dataset never registered holds only what an interrupted receive kept, and only within the grace.
    if (!catalog.record(target) && !keptPacks(catalog.layout, target).size) return { rel, held: bits.toString('base64') };
    hashSeed(catalog, target, new Set(list));
    const store = new BlockStore(catalog.layout.blocksDir(target));
    try {
      list.forEach((h, i) => {
        if (store.has(h)) bits[i >> 3] |= 0x80 >> (i & 7);
      });
    } finally {
      store.close();
    }
    return { rel, held: bits.toString('base64') };
  });
  return { datasets };
}

/**
 * A zvol with data but no snapshot (made from a raw image without a seed
 * file, an older copy): its chunks are hashed, and those the offer wants
 * are stored as kept chunks (partial.ts), so they are not sent (issue 11's
 * partial resync). Its live image is not touched.
 */
function hashSeed(catalog: Catalog, target: string, wanted: Set<string>): void {
  const rec = catalog.record(target);
  if (!isZvol(rec) || catalog.index(target).snapshots.length || !wanted.size) return;
  const lock = lockDatasets(catalog.layout, [target], 'comparing chunk hashes');
  const store = new BlockStore(catalog.layout.blocksDir(target));
  let fd: number | null = null;
  try {
    refuseServed(catalog, target, 'comparing its chunks with a source');
    const swept = markUnswept(catalog, target);
    fd = openSync(path.join(catalog.liveDir(target), VOLUME_FILE), 'r');
    const buf = Buffer.alloc(ZVOL_CHUNK);
    const zero = Buffer.alloc(ZVOL_CHUNK);
    let unsealed = 0;
    const keep = () => {
      const id = store.writingPack();
      if (id) keepPacks(catalog.layout, target, [id]);
      store.seal();
      unsealed = 0;
    };
    for (let at = 0; at < rec.volsize; at += ZVOL_CHUNK) {
      const n = readSync(fd, buf, 0, Math.min(ZVOL_CHUNK, rec.volsize - at), at);
      const data = buf.subarray(0, n);
      if (zero.subarray(0, n).equals(data)) continue;
      const h = sha256(data);
      if (wanted.has(h) && store.put(h, Buffer.from(data)) && (unsealed += n) >= SEAL_EVERY) keep();
    }
    keep();
    if (!store.newPacks().length) swept();
  } finally {
    if (fd !== null) closeSync(fd);
    store.close();
    lock.release();
  }
}

/**
 * Is a destination with data but no common snapshot a seed of the source?
 * Yes when it holds at least half of the chunks the source would send (a
 * partial resync sends the rest); otherwise it is some other disk, and
 * nothing is sent over it.
 */
export function isSeed(c: { offered: number; held: number }): boolean {
  return c.held * 2 >= c.offered;
}

/** Sender: the set of chunks of `list` the answer says the receiver holds (empty without an answer for this dataset). */
export function heldSet(answer: ChunkAnswer | undefined, rel: string, list: readonly string[], where: string): Set<string> {
  const held = new Set<string>();
  const mine = answer?.datasets?.find((d) => d.rel === rel);
  if (!mine) return held;
  const bits = typeof mine.held === 'string' ? Buffer.from(mine.held, 'base64') : null;
  if (!bits || bits.length !== Math.ceil(list.length / 8)) {
    throw new Error(`The receiver's answer about the chunks of ${where} covers ${bits ? bits.length * 8 : 0} chunks, but ${list.length} were offered; the snapshot or its base changed since the offer.`);
  }
  list.forEach((h, i) => {
    if (bits[i >> 3] & (0x80 >> (i & 7))) held.add(h);
  });
  return held;
}

/** How many of an answer's chunks are held, over how many were offered. */
export function countHeld(answer: ChunkAnswer, offer: ChunkOffer): { held: number; offered: number } {
  let held = 0;
  let offered = 0;
  for (const d of offer.datasets) {
    const n = d.chunks.length / HASH_HEX;
    offered += n;
    const bits = Buffer.from(answer.datasets.find((a) => a.rel === d.rel)?.held ?? '', 'base64');
    for (let i = 0; i < n; i++) if (bits[i >> 3] & (0x80 >> (i & 7))) held++;
  }
  return { held, offered };
}

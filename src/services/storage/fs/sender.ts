/**
 * send: a pull-driven generator over the stream format (stream-format.ts).
 * Blocks are read from the snapshot's block store one at a time, only when
 * the consumer asks for more, so memory stays at a block or two whatever
 * the file sizes; only blocks the base snapshot does not reference travel.
 */
import { Readable, addAbortSignal } from 'node:stream';
import { createHash } from 'node:crypto';
import { constants, gzipSync } from 'node:zlib';
import { packBlockPatches } from './block-patch.js';
import type { ChunkOffer, SendOptions } from '../driver.js';
import { BlockStore } from './block-store.js';
import type { Catalog, SnapshotRecord } from './catalog.js';
import { pinSnapshot } from './gc.js';
import { diffManifests, entriesDigest, readManifest, withoutCache, type Manifest } from './manifest.js';
import { checkDatasetName, checkSnapshotName, parentOf } from './names.js';
import { chunksToSend, heldSet, packChunks } from './negotiate.js';
import { MANIFEST_PART, REC, blockHead, jsonRecord, preamble, recordHead, type DatasetEnd, type DatasetHeader, type StreamHeader, type StreamManifest, type Trailer } from './stream-format.js';

interface Part {
  name: string;
  rel: string;
  snap: SnapshotRecord;
  base: SnapshotRecord | null;
}

export function sendStream(catalog: Catalog, dataset: string, snapshot: string, opts: SendOptions): Readable {
  const stream = Readable.from(generate(catalog, dataset, snapshot, opts), { objectMode: false, highWaterMark: 1 << 16 });
  if (opts.signal) addAbortSignal(opts.signal, stream);
  return stream;
}

/** Which datasets and snapshots go into the stream; pins each sent snapshot against garbage collection. */
function resolveParts(catalog: Catalog, dataset: string, snapshot: string, opts: Pick<SendOptions, 'from' | 'recursive'>, pins: (() => void)[]): Part[] {
  checkDatasetName(dataset);
  checkSnapshotName(dataset, snapshot);
  if (opts.from !== undefined) checkSnapshotName(dataset, opts.from);
  catalog.require(dataset);
  const names = opts.recursive ? [dataset, ...catalog.descendants(dataset)] : [dataset];
  const parts: Part[] = [];
  for (const name of names) {
    const top = name === dataset;
    const found = catalog.snapshot(name, snapshot);
    if (!found) {
      if (top) throw new Error(`The snapshot ${name}@${snapshot} does not exist.`);
      continue; // a child created after the recursive snapshot: not part of it
    }
    // A child travels with its parent: without the parent's dataset it has nowhere to go.
    if (!top && !parts.some((p) => p.name === parentOf(name))) continue;
    // Pin, then confirm the snapshot is still listed (destroy does it the other way round).
    pins.push(pinSnapshot(catalog, name, found.id));
    const index = catalog.index(name);
    const snap = index.snapshots.find((s) => s.id === found.id);
    if (!snap) throw new Error(`The snapshot ${name}@${snapshot} was destroyed while the send started.`);
    let base: SnapshotRecord | null = null;
    if (opts.from !== undefined) {
      base = index.snapshots.find((s) => s.name === opts.from) ?? null;
      if (!base && top) throw new Error(`The incremental base ${name}@${opts.from} does not exist.`);
      if (base && base.id === snap.id) throw new Error(`The incremental base ${name}@${opts.from} is the snapshot being sent; send from an older snapshot.`);
      if (base && base.seq > snap.seq) throw new Error(`The incremental base ${name}@${opts.from} is newer than ${name}@${snapshot}; send from an older snapshot.`);
    }
    parts.push({ name, rel: top ? '' : name.slice(dataset.length + 1), snap, base });
  }
  return parts;
}

function manifests(catalog: Catalog, part: Part): { manifest: Manifest; base: Manifest | null } {
  const manifest = readManifest(catalog.layout.manifestFile(part.name, part.snap.id), `${part.name}@${part.snap.name}`);
  const base = part.base ? readManifest(catalog.layout.manifestFile(part.name, part.base.id), `${part.name}@${part.base.name}`) : null;
  return { manifest, base };
}

/** The chunks a send would carry, per dataset: what the receiver is asked about before the send (negotiate.ts). */
export function offerChunks(catalog: Catalog, dataset: string, snapshot: string, opts: Pick<SendOptions, 'from' | 'recursive'>): ChunkOffer {
  const pins: (() => void)[] = [];
  try {
    return {
      datasets: resolveParts(catalog, dataset, snapshot, opts, pins).map((part) => {
        const { manifest, base } = manifests(catalog, part);
        return { rel: part.rel, chunks: packChunks(chunksToSend(manifest, base)) };
      }),
    };
  } finally {
    for (const release of pins) release();
  }
}

/** Small records are gathered into chunks of about this size: one stream chunk per tiny block would be slow. */
const BATCH = 256 * 1024;
/** Blocks from this size on are handed on as they are. */
const DIRECT = 64 * 1024;

async function* generate(catalog: Catalog, dataset: string, snapshot: string, opts: SendOptions): AsyncGenerator<Buffer> {
  const pins: (() => void)[] = [];
  try {
    const parts = resolveParts(catalog, dataset, snapshot, opts, pins);
    const hash = createHash('sha256');
    let bytes = 0;
    let blocks = 0;
    let blockBytes = 0;
    const pending: Buffer[] = [];
    let pendingBytes = 0;
    /** queue bytes for the stream (block payloads are not part of the checksum); true when a chunk's worth is waiting */
    const add = (buf: Buffer, checksummed = true): boolean => {
      if (checksummed) hash.update(buf);
      bytes += buf.length;
      pending.push(buf);
      pendingBytes += buf.length;
      return pendingBytes >= BATCH;
    };
    const flush = (): Buffer => {
      const chunk = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
      pending.length = 0;
      pendingBytes = 0;
      return chunk;
    };
    add(preamble());
    const header: StreamHeader = { snapshot, datasets: parts.map((p) => p.rel), createdAt: new Date().toISOString() };
    add(jsonRecord(REC.stream, header));

    for (const part of parts) {
      const what = `${part.name}@${part.snap.name}`;
      const { manifest, base } = manifests(catalog, part);
      const toSend = chunksToSend(manifest, base);
      const held = heldSet(opts.held, part.rel, toSend, what);
      const dsHeader: DatasetHeader = {
        rel: part.rel,
        kind: manifest.kind,
        ...(manifest.volsize !== undefined ? { volsize: manifest.volsize } : {}),
        ...(catalog.record(part.name)?.zvol ? { blockSize: catalog.record(part.name)!.zvol!.blockSize } : {}),
        snapshot: { name: part.snap.name, id: part.snap.id, createdAt: part.snap.createdAt },
        base: part.base ? { name: part.base.name, id: part.base.id } : null,
        entries: manifest.entries.length,
        chunks: { offered: toSend.length, held: held.size },
      };
      if (add(jsonRecord(REC.dataset, dsHeader))) yield flush();

      // The manifest first: the receiver plans with it and builds each file as its blocks arrive.
      // The source's exclude patterns stay with it: the copy holds the tree as sent.
      const { entries, exclude: _excluded, ...fields } = manifest;
      const digest = entriesDigest(entries);
      const body: StreamManifest = base ? { ...fields, delta: packBlockPatches(base, manifest, diffManifests(base, manifest)), digest } : { ...fields, entries: entries.map(withoutCache), digest };
      const packed = gzipSync(JSON.stringify(body), { level: constants.Z_BEST_SPEED });
      for (let at = 0; at < packed.length; at += MANIFEST_PART) {
        const piece = packed.subarray(at, Math.min(packed.length, at + MANIFEST_PART));
        add(recordHead(REC.manifest, piece.length));
        if (add(piece)) yield flush();
      }

      // Then the blocks the base lacks and the receiver did not say it holds, each once, in the order the manifest uses them.
      const store = new BlockStore(catalog.layout.blocksDir(part.name));
      let dsBlocks = 0;
      let dsBytes = 0;
      try {
        for (const h of toSend) {
          if (held.has(h)) continue;
          opts.signal?.throwIfAborted();
          const data = store.read(h, what);
          add(blockHead(h, data.length));
          if (data.length >= DIRECT) {
            // Travels as its own chunk: gathering it with the small records would copy every byte once more.
            yield flush();
            bytes += data.length;
            yield data;
          } else if (add(data, false)) {
            yield flush();
          }
          dsBlocks++;
          dsBytes += data.length;
        }
      } finally {
        store.close();
      }
      const end: DatasetEnd = { blocks: dsBlocks, blockBytes: dsBytes, manifestBytes: packed.length };
      add(jsonRecord(REC.end, end));
      blocks += dsBlocks;
      blockBytes += dsBytes;
    }

    const trailer: Trailer = { datasets: parts.length, blocks, blockBytes, bytes };
    add(jsonRecord(REC.trailer, trailer));
    pending.push(hash.digest());
    pendingBytes += 32;
    yield flush();
  } finally {
    for (const release of pins) release();
  }
}

/**
 * A zvol's image entry in an incremental stream (version 5): the chunks
 * whose names changed since the base, not its whole block list. A 4 GiB
 * zvol's list is 65,536 names (4 MB of JSON); gzipping, sending, unpacking
 * and parsing it cost most of an incremental of 1% (issue 11), while the
 * patch is as long as the change. The receiver rebuilds the list from its
 * own base and the manifest digest proves the result is the sender's.
 * Only for 64 KiB-chunk manifests, whose lists are canonical with zero runs
 * (block-list.ts), so base + patch gives back the very same names.
 */
import { ZERO_BLOCK, ZVOL_CHUNK, isBlockHash } from './block-store.js';
import { chunkCount, namesAt, patchBlocks } from './block-list.js';
import { PathCursor, type Entry, type Manifest, type ManifestDelta } from './manifest.js';
import { differingChunks } from './zvol.js';

/** An upsert whose `blocks` travel as changes to the base entry's at the same path. */
export type PatchedEntry = Omit<Entry, 'blocks'> & { blocksPatch: { chunks: number; set: [number, string][] } };

/** The delta with each zvol image entry's block list as a patch of the base's (when that is shorter and exact). */
export function packBlockPatches(base: Manifest, target: Manifest, delta: ManifestDelta): { upserts: (Entry | PatchedEntry)[]; removes: string[] } {
  if (target.chunkSize !== ZVOL_CHUNK || base.chunkSize !== ZVOL_CHUNK) return delta;
  const before = new PathCursor(base.entries);
  const upserts = delta.upserts.map((e): Entry | PatchedEntry => {
    const old = before.at(e.path);
    if (e.type !== 'file' || !e.blocks || e.link !== undefined || old?.type !== 'file' || !old.blocks || old.link !== undefined) return e;
    const chunks = chunkCount(e.blocks);
    const changed = differingChunks(old.blocks, e.blocks, chunks);
    if (changed.length * 2 > chunks) return e;
    const names = namesAt(e.blocks, changed);
    const set = changed.map((c): [number, string] => [c, names.get(c)!]);
    const rebuilt = patchBlocks(old.blocks, new Map(set), chunks);
    // Not canonical after all (an old writer's list): the whole list then, never a wrong one.
    if (rebuilt.length !== e.blocks.length || rebuilt.some((h, i) => h !== e.blocks![i])) return e;
    const { blocks: _whole, ...rest } = e;
    return { ...rest, blocksPatch: { chunks, set } };
  });
  return { upserts, removes: delta.removes };
}

/** The upserts with every patched block list rebuilt from the base; a malformed patch is refused with `bad`. */
export function unpackBlockPatches(upserts: unknown[], base: Manifest, bad: (why: string) => Error): unknown[] {
  const before = new PathCursor(base.entries);
  return upserts.map((u) => {
    const p = u as Partial<PatchedEntry> | null;
    if (!p || typeof p !== 'object' || p.blocksPatch === undefined) return u;
    const { blocksPatch, ...rest } = p;
    const old = typeof rest.path === 'string' ? before.at(rest.path) : undefined;
    if (base.chunkSize !== ZVOL_CHUNK || old?.type !== 'file' || !old.blocks || old.link !== undefined) throw bad(`a block patch for ${JSON.stringify(rest.path)}, which the base has no zvol image at`);
    const { chunks, set } = (blocksPatch ?? {}) as Partial<PatchedEntry['blocksPatch']>;
    if (!Number.isSafeInteger(chunks) || chunks! < 0 || !Array.isArray(set)) throw bad(`a malformed block patch for ${JSON.stringify(rest.path)}`);
    const updates = new Map<number, string>();
    let last = -1;
    for (const pair of set) {
      const [c, h] = Array.isArray(pair) ? pair : [];
      const ok = Number.isSafeInteger(c) && (c as number) > last && (c as number) < chunks! && typeof h === 'string' && (h === ZERO_BLOCK || isBlockHash(h));
      if (!ok) throw bad(`a malformed block patch for ${JSON.stringify(rest.path)}`);
      last = c as number;
      updates.set(c as number, h as string);
    }
    return { ...rest, blocks: patchBlocks(old.blocks, updates, chunks!) };
  });
}

/**
 * Where each block of a store is (block-store.ts): shared read-only maps of
 * the sealed packs, under this instance's own changes. One sync opens a
 * dataset's store several times (snapshot, offer, send, receive, commit);
 * rebuilding a map of a 4 GiB zvol's 65,536 blocks each time cost more than
 * an incremental of 1% of it did otherwise (issue 11). The maps are kept per
 * store directory while its packs are the same, or only gained newer ones.
 */
import type { PackEntry } from './pack-index.js';

type Layer = ReadonlyMap<string, PackEntry>;

/** Past this many layers the maps are merged into one: a lookup walks every layer. */
const MAX_LAYERS = 8;
/** Stores whose maps are kept (a daemon serves many datasets; the least recently used go first). */
const MAX_STORES = 4;

const shared = new Map<string, { packs: readonly PackEntry[][]; layers: Layer[] }>();

/** The maps of `packs` (oldest first, each a decoded index): reused when `dir`'s were these packs or a prefix of them. */
export function sealedLayers(dir: string, packs: readonly PackEntry[][]): Layer[] {
  const had = shared.get(dir);
  shared.delete(dir);
  let layers: Layer[];
  if (had && had.packs.length <= packs.length && had.packs.every((p, i) => p === packs[i])) {
    layers = [...had.layers, ...packs.slice(had.packs.length).map((p) => merged([p]))];
    if (layers.length > MAX_LAYERS) layers = [merged(packs)];
  } else {
    layers = [merged(packs)];
  }
  shared.set(dir, { packs: [...packs], layers });
  for (const d of shared.keys()) {
    if (shared.size <= MAX_STORES) break;
    shared.delete(d);
  }
  return layers;
}

function merged(packs: readonly PackEntry[][]): Layer {
  const m = new Map<string, PackEntry>();
  for (const p of packs) for (const e of p) m.set(e.hash, e); // a later pack's copy wins
  return m;
}

/** The store's view: its own changes (null: removed) over the shared layers, the newest layer first. */
export class BlockIndex {
  private layers: Layer[] = [];
  private readonly own = new Map<string, PackEntry | null>();

  setLayers(layers: Layer[]): void {
    this.layers = layers;
  }

  get(hash: string): PackEntry | undefined {
    const mine = this.own.get(hash);
    if (mine !== undefined) return mine ?? undefined;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const e = this.layers[i].get(hash);
      if (e) return e;
    }
    return undefined;
  }

  has(hash: string): boolean {
    return this.get(hash) !== undefined;
  }

  set(hash: string, entry: PackEntry): void {
    this.own.set(hash, entry);
  }

  delete(hash: string): void {
    this.own.set(hash, null);
  }

  clear(): void {
    this.layers = [];
    this.own.clear();
  }
}

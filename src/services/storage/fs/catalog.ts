/**
 * The dataset registry and each dataset's snapshot index. A dataset exists
 * exactly when its dataset.json exists; a snapshot exists exactly when the
 * index lists it (its manifest file is written first, so a listed snapshot
 * always has one).
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import type { Layout } from './layout.js';
import type { ZvolRecord } from './zvol.js';
import { lstatOrNull, readJson, writeJsonAtomic } from './files.js';
import { withIndexLock } from './lock.js';
import { decodeName, isDescendant, parentOf } from './names.js';
import { resolveLive } from './versions.js';

export interface DatasetRecord {
  format: 1;
  name: string;
  kind: 'filesystem' | 'volume';
  volsize?: number;
  /** a zvol (64 KiB chunks, dirty map): see zvol.ts */
  zvol?: ZvolRecord;
  createdAt: string;
}

export interface SnapshotRecord {
  name: string;
  id: string;
  createdAt: string;
  /** local registration order: listSnapshots is oldest first by this */
  seq: number;
  held: boolean;
  /** bytes of file content the snapshot refers to */
  referenced: number;
}

export interface SnapshotIndex {
  /** the snapshot the live tree was last made equal to (snapshot, receive, rollback): the best stat cache */
  head: string | null;
  nextSeq: number;
  snapshots: SnapshotRecord[];
}

const EMPTY_INDEX: SnapshotIndex = { head: null, nextSeq: 1, snapshots: [] };

export class Catalog {
  constructor(readonly layout: Layout) {}

  record(name: string): DatasetRecord | null {
    return readJson<DatasetRecord>(this.layout.recordFile(name));
  }

  require(name: string): DatasetRecord {
    const rec = this.record(name);
    if (!rec) throw new Error(`The fs dataset ${name} does not exist.`);
    return rec;
  }

  register(rec: DatasetRecord): void {
    mkdirSync(this.layout.datasetMeta(rec.name), { recursive: true });
    writeJsonAtomic(this.layout.recordFile(rec.name), rec);
  }

  /** the metadata directories present (registered or not), as dataset names */
  metaNames(pool?: string): string[] {
    const pools = pool ? [pool] : this.pools();
    const out: string[] = [];
    for (const p of pools) {
      let names: string[] = [];
      try {
        names = readdirSync(this.layout.datasetsDir(p));
      } catch {
        /* no such pool */
      }
      for (const n of names) out.push(decodeName(n));
    }
    return out.sort();
  }

  pools(): string[] {
    try {
      return readdirSync(this.layout.meta).sort();
    } catch {
      return [];
    }
  }

  /** registered datasets, sorted (parents before children) */
  all(pool?: string): string[] {
    return this.metaNames(pool).filter((n) => existsSync(this.layout.recordFile(n)));
  }

  descendants(name: string): string[] {
    return this.all(name.split('/')[0]).filter((n) => isDescendant(n, name));
  }

  children(name: string): string[] {
    return this.descendants(name).filter((n) => parentOf(n) === name);
  }

  /** names of the direct children's mountpoints inside `name`'s tree: excluded from its snapshots */
  childMountNames(name: string): Set<string> {
    return new Set(this.children(name).map((c) => c.slice(name.length + 1)));
  }

  mounted(name: string): boolean {
    return !lstatOrNull(this.layout.unmountedDir(name)); // lstat: while unmounted it is a link
  }

  /** where readers reach the dataset's files: its mountpoint, or the metadata area while unmounted */
  liveLink(name: string): string {
    return this.mounted(name) ? this.layout.mountpoint(name) : this.layout.unmountedDir(name);
  }

  /** where the dataset's files are right now: the version its link names (versions.ts), or the directory itself */
  liveDir(name: string): string {
    return resolveLive(this.liveLink(name));
  }

  index(name: string): SnapshotIndex {
    return readJson<SnapshotIndex>(this.layout.indexFile(name)) ?? structuredClone(EMPTY_INDEX);
  }

  writeIndex(name: string, index: SnapshotIndex): void {
    writeJsonAtomic(this.layout.indexFile(name), index);
  }

  updateIndex(name: string, fn: (index: SnapshotIndex) => void): Promise<SnapshotIndex> {
    return withIndexLock(this.layout, name, () => {
      const index = this.index(name);
      fn(index);
      this.writeIndex(name, index);
      return index;
    });
  }

  snapshot(name: string, snap: string): SnapshotRecord | null {
    return this.index(name).snapshots.find((s) => s.name === snap) ?? null;
  }

  requireSnapshot(name: string, snap: string): SnapshotRecord {
    const found = this.snapshot(name, snap);
    if (!found) throw new Error(`The snapshot ${name}@${snap} does not exist.`);
    return found;
  }
}

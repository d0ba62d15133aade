/**
 * Where everything lives under the fs pool root. Live files stay in the
 * operator-visible tree; everything else sits in `<root>/.syncsh`, outside
 * every live tree, so snapshots never see their own metadata.
 *
 *   <root>/<pool>/<rest of name>           the mountpoint: a link to the live version of a filesystem's tree (a directory for a volume)
 *   <root>/.syncsh/<pool>/
 *     trees/<uuid>/                        versions of the filesystems' live trees; a mountpoint is a relative link to one (versions.ts)
 *     locks/<enc>.lock, <enc>.index.lock   operation lock, snapshot-index lock
 *     renames/<enc>.json                   a rename in progress (rename.ts; finished by recover)
 *     datasets/<enc>/                      <enc> = name with "/" -> "+"
 *       dataset.json                       registration: a dataset exists iff this file does
 *       snapshots.json                     snapshot index (names, ids, holds, order, head)
 *       manifests/<id>.json                one manifest per snapshot
 *       blocks/<id>.pack, <id>.idx         content-addressed block store in packs (per dataset, block-store.ts)
 *       staging/<receive id>/              blocks, files and manifest of a receive in progress
 *       journal.json, journal.progress     the commit being applied (rolled forward by recover)
 *       pins/<pid>-<rand>.json             snapshots being sent (kept from garbage collection)
 *       unmounted                          the mountpoint's link (or a volume's directory) while the dataset is unmounted
 *       unswept                            marker: an operation is writing blocks, or left some for a sweep
 *       destroying                         marker: destroyDataset in progress
 */
import path from 'node:path';
import { encodeName, poolOf } from './names.js';

export const VOLUME_FILE = 'volume.img';

export class Layout {
  readonly meta: string;

  constructor(readonly root: string) {
    this.meta = path.join(root, '.syncsh');
  }

  mountpoint(name: string): string {
    return path.join(this.root, ...name.split('/'));
  }

  poolMeta(pool: string): string {
    return path.join(this.meta, pool);
  }

  datasetsDir(pool: string): string {
    return path.join(this.poolMeta(pool), 'datasets');
  }

  locksDir(name: string): string {
    return path.join(this.poolMeta(poolOf(name)), 'locks');
  }

  lockFile(name: string): string {
    return path.join(this.locksDir(name), `${encodeName(name)}.lock`);
  }

  indexLockFile(name: string): string {
    return path.join(this.locksDir(name), `${encodeName(name)}.index.lock`);
  }

  datasetMeta(name: string): string {
    return path.join(this.datasetsDir(poolOf(name)), encodeName(name));
  }

  recordFile(name: string): string {
    return path.join(this.datasetMeta(name), 'dataset.json');
  }

  indexFile(name: string): string {
    return path.join(this.datasetMeta(name), 'snapshots.json');
  }

  manifestsDir(name: string): string {
    return path.join(this.datasetMeta(name), 'manifests');
  }

  manifestFile(name: string, id: string): string {
    return path.join(this.manifestsDir(name), `${id}.json`);
  }

  blocksDir(name: string): string {
    return path.join(this.datasetMeta(name), 'blocks');
  }

  stagingRoot(name: string): string {
    return path.join(this.datasetMeta(name), 'staging');
  }

  journalFile(name: string): string {
    return path.join(this.datasetMeta(name), 'journal.json');
  }

  journalProgressFile(name: string): string {
    return path.join(this.datasetMeta(name), 'journal.progress');
  }

  /** versions of the pool's live trees, named by uuid (versions.ts) */
  treesDir(pool: string): string {
    return path.join(this.poolMeta(pool), 'trees');
  }

  pinsDir(name: string): string {
    return path.join(this.datasetMeta(name), 'pins');
  }

  /** a link whose target's last part names the spare version: the one swapped out last, the next commit's build target (versions.ts) */
  spareLink(name: string): string {
    return path.join(this.datasetMeta(name), 'spare');
  }

  unmountedDir(name: string): string {
    return path.join(this.datasetMeta(name), 'unmounted');
  }

  /** marker: blocks may have been written that nothing lists (gc.ts), so recover sweeps */
  unsweptMarker(name: string): string {
    return path.join(this.datasetMeta(name), 'unswept');
  }

  /** the packs an interrupted receive verified and kept for the next one (partial.ts) */
  partialFile(name: string): string {
    return path.join(this.datasetMeta(name), 'partial.json');
  }

  destroyingMarker(name: string): string {
    return path.join(this.datasetMeta(name), 'destroying');
  }

  renamesDir(pool: string): string {
    return path.join(this.poolMeta(pool), 'renames');
  }

  /** the intent of renaming `from` (and its children), until the rename is done */
  renameIntent(from: string): string {
    return path.join(this.renamesDir(poolOf(from)), `${encodeName(from)}.json`);
  }
}

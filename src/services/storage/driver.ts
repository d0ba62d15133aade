/**
 * The one interface every storage driver (fs, zfs, btrfs) implements.
 *
 * Names passed to a driver are driver-local: `tank/data` for fs and zfs,
 * `/mnt/pool/subvol` for btrfs. The `driver:` prefix is stripped by the
 * dataset parser (../datasets.ts) before a driver sees a name.
 *
 * Snapshots are identified by `id` (zfs guid, btrfs uuid / received-uuid,
 * fs manifest id): a snapshot received from elsewhere carries the sender's
 * id, which is how the run finds the newest common snapshot.
 */
import type { Codec } from '../wire/codec-names.js';
import type { Readable } from 'node:stream';
import type { BlockVolume } from '../nbd/volume.js';

export type DriverName = 'fs' | 'zfs' | 'btrfs';

export interface DatasetInfo {
  /** driver-local dataset name */
  name: string;
  kind: 'filesystem' | 'volume';
  /** directory where its files live (null for volumes or when unmounted) */
  mountpoint: string | null;
  mounted: boolean;
  /** bytes used by live data, when the driver knows */
  used?: number;
  /** volume size in bytes, for volumes */
  volsize?: number;
  readonly: boolean;
}

export interface SnapshotInfo {
  /** driver-local dataset name */
  dataset: string;
  /** short snapshot name (after the `@`) */
  name: string;
  /** identity preserved across send/receive (guid, received-uuid, manifest id) */
  id: string;
  createdAt: Date;
  /** bytes unique to this snapshot or referenced, when the driver knows */
  size?: number;
  /** protected against destruction (zfs hold, fs/btrfs pin) */
  held: boolean;
  /** set by createSnapshot when it could not capture one instant (fs: the tree kept changing under the scan): why */
  notPointInTime?: string;
}

export interface SnapshotOptions {
  /** include child datasets */
  recursive: boolean;
  /** gitignore-style patterns left out of the snapshot, relative to each dataset (fs only: zfs and btrfs refuse them) */
  exclude?: string[];
}

export interface SendOptions {
  /** incremental base: a snapshot name present on both sides */
  from?: string;
  /** include child datasets (zfs send -R and the like) */
  recursive: boolean;
  /** abort the stream */
  signal?: AbortSignal;
  /** fs: the receiver's answer to offerChunks (the chunks it holds are not sent) */
  held?: ChunkAnswer;
  /** how the stream crosses the wire to a peer (a peer's driver only; local drivers have no wire) */
  compress?: Codec;
  /** zfs: finish an interrupted receive from the destination's resume token (`zfs send -t`); the snapshot names are ignored */
  resumeToken?: string;
}

/**
 * fs: the chunks a send would carry beyond its base, per dataset of the
 * stream (rel: '' for the sent dataset, else the child's relative name), as
 * 64-hex sha256 names back to back, in the order the stream sends them.
 */
export interface ChunkOffer {
  datasets: { rel: string; chunks: string }[];
}

/** fs: which offered chunks the receiver holds: per dataset, a base64 bitmap (bit i, most significant first, is chunk i). */
export interface ChunkAnswer {
  datasets: { rel: string; held: string }[];
}

export interface ReceiveOptions {
  /**
   * Allow rolling the destination back to its newest snapshot when it was
   * written to since (the service's `force` property). Without it, a changed
   * destination is an error and nothing is touched.
   */
  force: boolean;
  recursive: boolean;
  signal?: AbortSignal;
  /** how the stream crosses the wire to a peer (a peer's driver only) */
  compress?: Codec;
}

export interface ReceiveResult {
  /** the snapshot now present on the destination */
  snapshot: SnapshotInfo;
  /** payload bytes consumed from the stream */
  bytes: number;
}

export interface CreateDatasetOptions {
  /** create a volume (zvol / image file) of this many bytes instead of a filesystem */
  volumeSize?: number;
  /** create missing parents */
  parents?: boolean;
  /** with volumeSize: a zvol (fs: 64 KiB chunks and a dirty-chunk map) of this block size */
  zvol?: { blockSize: number };
}

/** What `show zvol` reports of a zvol (drivers that have them). */
export interface VolumeStats {
  size: number;
  blockSize: number;
  /** bytes the live image takes on disk (holes cost nothing) */
  used: number;
  /** bytes written since the last snapshot (whole chunks, as the dirty map knows them) */
  written: number;
  /** chunks referenced by the snapshots over the distinct chunks stored (1 = no sharing) */
  dedupRatio: number;
}

export interface Driver {
  readonly name: DriverName;
  /** null when usable, else a sentence saying what is missing */
  unavailableReason(): Promise<string | null>;

  listDatasets(under?: string): Promise<DatasetInfo[]>;
  getDataset(name: string): Promise<DatasetInfo | null>;
  createDataset(name: string, opts?: CreateDatasetOptions): Promise<DatasetInfo>;
  destroyDataset(name: string, opts?: { recursive?: boolean }): Promise<void>;
  /** move a dataset, its children and snapshots to a new name (the target must not exist) */
  renameDataset(from: string, to: string): Promise<void>;

  /** oldest first */
  listSnapshots(dataset: string): Promise<SnapshotInfo[]>;
  createSnapshot(dataset: string, name: string, opts: SnapshotOptions): Promise<SnapshotInfo>;
  destroySnapshot(dataset: string, name: string, opts: { recursive: boolean }): Promise<void>;
  /** protect / unprotect a snapshot from destruction */
  holdSnapshot(dataset: string, name: string, held: boolean): Promise<void>;
  /** return the live dataset to exactly this snapshot, discarding later changes */
  rollback(dataset: string, name: string): Promise<void>;
  /** true when the live dataset differs from the given snapshot */
  changedSince(dataset: string, name: string): Promise<boolean>;

  /** a byte stream of `snapshot` (incremental when opts.from is given) */
  send(dataset: string, snapshot: string, opts: SendOptions): Readable;
  /**
   * Apply a stream made by `send` of the same driver. Staged: a cut, corrupt
   * or rejected stream leaves the destination exactly as it was.
   */
  receive(dataset: string, stream: Readable, opts: ReceiveOptions): Promise<ReceiveResult>;
  /** fs: the chunks `send` would carry (for the receiver to say which it holds: heldChunks) */
  offerChunks?(dataset: string, snapshot: string, opts: { from?: string; recursive: boolean }): Promise<ChunkOffer>;
  /** fs: which of an offer's chunks this side holds already (block store, chunks kept from an interrupted receive) */
  heldChunks?(dataset: string, offer: ChunkOffer): Promise<ChunkAnswer>;
  /**
   * zfs: can this side's zfs keep a cut receive resumable (`receive -s`), and
   * the token a cut receive into `dataset` left, if any (null otherwise)
   */
  receiveResume?(dataset: string): Promise<{ supported: boolean; token: string | null }>;
  /** finish or clean what an interrupted receive left behind; returns what it did */
  recover(dataset: string): Promise<string[]>;

  mount(dataset: string): Promise<void>;
  /** zvols (optional: drivers without them leave these out) */
  isZvol?(dataset: string): Promise<boolean>;
  volumeStats?(dataset: string): Promise<VolumeStats>;
  /** grow a zvol (never shrink) */
  resizeVolume?(dataset: string, size: number): Promise<void>;
  /** a zvol snapshot's content, in order: each piece's offset and length, data null for zeroes */
  readVolume?(dataset: string, snapshot: string): AsyncIterable<{ offset: number; length: number; data: Buffer | null }>;
  /** a zvol snapshot's identity and block list, as text shipped beside an exported image (a seed) */
  volumeSeed?(dataset: string, snapshot: string): Promise<string>;
  /**
   * A zvol just written from an image becomes that snapshot (same name and
   * id), once its chunks are proven to be the seed's; refused otherwise.
   */
  adoptVolumeSeed?(dataset: string, seed: string): Promise<SnapshotInfo>;
  /** open a zvol for one NBD connection */
  openVolume?(dataset: string, opts?: { readOnly?: boolean }): Promise<BlockVolume>;
  unmount(dataset: string): Promise<void>;
}

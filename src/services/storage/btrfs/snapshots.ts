/**
 * Snapshots: read-only subvolumes in the dataset's snapshot directory (see
 * layout.ts). Identity is the received uuid when the snapshot came by
 * `btrfs receive`, else its own uuid, so a snapshot and its received copies
 * share one id (a receiver records the sender's uuid as received_uuid).
 *
 * Recursive snapshots are refused: a btrfs snapshot does not include nested
 * subvolumes, and neither does `btrfs send`.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { SnapshotInfo } from '../driver.js';
import { feed, streamFrom } from '../exec.js';
import { isSubvolume, type BtrfsCli, type SubvolumeShow } from './cli.js';
import { BtrfsError, explainBtrfs } from './errors.js';
import { checkSnapshotName, checkSubvolumePath, holdMarker, HOLDS_DIR, probePath, snapshotDir, snapshotPath } from './layout.js';
import { requireDataset } from './subvolumes.js';
import { replaceLive } from './swap.js';

export const NO_RECURSION = 'The btrfs driver does not do recursive snapshots or sends: a btrfs snapshot and btrfs send leave nested subvolumes out.';

export interface BtrfsSnapshot extends SnapshotInfo {
  path: string;
  show: SubvolumeShow;
}

export const snapshotId = (show: SubvolumeShow): string => show.receivedUuid ?? show.uuid;

/** oldest first: by creation transid, which also orders received snapshots by arrival */
export async function listSnapshots(cli: BtrfsCli, dataset: string): Promise<BtrfsSnapshot[]> {
  checkSubvolumePath(dataset);
  const dir = snapshotDir(dataset);
  const entries = (await readdir(dir).catch(() => [] as string[])).filter((entry) => !entry.startsWith('.'));
  const held = new Set(await readdir(path.join(dir, HOLDS_DIR)).catch(() => [] as string[]));
  const found: BtrfsSnapshot[] = [];
  for (const name of entries) {
    const full = path.join(dir, name);
    if (!(await isSubvolume(full))) continue;
    const show = await cli.show(full);
    if (!show.readonly) continue; // a receive that did not finish: not a snapshot (recover removes it)
    found.push({ dataset, name, id: snapshotId(show), createdAt: show.createdAt, held: held.has(name), path: full, show });
  }
  return found.sort((a, b) => a.show.createdGeneration - b.show.createdGeneration || a.name.localeCompare(b.name));
}

export async function getSnapshot(cli: BtrfsCli, dataset: string, name: string): Promise<BtrfsSnapshot> {
  checkSnapshotName(name);
  const found = (await listSnapshots(cli, dataset)).find((s) => s.name === name);
  if (!found) throw new BtrfsError('missing', `The snapshot '${name}' of '${dataset}' does not exist.`);
  return found;
}

/** SnapshotInfo without the driver's extras (what callers of the Driver see) */
export const publicInfo = ({ path: _path, show: _show, ...info }: BtrfsSnapshot): SnapshotInfo => info;

export async function createSnapshot(cli: BtrfsCli, dataset: string, name: string, recursive: boolean): Promise<SnapshotInfo> {
  checkSubvolumePath(dataset);
  checkSnapshotName(name);
  if (recursive) throw new BtrfsError('unsupported', NO_RECURSION);
  await requireDataset(cli, dataset);
  const target = snapshotPath(dataset, name);
  if (await isSubvolume(target)) throw new BtrfsError('exists', `The snapshot '${name}' of '${dataset}' already exists.`);
  await mkdir(snapshotDir(dataset), { recursive: true });
  await cli.snapshot(dataset, target, true);
  return publicInfo(await getSnapshot(cli, dataset, name));
}

export async function destroySnapshot(cli: BtrfsCli, dataset: string, name: string, recursive: boolean): Promise<void> {
  checkSubvolumePath(dataset);
  checkSnapshotName(name);
  if (recursive) throw new BtrfsError('unsupported', NO_RECURSION);
  const snapshot = await getSnapshot(cli, dataset, name);
  if (snapshot.held) throw new BtrfsError('held', `The snapshot '${name}' of '${dataset}' is held; release it before destroying it.`);
  await cli.deleteSubvolume(snapshot.path);
}

/** a hold is an empty marker file: a read-only snapshot cannot carry an xattr we add later */
export async function holdSnapshot(cli: BtrfsCli, dataset: string, name: string, held: boolean): Promise<void> {
  checkSubvolumePath(dataset);
  checkSnapshotName(name);
  await getSnapshot(cli, dataset, name);
  const marker = holdMarker(dataset, name);
  if (held) {
    await mkdir(path.dirname(marker), { recursive: true });
    await writeFile(marker, '');
  } else {
    await rm(marker, { force: true });
  }
}

/**
 * The live subvolume becomes a writable snapshot of `name`; later snapshots
 * are destroyed, as `zfs rollback -r` does, so that "the newest snapshot"
 * means the same on both drivers (refused if one of them is held).
 */
export async function rollback(cli: BtrfsCli, dataset: string, name: string): Promise<void> {
  checkSubvolumePath(dataset);
  checkSnapshotName(name);
  const snapshots = await listSnapshots(cli, dataset);
  const at = snapshots.findIndex((s) => s.name === name);
  if (at < 0) throw new BtrfsError('missing', `The snapshot '${name}' of '${dataset}' does not exist.`);
  const later = snapshots.slice(at + 1);
  const heldLater = later.find((s) => s.held);
  if (heldLater) {
    throw new BtrfsError('held', `Rolling '${dataset}' back to '${name}' would destroy the later snapshot '${heldLater.name}', which is held; release it first.`);
  }
  await replaceLive(cli, dataset, snapshots[at]!.path);
  for (const snapshot of later) await cli.deleteSubvolume(snapshot.path);
}

/**
 * Whether the live subvolume differs from snapshot `name`. Fast answer from
 * generations when the two are directly related (the snapshot taken from the
 * live one, or the live one made from the snapshot) and the live tree has not
 * been touched since; otherwise a probe: a read-only snapshot of the live
 * subvolume and `btrfs send --no-data -p`, dumped, which lists nothing but
 * its own header when nothing changed. Metadata counts: with atime, a read
 * is a change.
 */
export async function changedSince(cli: BtrfsCli, dataset: string, name: string): Promise<boolean> {
  checkSubvolumePath(dataset);
  const snapshot = await getSnapshot(cli, dataset, name);
  await requireDataset(cli, dataset);
  // generations move at transaction commit: commit first, or a fresh write would not show
  await cli.btrfs(['filesystem', 'sync', dataset]);
  const live = await cli.show(dataset);
  if (snapshot.show.parentUuid === live.uuid && live.generation <= snapshot.show.createdGeneration) return false;
  if (live.parentUuid === snapshot.show.uuid && live.generation <= live.createdGeneration) return false;
  return probeChanged(cli, dataset, snapshot.path);
}

async function probeChanged(cli: BtrfsCli, dataset: string, base: string): Promise<boolean> {
  const probe = probePath(dataset);
  await cli.snapshot(dataset, probe, true);
  try {
    const stream = streamFrom(cli.bin, ['send', '-q', '--no-data', '-p', base, probe], { explain: explainBtrfs });
    const { stdout } = await feed(cli.bin, ['receive', '--dump'], stream);
    // the first line is the stream's own "snapshot" command
    return stdout.split('\n').filter(Boolean).length > 1;
  } finally {
    if (await isSubvolume(probe)) await cli.deleteSubvolume(probe).catch(() => undefined);
  }
}

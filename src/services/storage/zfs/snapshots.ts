/**
 * Snapshots: list (identity = guid), create, destroy, hold, rollback, and
 * whether the live dataset changed since one.
 *
 * Holds: `zfs hold syncsh` where the pool supports it; otherwise (pool < v18)
 * the user property `syncsh:hold=on` on the snapshot, which only this driver
 * enforces. Either way destroySnapshot, destroyDataset -r and rollback refuse
 * to remove a held snapshot and say which one.
 *
 * Change detection: `written@snap` where the property exists; otherwise (zfs-fuse)
 * a probe: a temporary snapshot and `zfs send -i snap probe`, whose stream is
 * empty (BEGIN then END) exactly when no block changed. Like `written`, it
 * counts metadata-only changes too: with atime=on, reading a file is a change.
 */
import { randomBytes } from 'node:crypto';
import type { SnapshotInfo } from '../driver.js';
import { peek, streamFrom } from '../exec.js';
import type { Props, ZfsCli } from './cli.js';
import { refreshMounts } from './mounts.js';
import { explainZfs, isZfsError, ZfsError } from './errors.js';
import { checkDatasetName, checkSnapshotName, snapshotPath } from './names.js';
import { isEmptyIncremental, parseBeginRecord, RECORD_SIZE } from './stream-header.js';

export const HOLD_TAG = 'syncsh';
export const HOLD_PROPERTY = 'syncsh:hold';
const SNAPSHOT_PROPS = ['guid', 'createtxg', 'creation', 'used', 'userrefs', HOLD_PROPERTY];
const PROBE_PREFIX = 'syncsh-probe-';

export function toSnapshotInfo(dataset: string, name: string, p: Props): SnapshotInfo {
  const info: SnapshotInfo = {
    dataset,
    name,
    id: p.guid ?? '',
    createdAt: new Date(Number(p.creation) * 1000),
    held: Number(p.userrefs) > 0 || p[HOLD_PROPERTY] === 'on',
  };
  const used = Number(p.used);
  if (Number.isFinite(used)) info.size = used;
  return info;
}

/** oldest first, by creation txg (creation times tie within a second) */
export async function listSnapshots(cli: ZfsCli, dataset: string): Promise<SnapshotInfo[]> {
  checkDatasetName(dataset);
  const names = (await cli.listNames(dataset, 'snapshot', 1)).filter((n) => n.startsWith(`${dataset}@`));
  const props = await cli.getProps(names, SNAPSHOT_PROPS);
  const order = (name: string) => Number(props.get(name)?.createtxg ?? props.get(name)?.creation ?? 0);
  return names
    .filter((full) => !full.slice(dataset.length + 1).startsWith(PROBE_PREFIX))
    .sort((a, b) => order(a) - order(b))
    .map((full) => toSnapshotInfo(dataset, full.slice(dataset.length + 1), props.get(full) ?? {}));
}

export async function getSnapshot(cli: ZfsCli, dataset: string, name: string): Promise<SnapshotInfo> {
  const found = (await listSnapshots(cli, dataset)).find((s) => s.name === name);
  if (!found) throw new ZfsError('missing', `The snapshot '${snapshotPath(dataset, name)}' does not exist.`);
  return found;
}

export async function createSnapshot(cli: ZfsCli, dataset: string, name: string, recursive: boolean): Promise<SnapshotInfo> {
  checkDatasetName(dataset);
  checkSnapshotName(name);
  await cli.requirePool(dataset);
  const full = snapshotPath(dataset, name);
  // no `zfs list` of the dataset and the snapshot first: `zfs snapshot` says which is wrong (issue 13's command count)
  try {
    await cli.zfs(['snapshot', ...(recursive ? ['-r'] : []), full]);
  } catch (error) {
    if (isZfsError(error, 'exists')) throw new ZfsError('exists', `The snapshot '${full}' already exists.`, error.stderr);
    throw error;
  }
  const props = (await cli.getProps([full], SNAPSHOT_PROPS)).get(full);
  if (!props) throw new ZfsError('missing', `The snapshot '${full}' does not exist.`);
  return toSnapshotInfo(dataset, name, props);
}

export async function destroySnapshot(cli: ZfsCli, dataset: string, name: string, recursive: boolean): Promise<void> {
  checkDatasetName(dataset);
  checkSnapshotName(name);
  await cli.requirePool(dataset); // a missing dataset: the listing below says so
  await cli.settleSends(dataset); // a send just given up may still be releasing its holds
  const targets = recursive ? await cli.listNames(dataset, 'filesystem,volume') : [dataset];
  let found = false;
  for (const target of targets) {
    const snapshot = (await listSnapshots(cli, target)).find((s) => s.name === name);
    if (!snapshot) continue;
    found = true;
    if (snapshot.held) {
      throw new ZfsError('held', `The snapshot '${snapshotPath(target, name)}' is held; release it before destroying it.`);
    }
  }
  if (!found) throw new ZfsError('missing', `The snapshot '${snapshotPath(dataset, name)}' does not exist.`);
  await cli.zfs(['destroy', ...(recursive ? ['-r'] : []), snapshotPath(dataset, name)]);
}

export async function holdSnapshot(cli: ZfsCli, dataset: string, name: string, held: boolean): Promise<void> {
  checkDatasetName(dataset);
  checkSnapshotName(name);
  const full = snapshotPath(dataset, name);
  await cli.settleSends(dataset);
  // no listing first: the command's own "does not exist" says the snapshot is missing (issue 13's command count)
  const missing = (error: unknown) => {
    const stderr = (error as ZfsError).stderr ?? '';
    return isZfsError(error, 'missing') || /dataset does not exist/i.test(stderr) ? new ZfsError('missing', `The snapshot '${full}' does not exist.`, stderr) : error;
  };
  if ((await cli.features()).hold) {
    try {
      await cli.zfs(held ? ['hold', HOLD_TAG, full] : ['release', HOLD_TAG, full]);
      return;
    } catch (error) {
      const stderr = (error as ZfsError).stderr ?? '';
      // holding twice / releasing what is not held: already in the wanted state
      if (/tag already exists|no such tag/i.test(stderr)) return;
      if (!isZfsError(error, 'unsupported') && !/upgrade/i.test(stderr)) throw missing(error);
      // pool too old for holds: fall through to the property
    }
  }
  await cli.zfs(held ? ['set', `${HOLD_PROPERTY}=on`, full] : ['inherit', HOLD_PROPERTY, full]).catch((error) => {
    throw missing(error);
  });
}

export async function rollback(cli: ZfsCli, dataset: string, name: string): Promise<void> {
  checkDatasetName(dataset);
  checkSnapshotName(name);
  await cli.settleSends(dataset);
  const snapshots = await listSnapshots(cli, dataset);
  const at = snapshots.findIndex((s) => s.name === name);
  if (at < 0) throw new ZfsError('missing', `The snapshot '${snapshotPath(dataset, name)}' does not exist.`);
  const heldLater = snapshots.slice(at + 1).find((s) => s.held);
  if (heldLater) {
    throw new ZfsError('held', `Rolling '${dataset}' back to '${name}' would destroy the later snapshot '${heldLater.name}', which is held; release it first.`);
  }
  // -r: later snapshots go (as `zfs rollback` demands); never -R, which would also destroy clones
  await cli.zfs(['rollback', '-r', snapshotPath(dataset, name)]);
  await refreshMounts(cli, dataset);
}

export async function changedSince(cli: ZfsCli, dataset: string, name: string): Promise<boolean> {
  checkDatasetName(dataset);
  checkSnapshotName(name);
  await getSnapshot(cli, dataset, name);
  if ((await cli.features()).written) {
    const written = await cli.zfs(['get', '-H', '-p', '-o', 'value', `written@${name}`, dataset]);
    return Number(written) > 0;
  }
  return probeChanged(cli, dataset, name);
}

/** the send-based probe described at the top of this file */
async function probeChanged(cli: ZfsCli, dataset: string, base: string): Promise<boolean> {
  const probe = `${PROBE_PREFIX}${randomBytes(4).toString('hex')}`;
  await cli.zfs(['snapshot', snapshotPath(dataset, probe)]);
  try {
    const stream = streamFrom(cli.zfsBin, ['send', '-i', base, snapshotPath(dataset, probe)], { explain: explainZfs });
    const first = await peek(stream, RECORD_SIZE);
    const begin = parseBeginRecord(first.head);
    const whole = await peek(first.rest, RECORD_SIZE + begin.payloadLength + 4);
    whole.rest.destroy();
    return !isEmptyIncremental(whole.head);
  } finally {
    await cli.zfs(['destroy', snapshotPath(dataset, probe)]).catch(() => undefined);
  }
}

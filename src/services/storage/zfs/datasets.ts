/** Filesystems and volumes (zvols): list, create, destroy, mount. */
import type { CreateDatasetOptions, DatasetInfo } from '../driver.js';
import type { Props, ZfsCli } from './cli.js';
import { isZfsError, ZfsError } from './errors.js';
import { checkDatasetName, parentOf } from './names.js';
import { listSnapshots } from './snapshots.js';
import { RETRY_FOR_MS as MOUNT_RETRY_MS } from './mounts.js';
import { commandChanged } from '../query-cache.js';

const DATASET_PROPS = ['type', 'mountpoint', 'mounted', 'used', 'volsize', 'readonly'];

export function toDatasetInfo(name: string, p: Props): DatasetInfo {
  const kind = p.type === 'volume' ? 'volume' : 'filesystem';
  const mounted = kind === 'filesystem' && p.mounted === 'yes';
  const mountpoint = kind === 'filesystem' && p.mountpoint?.startsWith('/') ? p.mountpoint : null;
  const info: DatasetInfo = { name, kind, mountpoint: mounted ? mountpoint : null, mounted, readonly: p.readonly === 'on' };
  const used = Number(p.used);
  if (Number.isFinite(used)) info.used = used;
  const volsize = Number(p.volsize);
  if (kind === 'volume' && Number.isFinite(volsize)) info.volsize = volsize;
  return info;
}

export async function listDatasets(cli: ZfsCli, under?: string): Promise<DatasetInfo[]> {
  if (under !== undefined) {
    checkDatasetName(under);
    await cli.requirePool(under);
  }
  // zfs-fuse's `zfs list` has no -p, so names and properties are two commands; a dataset (or
  // pool) destroyed between them by anyone else is not this listing's error: list again
  for (let attempt = 1; ; attempt++) {
    const names = await cli.listNames(under, 'filesystem,volume');
    try {
      const props = await cli.getProps(names, DATASET_PROPS);
      return names.map((name) => toDatasetInfo(name, props.get(name) ?? {}));
    } catch (error) {
      if (attempt >= 3 || !(isZfsError(error, 'missing') || isZfsError(error, 'no-pool'))) throw error;
      commandChanged(); // the listing was stale: a run's query cache must not answer it again
    }
  }
}

export async function getDataset(cli: ZfsCli, name: string): Promise<DatasetInfo | null> {
  checkDatasetName(name);
  await cli.requirePool(name);
  // one `zfs get`: its "does not exist" is the answer (no `zfs list` first: issue 13's command count)
  let props: Props;
  try {
    props = (await cli.getProps([name], DATASET_PROPS)).get(name) ?? {};
  } catch (error) {
    if (isZfsError(error, 'missing')) return null;
    throw error;
  }
  return toDatasetInfo(name, props);
}

export async function requireDataset(cli: ZfsCli, name: string): Promise<DatasetInfo> {
  const found = await getDataset(cli, name);
  if (!found) throw new ZfsError('missing', `The dataset '${name}' does not exist.`);
  return found;
}

export async function createDataset(cli: ZfsCli, name: string, opts: CreateDatasetOptions = {}): Promise<DatasetInfo> {
  checkDatasetName(name);
  await cli.requirePool(name);
  if (await cli.exists(name)) throw new ZfsError('exists', `The dataset '${name}' already exists.`);
  const parent = parentOf(name);
  if (parent && !opts.parents && !(await cli.exists(parent))) {
    throw new ZfsError('missing', `The parent dataset '${parent}' does not exist.`);
  }
  const args = ['create', ...(opts.parents ? ['-p'] : [])];
  if (opts.volumeSize !== undefined) {
    if (!Number.isSafeInteger(opts.volumeSize) || opts.volumeSize <= 0) {
      throw new ZfsError('refused', `The volume size ${opts.volumeSize} is not a positive number of bytes.`);
    }
    args.push('-V', String(opts.volumeSize));
  }
  try {
    await cli.zfs([...args, name]);
  } catch (error) {
    if (opts.volumeSize !== undefined && isZfsError(error, 'unsupported')) {
      throw new ZfsError('unsupported', `This ZFS (zfs-fuse) does not implement volumes (zvols), so '${name}' cannot be created.`);
    }
    // zfs-fuse aborts (SIGABRT) on `create -V` instead of saying so
    if (opts.volumeSize !== undefined && !(await cli.exists(name))) {
      throw new ZfsError('unsupported', `This ZFS does not implement volumes (zvols), so '${name}' cannot be created: ${(error as Error).message}`);
    }
    throw error;
  }
  return requireDataset(cli, name);
}

export async function destroyDataset(cli: ZfsCli, name: string, opts: { recursive?: boolean } = {}): Promise<void> {
  checkDatasetName(name);
  await requireDataset(cli, name);
  await cli.settleSends(name);
  if (opts.recursive) {
    // holds by property (zfs-fuse fallback) are invisible to `zfs destroy -r`: check them first
    for (const dataset of await cli.listNames(name, 'filesystem,volume')) {
      const held = (await listSnapshots(cli, dataset)).find((s) => s.held);
      if (held) {
        throw new ZfsError('held', `The snapshot '${held.dataset}@${held.name}' is held, so '${name}' cannot be destroyed; release it first.`);
      }
    }
  }
  try {
    await destroyTree(cli, name, opts.recursive ?? false);
  } catch (error) {
    if (isZfsError(error, 'has-children')) {
      throw new ZfsError('has-children', `The dataset '${name}' has snapshots or child datasets; destroy it recursively to remove them too.`);
    }
    throw error;
  }
}

export async function mount(cli: ZfsCli, name: string): Promise<void> {
  const info = await requireDataset(cli, name);
  if (info.kind === 'volume') throw new ZfsError('refused', `The dataset '${name}' is a volume; volumes are not mounted.`);
  if (info.mounted) return;
  // a loaded zfs-fuse answers "busy" for seconds after an unmount (see mounts.ts): retried
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      await cli.zfs(['mount', name]);
      return;
    } catch (error) {
      if (!isZfsError(error, 'busy') || Date.now() - started > MOUNT_RETRY_MS) throw error;
      if ((await cli.getProps([name], ['mounted']).catch(() => null))?.get(name)?.mounted === 'yes') return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 100 * attempt)));
    }
  }
}

export async function unmount(cli: ZfsCli, name: string): Promise<void> {
  const info = await requireDataset(cli, name);
  if (info.kind === 'volume') throw new ZfsError('refused', `The dataset '${name}' is a volume; volumes are not mounted.`);
  if (info.mounted) await cli.zfs(['unmount', name]);
}

/**
 * `zfs destroy [-r]`, unmounting first: zfs-fuse reports nested datasets that
 * are still mounted as busy, and unmounting the top unmounts them all.
 */
export async function destroyTree(cli: ZfsCli, name: string, recursive: boolean): Promise<void> {
  if (recursive) await cli.zfs(['unmount', name]).catch(() => undefined);
  // a loaded zfs-fuse calls a just-unmounted dataset busy for seconds (see mounts.ts)
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      await cli.zfs(['destroy', ...(recursive ? ['-r'] : []), name]);
      return;
    } catch (error) {
      if (!isZfsError(error, 'busy') || Date.now() - started > BUSY_RETRY_MS) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 200 * attempt)));
    }
  }
}

/** how long a destroy answered "busy" is retried */
const BUSY_RETRY_MS = 15_000;

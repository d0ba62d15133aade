/**
 * renameDataset: `zfs rename FROM TO`. Snapshots, holds (tag or property),
 * children and their snapshots go along, atomically, as ZFS renames the
 * whole subtree at once. Nothing is ever destroyed: a target that exists,
 * a target in another pool, a target inside the dataset itself and bad
 * names are refused before anything runs, each with a sentence.
 *
 * zfs-fuse refuses to rename a mounted dataset ("dataset is busy", even with
 * nothing open in it), so the mounted filesystems of the subtree are
 * unmounted first (deepest first), renamed, and mounted again under their
 * new names; on kernel ZFS, where `zfs rename` remounts by itself, that is
 * harmless. A mount held open by a process is refused as busy, and what was
 * unmounted is mounted back. A locally set mountpoint stays what it was:
 * ZFS keeps it across a rename.
 */
import type { ZfsCli } from './cli.js';
import { isZfsError, ZfsError } from './errors.js';
import { mountAgain } from './mounts.js';
import { checkDatasetName, parentOf, poolOf } from './names.js';

export async function renameDataset(cli: ZfsCli, from: string, to: string): Promise<void> {
  checkDatasetName(from);
  checkDatasetName(to);
  if (from === to) throw new ZfsError('refused', `The dataset '${from}' cannot be renamed to its own name.`);
  if (!from.includes('/')) {
    throw new ZfsError('refused', `'${from}' is the root dataset of its pool; a pool cannot be renamed, only the datasets in it.`);
  }
  if (poolOf(to) !== poolOf(from)) {
    throw new ZfsError('refused', `The target '${to}' is in the pool '${poolOf(to)}', not in '${poolOf(from)}' where '${from}' is; a dataset can only be renamed within its pool (replicate it to move it to another pool).`);
  }
  if (!to.includes('/')) throw new ZfsError('refused', `The target '${to}' names a pool, not a dataset in one.`);
  if (to.startsWith(`${from}/`)) throw new ZfsError('refused', `The dataset '${from}' cannot be moved inside itself ('${to}').`);
  await cli.requirePool(from);
  if (!(await cli.exists(from))) throw new ZfsError('missing', `The dataset '${from}' does not exist.`);
  if (await cli.exists(to)) throw new ZfsError('exists', `The target '${to}' already exists; nothing was renamed.`);
  const parent = parentOf(to)!;
  if (!(await cli.exists(parent))) throw new ZfsError('missing', `The parent dataset '${parent}' of the target '${to}' does not exist.`);
  if ((await cli.getProps([parent], ['type'])).get(parent)?.type === 'volume') {
    throw new ZfsError('refused', `The parent '${parent}' of the target '${to}' is a volume, which cannot hold datasets.`);
  }

  const mounted = await mountedUnder(cli, from);
  await unmountAll(cli, from, mounted);
  try {
    await renameRetrying(cli, from, to);
  } catch (error) {
    await mountAgain(cli, mounted).catch(() => undefined);
    if (isZfsError(error, 'busy')) {
      throw new ZfsError('busy', `'${from}' is busy (a receive into it, or a process using it); nothing was renamed.`, error.stderr);
    }
    throw new ZfsError(error instanceof ZfsError ? error.code : 'other', `Renaming '${from}' to '${to}' failed: ${(error as Error).message}`, error instanceof ZfsError ? error.stderr : '');
  }
  const moved = mounted.map((name) => to + name.slice(from.length));
  try {
    await mountAgain(cli, moved);
  } catch (error) {
    throw new ZfsError('other', `'${from}' was renamed to '${to}', but mounting it again failed: ${(error as Error).message} Mount it with 'zfs mount'.`);
  }
}

/** the filesystems at and below `name` that zfs mounted (not legacy mounts), parents first */
async function mountedUnder(cli: ZfsCli, name: string): Promise<string[]> {
  const names = await cli.listNames(name, 'filesystem');
  const props = await cli.getProps(names, ['mounted', 'mountpoint']);
  return names.filter((n) => props.get(n)?.mounted === 'yes' && props.get(n)?.mountpoint?.startsWith('/')).sort();
}

/** zfs-fuse can still call a dataset busy for a moment after its unmount */
async function renameRetrying(cli: ZfsCli, from: string, to: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await cli.zfs(['rename', from, to]).then(() => undefined);
    } catch (error) {
      if (!isZfsError(error, 'busy') || attempt === 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}

async function unmountAll(cli: ZfsCli, from: string, mounted: string[]): Promise<void> {
  const done: string[] = [];
  for (const name of [...mounted].reverse()) {
    try {
      await cli.zfs(['unmount', name]);
      done.push(name);
    } catch (error) {
      await mountAgain(cli, done).catch(() => undefined);
      const stderr = error instanceof ZfsError ? error.stderr : '';
      if (isZfsError(error, 'busy') || /busy/i.test(stderr)) {
        throw new ZfsError('busy', `'${name}' is in use (a process has files open or its working directory in it), so '${from}' was not renamed.`, stderr);
      }
      throw error;
    }
  }
}

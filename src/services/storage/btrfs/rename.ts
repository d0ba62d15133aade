/**
 * renameDataset: the live subvolume and its snapshot directory move
 * together (layout.ts):
 *
 *   /mnt/pool/data                         -> /mnt/pool/aside
 *   /mnt/pool/.syncsh-snapshots/data/      -> /mnt/pool/.syncsh-snapshots/aside/
 *     (snapshots, .holds, and any probe or partial receive, as they are)
 *
 * Two renames, so a crash between them could part a dataset from its
 * snapshots: an intent file is written beside both names first
 * (`<dir>/.syncsh-snapshots/.syncsh-rename-<name>.json`, at the source and
 * at the target) and removed at the end; recover() on either name finishes
 * a rename it finds (finishRename below). A failure of the second rename
 * moves the snapshots back.
 *
 * Refused, before anything moves, each with a sentence: bad names, a target
 * that exists (a subvolume, a file, or snapshots left under its name), a
 * target inside the dataset, a target on another filesystem (rename(2)
 * cannot cross one), a target whose directory is in another subvolume (the
 * snapshot directory is a plain directory, and btrfs moves only subvolume
 * roots across subvolumes), a read-only ("unmounted") dataset moved to
 * another directory (btrfs cannot re-parent a read-only subvolume), a
 * subvolume that is a mount point, and a dataset with an interrupted swap.
 */
import { lstat, readdir, readFile, rm, rmdir, stat, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { isOnBtrfs, isSubvolume, renamePath as rename, type BtrfsCli } from './cli.js';
import { BtrfsError } from './errors.js';
import { checkSubvolumePath, isSwapLeftover, SNAPSHOT_DIR, snapshotDir } from './layout.js';
import { btrfsMounts, mountOf, requireDataset } from './subvolumes.js';

interface Intent {
  from: string;
  to: string;
}

/** where the intent of a rename from or to `dataset` is kept */
export const renameIntent = (dataset: string): string => path.join(path.dirname(dataset), SNAPSHOT_DIR, `.syncsh-rename-${path.basename(dataset)}.json`);

const exists = (target: string) =>
  lstat(target).then(
    () => true,
    () => false,
  );

export async function renameDataset(cli: BtrfsCli, from: string, to: string): Promise<void> {
  checkSubvolumePath(from);
  checkSubvolumePath(to);
  if (from === to) throw new BtrfsError('refused', `The subvolume '${from}' cannot be renamed to its own path.`);
  if (to.startsWith(`${from}/`)) throw new BtrfsError('refused', `The subvolume '${from}' cannot be moved inside itself ('${to}').`);
  const info = await requireDataset(cli, from);
  if ((await btrfsMounts()).includes(from)) {
    throw new BtrfsError('refused', `'${from}' is a mount point; unmount it and rename it from its parent subvolume.`);
  }
  const [fromDir, toDir] = [path.dirname(from), path.dirname(to)];
  const toDirStat = await stat(toDir).catch(() => null);
  if (!toDirStat?.isDirectory()) throw new BtrfsError('missing', `The directory '${toDir}' of the target '${to}' does not exist.`);
  if (!(await isOnBtrfs(toDir)) || (await mountOf(toDir)) !== (await mountOf(fromDir))) {
    throw new BtrfsError('refused', `The target '${to}' is on another filesystem than '${from}'; a subvolume can only be renamed within its filesystem (replicate it to move it elsewhere).`);
  }
  if (toDirStat.dev !== (await stat(fromDir)).dev) {
    throw new BtrfsError('refused', `The target directory '${toDir}' is in another subvolume than '${fromDir}'; btrfs cannot move the snapshot directory of '${from}' across subvolumes, so rename it within the subvolume it is in.`);
  }
  if (info.readonly && toDir !== fromDir) {
    throw new BtrfsError('refused', `'${from}' is unmounted (read-only), and btrfs cannot move a read-only subvolume to another directory; mount it first, or rename it within '${fromDir}'.`);
  }
  if (await exists(to)) throw new BtrfsError('exists', `The target '${to}' already exists; nothing was renamed.`);
  const [fromSnapshots, toSnapshots] = [snapshotDir(from), snapshotDir(to)];
  const leftovers = (await readdir(toSnapshots).catch(() => [] as string[])).length;
  if (leftovers > 0) {
    throw new BtrfsError('exists', `Snapshots of an earlier '${to}' are still in '${toSnapshots}'; move or destroy them before renaming '${from}' to that name.`);
  }
  for (const [dataset, dir] of [
    [from, fromDir],
    [to, toDir],
  ] as const) {
    const swap = (await readdir(dir).catch(() => [] as string[])).find((e) => isSwapLeftover(dataset, e, 'new') || isSwapLeftover(dataset, e, 'old'));
    if (swap) throw new BtrfsError('refused', `An interrupted swap of '${dataset}' left '${path.join(dir, swap)}'; run recover on '${dataset}' first.`);
  }
  for (const pending of [renameIntent(from), renameIntent(to)]) {
    if (await exists(pending)) throw new BtrfsError('refused', `An interrupted rename left '${pending}'; run recover on '${from}' first.`);
  }

  const intent = JSON.stringify({ from, to } satisfies Intent);
  const intents = [...new Set([renameIntent(from), renameIntent(to)])];
  for (const file of intents) {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, intent);
  }
  const hasSnapshots = await exists(fromSnapshots);
  try {
    if (await exists(toSnapshots)) await rmdir(toSnapshots); // empty (checked above)
    if (hasSnapshots) await rename(fromSnapshots, toSnapshots);
    try {
      await rename(from, to);
    } catch (error) {
      if (hasSnapshots) await rename(toSnapshots, fromSnapshots);
      throw error;
    }
  } catch (error) {
    for (const file of intents) await rm(file, { force: true });
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'EBUSY' ? 'it is busy (a mount point or in use)' : code === 'EXDEV' ? 'the target is on another filesystem or subvolume' : (error as Error).message;
    throw new BtrfsError(code === 'EBUSY' ? 'refused' : 'other', `Renaming '${from}' to '${to}' failed: ${why}; nothing was renamed.`);
  }
  for (const file of intents) await rm(file, { force: true });
}

/**
 * recover(): finish a rename cut short by a crash, found by its intent file
 * beside `dataset` (which may be either end). Returns what it did.
 */
export async function finishRename(dataset: string): Promise<string[]> {
  const file = renameIntent(dataset);
  let intent: Intent;
  try {
    intent = JSON.parse(await readFile(file, 'utf8')) as Intent;
    checkSubvolumePath(intent.from);
    checkSubvolumePath(intent.to);
  } catch {
    return [];
  }
  const { from, to } = intent;
  const [fromSnapshots, toSnapshots] = [snapshotDir(from), snapshotDir(to)];
  if ((await exists(fromSnapshots)) && (await isSubvolume(from))) {
    // crashed before anything moved, or between the intent files and the first rename
    if (await exists(toSnapshots)) await rmdir(toSnapshots).catch(() => undefined);
    if (!(await exists(toSnapshots))) await rename(fromSnapshots, toSnapshots);
  }
  if ((await isSubvolume(from)) && !(await exists(to))) await rename(from, to);
  for (const end of [from, to]) await rm(renameIntent(end), { force: true });
  return [`finished the interrupted rename of '${from}' to '${to}'`];
}

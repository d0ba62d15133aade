/**
 * What an interrupted receive, probe, swap or rename can leave, and what recover does:
 * - a rename cut between moving the snapshot directory and the live
 *   subvolume (its intent file is there): finished (rename.ts);
 * - a partial received subvolume (writable, in the snapshot directory): deleted;
 * - a change probe (`.probe-*`): deleted;
 * - a swap cut between its two renames (live path missing): finished with the
 *   new subvolume, or undone with the old one; other swap leftovers: deleted;
 * - a receive cut after its snapshot arrived but before the swap began (the
 *   live subvolume still an untouched copy of an older snapshot, a newer one
 *   received after it): the swap is done now, as the receive would have.
 * btrfs has no resumable receive, so there is never anything to keep.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { isSubvolume, renamePath as rename, type BtrfsCli } from './cli.js';
import { checkSubvolumePath, isSwapLeftover, snapshotDir } from './layout.js';
import { finishRename } from './rename.js';
import { changedSince, listSnapshots } from './snapshots.js';
import { replaceLive } from './swap.js';

export async function recover(cli: BtrfsCli, dataset: string): Promise<string[]> {
  checkSubvolumePath(dataset);
  const done: string[] = await finishRename(dataset);
  const dir = snapshotDir(dataset);
  for (const entry of await readdir(dir).catch(() => [] as string[])) {
    const full = path.join(dir, entry);
    if (entry === '.holds' || !(await isSubvolume(full))) continue;
    if (entry.startsWith('.probe-')) {
      await cli.deleteSubvolume(full);
      done.push(`deleted the leftover change probe '${full}'`);
    } else if (!(await cli.show(full)).readonly) {
      await cli.deleteSubvolume(full);
      done.push(`deleted the partial receive '${full}'`);
    }
  }
  const parent = path.dirname(dataset);
  const entries = await readdir(parent).catch(() => [] as string[]);
  const fresh = entries.filter((e) => isSwapLeftover(dataset, e, 'new')).map((e) => path.join(parent, e));
  const old = entries.filter((e) => isSwapLeftover(dataset, e, 'old')).map((e) => path.join(parent, e));
  if (!(await isSubvolume(dataset))) {
    const replacement = fresh.pop() ?? old.pop();
    if (replacement) {
      await rename(replacement, dataset);
      done.push(`finished an interrupted swap: '${path.basename(replacement)}' is the live '${dataset}' again`);
    }
  }
  for (const leftover of [...fresh, ...old]) {
    if (!(await isSubvolume(leftover))) continue;
    await cli.deleteSubvolume(leftover);
    done.push(`deleted the swap leftover '${leftover}'`);
  }
  const behind = await liveBehindReceived(cli, dataset);
  if (behind) {
    await replaceLive(cli, dataset, behind.path);
    done.push(`finished an interrupted receive: the live '${dataset}' is '${behind.name}' now (it was still its untouched older snapshot)`);
  }
  return done;
}

/**
 * The newest snapshot when it was received after the snapshot the live
 * subvolume is an untouched copy of: a receive that ended before its swap.
 * Never when the live one was written since (that is the operator's change,
 * for the run to refuse), nor for snapshots taken here (a source's).
 */
async function liveBehindReceived(cli: BtrfsCli, dataset: string) {
  if (!(await isSubvolume(dataset))) return null;
  const snapshots = await listSnapshots(cli, dataset);
  const newest = snapshots.at(-1);
  if (!newest?.show.receivedUuid) return null;
  const live = await cli.show(dataset);
  if (live.parentUuid === newest.show.uuid) return null;
  const base = snapshots.find((s) => s.show.uuid === live.parentUuid);
  if (!base || base.show.createdGeneration >= newest.show.createdGeneration) return null;
  // untouched by its content (a change probe of an earlier run moved its generation)
  return (await changedSince(cli, dataset, base.name)) ? null : newest;
}

/**
 * Replacing the live subvolume with a writable snapshot of a read-only one
 * (after a receive, for a rollback). The new subvolume is made beside the
 * live one under a temporary name, then two renames swap them and the old
 * one is deleted. The only window is between the renames, when the live
 * path is briefly missing; recover() finishes a swap cut in that window.
 */
import { isSubvolume, renamePath as rename, type BtrfsCli } from './cli.js';
import { swapPath } from './layout.js';

export async function replaceLive(cli: BtrfsCli, dataset: string, source: string): Promise<void> {
  const fresh = swapPath(dataset, 'new');
  await cli.snapshot(source, fresh, false);
  if (!(await isSubvolume(dataset))) {
    await rename(fresh, dataset);
    return;
  }
  // a read-only ("unmounted") live subvolume stays fenced after the swap
  if (await cli.isReadonly(dataset)) await cli.setReadonly(fresh, true);
  const old = swapPath(dataset, 'old');
  await rename(dataset, old);
  try {
    await rename(fresh, dataset);
  } catch (error) {
    await rename(old, dataset); // put the live one back: nothing changed
    await cli.deleteSubvolume(fresh).catch(() => undefined);
    throw error;
  }
  await cli.deleteSubvolume(old);
}

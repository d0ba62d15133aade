/**
 * What an interrupted receive can leave, and what recover does with it:
 * - a resume token (`receive_resume_token`, OpenZFS with `receive -s`): kept
 *   and reported, since a `zfs send -t` can finish the transfer;
 * - a hidden `%recv` clone (an incremental receive killed outright): destroyed;
 * - a change-probe snapshot of this driver (`@syncsh-probe-*`): destroyed;
 * - temporary send holds of a syncsh process killed mid-send (zfs-fuse keeps
 *   them for good): released, for every journaled send whose process is gone
 *   (send.ts releaseOrphanedSends), not only this dataset's.
 * A receive that fails normally already cleans up (see receive.ts).
 */
import type { ZfsCli } from './cli.js';
import { destroyTree } from './datasets.js';
import { isZfsError } from './errors.js';
import { checkDatasetName, snapshotPath } from './names.js';
import { releaseOrphanedSends } from './send.js';

export async function recover(cli: ZfsCli, dataset: string): Promise<string[]> {
  checkDatasetName(dataset);
  await cli.requirePool(dataset);
  const done: string[] = await releaseOrphanedSends(cli);
  // one listing of the tree and its snapshots (issue 13's command count); a dataset not there has nothing to recover
  let all: string[];
  try {
    all = await cli.listNames(dataset, 'filesystem,volume,snapshot');
  } catch (error) {
    if (isZfsError(error, 'missing')) return done;
    throw error;
  }
  const datasets = all.filter((name) => !name.includes('@'));
  const { resumable } = await cli.features();
  if (resumable) {
    const tokens = await cli.getProps(datasets, ['receive_resume_token']);
    for (const [name, props] of tokens) {
      const token = props.receive_resume_token;
      if (token && token !== '-') done.push(`kept the resumable partial receive of '${name}' (finish it with zfs send -t ${token.slice(0, 16)}...)`);
    }
  }
  for (const name of datasets) {
    const partial = `${name}/%recv`;
    if (await cli.exists(partial)) {
      await destroyTree(cli, partial, true);
      done.push(`destroyed the partial receive '${partial}'`);
    }
  }
  for (const full of all.filter((name) => name.includes('@'))) {
    const at = full.indexOf('@');
    if (full.slice(at + 1).startsWith('syncsh-probe-')) {
      await cli.zfs(['destroy', snapshotPath(full.slice(0, at), full.slice(at + 1))]);
      done.push(`destroyed the leftover change probe '${full}'`);
    }
  }
  return done;
}

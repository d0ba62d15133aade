/** `btrfs send [-p base] SNAPSHOT` as a Readable. */
import type { Readable } from 'node:stream';
import type { SendOptions } from '../driver.js';
import { streamFrom } from '../exec.js';
import type { BtrfsCli } from './cli.js';
import { BtrfsError, explainBtrfs } from './errors.js';
import { checkSnapshotName, checkSubvolumePath, snapshotPath } from './layout.js';
import { NO_RECURSION } from './snapshots.js';

/** names are checked before anything runs (a bad one throws here, synchronously) */
export function send(cli: BtrfsCli, dataset: string, snapshot: string, opts: SendOptions): Readable {
  checkSubvolumePath(dataset);
  checkSnapshotName(snapshot);
  if (opts.from !== undefined) checkSnapshotName(opts.from);
  if (opts.recursive) throw new BtrfsError('unsupported', NO_RECURSION);
  const args = ['send', '-q', ...(opts.from ? ['-p', snapshotPath(dataset, opts.from)] : []), snapshotPath(dataset, snapshot)];
  return streamFrom(cli.bin, args, {
    ...(opts.signal ? { signal: opts.signal } : {}),
    explain: (error) => {
      const explained = explainBtrfs(error);
      const what = `Sending snapshot '${snapshot}' of '${dataset}'${opts.from ? ` from '${opts.from}'` : ''} failed`;
      explained.message = `${what}: ${explained.message.replace(/^It does not exist\.$/, 'a snapshot does not exist.')}`;
      return explained;
    },
  });
}

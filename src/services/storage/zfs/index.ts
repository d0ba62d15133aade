/**
 * The ZFS driver: datasets `pool/fs`, volumes `pool/vol` (zvols), snapshots
 * identified by guid. Works with OpenZFS and with zfs-fuse (pool v23), whose
 * missing features are detected (features.ts) and worked around:
 * holds by property when `zfs hold` is missing, change detection by a send
 * probe when `written` is missing, clean-up instead of resume tokens.
 */
import { cliDriver } from '../cli-driver.js';
import type { Driver } from '../driver.js';
import { probe } from '../exec.js';
import { ZfsCli } from './cli.js';
import * as datasets from './datasets.js';
import { receive, resumeToken } from './receive.js';
import { recover } from './recover.js';
import { renameDataset } from './rename.js';
import { send } from './send.js';
import { SendJournal } from './send-journal.js';
import * as snapshots from './snapshots.js';

export { ZfsError } from './errors.js';
export { ZfsNameError } from './names.js';
import type { ZfsFeatures } from './features.js';
export type { ZfsFeatures };

export interface ZfsDriverOptions {
  /** the zfs command (default `zfs` from PATH) */
  zfs?: string;
  /** the zpool command (default `zpool` from PATH) */
  zpool?: string;
  /** turn detected features off (or on): to exercise the fallbacks, or to avoid a feature */
  features?: Partial<ZfsFeatures>;
  /**
   * a directory (in the appliance home) recording the sends that may leave
   * temporary holds, so that recover releases those of a killed process
   * (send-journal.ts); without it such holds stay until released by hand
   */
  sendJournal?: string;
}

export interface ZfsDriver extends Driver {
  /** what this zfs supports, as detected */
  features(): ReturnType<ZfsCli['features']>;
}

export function createZfsDriver(opts: ZfsDriverOptions = {}): ZfsDriver {
  const cli = new ZfsCli(opts.zfs ?? 'zfs', opts.zpool ?? 'zpool', opts.features, opts.sendJournal === undefined ? null : new SendJournal(opts.sendJournal));
  const driver = cliDriver('zfs', cli, {
    unavailableReason,
    datasets,
    renameDataset,
    listSnapshots: async (cli, dataset) => {
      await datasets.requireDataset(cli, dataset);
      await cli.settleSends(dataset); // `held` is not worth reporting for a send's leftover hold
      return snapshots.listSnapshots(cli, dataset);
    },
    snapshots,
    send,
    receive,
    recover,
  });
  return {
    ...driver,
    features: () => cli.features(),
    receiveResume: async (dataset: string) => ({ supported: (await cli.features()).resumable, token: await resumeToken(cli, dataset) }),
  };
}

async function unavailableReason(cli: ZfsCli): Promise<string | null> {
  const pools = await probe(cli.zpoolBin, ['list', '-H', '-o', 'name']);
  if (pools.missing) return `The ${cli.zpoolBin} command was not found; ZFS is not installed.`;
  if (!pools.ok) {
    return /daemon|initialize ZFS library|\/dev\/zfs/i.test(pools.stderr) ? 'ZFS is not running: start the zfs-fuse daemon or load the zfs kernel module.' : `zpool list failed: ${pools.stderr.trim().split('\n')[0] ?? 'no message'}`;
  }
  const zfs = await probe(cli.zfsBin, ['list', '-H', '-o', 'name']);
  if (zfs.missing) return `The ${cli.zfsBin} command was not found; ZFS is not installed.`;
  return null;
}

/**
 * The btrfs driver: datasets are subvolumes by absolute path, snapshots are
 * read-only subvolumes in a hidden sibling directory (layout.ts), identity is
 * received_uuid or uuid. Not recursive: nested subvolumes are left out by
 * btrfs snapshot and send, so recursive requests are refused.
 */
import { cliDriver } from '../cli-driver.js';
import type { Driver } from '../driver.js';
import { probe } from '../exec.js';
import { BtrfsCli } from './cli.js';
import { receive } from './receive.js';
import { recover } from './recover.js';
import { renameDataset } from './rename.js';
import { send } from './send.js';
import * as snapshots from './snapshots.js';
import * as subvolumes from './subvolumes.js';

export { BtrfsError } from './errors.js';
export { BtrfsNameError } from './layout.js';

export interface BtrfsDriverOptions {
  /** the btrfs command (default `btrfs` from PATH) */
  btrfs?: string;
}

export function createBtrfsDriver(opts: BtrfsDriverOptions = {}): Driver {
  return cliDriver('btrfs', new BtrfsCli(opts.btrfs ?? 'btrfs'), {
    unavailableReason,
    datasets: subvolumes,
    renameDataset,
    listSnapshots: async (cli, dataset) => {
      await subvolumes.requireDataset(cli, dataset);
      return (await snapshots.listSnapshots(cli, dataset)).map(snapshots.publicInfo);
    },
    snapshots,
    send,
    receive,
    recover,
  });
}

async function unavailableReason(cli: BtrfsCli): Promise<string | null> {
  const version = await probe(cli.bin, ['--version']);
  if (version.missing) return `The ${cli.bin} command was not found; btrfs-progs is not installed.`;
  if (!version.ok) return `${cli.bin} --version failed: ${version.stderr.trim().split('\n')[0] ?? 'no message'}`;
  return null;
}

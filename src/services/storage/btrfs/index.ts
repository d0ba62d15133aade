/**
 * The btrfs driver: datasets are subvolumes by absolute path, snapshots are
 * read-only subvolumes in a hidden sibling directory (layout.ts), identity is
 * received_uuid or uuid. Not recursive: nested subvolumes are left out by
 * btrfs snapshot and send, so recursive requests are refused.
 */
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
  const cli = new BtrfsCli(opts.btrfs ?? 'btrfs');
  return {
    name: 'btrfs',
    unavailableReason: () => unavailableReason(cli),

    listDatasets: (under) => subvolumes.listDatasets(cli, under),
    getDataset: (name) => subvolumes.getDataset(cli, name),
    createDataset: (name, o) => subvolumes.createDataset(cli, name, o),
    destroyDataset: (name, o) => subvolumes.destroyDataset(cli, name, o),
    renameDataset: (from, to) => renameDataset(cli, from, to),

    listSnapshots: async (dataset) => {
      await subvolumes.requireDataset(cli, dataset);
      return (await snapshots.listSnapshots(cli, dataset)).map(snapshots.publicInfo);
    },
    createSnapshot: (dataset, name, o) => snapshots.createSnapshot(cli, dataset, name, o.recursive),
    destroySnapshot: (dataset, name, o) => snapshots.destroySnapshot(cli, dataset, name, o.recursive),
    holdSnapshot: (dataset, name, held) => snapshots.holdSnapshot(cli, dataset, name, held),
    rollback: (dataset, name) => snapshots.rollback(cli, dataset, name),
    changedSince: (dataset, name) => snapshots.changedSince(cli, dataset, name),

    send: (dataset, snapshot, o) => send(cli, dataset, snapshot, o),
    receive: (dataset, stream, o) => receive(cli, dataset, stream, o),
    recover: (dataset) => recover(cli, dataset),

    mount: (name) => subvolumes.mount(cli, name),
    unmount: (name) => subvolumes.unmount(cli, name),
  };
}

async function unavailableReason(cli: BtrfsCli): Promise<string | null> {
  const version = await probe(cli.bin, ['--version']);
  if (version.missing) return `The ${cli.bin} command was not found; btrfs-progs is not installed.`;
  if (!version.ok) return `${cli.bin} --version failed: ${version.stderr.trim().split('\n')[0] ?? 'no message'}`;
  return null;
}

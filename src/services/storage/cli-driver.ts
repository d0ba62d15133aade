/**
 * The wiring the zfs and btrfs drivers share. Their modules are plain
 * functions taking the driver's command wrapper (ZfsCli, BtrfsCli) first;
 * `cliDriver` binds the wrapper to them and gives the Driver. Each index
 * then names only its modules and what it does differently.
 */
import type { Readable } from 'node:stream';
import type { CreateDatasetOptions, DatasetInfo, Driver, DriverName, ReceiveOptions, ReceiveResult, SendOptions, SnapshotInfo } from './driver.js';

export interface CliDriverParts<C> {
  unavailableReason(cli: C): Promise<string | null>;
  /** datasets.ts for zfs, subvolumes.ts for btrfs */
  datasets: {
    listDatasets(cli: C, under?: string): Promise<DatasetInfo[]>;
    getDataset(cli: C, name: string): Promise<DatasetInfo | null>;
    createDataset(cli: C, name: string, opts?: CreateDatasetOptions): Promise<DatasetInfo>;
    destroyDataset(cli: C, name: string, opts?: { recursive?: boolean }): Promise<void>;
    mount(cli: C, name: string): Promise<void>;
    unmount(cli: C, name: string): Promise<void>;
  };
  renameDataset(cli: C, from: string, to: string): Promise<void>;
  /** oldest first; left to each driver, which checks the dataset exists first */
  listSnapshots(cli: C, dataset: string): Promise<SnapshotInfo[]>;
  /** snapshots.ts of each driver */
  snapshots: {
    createSnapshot(cli: C, dataset: string, name: string, recursive: boolean): Promise<SnapshotInfo>;
    destroySnapshot(cli: C, dataset: string, name: string, recursive: boolean): Promise<void>;
    holdSnapshot(cli: C, dataset: string, name: string, held: boolean): Promise<void>;
    rollback(cli: C, dataset: string, name: string): Promise<void>;
    changedSince(cli: C, dataset: string, name: string): Promise<boolean>;
  };
  send(cli: C, dataset: string, snapshot: string, opts: SendOptions): Readable;
  receive(cli: C, dataset: string, stream: Readable, opts: ReceiveOptions): Promise<ReceiveResult>;
  recover(cli: C, dataset: string): Promise<string[]>;
}

export function cliDriver<C>(name: DriverName, cli: C, parts: CliDriverParts<C>): Driver {
  const { datasets, snapshots } = parts;
  return {
    name,
    unavailableReason: () => parts.unavailableReason(cli),

    listDatasets: (under) => datasets.listDatasets(cli, under),
    getDataset: (dataset) => datasets.getDataset(cli, dataset),
    createDataset: (dataset, o) => datasets.createDataset(cli, dataset, o),
    destroyDataset: (dataset, o) => datasets.destroyDataset(cli, dataset, o),
    renameDataset: (from, to) => parts.renameDataset(cli, from, to),

    listSnapshots: (dataset) => parts.listSnapshots(cli, dataset),
    createSnapshot: async (dataset, snapshot, o) => {
      if (o.exclude?.length) throw new Error(`A ${name} snapshot holds the whole dataset: exclude patterns work only with the fs driver.`);
      return snapshots.createSnapshot(cli, dataset, snapshot, o.recursive);
    },
    destroySnapshot: (dataset, snapshot, o) => snapshots.destroySnapshot(cli, dataset, snapshot, o.recursive),
    holdSnapshot: (dataset, snapshot, held) => snapshots.holdSnapshot(cli, dataset, snapshot, held),
    rollback: (dataset, snapshot) => snapshots.rollback(cli, dataset, snapshot),
    changedSince: (dataset, snapshot) => snapshots.changedSince(cli, dataset, snapshot),

    send: (dataset, snapshot, o) => parts.send(cli, dataset, snapshot, o),
    receive: (dataset, stream, o) => parts.receive(cli, dataset, stream, o),
    recover: (dataset) => parts.recover(cli, dataset),

    mount: (dataset) => datasets.mount(cli, dataset),
    unmount: (dataset) => datasets.unmount(cli, dataset),
  };
}

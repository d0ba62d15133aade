/** Folders (datasets) and snapshots across drivers: `create/show/destroy folder`, `show snapshot`. */
import { parseDataset, formatDataset, DRIVER_NAMES } from './datasets.js';
import type { Storage } from './storage/registry.js';
import type { DatasetInfo, DriverName, SnapshotInfo } from './storage/driver.js';
import type { AutoSyncService } from './auto-sync/index.js';
import { markerService } from './auto-sync/markers.js';

export interface FolderView extends DatasetInfo {
  driver: DriverName;
  qualified: string;
}

export interface SnapshotView extends SnapshotInfo {
  driver: DriverName;
  qualified: string;
  /** the auto-sync service of this appliance whose marker this is, if any */
  service: string | null;
  /**
   * a marker of a service that is not this appliance's on this dataset (a
   * pool the machine shares with another appliance home, a service since
   * destroyed): that service's name, else null
   */
  foreign: string | null;
}

export class FolderService {
  constructor(
    private readonly storage: Storage,
    private readonly autoSync: AutoSyncService,
    private readonly defaultDriver: DriverName = 'fs',
  ) {}

  async create(dataset: string, opts: { volumeSize?: number } = {}): Promise<FolderView> {
    const ref = parseDataset(dataset, this.defaultDriver);
    const driver = await this.storage.usable(ref.driver);
    if (await driver.getDataset(ref.name)) throw new Error(`The folder ${formatDataset(ref)} already exists.`);
    const info = await driver.createDataset(ref.name, { volumeSize: opts.volumeSize });
    return { ...info, driver: ref.driver, qualified: formatDataset(ref) };
  }

  /** one dataset, or all datasets of every usable driver */
  async list(dataset?: string): Promise<FolderView[]> {
    if (dataset) {
      const ref = parseDataset(dataset, this.defaultDriver);
      const driver = await this.storage.usable(ref.driver);
      const info = await driver.getDataset(ref.name);
      if (!info) throw new Error(`The folder ${formatDataset(ref)} does not exist.`);
      const all = await driver.listDatasets(ref.name);
      const found = all.some((d) => d.name === ref.name) ? all : [info, ...all];
      return found.map((d) => ({ ...d, driver: ref.driver, qualified: formatDataset({ driver: ref.driver, name: d.name }) }));
    }
    const out: FolderView[] = [];
    for (const name of await this.usableDrivers()) {
      const driver = await this.storage.driver(name);
      for (const d of await driver.listDatasets()) out.push({ ...d, driver: name, qualified: formatDataset({ driver: name, name: d.name }) });
    }
    return out;
  }

  async destroy(dataset: string): Promise<void> {
    const ref = parseDataset(dataset, this.defaultDriver);
    const qualified = formatDataset(ref);
    const driver = await this.storage.usable(ref.driver);
    if (!(await driver.getDataset(ref.name))) throw new Error(`The folder ${qualified} does not exist.`);
    const service = this.usedBy(qualified);
    if (service) throw new Error(`The folder ${qualified} is used by auto-sync:${service}; destroy that service first.`);
    await driver.destroyDataset(ref.name, { recursive: true });
  }

  /** the auto-sync service with this dataset (or one inside it) as a local end, if any */
  usedBy(qualified: string): string | null {
    for (const s of this.autoSync.list()) {
      for (const end of [s.config.source, s.config.destination]) {
        if (end.host === 'localhost' && (end.dataset === qualified || end.dataset.startsWith(`${qualified}/`))) return s.config.name;
      }
    }
    return null;
  }

  async snapshots(dataset?: string): Promise<SnapshotView[]> {
    const folders = await this.list(dataset);
    const owner = this.markerOwner();
    const out: SnapshotView[] = [];
    for (const f of folders) {
      const driver = await this.storage.driver(f.driver);
      for (const s of await driver.listSnapshots(f.name)) out.push({ ...s, driver: f.driver, qualified: `${f.qualified}@${s.name}`, ...owner(f.qualified, s.name) });
    }
    return out;
  }

  /**
   * Whose marker a snapshot of a dataset is: a service of this appliance (or
   * one received here) with a copy on that dataset, or else foreign.
   */
  private markerOwner(): (qualified: string, snapshot: string) => { service: string | null; foreign: string | null } {
    const copies = new Map<string, string[]>();
    for (const v of [...this.autoSync.list(), ...this.autoSync.received()]) {
      copies.set(
        v.config.name,
        [v.config.source, v.config.destination].filter((e) => e.host === 'localhost').map((e) => e.dataset),
      );
    }
    return (qualified, snapshot) => {
      const service = markerService(snapshot);
      if (!service) return { service: null, foreign: null };
      const mine = (copies.get(service) ?? []).some((d) => qualified === d || qualified.startsWith(`${d}/`));
      return mine ? { service, foreign: null } : { service: null, foreign: service };
    };
  }

  /** `fs:tank/data@name` -> the snapshot, checked to exist and (unless forced) not to be a service's last common one */
  async findSnapshot(qualified: string, force = false): Promise<SnapshotView> {
    const at = qualified.lastIndexOf('@');
    if (at <= 0 || at === qualified.length - 1) throw new Error(`A snapshot is named DATASET@NAME, such as fs:tank/data@before-upgrade, not "${qualified}".`);
    const ref = parseDataset(qualified.slice(0, at), this.defaultDriver);
    const name = qualified.slice(at + 1);
    const driver = await this.storage.usable(ref.driver);
    if (!(await driver.getDataset(ref.name))) throw new Error(`The folder ${formatDataset(ref)} does not exist.`);
    const snap = (await driver.listSnapshots(ref.name)).find((s) => s.name === name);
    if (!snap) throw new Error(`The snapshot ${formatDataset(ref)}@${name} does not exist.`);
    if (!force) {
      for (const view of this.autoSync.list()) {
        const ends = [view.config.source, view.config.destination].filter((e) => e.host === 'localhost').map((e) => e.dataset);
        if (ends.includes(formatDataset(ref)) && view.run.lastMarker === name) {
          throw new Error(
            `The snapshot ${formatDataset(ref)}@${name} is the last one auto-sync:${view.config.name} has in common with its other side; destroying it breaks the chain and forces a full resync. Add --force to destroy it anyway.`,
          );
        }
      }
    }
    return { ...snap, driver: ref.driver, qualified: `${formatDataset(ref)}@${name}`, ...this.markerOwner()(formatDataset(ref), name) };
  }

  async destroySnapshot(qualified: string, force = false): Promise<void> {
    const snap = await this.findSnapshot(qualified, force);
    const driver = await this.storage.usable(snap.driver);
    if (snap.held) {
      if (!force) throw new Error(`The snapshot ${snap.qualified} is protected (held); add --force to release and destroy it.`);
      await driver.holdSnapshot(snap.dataset, snap.name, false);
    }
    await driver.destroySnapshot(snap.dataset, snap.name, { recursive: true });
  }

  private async usableDrivers(): Promise<DriverName[]> {
    const out: DriverName[] = [];
    for (const name of DRIVER_NAMES) {
      try {
        await this.storage.usable(name);
        out.push(name);
      } catch {
        /* not on this appliance */
      }
    }
    return out;
  }
}

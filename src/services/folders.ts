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
  /** the auto-sync service whose marker this is, if any */
  service: string | null;
}

export class FolderService {
  constructor(private readonly storage: Storage, private readonly autoSync: AutoSyncService, private readonly defaultDriver: DriverName = 'fs') {}

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
    for (const s of this.autoSync.list()) {
      for (const end of [s.config.source, s.config.destination]) {
        const inUse = end.host === 'localhost' && (end.dataset === qualified || end.dataset.startsWith(`${qualified}/`));
        if (inUse) throw new Error(`The folder ${qualified} is used by auto-sync:${s.config.name}; destroy that service first.`);
      }
    }
    await driver.destroyDataset(ref.name, { recursive: true });
  }

  async snapshots(dataset?: string): Promise<SnapshotView[]> {
    const folders = await this.list(dataset);
    const out: SnapshotView[] = [];
    for (const f of folders) {
      const driver = await this.storage.driver(f.driver);
      for (const s of await driver.listSnapshots(f.name)) {
        out.push({ ...s, driver: f.driver, qualified: `${f.qualified}@${s.name}`, service: markerService(s.name) });
      }
    }
    return out;
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

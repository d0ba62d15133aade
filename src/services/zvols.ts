/**
 * zvols: block volumes of a pool, served over NBD by the daemon
 * (`create/show/setup/destroy zvol`). The fs driver has them (64 KiB chunks,
 * dirty-chunk map, see storage/fs/zvol.ts); a zfs whose ZFS implements
 * volumes goes through the same calls, zfs-fuse is refused by its driver.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDataset, formatDataset } from './datasets.js';
import type { Home } from './home.js';
import type { Storage } from './storage/registry.js';
import type { DriverName, VolumeStats } from './storage/driver.js';
import type { FolderService } from './folders.js';
import { writeJsonAtomic } from './storage/fs/files.js';
import { connectedClients, type NbdClient } from './zvol-clients.js';

export const DEFAULT_BLOCK_SIZE = 64 * 1024;

export interface ZvolProperties {
  /** exported read-only over NBD */
  readonly: boolean;
  description: string;
}

const DEFAULTS: ZvolProperties = { readonly: false, description: '' };
export const ZVOL_PROPERTIES = Object.keys(DEFAULTS) as (keyof ZvolProperties)[];

export interface ZvolView extends VolumeStats {
  driver: DriverName;
  /** driver-qualified name, which is also the NBD export name */
  name: string;
  properties: ZvolProperties;
  /** NBD clients attached now (from the daemon) */
  clients: NbdClient[];
  /** the URI a client attaches with */
  nbd: string;
}

export function nbdSocket(home: Home): string {
  return path.join(home.root, 'run', 'nbd.sock');
}

export function nbdUri(home: Home, qualified: string): string {
  return `nbd+unix:///${qualified}?socket=${nbdSocket(home)}`;
}

export class ZvolService {
  constructor(
    private readonly home: Home,
    private readonly storage: Storage,
    private readonly folders: FolderService,
    private readonly defaultDriver: DriverName = 'fs',
  ) {}

  /** the auto-cdp mirror of a zvol, if any (set by createServices: the mirrors are made after the zvols) */
  mirroredBy: (qualified: string) => string | null = () => null;

  private get propertiesFile(): string {
    return path.join(this.home.config, 'zvol-properties.json');
  }

  private allProperties(): Record<string, Partial<ZvolProperties>> {
    try {
      return JSON.parse(readFileSync(this.propertiesFile, 'utf8')) as Record<string, Partial<ZvolProperties>>;
    } catch {
      return {};
    }
  }

  properties(qualified: string): ZvolProperties {
    return { ...DEFAULTS, ...this.allProperties()[qualified] };
  }

  async create(dataset: string, opts: { size: number; blockSize?: number }): Promise<ZvolView> {
    const ref = parseDataset(dataset, this.defaultDriver);
    const qualified = formatDataset(ref);
    const driver = await this.storage.usable(ref.driver);
    const existing = await driver.getDataset(ref.name);
    if (existing) throw new Error(`The ${existing.kind === 'volume' ? 'volume' : 'folder'} ${qualified} already exists; choose another name for the zvol.`);
    await driver.createDataset(ref.name, { volumeSize: opts.size, zvol: { blockSize: opts.blockSize ?? DEFAULT_BLOCK_SIZE } });
    return this.one(qualified);
  }

  /** one zvol, checked to be one */
  async one(dataset: string): Promise<ZvolView> {
    const ref = parseDataset(dataset, this.defaultDriver);
    const qualified = formatDataset(ref);
    const driver = await this.storage.usable(ref.driver);
    const info = await driver.getDataset(ref.name);
    if (!info) throw new Error(`The zvol ${qualified} does not exist.`);
    if (!driver.isZvol || !driver.volumeStats || !(await driver.isZvol(ref.name))) {
      throw new Error(`The dataset ${qualified} is a ${info.kind === 'volume' ? 'volume image (create folder --volume-size), not a zvol' : 'folder, not a zvol'}.`);
    }
    const stats = await driver.volumeStats(ref.name);
    return { ...stats, driver: ref.driver, name: qualified, properties: this.properties(qualified), clients: this.clientsOf(qualified), nbd: nbdUri(this.home, qualified) };
  }

  async list(dataset?: string): Promise<ZvolView[]> {
    if (dataset) return [await this.one(dataset)];
    const out: ZvolView[] = [];
    for (const f of await this.folders.list()) {
      if (f.kind !== 'volume') continue;
      const driver = await this.storage.driver(f.driver);
      if (driver.isZvol && (await driver.isZvol(f.name))) out.push(await this.one(f.qualified));
    }
    return out;
  }

  async resize(dataset: string, size: number): Promise<ZvolView> {
    const z = await this.one(dataset);
    const mirror = this.mirroredBy(z.name);
    // a mirror's copies have one size: growing one side alone would leave the other short
    if (mirror) throw new Error(`The zvol ${z.name} is mirrored by auto-cdp:${mirror}, whose copies must keep one size; destroy that mirror, grow both zvols, then create it again.`);
    const driver = await this.storage.usable(z.driver);
    await driver.resizeVolume!(parseDataset(z.name).name, size);
    return this.one(z.name);
  }

  async setProperty(dataset: string, property: string, value: string): Promise<ZvolView> {
    const z = await this.one(dataset);
    const props = this.allProperties();
    const mine: Partial<ZvolProperties> = { ...props[z.name] };
    if (property === 'readonly') {
      if (value !== 'yes' && value !== 'no') throw new Error(`The property readonly of zvol ${z.name} is yes or no, not "${value}".`);
      mine.readonly = value === 'yes';
    } else if (property === 'description') {
      if (value.length > 200 || /[\n\r]/.test(value)) throw new Error(`The description of zvol ${z.name} must be one line of at most 200 characters.`);
      mine.description = value;
    } else {
      throw new Error(`A zvol has no property "${property}": use ${ZVOL_PROPERTIES.join(' or ')} (and "size" to grow it).`);
    }
    writeJsonAtomic(this.propertiesFile, { ...props, [z.name]: mine });
    return this.one(z.name);
  }

  /** why it cannot be destroyed now (clients attached, a service using it), or null */
  async busyReason(dataset: string): Promise<string | null> {
    const z = await this.one(dataset);
    if (z.clients.length) {
      return `The zvol ${z.name} has ${z.clients.length} NBD client(s) connected (${z.clients.map((c) => `${c.client} since ${c.since}`).join(', ')}); disconnect them first.`;
    }
    const mirror = this.mirroredBy(z.name);
    if (mirror) return `The zvol ${z.name} is mirrored by auto-cdp:${mirror}; destroy that mirror first (its zvols stay).`;
    const service = this.folders.usedBy(z.name);
    return service ? `The zvol ${z.name} is used by auto-sync:${service}; destroy that service first.` : null;
  }

  async destroy(dataset: string): Promise<void> {
    const z = await this.one(dataset);
    const busy = await this.busyReason(z.name);
    if (busy) throw new Error(busy);
    const driver = await this.storage.usable(z.driver);
    await driver.destroyDataset(parseDataset(z.name).name, { recursive: true });
    const props = this.allProperties();
    if (props[z.name]) {
      delete props[z.name];
      writeJsonAtomic(this.propertiesFile, props);
    }
  }

  private clientsOf(qualified: string): NbdClient[] {
    return connectedClients(this.home).filter((c) => c.export === qualified);
  }
}

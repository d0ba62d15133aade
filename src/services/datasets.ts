/**
 * Driver-qualified dataset names: `fs:tank/data`, `zfs:pool/fs`,
 * `btrfs:/mnt/pool/subvol`. Checked here, before any driver runs anything.
 */
import type { DriverName } from './storage/driver.js';

export const DRIVER_NAMES: readonly DriverName[] = ['fs', 'zfs', 'btrfs'];

export interface DatasetRef {
  driver: DriverName;
  /** driver-local name */
  name: string;
}

const COMPONENT = /^[A-Za-z0-9_.:-]+$/;

export function isDriverName(value: string): value is DriverName {
  return (DRIVER_NAMES as readonly string[]).includes(value);
}

/** Parse `driver:name`; an unqualified name uses `defaultDriver`. Throws a sentence naming the bad value. */
export function parseDataset(text: string, defaultDriver: DriverName = 'fs'): DatasetRef {
  const raw = text.trim();
  if (!raw) throw new Error('A dataset name is required, such as fs:tank/data.');
  const colon = raw.indexOf(':');
  let driver: string = defaultDriver;
  let name = raw;
  if (colon > 0 && /^[a-z]+$/.test(raw.slice(0, colon))) {
    driver = raw.slice(0, colon);
    name = raw.slice(colon + 1);
    if (!isDriverName(driver)) {
      throw new Error(`Unknown storage driver "${driver}" in ${raw}: use one of ${DRIVER_NAMES.join(', ')}.`);
    }
  }
  const absolute = driver === 'btrfs';
  if (absolute && !name.startsWith('/')) {
    throw new Error(`A btrfs dataset is an absolute subvolume path, such as btrfs:/mnt/pool/data: ${raw}.`);
  }
  if (!absolute && name.startsWith('/')) {
    throw new Error(`A ${driver} dataset name must not start with "/": ${raw}.`);
  }
  const parts = (absolute ? name.slice(1) : name).split('/');
  if (name.endsWith('/') && name !== '/') throw new Error(`The dataset name must not end with "/": ${raw}.`);
  for (const part of parts) {
    if (part === '..' || part === '.') throw new Error(`The dataset name must not contain "${part}": ${raw}.`);
    if (!part) throw new Error(`The dataset name has an empty component: ${raw}.`);
    if (!COMPONENT.test(part)) {
      const bad = [...part].find((c) => !/[A-Za-z0-9_.:-]/.test(c));
      throw new Error(`The dataset name must not contain ${JSON.stringify(bad)}: ${raw} (letters, digits, "_", ".", ":" and "-" only).`);
    }
  }
  return { driver: driver as DriverName, name };
}

export function formatDataset(ref: DatasetRef): string {
  return `${ref.driver}:${ref.name}`;
}

/** `tank/data` -> `tank-data`, `/mnt/pool/data` -> `mnt-pool-data`: the stem of instance names. */
export function datasetStem(ref: DatasetRef): string {
  return (
    ref.name
      .replace(/^\/+/, '')
      .replace(/[/:.]+/g, '-')
      .replace(/[^A-Za-z0-9_-]/g, '') || 'root'
  );
}

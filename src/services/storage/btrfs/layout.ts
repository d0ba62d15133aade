/**
 * Where the btrfs driver keeps things, and the name checks.
 *
 * A dataset is a subvolume given by absolute path, `/mnt/pool/data`. Its
 * snapshots are read-only subvolumes in a hidden sibling directory, outside
 * the dataset so that replacing the live subvolume never touches them:
 *
 *   /mnt/pool/data                                  the live (writable) subvolume
 *   /mnt/pool/.syncsh-snapshots/data/<name>         read-only snapshots (also received ones)
 *   /mnt/pool/.syncsh-snapshots/data/.holds/<name>  hold markers (empty files)
 *   /mnt/pool/.syncsh-snapshots/data/.probe-*       change probes, gone after use
 *   /mnt/pool/.syncsh-new-data-*, .syncsh-old-data-*  a live subvolume being swapped
 *
 * A volume is a subvolume holding one image file, `.syncsh-volume.img`.
 * Names starting with `.syncsh-` are reserved to the driver.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';

export const SNAPSHOT_DIR = '.syncsh-snapshots';
export const HOLDS_DIR = '.holds';
export const VOLUME_FILE = '.syncsh-volume.img';
const RESERVED_PREFIX = '.syncsh-';

/** letters, digits and the punctuation seen in subvolume layouts (`@home`), nothing a shell would read */
const PATH_COMPONENT = /^[A-Za-z0-9_.@:+=,-]+$/;
const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

export class BtrfsNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BtrfsNameError';
  }
}

/** an absolute, normalized path of plain components; throws a sentence naming the value */
export function checkSubvolumePath(value: string): string {
  const shown = JSON.stringify(value);
  if (typeof value !== 'string' || value.length === 0) throw new BtrfsNameError('A btrfs subvolume path is required.');
  if (!value.startsWith('/')) throw new BtrfsNameError(`The btrfs subvolume path ${shown} must be absolute (start with '/').`);
  if (value.length > 4000) throw new BtrfsNameError(`The btrfs subvolume path ${shown} is too long.`);
  const parts = value.slice(1).split('/');
  if (value === '/' || parts.some((part) => part === '')) {
    throw new BtrfsNameError(`The btrfs subvolume path ${shown} has an empty component (a trailing or doubled '/').`);
  }
  for (const part of parts) {
    if (part === '.' || part === '..') throw new BtrfsNameError(`The btrfs subvolume path ${shown} contains '${part}'.`);
    if (part.startsWith(RESERVED_PREFIX)) {
      throw new BtrfsNameError(`The btrfs subvolume path ${shown} uses ${JSON.stringify(part)}; names starting with '${RESERVED_PREFIX}' are reserved.`);
    }
    if (part.startsWith('-') || !PATH_COMPONENT.test(part)) {
      throw new BtrfsNameError(`The btrfs subvolume path ${shown} has the component ${JSON.stringify(part)}; use letters, digits and _ . @ : + = , - only, not starting with -.`);
    }
  }
  return value;
}

export function checkSnapshotName(name: string): string {
  const shown = JSON.stringify(name);
  if (typeof name !== 'string' || name.length === 0) throw new BtrfsNameError('A snapshot name is required.');
  if (name.includes('/')) throw new BtrfsNameError(`The snapshot name ${shown} must not contain '/'.`);
  if (name.length > 255 || !SNAPSHOT_NAME.test(name)) {
    throw new BtrfsNameError(`The snapshot name ${shown} is not allowed; use letters, digits and _ . : - only, starting with a letter or digit.`);
  }
  return name;
}

export const snapshotDir = (dataset: string): string => path.join(path.dirname(dataset), SNAPSHOT_DIR, path.basename(dataset));
export const snapshotPath = (dataset: string, name: string): string => path.join(snapshotDir(dataset), name);
export const holdMarker = (dataset: string, name: string): string => path.join(snapshotDir(dataset), HOLDS_DIR, name);
export const probePath = (dataset: string): string => path.join(snapshotDir(dataset), `.probe-${randomBytes(4).toString('hex')}`);
export const volumeFile = (dataset: string): string => path.join(dataset, VOLUME_FILE);

/** a sibling of the live subvolume, for swapping it (same directory: rename stays within it) */
export const swapPath = (dataset: string, role: 'new' | 'old'): string => path.join(path.dirname(dataset), `${RESERVED_PREFIX}${role}-${path.basename(dataset)}-${randomBytes(4).toString('hex')}`);

export function isSwapLeftover(dataset: string, entry: string, role: 'new' | 'old'): boolean {
  const prefix = `${RESERVED_PREFIX}${role}-${path.basename(dataset)}-`;
  return entry.startsWith(prefix) && /^[0-9a-f]{8}$/.test(entry.slice(prefix.length));
}

/** a path component the driver made (snapshot dirs, swaps): not a dataset */
export const isReserved = (component: string): boolean => component.startsWith(RESERVED_PREFIX);

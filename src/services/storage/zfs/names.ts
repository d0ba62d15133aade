/**
 * ZFS name checks, run before any command so that a bad name never reaches
 * `zfs` (and so the operator reads a sentence naming the value, not a usage text).
 */

/** what ZFS itself allows in a component, minus the characters that need quoting anywhere */
const COMPONENT = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
const MAX_NAME = 255;

export class ZfsNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZfsNameError';
  }
}

/** `pool/fs/child`: throws a sentence naming the value when it is not a plain dataset name */
export function checkDatasetName(name: string): string {
  const shown = JSON.stringify(name);
  if (typeof name !== 'string' || name.length === 0) throw new ZfsNameError('A ZFS dataset name is required.');
  if (name.length > MAX_NAME) throw new ZfsNameError(`The ZFS dataset name ${shown} is longer than ${MAX_NAME} characters.`);
  if (name.startsWith('/')) {
    throw new ZfsNameError(`The ZFS dataset name ${shown} starts with '/'; write it as pool/dataset.`);
  }
  if (name.includes('@')) {
    throw new ZfsNameError(`The ZFS dataset name ${shown} contains '@'; give the snapshot name separately.`);
  }
  if (name.includes('..')) throw new ZfsNameError(`The ZFS dataset name ${shown} contains '..'.`);
  const parts = name.split('/');
  if (parts.some((part) => part === '')) {
    throw new ZfsNameError(`The ZFS dataset name ${shown} has an empty component (a leading, trailing or doubled '/').`);
  }
  for (const part of parts) {
    if (!COMPONENT.test(part)) {
      throw new ZfsNameError(`The ZFS dataset name ${shown} has the component ${JSON.stringify(part)}; use letters, digits and _ . : - only, starting with a letter or digit.`);
    }
  }
  if (!/^[A-Za-z]/.test(parts[0]!)) throw new ZfsNameError(`The ZFS pool name in ${shown} must start with a letter.`);
  return name;
}

/** the short snapshot name after the `@` */
export function checkSnapshotName(name: string): string {
  const shown = JSON.stringify(name);
  if (typeof name !== 'string' || name.length === 0) throw new ZfsNameError('A snapshot name is required.');
  if (name.includes('@') || name.includes('/')) {
    throw new ZfsNameError(`The snapshot name ${shown} must not contain '@' or '/'; give only the part after the '@'.`);
  }
  if (name.length > MAX_NAME || !COMPONENT.test(name)) {
    throw new ZfsNameError(`The snapshot name ${shown} is not allowed; use letters, digits and _ . : - only, starting with a letter or digit.`);
  }
  return name;
}

export const poolOf = (dataset: string): string => dataset.split('/')[0]!;

export const parentOf = (dataset: string): string | null => (dataset.includes('/') ? dataset.slice(0, dataset.lastIndexOf('/')) : null);

export const snapshotPath = (dataset: string, snapshot: string): string => `${dataset}@${snapshot}`;

/** `a/b@s` -> { dataset: 'a/b', snapshot: 's' } */
export function splitSnapshotPath(full: string): { dataset: string; snapshot: string } {
  const at = full.indexOf('@');
  return at < 0 ? { dataset: full, snapshot: '' } : { dataset: full.slice(0, at), snapshot: full.slice(at + 1) };
}

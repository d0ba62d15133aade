/** Instance names: the source dataset's stem plus the next free number (`vol/folder` -> `vol-folder-000`). */
import { datasetStem, type DatasetRef } from '../datasets.js';

/**
 * A service's name becomes part of file names (its lock, log, trails and
 * their temporary files): a long dataset name gives a stem cut to this many
 * characters, and the number keeps the names apart.
 */
export const MAX_STEM = 100;

export function nextInstanceName(source: DatasetRef, taken: Iterable<string>): string {
  const stem = datasetStem(source).slice(0, MAX_STEM).replace(/-+$/, '') || 'root';
  const used = new Set(taken);
  for (let n = 0; ; n++) {
    const name = `${stem}-${String(n).padStart(3, '0')}`;
    if (!used.has(name)) return name;
  }
}

/** kept here for the imports that name it so (its home is endpoints.ts) */
export { endpointLabel } from './endpoints.js';

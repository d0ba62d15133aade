/**
 * Marker snapshots: the snapshots a service takes for each run. The name
 * carries the service, a sequence number and a random part, so it is unique
 * even across two appliances that both ran the service (reverse-direction).
 */
import { randomBytes } from 'node:crypto';
import type { SnapshotInfo } from '../storage/driver.js';

const PREFIX = 'syncsh-';

export function markerName(service: string, sequence: number): string {
  return `${PREFIX}${service}-${String(sequence).padStart(6, '0')}:${randomBytes(6).toString('hex')}`;
}

export function isMarkerOf(service: string, snapshotName: string): boolean {
  return new RegExp(`^${PREFIX}${service.replace(/[-.]/g, '\\$&')}-\\d{6,}:[0-9a-f]+$`).test(snapshotName);
}

/** the owning service's name of a marker, or null for other snapshots */
export function markerService(snapshotName: string): string | null {
  const m = /^syncsh-(.+)-\d{6,}:[0-9a-f]+$/.exec(snapshotName);
  return m ? m[1] : null;
}

/**
 * The newest source snapshot that the destination also holds, matched by
 * identity (guid / uuid / manifest id), never by name alone.
 */
export function newestCommon(source: SnapshotInfo[], destination: SnapshotInfo[]): SnapshotInfo | null {
  const ids = new Set(destination.map((s) => s.id));
  for (let i = source.length - 1; i >= 0; i--) if (ids.has(source[i].id)) return source[i];
  return null;
}

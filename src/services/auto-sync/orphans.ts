/**
 * Orphans: what an old master wrote after the last successful replication,
 * kept (a held snapshot on its copy of the dataset) when it comes back after
 * a disaster-recovery reversal and is rolled back. Listed by `show
 * auto-sync :NAME orphans`; destroyed only by `destroy auto-sync :NAME
 * orphan SNAPSHOT`, after confirmation.
 */
import type { Driver, SnapshotInfo } from '../storage/driver.js';

const PREFIX = 'orphan-';

export function orphanName(service: string, at: Date): string {
  return `${PREFIX}${service}-${at.toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '')}`;
}

export function isOrphanOf(service: string, snapshot: string): boolean {
  return snapshot.startsWith(`${PREFIX}${service}-`) && /^\d{8}T\d{6}Z$/.test(snapshot.slice(PREFIX.length + service.length + 1));
}

export interface OrphanView {
  dataset: string;
  snapshot: string;
  createdAt: string;
  held: boolean;
  id: string;
}

export async function listOrphans(service: string, driver: Driver, dataset: string): Promise<OrphanView[]> {
  if (!(await driver.getDataset(dataset))) return [];
  return (await driver.listSnapshots(dataset))
    .filter((s: SnapshotInfo) => isOrphanOf(service, s.name))
    .map((s) => ({ dataset, snapshot: s.name, createdAt: new Date(s.createdAt).toISOString(), held: s.held, id: s.id }));
}

export async function destroyOrphan(service: string, driver: Driver, dataset: string, snapshot: string, recursive = false): Promise<void> {
  if (!isOrphanOf(service, snapshot)) throw new Error(`${snapshot} is not an orphan of auto-sync:${service}: see 'show auto-sync :${service} orphans'.`);
  const snap = (await driver.listSnapshots(dataset)).find((s) => s.name === snapshot);
  if (!snap) throw new Error(`No orphan ${dataset}@${snapshot}: see 'show auto-sync :${service} orphans'.`);
  if (snap.held) await driver.holdSnapshot(dataset, snapshot, false);
  await driver.destroySnapshot(dataset, snapshot, { recursive });
}

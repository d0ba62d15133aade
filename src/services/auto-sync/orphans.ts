/**
 * Orphans: what a copy wrote after the last snapshot it shares with the
 * copy that won (disaster recovery then failback, or a split brain
 * resolved), kept before that copy is rolled back. Listed by `show
 * auto-sync :NAME orphans`; destroyed only by `destroy auto-sync :NAME
 * orphan NAME`, after confirmation.
 *
 * An orphan is a snapshot `orphan-SERVICE-STAMP` of the copy, moved into a
 * dataset of its own next to it (`PARENT/orphan-SERVICE-STAMP`, received
 * from a local send, snapshot held). It cannot stay on the copy: ZFS and
 * btrfs roll back only by destroying every later snapshot, and the copy
 * must go back to the common snapshot to receive again. A dataset of its
 * own also outlives the copy's retention and can be mounted to look at.
 * The move costs one local copy of the dataset's data. A copy at the top
 * of its pool has no parent to hold it: its orphan stays a held snapshot
 * on it (the fs driver rolls back past it; zfs and btrfs refuse, saying so).
 */
import type { Driver, SnapshotInfo } from '../storage/driver.js';

const PREFIX = 'orphan-';

export function orphanName(service: string, at: Date): string {
  return `${PREFIX}${service}-${at.toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '')}`;
}

export function isOrphanOf(service: string, snapshot: string): boolean {
  return snapshot.startsWith(`${PREFIX}${service}-`) && /^\d{8}T\d{6}Z$/.test(snapshot.slice(PREFIX.length + service.length + 1));
}

const parentOf = (dataset: string): string | null => {
  const at = dataset.lastIndexOf('/');
  return at > 0 ? dataset.slice(0, at) : null;
};

/** where an orphan of `dataset` is kept, or null for a dataset with no parent */
export function orphanDataset(dataset: string, orphan: string): string | null {
  const parent = parentOf(dataset);
  return parent ? `${parent}/${orphan}` : null;
}

/** where the orphans of a driver-qualified copy go, for messages: `fs:tank/orphan-SERVICE-DATE`, or a held snapshot of a top-level copy */
export function orphanPlace(qualified: string, service: string): string {
  const colon = qualified.indexOf(':');
  const at = orphanDataset(qualified.slice(colon + 1), `${PREFIX}${service}-DATE`);
  return at ? `${qualified.slice(0, colon + 1)}${at}` : `a held snapshot of ${qualified}`;
}

export interface OrphanView {
  /** the dataset that holds it (its own, or the copy for an orphan kept in place) */
  dataset: string;
  snapshot: string;
  createdAt: string;
  held: boolean;
  id: string;
}

const view = (dataset: string, s: SnapshotInfo): OrphanView => ({ dataset, snapshot: s.name, createdAt: new Date(s.createdAt).toISOString(), held: s.held, id: s.id });

/**
 * Take the copy's state as a new orphan unless the newest orphan already
 * holds it (a retry after a crash), then move every orphan snapshot of the
 * copy into its own dataset. Returns the orphans kept by this call.
 */
export async function keepOrphan(service: string, driver: Driver, dataset: string, at: Date, recursive: boolean, changed: boolean): Promise<OrphanView[]> {
  let snaps = await driver.listSnapshots(dataset);
  const inPlace = snaps.filter((s) => isOrphanOf(service, s.name));
  const newest = inPlace.at(-1);
  const covered = newest !== undefined && !(await driver.changedSince(dataset, newest.name));
  if (changed && !covered) {
    const name = orphanName(service, at);
    await driver.createSnapshot(dataset, name, { recursive });
    await driver.holdSnapshot(dataset, name, true);
    snaps = await driver.listSnapshots(dataset);
  }
  const kept: OrphanView[] = [];
  for (const snap of snaps.filter((s) => isOrphanOf(service, s.name))) {
    const target = orphanDataset(dataset, snap.name);
    if (!target) {
      kept.push(view(dataset, snap));
      continue;
    }
    // a move cut short by a crash left the target with the snapshot, or with nothing usable
    let moved = (await driver.getDataset(target)) ? (await driver.listSnapshots(target)).find((s) => s.name === snap.name && s.id === snap.id) : undefined;
    if (!moved) {
      if (await driver.getDataset(target)) await driver.destroyDataset(target, { recursive: true });
      await driver.receive(target, driver.send(dataset, snap.name, { recursive }), { force: false, recursive });
      moved = (await driver.listSnapshots(target)).find((s) => s.name === snap.name && s.id === snap.id);
      if (!moved) throw new Error(`The orphan ${dataset}@${snap.name} did not arrive whole in ${target}; it stays on ${dataset} and nothing was rolled back.`);
      await driver.holdSnapshot(target, snap.name, true);
    }
    await driver.holdSnapshot(dataset, snap.name, false);
    await driver.destroySnapshot(dataset, snap.name, { recursive });
    kept.push(view(target, { ...moved, held: true }));
  }
  return kept;
}

export async function listOrphans(service: string, driver: Driver, dataset: string): Promise<OrphanView[]> {
  const found: OrphanView[] = [];
  if (await driver.getDataset(dataset)) {
    for (const s of await driver.listSnapshots(dataset)) if (isOrphanOf(service, s.name)) found.push(view(dataset, s));
  }
  const parent = parentOf(dataset);
  if (parent && (await driver.getDataset(parent))) {
    for (const d of await driver.listDatasets(parent)) {
      const leaf = d.name.slice(parent.length + 1);
      if (leaf.includes('/') || !isOrphanOf(service, leaf)) continue;
      const snap = (await driver.listSnapshots(d.name)).find((s) => s.name === leaf);
      if (snap) found.push(view(d.name, snap));
    }
  }
  return found.sort((a, b) => a.snapshot.localeCompare(b.snapshot));
}

export async function destroyOrphan(service: string, driver: Driver, dataset: string, snapshot: string, recursive = false): Promise<void> {
  if (!isOrphanOf(service, snapshot)) throw new Error(`${snapshot} is not an orphan of auto-sync:${service}: see 'show auto-sync :${service} orphans'.`);
  const orphan = (await listOrphans(service, driver, dataset)).find((o) => o.snapshot === snapshot);
  if (!orphan) throw new Error(`No orphan ${snapshot} of auto-sync:${service} here: see 'show auto-sync :${service} orphans'.`);
  if (orphan.held) await driver.holdSnapshot(orphan.dataset, snapshot, false);
  if (orphan.dataset === dataset) await driver.destroySnapshot(dataset, snapshot, { recursive });
  else await driver.destroyDataset(orphan.dataset, { recursive: true });
}

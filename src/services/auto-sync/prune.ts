/**
 * Pruning one side of a service: list its markers, plan with the side's
 * retention (retention.ts), destroy what the plan lets go. Used by a run
 * after it delivered its marker, and by `run auto-sync :NAME prune`.
 */
import type { ServiceLog } from '../service-log.js';
import type { Side } from './run.js';
import type { SnapshotInfo } from '../storage/driver.js';
import { isMarkerOf } from './markers.js';
import { planSide, type MarkerPlan } from './retention.js';

export interface SidePlan {
  host: string;
  dataset: string;
  /** the side's retention as configured */
  keep: string;
  /** the service's own markers, oldest first */
  plan: MarkerPlan[];
  /** every other snapshot (an operator's, an orphan, another service's markers): never pruned */
  others: string[];
}

export async function listSide(side: Side): Promise<SnapshotInfo[]> {
  return (await side.driver.getDataset(side.dataset)) ? side.driver.listSnapshots(side.dataset) : [];
}

export async function planPrune(service: string, side: Side, keep: number | string, lastCommon: string | null, now: number, listed?: SnapshotInfo[]): Promise<SidePlan> {
  const snapshots = listed ?? (await listSide(side));
  const markers = snapshots.filter((s) => isMarkerOf(service, s.name));
  const others = snapshots.filter((s) => !isMarkerOf(service, s.name)).map((s) => s.name);
  return { host: side.host, dataset: side.dataset, keep: String(keep), plan: planSide(markers, keep, now, lastCommon), others };
}

/** destroys the markers the plan prunes; a marker that cannot go is logged and left */
export async function applyPrune(side: Side, plan: SidePlan, recursive: boolean, log: ServiceLog): Promise<string[]> {
  const pruned: string[] = [];
  for (const m of plan.plan.filter((p) => !p.keep)) {
    try {
      await side.driver.destroySnapshot(side.dataset, m.name, { recursive });
      pruned.push(m.name);
    } catch (error) {
      log.write(`WARNING: could not prune ${side.host}/${side.dataset.replace(/^\/+/, '')}@${m.name}: ${(error as Error).message}`);
    }
  }
  return pruned;
}

/**
 * What a run does, decided from what it found, with no I/O (zrepl's
 * logic/diff is the model): run.ts gathers the facts, planRun decides, and
 * run.ts does. Every branch has a row in test/services/plan.test.ts.
 */
import type { SnapshotInfo } from '../storage/driver.js';
import { newestCommon } from './markers.js';

export interface RunFacts {
  /** as the operator names them, for the sentences */
  source: string;
  destination: string;
  srcSnapshots: SnapshotInfo[];
  /** the destination dataset exists */
  dstExists: boolean;
  dstSnapshots: SnapshotInfo[];
  /** the service synced before (its state names a last marker): an empty destination is then a lost chain, not a first run */
  everSynced: boolean;
  /** `setup auto-sync :NAME resync` */
  resync: boolean;
  force: boolean;
  /** the destination was written to since the common snapshot (asked only when there is one) */
  dstChanged: boolean;
  /** recursive services: children (relative names) that lack the common snapshot on one side */
  brokenChildren: { child: string; missingOn: 'source' | 'destination' }[];
}

export type RunPlan =
  | { kind: 'full' }
  | { kind: 'incremental'; base: SnapshotInfo }
  | { kind: 'resync-aside' }
  | { kind: 'resync-children'; base: SnapshotInfo; children: string[] }
  | { kind: 'broken-chain'; reason: string }
  | { kind: 'refused'; reason: string };

/** the newest snapshot both sides hold, by identity */
export const commonOf = (facts: Pick<RunFacts, 'srcSnapshots' | 'dstSnapshots'>) => newestCommon(facts.srcSnapshots, facts.dstSnapshots);

export function planRun(f: RunFacts): RunPlan {
  if (!f.dstExists) return { kind: 'full' };
  const common = commonOf(f);
  if (!common) {
    if (f.resync) return { kind: 'resync-aside' };
    if (f.dstSnapshots.length > 0) {
      return { kind: 'broken-chain', reason: `The destination ${f.destination} has ${f.dstSnapshots.length} snapshot(s) but none in common with the source ${f.source}.` };
    }
    if (f.everSynced) {
      return { kind: 'broken-chain', reason: `The destination ${f.destination} has no snapshot left (they were destroyed since the last run), so nothing links it to the source ${f.source}.` };
    }
    // A first run into a dataset that is already there: the driver decides (zfs refuses without force).
    return { kind: 'full' };
  }
  if (f.brokenChildren.length > 0) {
    const children = f.brokenChildren.map((b) => b.child);
    if (f.resync && !(f.dstChanged && !f.force)) return { kind: 'resync-children', base: common, children };
    const list = f.brokenChildren.map((b) => `${b.child} (missing on the ${b.missingOn})`).join(', ');
    return {
      kind: 'broken-chain',
      reason: `The chain of ${children.length === 1 ? 'the child' : 'the children'} ${list} is broken: ${children.length === 1 ? 'it lacks' : 'they lack'} the common snapshot @${common.name}, the rest of ${f.source} is intact.`,
    };
  }
  if (f.dstChanged && !f.force) {
    return { kind: 'refused', reason: `The destination ${f.destination} was written to since its last received snapshot; nothing was rolled back. Set the service's force property to yes to discard those changes, or copy them away first.` };
  }
  return { kind: 'incremental', base: common };
}

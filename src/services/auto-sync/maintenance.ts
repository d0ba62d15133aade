/**
 * Why a service is in maintenance, as data: the kind of cause decides the
 * command that fixes it, so no code reads it out of the reason's wording.
 *  - a broken chain is fixed by a resync (a full sync beside the old copy);
 *  - so is a destination zvol that is not a seed of the source (it shares
 *    no snapshot and holds less than half of the source's chunks);
 *  - split brain by resolve-split-brain (the operator keeps one copy);
 *  - anything else by enable, once the operator fixed the cause.
 */
export const MAINTENANCE_KINDS = ['broken-chain', 'not-a-seed', 'split-brain', 'other'] as const;
export type MaintenanceKind = (typeof MAINTENANCE_KINDS)[number];

export interface Maintenance {
  kind: MaintenanceKind;
  /** one or more sentences: what is wrong */
  reason: string;
  /** the command that gets the service out of maintenance */
  fix: string;
}

const FIX: Record<MaintenanceKind, string> = {
  'broken-chain': 'resync',
  'not-a-seed': 'resync',
  'split-brain': 'resolve-split-brain',
  other: 'enable',
};

export function maintenance(kind: MaintenanceKind, service: string, reason: string): Maintenance {
  return { kind, reason, fix: `setup auto-sync :${service} ${FIX[kind]}` };
}

/** the sentence that tells the operator the way out */
export function maintenanceHint(m: Maintenance): string {
  switch (m.kind) {
    case 'broken-chain':
    case 'not-a-seed':
      return `Run '${m.fix}' to start over with a full sync; the current destination is kept aside, nothing is destroyed.`;
    case 'split-brain':
      return `Run '${m.fix}' to pick the copy to keep; 'enable' does not clear a split brain.`;
    case 'other':
      return `Run '${m.fix}' once the cause is fixed.`;
  }
}

/** is the service in maintenance for split brain (set by the epoch rule, cleared by resolve-split-brain) */
export const inSplitBrain = (config: { maintenance: Maintenance | null }): boolean => config.maintenance?.kind === 'split-brain';

/** reason and hint, as status and refusals print them */
export const describeMaintenance = (m: Maintenance): string => `${m.reason} ${maintenanceHint(m)}`;

/**
 * A services.json written before maintenance was data held the reason as a
 * string: read its kind from the words those versions wrote.
 */
export function upgradeMaintenance(value: Maintenance | string | null | undefined, service: string): Maintenance | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'string') return value;
  const kind: MaintenanceKind = value.startsWith('Split brain') ? 'split-brain' : value.startsWith('Broken chain') ? 'broken-chain' : 'other';
  return maintenance(kind, service, value);
}

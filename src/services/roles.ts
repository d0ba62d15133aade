/**
 * Roles and epochs of a service kept on two appliances (DESIGN.md, "Roles,
 * epochs and reverse-direction"): pure decisions, shared by auto-sync and
 * auto-cdp. The rule that prevents split brain: an appliance that meets a
 * peer holding the same service at a higher epoch takes the peer's view and
 * demotes itself before doing anything else.
 *
 * "Master" is the appliance that runs the service; the "source" the copy
 * that is written to. They are not the same thing (a remote-to-local
 * auto-sync service runs on its destination), so both are facts here.
 */

export type Role = 'master' | 'non-master';

export const flip = (role: Role): Role => (role === 'master' ? 'non-master' : 'master');

/** what one appliance holds of a service: its epoch, its role, and whether its copy is the source */
export interface RoleView {
  epoch: number;
  role: Role;
  holdsSource: boolean;
}

/**
 * What meeting the peer's view means for ours. Both views are each
 * appliance's own (`theirs.holdsSource`: the peer's copy is its source):
 *  - `adopt`: the peer is at a higher epoch: take its view; `demote` when
 *    our copy stops being the source (what we wrote since the last common
 *    snapshot is kept as an orphan, then the copy rolls back);
 *  - `peer-behind`: we are at a higher epoch and the peer still writes to its
 *    copy as the source (it was away when we took over): nothing may be sent
 *    into it until it has met our epoch and kept its changes;
 *  - `split-brain-if-both-wrote`: same epoch, both master or both holding the
 *    source: split brain when both wrote after the last common snapshot;
 *  - `same`: nothing to do.
 */
export type EpochVerdict = { kind: 'adopt'; demote: boolean } | { kind: 'peer-behind' } | { kind: 'split-brain-if-both-wrote' } | { kind: 'same' };

export function epochRule(ours: RoleView, theirs: RoleView): EpochVerdict {
  if (theirs.epoch > ours.epoch) {
    // their view as ours: their source is not ours, their role flips
    return { kind: 'adopt', demote: ours.holdsSource && theirs.holdsSource };
  }
  if (theirs.epoch < ours.epoch) return ours.holdsSource && theirs.holdsSource ? { kind: 'peer-behind' } : { kind: 'same' };
  const bothMaster = ours.role === 'master' && theirs.role === 'master';
  const bothSource = ours.holdsSource && theirs.holdsSource;
  return bothMaster || bothSource ? { kind: 'split-brain-if-both-wrote' } : { kind: 'same' };
}

/**
 * A hand-over whose process died, started at `journaled` (the epoch then):
 * whoever moved past it committed. `here`: our epoch did (finish it);
 * `peer`: the peer's did (take its view); `undo`: none did (nothing
 * committed: the old source is mounted again).
 */
export type HandOverVerdict = 'here' | 'peer' | 'undo';

export function settleHandOverRule(journaled: number, ours: number, theirs: number | null): HandOverVerdict {
  if (ours > journaled) return 'here';
  if (theirs !== null && theirs > journaled) return 'peer';
  return 'undo';
}

/**
 * Roles of an auto-cdp mirror, as pure decisions (ROLES.md):
 *  - decidePeerLoss: what a write does when the peer stopped answering,
 *    the cases of 003_… "Fencing Failures" exactly, plus the fence command's;
 *  - planRoleSwitch / planRoleSwitchAll: `setup auto-cdp :NAME role …` and
 *    `setup auto-cdp role … --all`, never two masters while the peer answers;
 *  - planReturn: what a copy does when it meets its peer again (epochs).
 *
 * Every promotion bumps the epoch past both copies' (the auto-sync rule,
 * auto-sync/epochs.ts): a copy that meets a higher epoch takes that view and
 * demotes itself before it accepts another write.
 */
import type { FenceKind } from '../fencing.js';
import { orphanName } from '../auto-sync/orphans.js';

export type CdpRole = 'master' | 'slave';

export interface RoleState {
  role: CdpRole;
  epoch: number;
}

export const CDP_ROLES: readonly CdpRole[] = ['master', 'slave'];

export interface PeerLossOutcome {
  action: 'decided';
  /** fail: the write gets EIO and is not applied; succeed: it is applied and acknowledged */
  write: 'fail' | 'succeed';
  /** the role (and epoch) of this copy from now on */
  state: RoleState;
  /** the case of 003_… "Fencing Failures" (1-6), or 'fenced' / 'fence-failed' */
  case: string;
  /** writes keep failing until the role is switched by hand or the peer is back (slave + manual) */
  untilSwitchedOrBack: boolean;
  /** the role stays as it is now until an operator switches it (master + none, or a failed fence on a master) */
  needsManualSwitch: boolean;
  /** a sentence for the mirror's log */
  reason: string;
}

/** the policy says: run the fence command first, then decide again with its outcome */
export interface RunFence {
  action: 'fence';
}

const promoted = (s: RoleState): RoleState => ({ role: 'master', epoch: s.epoch + 1 });
const demoted = (s: RoleState): RoleState => ({ role: 'slave', epoch: s.epoch });

/**
 * A write arrived and the peer does not answer. `fenced` is the fence
 * command's outcome, once run (policy `fence`). Pure.
 *
 * Beyond 003's six cases: a slave whose fence command succeeded takes over
 * (the peer cannot write any more); one whose command failed fails the
 * write (the peer may still be master: no split brain). A master whose
 * fence command failed is treated as 003's master without fencing (case 4):
 * the write fails and it steps down, since the peer may have taken over.
 */
export function decidePeerLoss(state: RoleState, policy: FenceKind, fenced?: boolean): PeerLossOutcome | RunFence {
  const decided = (write: 'fail' | 'succeed', next: RoleState, which: string, reason: string, more: Partial<PeerLossOutcome> = {}): PeerLossOutcome => ({
    action: 'decided',
    write,
    state: next,
    case: which,
    untilSwitchedOrBack: false,
    needsManualSwitch: false,
    reason,
    ...more,
  });
  if (policy === 'fence' && fenced === undefined) return { action: 'fence' };
  if (state.role === 'slave') {
    switch (policy) {
      case 'none':
        return decided('fail', state, '1', 'the peer is lost and no fencing is set for it: the write is refused (EIO), this copy stays slave');
      case 'ignore':
        return decided('succeed', promoted(state), '2', `the peer is lost and its fencing policy is ignore: this copy takes over as master (epoch ${state.epoch + 1}) and the write succeeds`);
      case 'manual':
        return decided('fail', state, '3', "the peer is lost and its fencing policy is manual: writes are refused (EIO) until this copy is switched to master ('setup auto-cdp :NAME role master') or the peer is back", {
          untilSwitchedOrBack: true,
        });
      case 'fence':
        return fenced
          ? decided('succeed', promoted(state), 'fenced', `the peer is lost and was fenced: this copy takes over as master (epoch ${state.epoch + 1}) and the write succeeds`)
          : decided('fail', state, 'fence-failed', 'the peer is lost and fencing it failed: the write is refused (EIO) and this copy stays slave, so there is no split brain');
    }
  }
  switch (policy) {
    case 'none':
      return decided('fail', demoted(state), '4', "the peer is lost and no fencing is set for it: the write is refused (EIO) and this copy steps down to slave; switch it back by hand ('setup auto-cdp :NAME role master')", {
        needsManualSwitch: true,
      });
    case 'ignore':
      return decided('succeed', state, '5', 'the peer is lost and its fencing policy is ignore: the write succeeds, this copy stays master');
    case 'manual':
      return decided('succeed', state, '6', 'the peer is lost and its fencing policy is manual: the write succeeds, this copy stays master');
    case 'fence':
      return fenced
        ? decided('succeed', state, 'fenced', 'the peer is lost and was fenced: the write succeeds, this copy stays master')
        : decided(
            'fail',
            demoted(state),
            'fence-failed',
            "the peer is lost and fencing it failed: the write is refused (EIO) and this copy steps down to slave, as the peer may have taken over; switch it back by hand ('setup auto-cdp :NAME role master')",
            { needsManualSwitch: true },
          );
  }
}

/** a count of chunks; null: it cannot tell; 'running': switched to slave, its engine still takes writes as master */
export type PeerOwes = number | null | 'running';

/** what this copy knows of its peer's copy when a role switch is asked for */
export type PeerView =
  | {
      reachable: true;
      state: RoleState;
      /** chunks the peer's copy holds that this one may lack (its dirty map for this copy, owed.ts); unset: not asked */
      owes?: PeerOwes;
    }
  | { reachable: false; why: string };

export type RoleSwitchPlan =
  | {
      ok: true;
      /** nothing to do: the role is that already */
      change: boolean;
      here: RoleState;
      /** the epoch the peer is told, when it answers (its role stays) */
      peer: RoleState | null;
      /** what the confirmation says before the switch */
      question: string;
      warning: string | null;
    }
  | { ok: false; error: string };

/**
 * `setup auto-cdp :NAME role master|slave` (qsync -s NAME -m ROLE). Refuses
 * what would make two masters while the peer answers, and a promotion of a
 * copy behind the peer's epoch (it must meet it and resync first). A
 * promotion goes to an epoch past both copies'.
 */
export function planRoleSwitch(name: string, peerHost: string, here: RoleState, target: CdpRole, peer: PeerView): RoleSwitchPlan {
  const mirror = `auto-cdp:${name}`;
  if (peer.reachable && peer.state.epoch > here.epoch) {
    return {
      ok: false,
      error: `${peerHost} holds ${mirror} at epoch ${peer.state.epoch}, newer than this copy's (${here.epoch}): this copy becomes slave and resyncs when it meets it; no role is switched here until then. Nothing was changed.`,
    };
  }
  if (target === here.role) {
    if (target === 'master' && peer.reachable && peer.state.role === 'master') {
      return { ok: false, error: `Both copies of ${mirror} are master at epoch ${here.epoch} and ${peer.state.epoch}: switch one to slave. Nothing was changed.` };
    }
    return { ok: true, change: false, here, peer: null, question: '', warning: null };
  }
  if (target === 'master') {
    if (peer.reachable && peer.state.role === 'master') {
      return {
        ok: false,
        error: `${peerHost} is master of ${mirror} and answers: switching this copy to master would make two masters. Switch ${peerHost}'s copy to slave first ('setup auto-cdp :${name} role slave' there). Nothing was changed.`,
      };
    }
    if (peer.reachable && peer.owes === 'running') {
      return {
        ok: false,
        error: `${peerHost}'s copy of ${mirror} is slave but still mirrors as master (its daemon has not stopped the mirror yet, or is stopped itself): it may take writes this copy would not have. Try again once ${peerHost}'s log says "stopped". Nothing was changed.`,
      };
    }
    if (peer.reachable && peer.owes !== undefined && peer.owes !== 0) {
      const what =
        peer.owes === null
          ? `${peerHost} cannot tell which chunks of ${mirror} this copy lacks (it has no dirty map for it: its first sync never finished, or the map was lost)`
          : `${peerHost}'s copy of ${mirror} holds ${peer.owes} chunk${peer.owes === 1 ? '' : 's'} this copy does not have yet (its dirty map for this copy: it was paused, logging or still syncing)`;
      return {
        ok: false,
        error: `${what}: as master, this copy would overwrite writes acknowledged there. Let it catch up first: switch ${peerHost}'s copy back to master ('setup auto-cdp :${name} role master' there), resume this copy and wait until it is mirroring, then switch. Nothing was changed.`,
      };
    }
    const epoch = Math.max(here.epoch, peer.reachable ? peer.state.epoch : 0) + 1;
    return peer.reachable
      ? { ok: true, change: true, here: { role: 'master', epoch }, peer: { role: 'slave', epoch }, question: `Switch ${mirror} to master here (epoch ${epoch})? ${peerHost} stays slave and forwards its writes here.`, warning: null }
      : {
          ok: true,
          change: true,
          here: { role: 'master', epoch },
          peer: null,
          question: `Switch ${mirror} to master here (epoch ${epoch}) while ${peerHost} does not answer?`,
          warning: `${peerHost} does not answer (${peer.why}). If it is still master and accepting writes, make sure it cannot (fence it) before going on: when it comes back it meets epoch ${epoch}, keeps what it wrote meanwhile as an orphan snapshot of its zvol, becomes slave and resyncs from here.`,
        };
  }
  const epoch = Math.max(here.epoch, peer.reachable ? peer.state.epoch : 0);
  const noMaster = !peer.reachable || peer.state.role === 'slave';
  return {
    ok: true,
    change: true,
    here: { role: 'slave', epoch },
    peer: peer.reachable ? { role: peer.state.role, epoch } : null,
    question: `Switch ${mirror} to slave here? Writes here are forwarded to the master${noMaster ? '' : ` on ${peerHost}`}.`,
    warning: noMaster ? `${peerHost} ${peer.reachable ? 'is slave too' : `does not answer (${peer.why})`}: with no master, writes to ${mirror} fail on both copies until one is switched to master.` : null,
  };
}

/** `setup auto-cdp role master|slave --all` (qsync -f -m ROLE): every mirror, or none when one is refused */
export function planRoleSwitchAll(
  mirrors: { name: string; peerHost: string; here: RoleState; peer: PeerView }[],
  target: CdpRole,
): { ok: true; plans: { name: string; plan: Extract<RoleSwitchPlan, { ok: true }> }[] } | { ok: false; error: string } {
  const plans = mirrors.map((m) => ({ name: m.name, plan: planRoleSwitch(m.name, m.peerHost, m.here, target, m.peer) }));
  const refused = plans.filter((p) => !p.plan.ok);
  if (refused.length) {
    const why = refused.map((p) => (p.plan as { error: string }).error.replace(/ Nothing was changed\.$/, '')).join(' ');
    return { ok: false, error: `No mirror was switched to ${target}: ${why} Nothing was changed.` };
  }
  return { ok: true, plans: plans as { name: string; plan: Extract<RoleSwitchPlan, { ok: true }> }[] };
}

/** what a copy does when it meets its peer again after a loss */
export type ReturnPlan =
  | {
      kind: 'demote';
      /** this copy's zvol snapshot that keeps what it wrote while cut off (held, never destroyed silently), or null when it wrote nothing */
      orphan: string | null;
      state: RoleState;
      /** resync from the peer: the chunks this copy changed while cut off and those the peer changed (both dirty maps), never the whole zvol */
      resync: 'partial';
      reason: string;
    }
  | { kind: 'adopt'; state: RoleState; resync: 'partial' | 'none'; reason: string }
  | { kind: 'peer-behind'; reason: string }
  | { kind: 'resume'; reason: string }
  | { kind: 'split-brain'; reason: string }
  | { kind: 'no-master'; reason: string };

/**
 * This copy (`here`, which wrote `wroteWhileCut` while the peer was lost)
 * meets the peer's copy (`theirs`) again. Pure; `now` names the orphan.
 */
export function planReturn(name: string, peerHost: string, here: RoleState, theirs: RoleState, wroteWhileCut: boolean, now: Date): ReturnPlan {
  const mirror = `auto-cdp:${name}`;
  if (theirs.epoch > here.epoch) {
    if (here.role === 'master') {
      const orphan = wroteWhileCut ? orphanName(name, now) : null;
      return {
        kind: 'demote',
        orphan,
        state: { role: 'slave', epoch: theirs.epoch },
        resync: 'partial',
        reason: `${peerHost} took over ${mirror} at epoch ${theirs.epoch} while this copy (master at epoch ${here.epoch}) was cut off: ${orphan ? `what this copy wrote meanwhile is kept as the snapshot @${orphan}; ` : ''}this copy becomes slave and resyncs the chunks either side changed from ${peerHost}`,
      };
    }
    return {
      kind: 'adopt',
      state: { role: 'slave', epoch: theirs.epoch },
      resync: theirs.role === 'master' ? 'partial' : 'none',
      reason: `${peerHost} holds ${mirror} at epoch ${theirs.epoch} (this copy: ${here.epoch}): this copy takes that epoch and stays slave`,
    };
  }
  if (theirs.epoch < here.epoch)
    return { kind: 'peer-behind', reason: `${peerHost} holds ${mirror} at epoch ${theirs.epoch}, behind this copy's ${here.epoch}: it demotes itself when it meets this one; nothing is mirrored to it until then` };
  if (here.role === 'master' && theirs.role === 'master') return { kind: 'split-brain', reason: `both copies of ${mirror} are master at epoch ${here.epoch}: split brain; nothing is resynced or rolled back until one is switched to slave` };
  if (here.role === 'slave' && theirs.role === 'slave') return { kind: 'no-master', reason: `both copies of ${mirror} are slave at epoch ${here.epoch}: writes fail on both until one is switched to master` };
  return { kind: 'resume', reason: `${peerHost} is back; ${mirror} resumes mirroring at epoch ${here.epoch}` };
}

/** a role as the operator typed it, or a sentence saying it is not one */
export function parseRole(raw: string, label = 'the role'): CdpRole {
  if (raw === 'master' || raw === 'slave') return raw;
  throw new Error(`The value of ${label} is master or slave, not "${raw}".`);
}

/**
 * The doers around cdp/roles.ts's pure decisions (ROLES.md says how the
 * mirror engine calls them):
 *  - PeerLoss: a write arrived while the heartbeat says the peer is lost.
 *    One decision per loss (concurrent writes wait for the same one, so a
 *    fence command runs once); the new role and epoch are stored before the
 *    write is let through, so no write is acknowledged by a master whose
 *    promotion a crash could forget.
 *  - meetPeer: the peer answers again; an old master that meets a newer
 *    epoch keeps what it wrote while cut off as a held orphan snapshot of
 *    its zvol, becomes slave and asks for a partial resync.
 */
import type { Driver } from '../storage/driver.js';
import type { FenceKind, FenceOutcome } from '../fencing.js';
import { decidePeerLoss, planReturn, type PeerLossOutcome, type ReturnPlan, type RoleState } from './roles.js';

/** what the doers need of the mirror's configuration (the engine maps it onto cdp.json) */
export interface MirrorRoles {
  state(mirror: string): RoleState;
  /** store the new role and epoch durably (on a promotion this copy orders the writes; on a demotion `peer` is the master to follow) */
  setState(mirror: string, next: RoleState, why: string, peer?: string): Promise<void>;
}

export interface PeerLossDeps {
  fencing: { kindOf(peer: string): FenceKind; fence(peer: string, why: string): Promise<FenceOutcome> };
  roles: MirrorRoles;
  /** a line in the mirror's log */
  log(mirror: string, line: string): void;
}

/** what the write path does with a write while the peer is lost */
export interface WriteVerdict {
  /** fail: answer EIO to the NBD client, apply nothing; succeed: apply it here and acknowledge it */
  write: 'fail' | 'succeed';
  state: RoleState;
  outcome: PeerLossOutcome;
  /** the fence command's outcome, when one ran for this loss */
  fence: FenceOutcome | null;
}

export class PeerLoss {
  /** the decision of each mirror's current loss */
  private readonly episodes = new Map<string, Promise<WriteVerdict>>();

  constructor(private readonly deps: PeerLossDeps) {}

  /**
   * A write on `mirror` found `peer` lost: the verdict of this loss (decided
   * at its first write, and kept until the peer is back or the role is
   * switched by hand). Throws only when storing the new role fails; the
   * write then fails too.
   */
  onPeerLost(mirror: string, peer: string): Promise<WriteVerdict> {
    let episode = this.episodes.get(mirror);
    if (!episode) {
      episode = this.decide(mirror, peer);
      this.episodes.set(mirror, episode);
      episode.catch(() => this.episodes.delete(mirror));
    }
    return episode;
  }

  /** the peer answers again (then meetPeer settles the epochs) */
  onPeerBack(mirror: string): void {
    this.episodes.delete(mirror);
  }

  /** the operator switched the role (`setup auto-cdp :NAME role …`): the next write decides again */
  onRoleSwitched(mirror: string): void {
    this.episodes.delete(mirror);
  }

  /** is a loss being handled for the mirror */
  lost(mirror: string): boolean {
    return this.episodes.has(mirror);
  }

  private async decide(mirror: string, peer: string): Promise<WriteVerdict> {
    const state = this.deps.roles.state(mirror);
    const policy = this.deps.fencing.kindOf(peer);
    let decision = decidePeerLoss(state, policy);
    let fence: FenceOutcome | null = null;
    if (decision.action === 'fence') {
      this.deps.log(mirror, `Peer ${peer} lost: fencing it`);
      fence = await this.deps.fencing.fence(peer, `auto-cdp:${mirror} lost it`);
      this.deps.log(mirror, fence.message);
      decision = decidePeerLoss(state, policy, fence.ok);
      if (decision.action === 'fence') throw new Error('decidePeerLoss asked to fence twice');
    }
    const outcome = decision;
    const changed = outcome.state.role !== state.role || outcome.state.epoch !== state.epoch;
    const reason = outcome.reason.replace(':NAME', `:${mirror}`);
    if (changed) await this.deps.roles.setState(mirror, outcome.state, `peer ${peer} lost: ${reason}`, peer);
    this.deps.log(mirror, `Peer ${peer} lost (fencing policy ${policy}, this copy ${state.role} at epoch ${state.epoch}): ${reason}`);
    return { write: outcome.write, state: outcome.state, outcome: { ...outcome, reason }, fence };
  }
}

export interface MeetPeerDeps {
  roles: MirrorRoles;
  /** did this copy take writes while the peer was lost (its dirty map for the peer has chunks set since the loss) */
  wroteWhileCut(mirror: string): Promise<boolean>;
  /** this copy's zvol: the driver and its dataset, for the orphan snapshot */
  zvol(mirror: string): Promise<{ driver: Driver; dataset: string }>;
  /** ask the engine for a partial resync from the peer: both dirty maps' chunks, never the whole zvol */
  resync(mirror: string): Promise<void>;
  log(mirror: string, line: string): void;
  now?(): Date;
}

/**
 * The peer answers again and holds `theirs`: carry out planReturn. The
 * orphan is taken and held before the role changes (a crash between the two
 * leaves an extra orphan, never a lost write); the resync is asked for last.
 */
export async function meetPeer(mirror: string, peer: string, theirs: RoleState, deps: MeetPeerDeps): Promise<ReturnPlan> {
  const here = deps.roles.state(mirror);
  const wrote = here.role === 'master' && theirs.epoch > here.epoch ? await deps.wroteWhileCut(mirror) : false;
  const plan = planReturn(mirror, peer, here, theirs, wrote, deps.now?.() ?? new Date());
  switch (plan.kind) {
    case 'demote': {
      if (plan.orphan) {
        const { driver, dataset } = await deps.zvol(mirror);
        const existing = await driver.listSnapshots(dataset);
        if (!existing.some((s) => s.name === plan.orphan)) await driver.createSnapshot(dataset, plan.orphan, { recursive: false });
        await driver.holdSnapshot(dataset, plan.orphan, true);
      }
      await deps.roles.setState(mirror, plan.state, plan.reason, peer);
      deps.log(mirror, plan.reason);
      await deps.resync(mirror);
      break;
    }
    case 'adopt':
      await deps.roles.setState(mirror, plan.state, plan.reason, peer);
      deps.log(mirror, plan.reason);
      if (plan.resync === 'partial') await deps.resync(mirror);
      break;
    default:
      deps.log(mirror, plan.reason);
  }
  return plan;
}

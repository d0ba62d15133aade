/** The pure role decisions of auto-cdp (src/services/cdp/roles.ts), as tables. */
import test from 'ava';
import { decidePeerLoss, planReturn, planRoleSwitch, planRoleSwitchAll, type CdpRole, type PeerOwes, type PeerView, type RoleState } from '../../src/services/cdp/roles.js';
import type { FenceKind } from '../../src/services/fencing.js';

const slave: RoleState = { role: 'slave', epoch: 3 };
const master: RoleState = { role: 'master', epoch: 3 };

test('peer loss: every case of 003\'s "Fencing Failures" as written there, and the fence command\'s outcome', (t) => {
  // role, policy, fence outcome, → write, role after, epoch after, case, until switched or back, needs a manual switch
  const table: [RoleState, FenceKind, boolean | undefined, 'fail' | 'succeed', CdpRole, number, string, boolean, boolean][] = [
    [slave, 'none', undefined, 'fail', 'slave', 3, '1', false, false], // 1. write terminated, error to the client
    [slave, 'ignore', undefined, 'succeed', 'master', 4, '2', false, false], // 2. succeeds, takes over master
    [slave, 'manual', undefined, 'fail', 'slave', 3, '3', true, false], // 3. terminated until switched or peer back
    [master, 'none', undefined, 'fail', 'slave', 3, '4', false, true], // 4. terminated, switches to slave, manual switch back
    [master, 'ignore', undefined, 'succeed', 'master', 3, '5', false, false], // 5. succeeds, stays master
    [master, 'manual', undefined, 'succeed', 'master', 3, '6', false, false], // 6. succeeds, stays master
    [slave, 'fence', true, 'succeed', 'master', 4, 'fenced', false, false], // the peer fenced: take over
    [slave, 'fence', false, 'fail', 'slave', 3, 'fence-failed', false, false], // fencing failed: no split brain
    [master, 'fence', true, 'succeed', 'master', 3, 'fenced', false, false],
    [master, 'fence', false, 'fail', 'slave', 3, 'fence-failed', false, true], // as case 4: the peer may have taken over
  ];
  for (const [state, policy, fenced, write, role, epoch, which, until, manual] of table) {
    const label = `${state.role} + ${policy}${fenced === undefined ? '' : fenced ? ' (fenced)' : ' (fence failed)'}`;
    const d = decidePeerLoss(state, policy, fenced);
    if (d.action !== 'decided') {
      t.fail(label);
      continue;
    }
    t.deepEqual([d.write, d.state.role, d.state.epoch, d.case, d.untilSwitchedOrBack, d.needsManualSwitch], [write, role, epoch, which, until, manual], label);
    t.true(d.reason.length > 20, label);
    if (d.state.role === 'master' && state.role === 'slave') t.true(d.state.epoch > state.epoch, `${label}: a promotion bumps the epoch`);
  }
  t.deepEqual(decidePeerLoss(slave, 'fence'), { action: 'fence' }, 'a fence policy runs the command before deciding');
  t.deepEqual(decidePeerLoss(master, 'fence'), { action: 'fence' });
  t.deepEqual(slave, { role: 'slave', epoch: 3 }, 'nothing mutated');
});

const up = (role: CdpRole, epoch: number, owes?: PeerOwes): PeerView => (owes === undefined ? { reachable: true, state: { role, epoch } } : { reachable: true, state: { role, epoch }, owes });
const down: PeerView = { reachable: false, why: 'no heartbeat for 5 sec' };

test('role switches: never two masters while the peer answers; every promotion bumps the epoch past both', (t) => {
  // here, target, peer → ok, here after, peer told
  const table: [RoleState, CdpRole, PeerView, boolean, RoleState | null, RoleState | null, RegExp | null][] = [
    [slave, 'master', up('master', 3), false, null, null, /beta is master of auto-cdp:vm1 and answers: switching this copy to master would make two masters\. Switch beta's copy to slave first/],
    [slave, 'master', up('slave', 3), true, { role: 'master', epoch: 4 }, { role: 'slave', epoch: 4 }, null],
    [slave, 'master', down, true, { role: 'master', epoch: 4 }, null, null],
    [slave, 'master', up('slave', 7), false, null, null, /beta holds auto-cdp:vm1 at epoch 7, newer than this copy's \(3\)/],
    [{ role: 'slave', epoch: 7 }, 'master', up('slave', 5), true, { role: 'master', epoch: 8 }, { role: 'slave', epoch: 8 }, null],
    [master, 'slave', up('slave', 3), true, { role: 'slave', epoch: 3 }, { role: 'slave', epoch: 3 }, null],
    [master, 'slave', down, true, { role: 'slave', epoch: 3 }, null, null],
    [master, 'master', up('slave', 3), true, master, null, null],
    [master, 'master', up('master', 3), false, null, null, /Both copies of auto-cdp:vm1 are master/],
    [slave, 'slave', up('master', 3), true, slave, null, null],
    // what the peer's copy holds that this one lacks (its dirty map for it): a promotion only when nothing
    [slave, 'master', up('slave', 3, 0), true, { role: 'master', epoch: 4 }, { role: 'slave', epoch: 4 }, null],
    [slave, 'master', up('slave', 3, 4), false, null, null, /beta's copy of auto-cdp:vm1 holds 4 chunks this copy does not have yet .*would overwrite writes acknowledged there/],
    [slave, 'master', up('slave', 3, 1), false, null, null, /holds 1 chunk this copy/],
    [slave, 'master', up('slave', 3, null), false, null, null, /beta cannot tell which chunks of auto-cdp:vm1 this copy lacks/],
    [slave, 'master', up('slave', 3, 'running'), false, null, null, /beta's copy of auto-cdp:vm1 is slave but still mirrors as master .*Try again once beta's log says "stopped"\. Nothing was changed\./],
    [master, 'slave', up('slave', 3, 4), true, { role: 'slave', epoch: 3 }, { role: 'slave', epoch: 3 }, null],
  ];
  for (const [here, target, peer, ok, after, told, error] of table) {
    const label = `${here.role}@${here.epoch} → ${target}, peer ${peer.reachable ? `${peer.state.role}@${peer.state.epoch}` : 'down'}`;
    const plan = planRoleSwitch('vm1', 'beta', here, target, peer);
    t.is(plan.ok, ok, label);
    if (plan.ok) {
      t.deepEqual(plan.here, after, label);
      t.deepEqual(plan.peer, told, label);
      t.is(plan.change, after!.role !== here.role, label);
    } else {
      t.regex(plan.error, error!, label);
      t.regex(plan.error, /Nothing was changed\.$/, label);
    }
  }
  const forced = planRoleSwitch('vm1', 'beta', slave, 'master', down);
  t.true(forced.ok && /beta does not answer \(no heartbeat for 5 sec\).*orphan snapshot/.test(forced.warning ?? ''), 'a promotion with the peer away warns');
  const none = planRoleSwitch('vm1', 'beta', master, 'slave', up('slave', 3));
  t.true(none.ok && /with no master, writes to auto-cdp:vm1 fail on both copies/.test(none.warning ?? ''));
});

test('--all switches every mirror, or none when one would make two masters', (t) => {
  const mirrors = [
    { name: 'a', peerHost: 'beta', here: slave, peer: up('slave', 3) },
    { name: 'b', peerHost: 'beta', here: slave, peer: down },
  ];
  const all = planRoleSwitchAll(mirrors, 'master');
  t.true(all.ok);
  if (all.ok)
    t.deepEqual(
      all.plans.map((p) => [p.name, p.plan.here]),
      [
        ['a', { role: 'master', epoch: 4 }],
        ['b', { role: 'master', epoch: 4 }],
      ],
    );
  const refused = planRoleSwitchAll([...mirrors, { name: 'c', peerHost: 'gamma', here: slave, peer: up('master', 3) }], 'master');
  t.false(refused.ok);
  if (!refused.ok) t.regex(refused.error, /^No mirror was switched to master: gamma is master of auto-cdp:c and answers.*Nothing was changed\.$/);
});

test('return after a loss: the old master meets the newer epoch, keeps its writes as an orphan, becomes slave, resyncs partially', (t) => {
  const now = new Date('2026-12-06T22:30:00Z');
  // here, theirs, wrote while cut → kind, state after, orphan
  const table: [RoleState, RoleState, boolean, string, RoleState | null, string | null][] = [
    [master, { role: 'master', epoch: 4 }, true, 'demote', { role: 'slave', epoch: 4 }, 'orphan-vm1-20261206T223000Z'],
    [master, { role: 'master', epoch: 4 }, false, 'demote', { role: 'slave', epoch: 4 }, null],
    [slave, { role: 'master', epoch: 4 }, false, 'adopt', { role: 'slave', epoch: 4 }, null],
    [{ role: 'master', epoch: 4 }, master, true, 'peer-behind', null, null],
    [master, slave, false, 'resume', null, null],
    [slave, master, false, 'resume', null, null],
    [master, master, true, 'split-brain', null, null],
    [slave, slave, false, 'no-master', null, null],
  ];
  for (const [here, theirs, wrote, kind, state, orphan] of table) {
    const label = `${here.role}@${here.epoch} meets ${theirs.role}@${theirs.epoch}${wrote ? ', wrote while cut' : ''}`;
    const plan = planReturn('vm1', 'beta', here, theirs, wrote, now);
    t.is(plan.kind as string, kind, label);
    if (plan.kind === 'demote') {
      t.deepEqual([plan.state, plan.orphan, plan.resync], [state, orphan, 'partial'], label);
    } else if (plan.kind === 'adopt') {
      t.deepEqual([plan.state, plan.resync], [state, 'partial'], label);
    }
  }
  const demote = planReturn('vm1', 'beta', master, { role: 'master', epoch: 4 }, true, now);
  t.regex(demote.reason, /beta took over auto-cdp:vm1 at epoch 4 while this copy \(master at epoch 3\) was cut off: what this copy wrote meanwhile is kept as the snapshot @orphan-vm1-20261206T223000Z/);
});

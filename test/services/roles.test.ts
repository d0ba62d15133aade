/** The epoch rule and the settling of an interrupted hand-over: pure decisions, as a table (shared by auto-sync and auto-cdp). */
import test from 'ava';
import { epochRule, flip, settleHandOverRule, type EpochVerdict, type RoleView } from '../../src/services/roles.js';
import { fromPeerView, toPeerView } from '../../src/services/auto-sync/endpoints.js';
import type { AutoSyncConfig } from '../../src/services/auto-sync/model.js';

const v = (epoch: number, role: RoleView['role'], holdsSource: boolean): RoleView => ({ epoch, role, holdsSource });

test('epochRule: what meeting the peer means, from both views alone', (t) => {
  const rows: [string, RoleView, RoleView, EpochVerdict][] = [
    ['same epoch, one master holding the source: nothing to do', v(3, 'master', true), v(3, 'non-master', false), { kind: 'same' }],
    ['same epoch, the master pulls (remote-to-local): nothing to do', v(3, 'master', false), v(3, 'non-master', true), { kind: 'same' }],
    ['peer ahead, we were the destination: take its view, nothing rolled back', v(3, 'non-master', false), v(4, 'master', true), { kind: 'adopt', demote: false }],
    ['peer ahead after disaster recovery, we still hold the source: demote (orphan, roll back)', v(3, 'master', true), v(4, 'master', true), { kind: 'adopt', demote: true }],
    ['peer ahead and it is the destination now: adopt, our copy stays the source', v(3, 'non-master', true), v(4, 'master', false), { kind: 'adopt', demote: false }],
    ['we are ahead, the peer still writes to its source: nothing is sent into it', v(4, 'master', true), v(3, 'master', true), { kind: 'peer-behind' }],
    ['we are ahead, the peer is a destination: nothing to do (it adopts ours)', v(4, 'master', true), v(3, 'master', false), { kind: 'same' }],
    ['same epoch, both master: split brain if both wrote', v(5, 'master', true), v(5, 'master', false), { kind: 'split-brain-if-both-wrote' }],
    ['same epoch, both hold the source: split brain if both wrote', v(5, 'non-master', true), v(5, 'master', true), { kind: 'split-brain-if-both-wrote' }],
    ['same epoch, both non-master, neither the source: nothing to do', v(5, 'non-master', false), v(5, 'non-master', false), { kind: 'same' }],
  ];
  for (const [label, ours, theirs, verdict] of rows) t.deepEqual(epochRule(ours, theirs), verdict, label);
});

test('settleHandOverRule: the epoch that moved past the journal committed it', (t) => {
  const rows: [string, number, number, number | null, ReturnType<typeof settleHandOverRule>][] = [
    ['ours moved: it committed here, finish it', 7, 8, 7, 'here'],
    ['ours moved, the peer too: ours decides (it was written last)', 7, 8, 8, 'here'],
    ['the peer moved: it committed there, take its view', 7, 7, 8, 'peer'],
    ['neither moved: undo', 7, 7, 7, 'undo'],
    ['the peer has no copy: undo', 7, 7, null, 'undo'],
  ];
  for (const [label, journaled, ours, theirs, verdict] of rows) t.is(settleHandOverRule(journaled, ours, theirs), verdict, label);
});

test('flip, and a config through the peer and back is the same config', (t) => {
  t.is(flip('master'), 'non-master');
  t.is(flip('non-master'), 'master');
  const ours = { name: 'tank-docs-000', source: { host: 'localhost', dataset: 'fs:tank/docs' }, destination: { host: 'beta', dataset: 'fs:backup/docs' }, direction: 'local-to-remote', role: 'master', epoch: 2 } as AutoSyncConfig;
  const theirs = toPeerView(ours, 'alpha');
  t.deepEqual([theirs.source, theirs.destination, theirs.direction, theirs.role], [{ host: 'alpha', dataset: 'fs:tank/docs' }, { host: 'localhost', dataset: 'fs:backup/docs' }, 'remote-to-local', 'non-master']);
  t.deepEqual(fromPeerView(theirs, 'beta'), ours);
});

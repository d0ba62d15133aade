/** Maintenance as data: each kind names its own fix; reasons written by older versions are read back with their kind. */
import test from 'ava';
import { maintenance, maintenanceHint, upgradeMaintenance } from '../../src/services/auto-sync/maintenance.js';

test('each kind of maintenance names the command that fixes it', (t) => {
  const table = [
    ['broken-chain', 'setup auto-sync :a-000 resync'],
    ['not-a-seed', 'setup auto-sync :a-000 resync'],
    ['split-brain', 'setup auto-sync :a-000 resolve-split-brain'],
    ['other', 'setup auto-sync :a-000 enable'],
  ] as const;
  for (const [kind, fix] of table) {
    const m = maintenance(kind, 'a-000', 'Why.');
    t.is(m.fix, fix, kind);
    t.true(maintenanceHint(m).startsWith(`Run '${fix}'`), kind);
  }
});

test('a reason stored as text by an older version gets its kind back', (t) => {
  t.is(upgradeMaintenance(null, 'a-000'), null);
  t.like(upgradeMaintenance('Split brain: both appliances are master.', 'a-000'), { kind: 'split-brain', fix: 'setup auto-sync :a-000 resolve-split-brain' });
  t.like(upgradeMaintenance('Broken chain: no snapshot in common between source and destination.', 'a-000'), { kind: 'broken-chain' });
  t.like(upgradeMaintenance('The operator said so.', 'a-000'), { kind: 'other', reason: 'The operator said so.' });
  const stored = maintenance('other', 'a-000', 'x');
  t.is(upgradeMaintenance(stored, 'a-000'), stored);
});

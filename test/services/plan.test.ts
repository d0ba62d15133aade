/** planRun: every decision a run makes, from the facts alone (a table, as zrepl tests logic/diff). */
import test from 'ava';
import { planRun, type RunFacts } from '../../src/services/auto-sync/plan.js';
import type { SnapshotInfo } from '../../src/services/storage/driver.js';

const snap = (name: string, id = name): SnapshotInfo => ({ dataset: 'd', name, id, createdAt: new Date(0), held: false });
const base: RunFacts = {
  source: 'zfs:psrc/src',
  destination: 'zfs:pdst/dst',
  srcSnapshots: [snap('a'), snap('b')],
  dstExists: true,
  dstSnapshots: [snap('a')],
  everSynced: true,
  resync: false,
  force: false,
  dstChanged: false,
  brokenChildren: [],
};

test('planRun decides every case from the facts', (t) => {
  const rows: [string, Partial<RunFacts>, string, RegExp?][] = [
    ['no destination yet: full', { dstExists: false, dstSnapshots: [] }, 'full'],
    ['a common snapshot: incremental from it', {}, 'incremental'],
    ['common by identity, not by name', { dstSnapshots: [snap('a', 'other-guid')] }, 'broken-chain', /has 1 snapshot\(s\) but none in common/],
    ['every destination snapshot destroyed after a sync: broken chain, not "needs force"', { dstSnapshots: [] }, 'broken-chain', /has no snapshot left/],
    ['first run into an existing empty dataset: the driver decides', { dstSnapshots: [], everSynced: false }, 'full'],
    ['no common, resync: the old destination goes aside', { dstSnapshots: [], resync: true }, 'resync-aside'],
    ['written to since the common snapshot: refused', { dstChanged: true }, 'refused', /was written to since its last received snapshot/],
    ['written to, force: incremental', { dstChanged: true, force: true }, 'incremental'],
    [
      'a child lost its marker on the source: that child is broken, not "written to"',
      { dstChanged: true, brokenChildren: [{ child: '2', missingOn: 'source' }] },
      'broken-chain',
      /^The chain of the child 2 \(missing on the source\) is broken: it lacks the common snapshot @a, the rest of zfs:psrc\/src is intact\.$/,
    ],
    ['a broken child, resync: only that child starts over', { brokenChildren: [{ child: '2', missingOn: 'source' }], resync: true }, 'resync-children'],
  ];
  for (const [label, facts, kind, reason] of rows) {
    const plan = planRun({ ...base, ...facts });
    t.is(plan.kind as string, kind, label);
    if (reason) t.regex('reason' in plan ? plan.reason : '', reason, label);
  }
  const plan = planRun({ ...base, brokenChildren: [{ child: '2', missingOn: 'source' }], resync: true });
  t.deepEqual(plan.kind === 'resync-children' ? [plan.children, plan.base.name] : null, [['2'], 'a']);
});

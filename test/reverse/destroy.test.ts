/**
 * Issue 10, item 4: destroying a reverse-capable service removes both
 * copies (it asks, naming the other appliance); with the other appliance
 * down it says so, and the copy there goes at its next contact: a tombstone
 * carried by epoch, so the destroyed service never comes back through
 * reverse-direction (or a stale config put) from the other side.
 */
import test from 'ava';
import { toPeerView } from '../../src/services/auto-sync/endpoints.js';
import { ServiceLog } from '../../src/services/service-log.js';
import { filesOf, reversePair } from './_pair.js';

test.serial('destroy asks naming the other appliance, and removes both copies; data and snapshots stay, released', async (t) => {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  const noTty = await p.a.cli(`destroy auto-sync :${p.name}`);
  t.not(noTty.exitCode, 0);
  t.regex(String(noTty.stderr), new RegExp(`Destroy auto-sync service 'auto-sync:${p.name}' here and its copy on beta\\?`));
  t.truthy(p.fresh(p.b).autoSync.store.get(p.name), 'nothing changed without an answer');

  const r = await p.a.cli(`destroy auto-sync :${p.name} -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /Destroyed auto-sync:tank-docs-000; \d+ marker snapshot\(s\) kept\. Its copy on beta was removed too\./);
  t.is(p.fresh(p.a).autoSync.store.get(p.name), undefined);
  t.is(p.fresh(p.b).autoSync.store.get(p.name), undefined);
  t.is((await filesOf(p, p.b))['a.txt'], 'one\n', "beta's data stays");
  const fsB = await p.fresh(p.b).storage.usable('fs');
  const markers = (await fsB.listSnapshots('tank/docs')).filter((s) => s.name.startsWith('syncsh-'));
  t.true(markers.length > 0);
  t.true(
    markers.every((s) => !s.held),
    'released, so they can be destroyed by hand',
  );
  const again = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.regex(String(again.stderr), /No auto-sync service named ':tank-docs-000'/);
});

test.serial('the other appliance down: destroy says so; the copy there goes at its next contact and cannot bring the service back', async (t) => {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  const stale = p.fresh(p.b).autoSync.config(p.name);
  p.down(p.b);
  const r = await p.a.cli(`destroy auto-sync :${p.name} -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /beta cannot be reached \(.+\): its copy of auto-sync:tank-docs-000 is removed at its next contact with this appliance, and cannot bring the service back\./);
  t.is(p.fresh(p.a).autoSync.store.get(p.name), undefined);
  t.truthy(p.fresh(p.b).autoSync.store.get(p.name), 'beta was down: its copy is still there');
  p.up(p.b);

  // beta's old copy may not be put back on alpha (a hand-over from beta would do that)
  await t.throwsAsync(p.fresh(p.b).peers.peerSide('alpha').putConfig(toPeerView(stale, 'beta')), { message: /auto-sync:tank-docs-000 was destroyed on alpha .*it is not created again/ });
  // reverse-direction on beta, alpha up: the contact finishes the destroy instead of re-creating the service on alpha
  const rd = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.not(rd.exitCode, 0, `${rd.stdout}${rd.stderr}`);
  t.regex(String(rd.stderr), /auto-sync:tank-docs-000 was destroyed on alpha: its copy on this appliance was removed too \(data and snapshots kept\)\. Nothing was run\./);
  t.is(p.fresh(p.b).autoSync.store.get(p.name), undefined);
  t.is(p.fresh(p.a).autoSync.store.get(p.name), undefined, 'the service did not come back on alpha');
  t.is((await filesOf(p, p.b))['a.txt'], 'one\n');
  t.regex((await ServiceLog.forService(p.b.services.home.logs, p.name).all()).join('\n'), /Destroyed auto-sync:tank-docs-000: auto-sync:tank-docs-000 was destroyed on alpha at .*; this copy goes too/);
});

test.serial("the daemon's contact finishes it too; a new service of the same name is another service", async (t) => {
  const p = await reversePair(t);
  p.down(p.b);
  t.is((await p.a.cli(`destroy auto-sync :${p.name} -y`)).exitCode, 0);
  p.up(p.b);
  t.is(await p.fresh(p.b).autoSync.contact(p.name), 'destroyed');
  t.is(p.fresh(p.b).autoSync.store.get(p.name), undefined);
  // created again on alpha: a new service, not buried by the old tombstone
  const c = await p.a.cli('create auto-sync --from-fs fs:tank/docs --to-host beta --to-fs fs:tank/docs2 --recursive no --reverse-capable yes -y');
  t.is(c.exitCode, 0, String(c.stderr));
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'non-master', epoch: 1 });
});

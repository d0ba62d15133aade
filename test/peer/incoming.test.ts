/**
 * Issue 10, item 9: the destination appliance of an ordinary (not
 * reverse-capable) service lists it in `show auto-sync`, read-only and
 * marked as received, with its receive trail (`history`) and `status`, as
 * Rockstor's Receive screen lists every incoming replication; destroyed on
 * the source, it is no longer listed.
 */
import test from 'ava';
import { Fixture, folderWith, makeAppliance } from './_fixture.js';

test('a received service is listed on the destination, read-only, with its trail and status', async (t) => {
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha');
  const b = makeAppliance(f, 'beta');
  await folderWith(a, 'tank/docs', { 'x.txt': 'x\n' });
  await folderWith(b, 'tank', {});
  const bind = await a.cli(`setup network local-bind ${b.home}`);
  t.is(bind.exitCode, 0, String(bind.stderr));
  const c = await a.cli('create auto-sync --from-fs fs:tank/docs --to-host beta --to-fs fs:tank/copy --recursive no -y');
  t.is(c.exitCode, 0, String(c.stderr));
  const run = await a.cli('run auto-sync :tank-docs-000');
  t.is(run.exitCode, 0, String(run.stderr));

  const list = await b.cli('show auto-sync');
  t.is(list.exitCode, 0, String(list.stderr));
  t.regex(String(list.stdout), /tank-docs-000\s+alpha:fs:tank\/docs\s+fs:tank\/copy\s+remote-to-local\s+.*received\s+received from alpha/);
  const json = JSON.parse(String((await b.cli('show auto-sync --json')).stdout)) as { name: string; receivedFrom: string | null; run: { lastResult: string } }[];
  t.like(
    json.find((s) => s.name === 'tank-docs-000'),
    { receivedFrom: 'alpha', run: { lastResult: 'success' } },
  );

  const history = await b.cli('show auto-sync :tank-docs-000 history');
  t.is(history.exitCode, 0, String(history.stderr));
  t.regex(String(history.stdout), /receive\s+alpha\s+success/);
  const status = await b.cli('show auto-sync :tank-docs-000 status --json');
  t.is(status.exitCode, 0, String(status.stderr));
  t.like(JSON.parse(String(status.stdout)), { service: 'tank-docs-000', status: 'up' });
  t.regex(String((await b.cli('show auto-sync :tank-docs-000')).stdout), /received_from\s+: alpha \(it runs the service; read-only here\)/);

  for (const line of ['run auto-sync :tank-docs-000', 'setup auto-sync :tank-docs-000 disable', 'destroy auto-sync :tank-docs-000 -y']) {
    const r = await b.cli(line);
    t.not(r.exitCode, 0, line);
    t.regex(String(r.stderr), /auto-sync:tank-docs-000 is received from alpha, which runs it: it is read-only here/, line);
  }

  t.is((await a.cli('destroy auto-sync :tank-docs-000 -y')).exitCode, 0);
  t.notRegex(String((await b.cli('show auto-sync')).stdout), /tank-docs-000/);
});

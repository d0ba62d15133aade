/**
 * Issue 10, messages: `show snapshot` ties a marker to a service only when
 * that service is this appliance's (or received here) and has a copy on
 * that dataset; the markers of another appliance home sharing the pools
 * (as zfs and btrfs pools are shared by every home on a machine; here two
 * homes on one fs root) are marked foreign, not tied to a service that
 * does not exist here.
 */
import test from 'ava';
import path from 'node:path';
import { Fixture, folderWith, makeAppliance } from './_fixture.js';

test('markers of a service of another home on the same pools are marked foreign', async (t) => {
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha');
  const g = makeAppliance(f, 'gamma');
  await folderWith(a, 'tank/docs', { 'x.txt': 'x\n' });
  const c = await a.cli('create auto-sync --from-fs fs:tank/docs --to-fs fs:tank/copy --recursive no -y');
  t.is(c.exitCode, 0, String(c.stderr));
  t.is((await a.cli('run auto-sync :tank-docs-000')).exitCode, 0);

  // the fs pools only: zfs and btrfs pools of tests running meanwhile are on this machine too
  const fsOnly = { SYNCSH_DRIVERS: 'fs' };
  const own = await a.cli('show snapshot', fsOnly);
  t.regex(String(own.stdout), /fs:tank\/docs@syncsh-tank-docs-000-\S+.*auto-sync:tank-docs-000/);
  t.notRegex(String(own.stdout), /foreign/);

  // gamma's home of its own, on alpha's pools
  const shared = { ...fsOnly, SYNCSH_FS_ROOT: path.join(a.home, 'fs') };
  const theirs = await g.cli('show snapshot', shared);
  t.is(theirs.exitCode, 0, String(theirs.stderr));
  t.regex(String(theirs.stdout), /fs:tank\/docs@syncsh-tank-docs-000-\S+.*foreign \(tank-docs-000: no such service here\)/);
  t.notRegex(String(theirs.stdout), /auto-sync:tank-docs-000/);
  const json = JSON.parse(String((await g.cli('show snapshot --json', shared)).stdout)) as { service: string | null; foreign: string | null }[];
  t.true(json.length > 0);
  t.true(json.every((s) => s.service === null && s.foreign === 'tank-docs-000'));
});

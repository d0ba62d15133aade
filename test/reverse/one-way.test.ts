/**
 * Issue 10, item 2 and its messages: appliances bound one way only. A
 * reverse-capable service needs both to reach each other, so creating or
 * enabling one says so (and changes nothing) until the other binds back;
 * and reverse-direction on the non-master, with the master up but not bound
 * from there (or having forgotten this appliance), is refused with what to
 * do, never turned into a disaster recovery.
 */
import test from 'ava';
import { logOf, reversePair } from './_pair.js';
import { folderWith } from '../peer/_fixture.js';

test.serial('bound one way: create --reverse-capable yes and enabling later are refused, naming the bind-back command; nothing changes', async (t) => {
  const p = await reversePair(t, undefined, { oneWay: true });
  t.false(p.fresh(p.a).autoSync.config(p.name).reverseCapable);
  await folderWith(p.a, 'tank/more', { 'm.txt': 'more\n' });
  const create = await p.a.cli('create auto-sync --from-fs fs:tank/more --to-host beta --to-fs fs:tank/more --recursive no --reverse-capable yes -y');
  t.not(create.exitCode, 0);
  const bindBack = `'setup network local-bind ${p.a.home}'`;
  t.true(String(create.stderr).includes(`beta cannot reach this appliance (alpha) back: beta is not bound to alpha (alpha is bound to beta, not the other way round).`), String(create.stderr));
  t.true(String(create.stderr).includes(`Bind back on beta with ${bindBack}, then run this again. Nothing was changed.`), String(create.stderr));
  t.deepEqual(p.fresh(p.a).autoSync.names(), [p.name], 'no service was created');
  t.deepEqual(p.fresh(p.b).autoSync.names(), []);

  const enable = await p.a.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.not(enable.exitCode, 0);
  t.regex(String(enable.stderr), /beta cannot reach this appliance \(alpha\) back/);
  t.false(p.fresh(p.a).autoSync.config(p.name).reverseCapable);
  t.is(p.fresh(p.b).autoSync.store.get(p.name), undefined);

  // the command it named, run on beta, is all it takes
  const back = await p.b.cli(bindBack.slice(1, -1));
  t.is(back.exitCode, 0, String(back.stderr));
  const again = await p.a.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.is(again.exitCode, 0, String(again.stderr));
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'non-master', reverseCapable: true, epoch: 1 });
});

test.serial('on the non-master, no binding to the master (it is up): a specific error, no disaster recovery', async (t) => {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  // beta forgets its own binding to alpha (alpha's to beta stays)
  await p.fresh(p.b).peers.store.removeOutbound('alpha');
  const r = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.not(r.exitCode, 0);
  const err = String(r.stderr);
  t.regex(err, /This appliance cannot ask alpha whether it is up: The appliance "alpha" is not bound to this one \(alpha is bound to this one, but this one is not bound to alpha/);
  t.regex(err, /bind it with 'setup network local-bind DIR' \(DIR: the home of alpha on this machine\)/);
  t.regex(err, /Nothing was changed: reverse-direction takes over from alpha only when it cannot be reached\./);
  t.notRegex(err + String(r.stdout), /IMPORTANT!|Reversed direction/);
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'non-master', epoch: 1 });
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'master', epoch: 1 });
  t.false((await logOf(p, p.b)).includes('remote appliance: down'));
  // the same for a service created towards it: not "no appliance is bound to this one"
  await folderWith(p.b, 'tank/mine', { 'x.txt': 'x\n' });
  const c = await p.b.cli('create auto-sync --from-fs fs:tank/mine --to-host alpha --to-fs fs:tank/mine -y');
  t.not(c.exitCode, 0);
  t.regex(String(c.stderr), /The destination host "alpha" is not a bound appliance \(alpha is bound to this one, but this one is not bound to alpha.*bind it with 'setup network local-bind DIR'/);
  t.notRegex(String(c.stderr), /no appliance is bound to this one/);
});

test.serial('on the non-master, the master forgot this appliance: "alpha does not know this appliance", with local-bind named, no disaster recovery', async (t) => {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  await p.fresh(p.a).peers.store.removeInbound('beta');
  const r = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.not(r.exitCode, 0);
  const err = String(r.stderr);
  t.true(err.includes(`alpha does not know this appliance: the appliance beta is not bound to alpha. Bind it again with 'setup network local-bind ${p.a.home}'.`), err);
  t.notRegex(err, /ssh-bind/);
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'non-master', epoch: 1 });
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'master', epoch: 1 });
  t.false((await logOf(p, p.b)).includes('remote appliance: down'));
});

test.serial('create prints a remote end as HOST:DATASET, as show auto-sync does', async (t) => {
  const p = await reversePair(t, undefined, { oneWay: true });
  await folderWith(p.a, 'tank/more', { 'm.txt': 'more\n' });
  const c = await p.a.cli('create auto-sync --from-fs fs:tank/more --to-host beta --to-fs fs:tank/more-copy --recursive no -y');
  t.is(c.exitCode, 0, String(c.stderr));
  t.regex(String(c.stdout), /Created auto-sync:tank-more-000: fs:tank\/more => beta:fs:tank\/more-copy, /);
  t.regex(String((await p.a.cli('show auto-sync')).stdout), /tank-more-000\s+fs:tank\/more\s+beta:fs:tank\/more-copy/);
});

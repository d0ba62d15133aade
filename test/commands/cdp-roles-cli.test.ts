/** `setup auto-cdp :NAME role …` and `setup auto-cdp role … --all` through the CLI, two appliances bound both ways with local-bind. */
import test from 'ava';
import { fails, ok, Fixture, makeAppliance, type Appliance } from '../peer/_fixture.js';

const copy = async (x: Appliance) => JSON.parse(await ok(x, 'show auto-cdp :tank-vm1-000 --json')).config as { role: string; epoch: number; master: { host: string } | null; targets: { host: string }[] };

test('role switches never make two masters while the peer answers; a promotion bumps the epoch and the peer learns it', async (t) => {
  t.timeout(8 * 60_000); // many CLI processes on a shared machine
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha', { SYNCSH_DRIVERS: 'fs' });
  const b = makeAppliance(f, 'beta', { SYNCSH_DRIVERS: 'fs' });
  await ok(a, 'create folder fs:tank');
  await ok(b, 'create folder fs:tank');
  await ok(a, `setup network local-bind ${b.home}`);
  await ok(b, `setup network local-bind ${a.home}`);
  await ok(a, 'create zvol fs:tank/vm1 --size 16M');
  // a peer's answer takes a new agent process: on a loaded machine that is more than the default 5 s
  await ok(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode sync --peer-timeout 60 -y');

  t.is(
    await fails(b, 'setup auto-cdp :tank-vm1-000 role master -y'),
    "Error: alpha is master of auto-cdp:tank-vm1-000 and answers: switching this copy to master would make two masters. Switch alpha's copy to slave first ('setup auto-cdp :tank-vm1-000 role slave' there). Nothing was changed.",
  );
  t.like(await copy(b), { role: 'slave', epoch: 1 });
  t.regex(await ok(a, 'setup auto-cdp :tank-vm1-000 role master -y'), /is master here already \(epoch 1\); nothing was changed/);
  t.regex(await fails(a, 'setup auto-cdp :tank-vm1-000 role slave'), /Switch auto-cdp:tank-vm1-000 to slave here\?/, 'no terminal and no -y: refused');
  t.regex(await fails(a, 'setup auto-cdp :tank-vm1-000 role boss -y'), /master or slave, not "boss"/);
  t.regex(await fails(a, 'setup auto-cdp role slave -y'), /switches every mirror: say so with --all/);
  t.like(await copy(a), { role: 'master', epoch: 1 });

  t.regex(await ok(a, 'setup auto-cdp :tank-vm1-000 role slave -y'), /is now slave here \(epoch 1\)\. beta is slave too: with no master, writes to auto-cdp:tank-vm1-000 fail on both copies/);
  t.like(await copy(a), { role: 'slave', epoch: 1, master: { host: 'beta' }, targets: [] });

  t.regex(await ok(b, 'setup auto-cdp :tank-vm1-000 role master -y'), /auto-cdp:tank-vm1-000 is now master here \(epoch 2\)\.$/m);
  t.like(await copy(b), { role: 'master', epoch: 2, master: null, targets: [{ host: 'alpha' }] });
  t.like(await copy(a), { role: 'slave', epoch: 2, master: { host: 'beta' } }, 'the peer learnt the new epoch and its master');
  t.regex(await fails(a, 'setup auto-cdp :tank-vm1-000 role master -y'), /beta is master of auto-cdp:tank-vm1-000 and answers/);

  t.regex(await ok(b, 'setup auto-cdp role slave --all -y'), /tank-vm1-000 is now slave here \(epoch 2\)/);
  t.regex(await ok(a, 'setup auto-cdp role master --all -y'), /tank-vm1-000 is now master here \(epoch 3\)/);
  t.like(await copy(b), { role: 'slave', epoch: 3, master: { host: 'alpha' } });
  t.regex(await ok(a, 'show auto-cdp :tank-vm1-000 log'), /Role switched to master at epoch 3 \(was slave at epoch 2\); peer beta is slave/);
});

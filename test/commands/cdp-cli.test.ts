/**
 * auto-cdp commands through the real CLI with a peer bound by local-bind:
 * create (the peer gets the zvol and its slave copy), show (table, record,
 * --json), mode, property, pause/resume, logtail, destroy on both sides
 * (the zvols stay); and bad input, each with its own sentence and nothing
 * changed on either appliance.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { fails, ok, Fixture, makeAppliance } from '../peer/_fixture.js';

const MiB = 1024 * 1024;

/** alpha bound to beta with local-bind, each with the fs pool tank */
async function boundPair(t: ExecutionContext) {
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha', { SYNCSH_DRIVERS: 'fs' });
  const b = makeAppliance(f, 'beta', { SYNCSH_DRIVERS: 'fs' });
  await ok(a, 'create folder fs:tank');
  await ok(b, 'create folder fs:tank');
  await ok(a, `setup network local-bind ${b.home}`);
  return { a, b };
}

test('create, show, mode, property, pause/resume and destroy a mirror; the peer holds the slave copy and the zvol', async (t) => {
  t.timeout(8 * 60_000); // many CLI processes on a shared machine
  const { a, b } = await boundPair(t);
  await ok(a, 'create zvol fs:tank/vm1 --size 64M');
  t.regex(await ok(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode sync -y'), /Created auto-cdp:tank-vm1-000: fs:tank\/vm1 => beta:fs:tank\/vm1, sync\./);
  // the peer got a zvol of the same size, and its copy of the mirror as slave
  t.like(JSON.parse(await ok(b, 'show zvol fs:tank/vm1 --json')), { size: 64 * MiB });
  const slave = JSON.parse(await ok(b, 'show auto-cdp :tank-vm1-000 --json'));
  t.like(slave.config, { name: 'tank-vm1-000', zvol: 'fs:tank/vm1', role: 'slave', mode: 'sync', master: { host: 'alpha', zvol: 'fs:tank/vm1' }, targets: [] });
  const master = JSON.parse(await ok(a, 'show auto-cdp :tank-vm1-000 --json'));
  t.like(master.config, { role: 'master', epoch: 1, size: 64 * MiB, targets: [{ host: 'beta', zvol: 'fs:tank/vm1', state: 'syncing', paused: false, fullSync: 'all' }] });
  t.is(master.config.createdAt, slave.config.createdAt);
  t.regex(await ok(a, 'show auto-cdp'), /tank-vm1-000\s+fs:tank\/vm1\s+master\s+beta:fs:tank\/vm1\s+sync\s+beta: syncing 0%/);
  t.regex(await ok(b, 'show auto-cdp'), /tank-vm1-000\s+fs:tank\/vm1\s+slave\s+alpha:fs:tank\/vm1\s+sync\s+slave/);
  t.regex(await ok(a, 'show auto-cdp :tank-vm1-000'), /role\s+: master \(epoch 1\)/);

  t.regex(await ok(a, 'setup auto-cdp :tank-vm1-000 mode async'), /is now async\./);
  t.is(JSON.parse(await ok(b, 'show auto-cdp :tank-vm1-000 --json')).config.mode, 'async');
  await ok(a, 'setup auto-cdp :tank-vm1-000 property description the build VM');
  t.is(JSON.parse(await ok(b, 'show auto-cdp :tank-vm1-000 --json')).config.description, 'the build VM');
  // --peer-timeout is the mirror's property, on both copies (each one's heartbeat uses its own)
  t.regex(await ok(a, 'show auto-cdp :tank-vm1-000'), /peer timeout\s+: 5 sec/);
  await ok(a, 'setup auto-cdp :tank-vm1-000 property peer_timeout 2.5');
  for (const x of [a, b]) t.is(JSON.parse(await ok(x, 'show auto-cdp :tank-vm1-000 --json')).config.peerTimeoutMs, 2500);
  t.regex(await ok(b, 'show auto-cdp :tank-vm1-000'), /peer timeout\s+: 2.5 sec/);
  for (const bad of ['0', '301', 'soon', '-2']) {
    t.is(await fails(a, `setup auto-cdp :tank-vm1-000 property peer_timeout ${bad}`), `Error: The value of peer_timeout of auto-cdp:tank-vm1-000 is a number of seconds from 1 to 300, not "${bad}".`);
  }
  t.is(JSON.parse(await ok(a, 'show auto-cdp :tank-vm1-000 --json')).config.peerTimeoutMs, 2500, 'a bad value changed nothing');
  t.regex(await ok(a, 'setup auto-cdp :tank-vm1-000 pause beta'), /paused to beta/);
  t.regex(await ok(a, 'show auto-cdp'), /beta: paused/);
  t.is(await fails(a, 'setup auto-cdp :tank-vm1-000 pause'), 'Error: auto-cdp:tank-vm1-000 is already paused to beta.');
  t.regex(await ok(a, 'setup auto-cdp :tank-vm1-000 resume'), /resumed to beta/);
  t.like(JSON.parse(await ok(a, 'show auto-cdp :tank-vm1-000 --json')).config.targets[0], { paused: false });
  const log = await ok(a, 'show auto-cdp :tank-vm1-000 logtail');
  t.regex(log, /Created auto-cdp:tank-vm1-000/);
  t.regex(log, /Mode changed from sync to async/);
  t.regex(log, /Resumed mirroring to beta/);

  // a mirrored zvol is neither destroyed nor grown on either side while the mirror stands
  for (const x of [a, b]) {
    t.is(await fails(x, 'destroy zvol fs:tank/vm1 -y'), 'Error: The zvol fs:tank/vm1 is mirrored by auto-cdp:tank-vm1-000; destroy that mirror first (its zvols stay).');
    t.regex(await fails(x, 'setup zvol fs:tank/vm1 size 128M'), /is mirrored by auto-cdp:tank-vm1-000, whose copies must keep one size/);
    t.like(JSON.parse(await ok(x, 'show zvol fs:tank/vm1 --json')), { size: 64 * MiB });
  }

  t.regex(await ok(a, 'destroy auto-cdp :tank-vm1-000 -y'), /Destroyed auto-cdp:tank-vm1-000; the zvols stay\.$/m);
  t.regex(await ok(a, 'show auto-cdp'), /No auto-cdp services/);
  t.regex(await ok(b, 'show auto-cdp'), /No auto-cdp services/);
  t.truthy(JSON.parse(await ok(a, 'show zvol fs:tank/vm1 --json')));
  t.truthy(JSON.parse(await ok(b, 'show zvol fs:tank/vm1 --json')));
});

test('bad input: each a specific sentence naming the value, nothing changed on either appliance', async (t) => {
  t.timeout(8 * 60_000);
  const { a, b } = await boundPair(t);
  await ok(a, 'create zvol fs:tank/vm1 --size 64M');
  await ok(a, 'create zvol fs:tank/vm2 --size 64M');
  await ok(b, 'create zvol fs:tank/small --size 32M');
  await ok(b, 'create zvol fs:tank/full --size 64M');
  const fs = await b.services.storage.usable('fs');
  const vol = await fs.openVolume!('tank/full');
  await vol.write(MiB, randomBytes(MiB), { fua: true });
  await vol.close();
  const zvolsA = await ok(a, 'show zvol --json');
  const zvolsB = await ok(b, 'show zvol --json');

  t.is(await fails(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host gamma --mode sync -y'), "Error: Cannot mirror to gamma: the bound appliances are beta (local): bind it with 'setup network ssh-bind gamma'.");
  t.is(await fails(a, 'create auto-cdp --zvol fs:tank/nope --to-host beta --mode sync -y'), 'Error: The zvol fs:tank/nope does not exist.');
  t.is(await fails(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode sync --peer-timeout 0.2 -y'), 'Error: The value of --peer-timeout is a number of seconds from 1 to 300, not "0.2".');
  t.is(await fails(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode fast -y'), 'Error: The value of --mode is sync or async, not "fast".');
  t.is(await fails(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta -y'), "Error: 'create auto-cdp' needs --mode when there is no terminal to ask on.");
  t.is(await fails(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host alpha --mode sync -y'), 'Error: auto-cdp mirrors to another appliance: "alpha" is this one.');
  t.is(
    await fails(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --to-zvol fs:tank/small --mode sync -y'),
    'Error: On beta: The zvol fs:tank/small is 33554432 bytes, the mirrored zvol fs:tank/vm1 67108864: a target must have the same size.',
  );
  t.regex(
    await fails(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --to-zvol fs:tank/full --mode sync -y'),
    /^Error: On beta: The zvol fs:tank\/full holds data \(\d+ bytes used\): a full sync would overwrite it\. Give --no-full-sync to keep it as the base \(only differing chunks are sent\), or choose another --to-zvol\.$/,
  );
  t.is(await ok(a, 'show zvol --json'), zvolsA);
  t.is(await ok(b, 'show zvol --json'), zvolsB);
  t.regex(await ok(a, 'show auto-cdp'), /No auto-cdp services/);
  t.regex(await ok(b, 'show auto-cdp'), /No auto-cdp services/);

  // a target with data is taken with --no-full-sync (its hashes are compared first)
  t.regex(await ok(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --to-zvol fs:tank/full --mode async --no-full-sync -y'), /comparing chunk hashes first/);
  t.is(await fails(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode sync -y'), 'Error: The zvol fs:tank/vm1 is already mirrored by auto-cdp:tank-vm1-000 (master); a zvol is in one mirror at most.');
  t.is(
    await fails(a, 'create auto-cdp --zvol fs:tank/vm2 --to-host beta --to-zvol fs:tank/full --mode sync --no-full-sync -y'),
    'Error: On beta: The zvol fs:tank/full is already in auto-cdp:tank-vm1-000 (slave); a zvol is in one mirror at most.',
  );
  t.is(await fails(a, 'show auto-cdp :tank-vm9-000'), "Error: No auto-cdp service named ':tank-vm9-000'. Did you mean ':tank-vm1-000'?");
  t.is(await fails(a, 'setup auto-cdp :tank-vm1-000 mode async'), 'Error: auto-cdp:tank-vm1-000 is already in async mode.');
  t.is(await fails(a, 'setup auto-cdp :tank-vm1-000 pause gamma'), 'Error: auto-cdp:tank-vm1-000 has no target on "gamma" (its targets: beta).');
  t.is(await fails(a, 'setup auto-cdp :tank-vm1-000 property colour red'), 'Error: An auto-cdp service has no property "colour": use description, peer_timeout (and \'setup auto-cdp :tank-vm1-000 mode sync|async\' for the mode).');
  t.is(await fails(b, 'destroy auto-cdp :tank-vm1-000 -y'), "Error: auto-cdp:tank-vm1-000 is the slave copy of alpha's mirror: destroy it there (the copy here goes with it).");
  t.is(await fails(b, 'setup auto-cdp :tank-vm1-000 mode sync'), "Error: auto-cdp:tank-vm1-000 is the slave copy of alpha's mirror: change its mode there.");
  t.is(JSON.parse(await ok(b, 'show auto-cdp :tank-vm1-000 --json')).config.mode, 'async');
});

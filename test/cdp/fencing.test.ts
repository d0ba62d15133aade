/**
 * Peer loss on the master's write path, end to end: two appliances bound
 * with local-bind, each running `syncsh daemon`, a sync mirror, the
 * target's daemon killed (kill -9), a real NBD client (qemu-io) writing on
 * the master's export. 003_… "Fencing Failures": master + no fencing → the
 * write fails (EIO, nothing written) and the master steps down to slave;
 * master + a fence command that exits 0 → the write succeeds, master stays;
 * master + ignore → the write succeeds, master stays (the dirty map has it).
 * A target whose daemon is frozen (SIGSTOP: the link open but silent, as
 * a cut cable leaves it) is lost within the peer timeout too: found by the
 * fault campaign (failover/cdp-sync/fs), a sync write once waited for it
 * for good and the rules never decided.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { ok } from '../peer/_fixture.js';
import { compare, freeze, mirrored as pair, qemuIo, qemuRead, role, uri } from './_pair.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io'));

/** alpha mirrors fs:tank/vm1 to beta (sync, --peer-timeout 2), both daemons running, beta level */
const mirrored = (t: Parameters<typeof pair>[0]) => pair(t, { create: '--peer-timeout 2' });

test.serial('master + no fencing, the peer killed: the write fails with EIO and is not applied; the master steps down to slave', async (t) => {
  const { a, da, db } = await mirrored(t);
  const before = await qemuIo(uri(a), 'write -P 0x11 0 64k');
  t.regex(before.stdout, /wrote 65536\/65536 bytes/, 'a write with the peer up is mirrored and acknowledged');
  await db.stop('SIGKILL');
  const from = da.lines.lines.length;
  const failed = await qemuIo(uri(a), 'write -P 0x22 0 64k');
  t.regex(failed.stdout + failed.stderr, /Input\/output error/, failed.stdout + failed.stderr);
  await da.lines.wait(/Peer beta lost \(fencing policy none, this copy master at epoch 1\): .*steps down to slave/, from, 30_000);
  t.like(await role(a), { role: 'slave', epoch: 1 });
  const read = await qemuRead(uri(a), 'read -P 0x11 0 64k');
  t.regex(read, /read 65536\/65536 bytes/, `the refused write changed nothing: ${read}`);
  t.notRegex(read, /verification failed/);
  t.regex(await ok(a, 'show auto-cdp :tank-vm1-000 log'), /Peer beta lost: .*peer timeout 2 sec/);
});

test.serial('master + a fence command that exits 0, the peer killed: the peer is fenced once, the write succeeds, master stays', async (t) => {
  const { a, da, db } = await mirrored(t);
  const ran = path.join(a.home, 'fenced');
  const fence = path.join(a.home, 'fence-beta');
  writeFileSync(fence, `#!/bin/sh\necho "$SYNCSH_FENCE_PEER" >> ${ran}\necho "powered off"\n`);
  chmodSync(fence, 0o755);
  await ok(a, `setup network fencing beta fence --command '${fence}'`);
  await db.stop('SIGKILL');
  const from = da.lines.lines.length;
  const r = await qemuIo(uri(a), 'write -P 0x33 0 64k', 'write -P 0x34 1M 64k');
  t.regex(r.stdout, /wrote 65536\/65536 bytes[\s\S]*wrote 65536\/65536 bytes/, r.stdout + r.stderr);
  await da.lines.wait(/beta was fenced/, from, 30_000);
  t.true(existsSync(ran));
  t.is(readFileSync(ran, 'utf8'), 'beta\n', 'fenced once for the loss, not once per write');
  t.like(await role(a), { role: 'master', epoch: 1 });
  t.regex(await ok(a, 'show network fencing log'), /Fence of beta: SUCCESS: beta was fenced: .* \(powered off\)/);
  const read = await qemuRead(uri(a), 'read -P 0x34 1M 64k');
  t.regex(read, /read 65536\/65536 bytes/);
  t.notRegex(read, /verification failed/);
});

test.serial('master + ignore, the peer killed: the write succeeds, master stays, the target is logging', async (t) => {
  const { a, da, db } = await mirrored(t);
  await ok(a, 'setup network fencing beta ignore');
  await db.stop('SIGKILL');
  const from = da.lines.lines.length;
  const r = await qemuIo(uri(a), 'write -P 0x44 0 64k');
  t.regex(r.stdout, /wrote 65536\/65536 bytes/, r.stdout + r.stderr);
  await da.lines.wait(/Peer beta lost \(fencing policy ignore, this copy master at epoch 1\): .*the write succeeds, this copy stays master/, from, 30_000);
  t.like(await role(a), { role: 'master', epoch: 1 });
  t.regex(await ok(a, 'show auto-cdp'), /beta: logging/);
});

test.serial('master + manual, the peer frozen (a silent link): the write does not wait for good; after the peer timeout it succeeds, and the peer thawed is resynced', async (t) => {
  const { a, b, da, db } = await mirrored(t);
  await ok(a, 'setup network fencing beta manual');
  const thaw = freeze(t, db);
  const from = da.lines.lines.length;
  const r = await qemuIo(uri(a), 'write -P 0x55 0 64k');
  t.regex(r.stdout, /wrote 65536\/65536 bytes/, r.stdout + r.stderr);
  await da.lines.wait(/lost beta \(the target did not answer for 2 s\)/, from);
  await da.lines.wait(/Peer beta lost \(fencing policy manual, this copy master at epoch 1\): .*the write succeeds/, from);
  thaw();
  await da.lines.wait(/beta is level/, from, 60_000);
  t.is(await compare(a, b), '0: Images are identical.');
});

test.serial('master + no fencing, the peer frozen (a silent link): the write fails with EIO within the peer timeout and the master steps down', async (t) => {
  const { a, da, db } = await mirrored(t);
  freeze(t, db);
  const from = da.lines.lines.length;
  const r = await qemuIo(uri(a), 'write -P 0x66 0 64k');
  t.regex(r.stdout + r.stderr, /Input\/output error/, r.stdout + r.stderr);
  await da.lines.wait(/Peer beta lost \(fencing policy none, this copy master at epoch 1\): .*steps down to slave/, from, 30_000);
  t.like(await role(a), { role: 'slave', epoch: 1 });
});

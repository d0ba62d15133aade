/**
 * An old master comes back (meetPeer on reconnect), end to end: alpha
 * mirrors to beta, bound both ways; beta's daemon goes away and alpha keeps
 * writing (master + manual, 003 case 6); then alpha's daemon goes away,
 * beta's comes back and a write there takes over (slave + ignore, epoch 2).
 * When alpha's daemon returns, its stream is refused by the newer master:
 * it meets epoch 2, keeps what it wrote while cut off as a held orphan
 * snapshot of its zvol, becomes slave at epoch 2 and is resynced from beta
 * by chunk hashes (only what differs is sent); both copies end equal.
 *
 * Found by the fault campaign (failover/cdp-sync/fs): the old master kept
 * its dirty map for beta from its term as master after it met the newer
 * epoch, so it went on "owing" beta those chunks (owed.ts), though the
 * orphan holds them and beta's resync made them beta's: a later switch of
 * beta back to master was refused while alpha answered.
 */
import { existsSync, renameSync } from 'node:fs';
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { ok } from '../peer/_fixture.js';
import { compare, MIRROR, mirrored, qemuIo, qemuRead, role, startDaemon, uri } from './_pair.js';
import { mapFileOf } from '../../src/services/cdp/owed.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io', 'qemu-img'));

const wrote = /wrote 65536\/65536 bytes/;

test.serial('an old master that comes back meets the newer epoch: orphan snapshot of what it wrote cut off, slave, resynced from the new master', async (t) => {
  const { a, b, da, db } = await mirrored(t, { create: '--peer-timeout 2' });
  await ok(b, `setup network local-bind ${a.home}`);
  t.regex((await qemuIo(uri(a), 'write -P 0x10 0 64k', 'write -P 0x10 4M 64k')).stdout, wrote);
  await ok(a, 'setup network fencing beta manual');
  await ok(b, 'setup network fencing alpha ignore');

  // alpha cut off from beta: its writes go on (case 6) into its dirty map
  await db.stop('SIGKILL');
  const cut = await qemuIo(uri(a), 'write -P 0x71 0 64k', 'write -P 0x73 8M 64k');
  t.regex(cut.stdout, /wrote 65536\/65536 bytes[\s\S]*wrote 65536\/65536 bytes/, cut.stdout + cut.stderr);
  await da.stop('SIGKILL');

  // beta alone: a write there takes over (slave + ignore) at epoch 2
  const db2 = startDaemon(t, b);
  await db2.lines.wait(/NBD/);
  const over = await qemuIo(uri(b), 'write -P 0x72 1M 64k');
  t.regex(over.stdout, wrote, over.stdout + over.stderr);
  t.like(await role(b), { role: 'master', epoch: 2 });

  // alpha back: it meets epoch 2
  const da2 = startDaemon(t, a);
  await da2.lines.wait(/took over auto-cdp:tank-vm1-000 at epoch 2 while this copy \(master at epoch 1\) was cut off: what this copy wrote meanwhile is kept as the snapshot @orphan-tank-vm1-000-\d{8}T\d{6}Z/, 0, 90_000);
  t.like(await role(a), { role: 'slave', epoch: 2, master: { host: 'beta' } });
  const snaps = await (await a.services.storage.usable('fs')).listSnapshots('tank/vm1');
  const orphan = snaps.find((s) => s.name.startsWith('orphan-tank-vm1-000-'));
  t.truthy(orphan, `the orphan snapshot is on alpha's zvol: ${snaps.map((s) => s.name).join(', ')}`);
  t.true(orphan?.held, 'held: never destroyed silently');
  await db2.lines.wait(/alpha is level/, 0, 90_000);
  t.is(await compare(a, b), '0: Images are identical.');
  // beta's view won: its takeover write, and the chunks alpha wrote cut off are beta's again
  t.notRegex(await qemuRead(uri(a), 'read -P 0x72 1M 64k', 'read -P 0x10 0 64k', 'read -P 0 8M 64k'), /verification failed/);
  // and alpha, now slave, forwards its clients' writes to beta
  t.regex((await qemuIo(uri(a), 'write -P 0x74 2M 64k')).stdout, wrote);
  t.notRegex(await qemuRead(uri(b), 'read -P 0x74 2M 64k'), /verification failed/);
  t.regex(await ok(a, `show auto-cdp :${MIRROR} log`), /becomes slave/);
});

test.serial('an old master that met the newer epoch owes the new master nothing: its map from its term as master is dropped, so the new master can step down and be switched back', async (t) => {
  const { a, b, da, db } = await mirrored(t, { create: '--peer-timeout 1' });
  await ok(b, `setup network local-bind ${a.home}`);
  // a sync write (on both copies), then alpha's power cut while its map for beta still has the chunk's extent set
  t.regex((await qemuIo(uri(a), 'write -P 0x21 0 64k')).stdout, wrote);
  await da.stop('SIGKILL');
  t.true(existsSync(mapFileOf(a.home, MIRROR, 'beta')));
  // beta promoted by hand with alpha not answering (its home away), epoch 2
  renameSync(a.home, `${a.home}-away`);
  try {
    t.regex(await ok(b, `setup auto-cdp :${MIRROR} role master -y`), /is now master here \(epoch 2\)/);
  } finally {
    renameSync(`${a.home}-away`, a.home);
  }
  let from = db.lines.lines.length;
  const da2 = startDaemon(t, a);
  await da2.lines.wait(/becomes slave/, 0, 90_000);
  await db.lines.wait(/alpha is level/, from, 90_000);
  t.false(existsSync(mapFileOf(a.home, MIRROR, 'beta')), "alpha's map for beta is gone: the orphan holds what it recorded");

  // beta steps down and is switched back while alpha answers: alpha owes it nothing
  from = db.lines.lines.length;
  await ok(b, `setup auto-cdp :${MIRROR} role slave -y`);
  await db.lines.wait(/tank-vm1-000: stopped/, from);
  t.regex(await ok(b, `setup auto-cdp :${MIRROR} role master -y`), /is now master here \(epoch 3\)/);
  await db.lines.wait(/alpha is level/, from, 90_000);
  t.like(await role(a), { role: 'slave', epoch: 3, master: { host: 'beta' } });
  t.is(await compare(a, b), '0: Images are identical.');
  t.notRegex(await qemuRead(uri(b), 'read -P 0x21 0 64k'), /verification failed/);
});

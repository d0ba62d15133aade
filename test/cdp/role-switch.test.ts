/**
 * A hand role switch (`setup auto-cdp :NAME role …`) after writes the new
 * master does not hold, end to end: alpha mirrors to beta (async), bound
 * both ways; beta is paused and alpha's clients write 4 chunks (alpha's
 * dirty map for beta has them). alpha steps down; promoting beta now would
 * make a copy that lacks acknowledged writes the master, and its resync
 * would overwrite them on alpha: refused, naming the chunks, nothing
 * changed. Done the way the refusal says (alpha master again, beta level,
 * then the switch), beta becomes master, compares with alpha, and both
 * images are identical with every acknowledged write on both.
 */
import { renameSync } from 'node:fs';
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { fails, ok } from '../peer/_fixture.js';
import { compare, figuresUntil, freeze, MIRROR, mirrored, qemuRead, role, startDaemon, statusUntil, uri } from './_pair.js';
import { qemuIo } from './_mirror.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io', 'qemu-img'));

const acked = ['read -P 0x51 0 192k', 'read -P 0x52 10M 4k'];

test.serial('a copy that lacks chunks the old master holds is not switched to master; switched once level, the two copies end identical', async (t) => {
  const { a, b, da, db } = await mirrored(t, { size: '32M', mode: 'async' });
  await ok(b, `setup network local-bind ${a.home}`);
  await ok(a, `setup auto-cdp :${MIRROR} pause beta`);
  await da.lines.wait(/paused to beta/);
  await qemuIo(uri(a), 'write -P 0x51 0 192k', 'write -P 0x52 10M 4k');
  await statusUntil(a, (x) => x.dirtyChunks === 4);

  await ok(a, `setup auto-cdp :${MIRROR} role slave -y`);
  t.is(
    await fails(b, `setup auto-cdp :${MIRROR} role master -y`),
    `Error: alpha's copy of auto-cdp:${MIRROR} holds 4 chunks this copy does not have yet (its dirty map for this copy: it was paused, logging or still syncing): as master, this copy would overwrite writes acknowledged there. Let it catch up first: switch alpha's copy back to master ('setup auto-cdp :${MIRROR} role master' there), resume this copy and wait until it is mirroring, then switch. Nothing was changed.`,
  );
  t.like(await role(b), { role: 'slave', epoch: 1 });

  // as the refusal says: alpha master again (its map for beta is the resync), beta level, then the switch
  let from = da.lines.lines.length;
  t.regex(await ok(a, `setup auto-cdp :${MIRROR} role master -y`), /is now master here \(epoch 2\)/);
  await da.lines.wait(/beta is level/, from, 90_000);
  from = da.lines.lines.length;
  await ok(a, `setup auto-cdp :${MIRROR} role slave -y`);
  await da.lines.wait(/tank-vm1-000: stopped/, from);
  from = db.lines.lines.length;
  t.regex(await ok(b, `setup auto-cdp :${MIRROR} role master -y`), /is now master here \(epoch 3\)/);
  await db.lines.wait(/alpha is level/, from, 90_000);
  t.like(await role(a), { role: 'slave', epoch: 3, master: { host: 'beta' } });
  t.is(await compare(a, b), '0: Images are identical.');
  for (const x of [a, b]) t.notRegex(await qemuRead(uri(x), ...acked), /verification failed/, 'every acknowledged write is on both copies');
});

test.serial('a promotion while the old master does not answer compares every chunk: the map left from its own earlier term as master is not trusted', async (t) => {
  const { a, b, da, db } = await mirrored(t, { mode: 'sync' });
  await ok(b, `setup network local-bind ${a.home}`);
  // beta is master for a term (it keeps a map for alpha from then, clean), then alpha again
  await ok(a, `setup auto-cdp :${MIRROR} role slave -y`);
  await da.lines.wait(/tank-vm1-000: stopped/);
  await ok(b, `setup auto-cdp :${MIRROR} role master -y`);
  await db.lines.wait(/alpha is level/, 0, 90_000);
  // every chunk written and acknowledged in beta's term (a compared sync leaves its equal chunks dirty in the map: a
  // promotion of alpha would be refused), and beta steps down at once: what was acked is clean in its map when it stops
  await qemuIo(uri(b), 'write -z 0 16M');
  await ok(b, `setup auto-cdp :${MIRROR} role slave -y`);
  await db.lines.wait(/tank-vm1-000: stopped/);
  await ok(a, `setup auto-cdp :${MIRROR} role master -y`);
  await figuresUntil(a, (x) => x.state === 'mirroring' && x.dirtyChunks === 0);

  // beta away, alpha (master + manual) writes on; then alpha is away too, and beta is switched to master by hand
  await ok(a, 'setup network fencing beta manual');
  await db.stop('SIGKILL');
  await qemuIo(uri(a), 'write -P 0x77 8M 64k');
  await figuresUntil(a, (x) => x.state.startsWith('logging') && x.dirtyChunks === 1);
  await da.stop('SIGKILL');
  const away = `${a.home}-away`;
  renameSync(a.home, away);
  let back = false;
  const restore = () => {
    if (!back) renameSync(away, a.home);
    back = true;
  };
  t.teardown(restore);
  const db2 = startDaemon(t, b);
  await db2.lines.wait(/NBD/);
  t.regex(await ok(b, `setup auto-cdp :${MIRROR} role master -y`), /is now master here \(epoch 4\)/);
  restore();

  // alpha back: it meets epoch 4 (its write kept as an orphan), becomes slave, and beta sends what differs
  const da2 = startDaemon(t, a);
  await da2.lines.wait(/becomes slave/, 0, 90_000);
  await db2.lines.wait(/alpha is level/, 0, 90_000);
  t.like(await role(a), { role: 'slave', epoch: 4, master: { host: 'beta' } });
  t.is(await compare(a, b), '0: Images are identical.', 'never mirroring over chunks that differ');
});

test.serial('a copy just switched to slave whose engine still runs as master is not taken over: the promotion waits for its daemon to stop the mirror', async (t) => {
  const { a, b, da } = await mirrored(t, { mode: 'async' });
  await ok(b, `setup network local-bind ${a.home}`);
  // alpha's daemon frozen: its engine, still master, cannot see that alpha's copy was switched to slave
  const thaw = freeze(t, da);
  await ok(a, `setup auto-cdp :${MIRROR} role slave -y`);
  t.regex(await fails(b, `setup auto-cdp :${MIRROR} role master -y`), /alpha's copy of auto-cdp:tank-vm1-000 is slave but still mirrors as master .*Nothing was changed\./);
  t.like(await role(b), { role: 'slave', epoch: 1 });

  const from = da.lines.lines.length;
  thaw();
  await da.lines.wait(/tank-vm1-000: stopped/, from);
  t.regex(await ok(b, `setup auto-cdp :${MIRROR} role master -y`), /is now master here \(epoch 2\)/);
  t.like(await role(a), { role: 'slave', epoch: 2, master: { host: 'beta' } });
});

// Found by the fault campaign (failover/cdp-sync/fs): a slave the promotion could not tell (its cdp.update lost) took
// the new master's stream at its newer epoch but kept its own older one, so promoted in turn it took an epoch that
// master already held: both masters at one epoch, split brain when they met.
test.serial('a slave the promotion did not reach adopts the newer epoch from the stream: promoted later, it takes a newer epoch still', async (t) => {
  const { a, b, da, db } = await mirrored(t, { mode: 'sync', create: '--peer-timeout 1' });
  await ok(b, `setup network local-bind ${a.home}`);
  await ok(a, `setup auto-cdp :${MIRROR} role slave -y`);
  await da.lines.wait(/tank-vm1-000: stopped/);
  await da.stop('SIGKILL');
  // beta promoted while alpha's copy does not answer: it is not told of epoch 2
  const away = `${a.home}-away`;
  renameSync(a.home, away);
  try {
    t.regex(await ok(b, `setup auto-cdp :${MIRROR} role master -y`), /is now master here \(epoch 2\)/);
  } finally {
    renameSync(away, a.home);
  }
  t.like(await role(a), { role: 'slave', epoch: 1 });
  const from = db.lines.lines.length;
  startDaemon(t, a);
  await db.lines.wait(/alpha is level/, from, 90_000);
  t.like(await role(a), { role: 'slave', epoch: 2, master: { host: 'beta' } }, "beta's stream brought its epoch");

  // beta's power cut: alpha promoted by hand takes epoch 3, not beta's 2
  await db.stop('SIGKILL');
  renameSync(b.home, `${b.home}-away`);
  try {
    t.regex(await ok(a, `setup auto-cdp :${MIRROR} role master -y`), /is now master here \(epoch 3\)/);
  } finally {
    renameSync(`${b.home}-away`, b.home);
  }
});

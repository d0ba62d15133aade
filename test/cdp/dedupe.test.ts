/**
 * Dedupe-aware transfer end to end (issue 12, `003_…`): two daemons, a real
 * NBD client (qemu-io) writes the same 2 MiB of random data at several
 * offsets of the master's export; from the second time on it crosses the
 * mirror link as references to the blocks the target holds (the bytes sent
 * on the link are the daemon's figures), in sync mode, in async mode and
 * in a resync after a pause; the two copies are equal byte for byte. Each
 * resync is in the mirror's trail (`show auto-cdp :NAME history`).
 */
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { ok } from '../peer/_fixture.js';
import { compare, MiB, mirrored, qemuIo, startDaemon, statusUntil, uri } from './_mirror.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io', 'qemu-img'));

test.serial('the same data written again crosses as its hash: sync, async and a resync; the copies are equal', async (t) => {
  t.timeout(8 * 60_000);
  const { a, b, da } = await mirrored(t, { size: '64M' });
  const file = path.join(a.home, 'random.bin');
  writeFileSync(file, randomBytes(2 * MiB));
  const first = await statusUntil(a, (x) => x.state === 'mirroring');
  const base = first.targets[0].sentBytes!;

  await qemuIo(uri(a), `write -s ${file} 4M 2M`);
  const once = (await statusUntil(a, (x) => x.sentBytes! - base >= 2 * MiB)).targets[0];
  t.is(once.dedupedBytes, 0);

  // sync: the second copy returns when the target applied it from its own blocks
  await qemuIo(uri(a), `write -s ${file} 20M 2M`);
  const twice = (await statusUntil(a, (x) => x.dedupedBytes! >= 2 * MiB)).targets[0];
  const second = twice.sentBytes! - once.sentBytes!;
  t.true(second <= 0.1 * 2 * MiB, `the second copy sent ${second} bytes`);
  t.is(await compare(a, b), '0: Images are identical.');

  // async
  await ok(a, 'setup auto-cdp :tank-vm1-000 mode async');
  await qemuIo(uri(a), `write -s ${file} 40M 2M`);
  const thrice = (await statusUntil(a, (x) => x.dedupedBytes! >= 4 * MiB && x.lagBytes === 0)).targets[0];
  t.true(thrice.sentBytes! - twice.sentBytes! <= 0.1 * 2 * MiB, `the async copy sent ${thrice.sentBytes! - twice.sentBytes!} bytes`);
  t.is(await compare(a, b), '0: Images are identical.');

  // a resync: paused, the copy only marks chunks dirty; resumed, the resync reads them and sends references
  await ok(a, 'setup auto-cdp :tank-vm1-000 pause beta');
  await da.lines.wait(/paused to beta/);
  await qemuIo(uri(a), `write -s ${file} 50M 2M`);
  await statusUntil(a, (x) => x.dirtyChunks === 32);
  const from = da.lines.lines.length;
  await ok(a, 'setup auto-cdp :tank-vm1-000 resume');
  await da.lines.wait(/beta is level/, from, 60_000);
  const resynced = (await statusUntil(a, (x) => x.dedupedBytes! >= 6 * MiB && x.state === 'mirroring')).targets[0];
  t.true(resynced.sentBytes! - thrice.sentBytes! <= 0.1 * 2 * MiB, `the resync sent ${resynced.sentBytes! - thrice.sentBytes!} bytes`);
  t.is(await compare(a, b), '0: Images are identical.');

  // the trail: the first sync of the whole zvol, then the resync of the 32 chunks, newest first
  const trail = JSON.parse(await ok(a, 'show auto-cdp :tank-vm1-000 history --json')) as { result: string; peer: string; snapshot: string; bytes: number }[];
  t.like(trail[0], { result: 'success', peer: 'beta', snapshot: '32 chunk(s)' });
  t.true(trail[0].bytes <= 0.1 * 2 * MiB);
  t.like(trail.at(-1), { result: 'success', peer: 'beta', snapshot: '1024 chunk(s)' });
  t.regex(await ok(a, 'show auto-cdp :tank-vm1-000 history'), /STARTED\s+SIDE\s+PEER\s+RESULT\s+BYTES\s+RATE\s+CHUNKS \/ ERROR[\s\S]*send\s+beta\s+success\s+[\d.]+\w*\s+[\d.]+\w*\/s\s+32 chunk\(s\)/);
});

test.serial("what the target holds outlives the master's daemon: after a restart, data it holds still crosses as its hash; the copies are equal", async (t) => {
  t.timeout(8 * 60_000);
  const { a, b, da } = await mirrored(t, { size: '64M' });
  const file = path.join(a.home, 'random.bin');
  writeFileSync(file, randomBytes(2 * MiB));
  await statusUntil(a, (x) => x.state === 'mirroring');
  await qemuIo(uri(a), `write -s ${file} 4M 2M`);
  await statusUntil(a, (x) => x.lagBytes === 0 && x.dirtyChunks === 0);

  await da.stop('SIGTERM');
  const again = startDaemon(t, a);
  await again.lines.wait(/connected to beta/, 0, 60_000);
  await qemuIo(uri(a), `write -s ${file} 20M 2M`);
  // the new daemon's figures start at 0: the second copy crossed whole, or as references
  const after = (await statusUntil(a, (x) => x.dedupedBytes! >= 2 * MiB || x.sentBytes! >= 2 * MiB)).targets[0];
  t.is(after.dedupedBytes, 2 * MiB, `after the restart the second copy went as references (sent ${after.sentBytes} bytes)`);
  t.true(after.sentBytes! <= 0.1 * 2 * MiB, `the second copy sent ${after.sentBytes} bytes`);
  t.is(await compare(a, b), '0: Images are identical.');
});

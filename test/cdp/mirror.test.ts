/**
 * auto-cdp end to end: two appliances bound with local-bind, each running
 * `syncsh daemon`; a real NBD client (qemu-io with patterns) writes on the
 * master's export; the target's copy is compared byte for byte with the
 * master's (qemu-img compare of both exports). sync: equal as soon as the
 * client's writes returned; async: equal once the lag is 0; the target's
 * daemon down: logging, then a partial resync when it returns.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { ok, Fixture, makeAppliance, type Appliance } from '../peer/_fixture.js';
import { compare, MiB, mirrored, pair, qemuIo, startDaemon, status, statusUntil, uri } from './_mirror.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io', 'qemu-img'));

test.serial('sync, then async, through both daemons: a real client writes on the master, the copies are equal byte for byte', async (t) => {
  t.timeout(8 * 60_000);
  const { a, b } = await pair(t);
  await ok(a, 'create zvol fs:tank/vm1 --size 64M');
  // data before the mirror exists: the initial sync sends it (and the zero rest as runs)
  const fs = await a.services.storage.usable('fs');
  const vol = await fs.openVolume!('tank/vm1');
  await vol.write(8 * MiB, randomBytes(3 * MiB), { fua: true });
  await vol.close();
  await ok(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode sync -y');
  const db = startDaemon(t, b);
  await db.lines.wait(/NBD/);
  const da = startDaemon(t, a);
  await da.lines.wait(/auto-cdp:tank-vm1-000: beta is level/, 0, 60_000);
  t.is(await compare(a, b), '0: Images are identical.');
  const level = await status(a);
  t.like(level?.targets[0], { state: 'mirroring', lagBytes: 0, dirtyChunks: 0 });

  // sync: when qemu-io returns, the target holds every write
  await qemuIo(uri(a), 'write -P 0xab 0 1M', 'write -P 0xcd 10M 64k', 'write -P 0x11 33M 4k', 'write -z 8M 1M');
  t.is(await compare(a, b), '0: Images are identical.');
  const b8 = await execa('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0xcd 10M 64k', uri(b)]);
  t.regex(b8.stdout, /read 65536\/65536 bytes/);

  // async, changed live: acknowledged at once, equal once the lag is 0
  const before = da.lines.lines.length;
  await ok(a, 'setup auto-cdp :tank-vm1-000 mode async');
  await qemuIo(uri(a), 'write -P 0x5a 20M 4M', 'write -P 0x77 63M 1M');
  await statusUntil(a, (x) => x.lagBytes === 0 && x.state === 'mirroring' && x.dirtyChunks === 0);
  t.is(await compare(a, b), '0: Images are identical.');
  t.false(da.lines.lines.slice(before).some((l) => /lost beta/.test(l)));
  t.regex(await ok(a, 'show auto-cdp'), /tank-vm1-000\s+fs:tank\/vm1\s+master\s+beta:fs:tank\/vm1\s+async\s+beta: mirroring/);
});

test.serial('the target daemon away: logging, the dirty map grows; back: only the dirty chunks are sent, then equal', async (t) => {
  t.timeout(8 * 60_000);
  let { a, b, da, db } = await mirrored(t, { size: '64M' });
  // 003's master + manual: with the peer lost the master's writes go on (with no fencing policy they fail: test/cdp/fencing.test.ts)
  await ok(a, 'setup network fencing beta manual');
  await db.stop('SIGKILL');
  // sync with the target gone: the writes succeed here, its map records them (5 chunks)
  await qemuIo(uri(a), 'write -P 0x42 0 64k', 'write -P 0x43 1M 128k', 'write -P 0x44 40M 64k', 'write -P 0x45 50M 4k');
  await da.lines.wait(/lost beta/);
  await statusUntil(a, (x) => x.state === 'logging' && x.dirtyChunks === 5);
  t.regex(await ok(a, 'show auto-cdp'), /beta: logging/);
  const from = da.lines.lines.length;
  db = startDaemon(t, b);
  const connected = await da.lines.wait(/connected to beta; \d+ dirty chunk\(s\) to send/, from, 60_000);
  t.regex(connected, /connected to beta; 5 dirty chunk\(s\) to send/);
  await da.lines.wait(/beta is level/, from, 60_000);
  t.is(await compare(a, b), '0: Images are identical.');
});

test.serial('kill -9 of the master daemon mid-write (sync): every acknowledged write is on both copies; restarted, the copies are level again', async (t) => {
  t.timeout(8 * 60_000);
  let { a, b, da } = await mirrored(t, { size: '64M' });
  // 600 writes of 4 KiB, each at its own offset with its own pattern; qemu-io prints a line once each is acknowledged
  const N = 600;
  const cmds = Array.from({ length: N }, (_, i) => ['-c', `write -P ${i % 251} ${i * 64 * 1024 + (i % 16) * 4096} 4k`]).flat();
  const writer = execa('stdbuf', ['-oL', 'qemu-io', '-f', 'raw', ...cmds, uri(a)], { reject: false });
  let acked = 0;
  let buf = '';
  const killed = new Promise<void>((resolve) => {
    writer.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      acked = (buf.match(/^wrote 4096\/4096 bytes/gm) ?? []).length;
      if (acked >= 150) resolve();
    });
  });
  await killed;
  await da.stop('SIGKILL');
  await writer;
  acked = (buf.match(/^wrote 4096\/4096 bytes/gm) ?? []).length;
  t.true(acked >= 150 && acked < N, `acknowledged ${acked}`);
  // both images, read straight from their files (the master's daemon is dead; the target's stays up)
  const img = (x: Appliance) => readFileSync(`${x.live('tank/vm1')}/volume.img`);
  const [ma, mb] = [img(a), img(b)];
  const missing: string[] = [];
  for (let i = 0; i < acked; i++) {
    const at = i * 64 * 1024 + (i % 16) * 4096;
    const want = Buffer.alloc(4096, i % 251);
    if (!ma.subarray(at, at + 4096).equals(want)) missing.push(`master #${i}`);
    if (!mb.subarray(at, at + 4096).equals(want)) missing.push(`target #${i}`);
  }
  t.deepEqual(missing, []);
  // restarted: the master's maps were durable before each write, so the resync covers whatever was in flight
  da = startDaemon(t, a);
  await da.lines.wait(/beta is level/, 0, 60_000);
  t.is(await compare(a, b), '0: Images are identical.');
});

test.serial('extend to a third appliance and detach it; verify finds a chunk changed behind the mirror, --repair resyncs it', async (t) => {
  t.timeout(8 * 60_000);
  const { a, b } = await pair(t);
  const f = new Fixture();
  t.teardown(() => f.close());
  const g = makeAppliance(f, 'gamma', { SYNCSH_DRIVERS: 'fs' });
  await ok(g, 'create folder fs:tank');
  await ok(a, `setup network local-bind ${g.home}`);
  await ok(a, 'create zvol fs:tank/vm1 --size 32M');
  await ok(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode sync -y');
  const db = startDaemon(t, b);
  const dg = startDaemon(t, g);
  await db.lines.wait(/NBD/);
  await dg.lines.wait(/NBD/);
  const da = startDaemon(t, a);
  await da.lines.wait(/beta is level/, 0, 60_000);
  await qemuIo(uri(a), 'write -P 0x31 0 2M');
  t.regex(await ok(a, 'setup auto-cdp :tank-vm1-000 extend gamma'), /now mirrors to beta, gamma; gamma:fs:tank\/vm1 is being synced\./);
  await da.lines.wait(/gamma is level/, 0, 60_000);
  await qemuIo(uri(a), 'write -P 0x32 4M 1M');
  t.is(await compare(a, b), '0: Images are identical.');
  t.is(await compare(a, g), '0: Images are identical.');
  t.regex(await ok(a, 'show auto-cdp'), /beta: mirroring, gamma: mirroring/);

  // a chunk of beta's copy changed behind the mirror's back (its image file written directly)
  const fd = openSync(`${b.live('tank/vm1')}/volume.img`, 'r+');
  writeSync(fd, Buffer.alloc(512, 0xee), 0, 512, 5 * 64 * 1024 + 100 * 512);
  closeSync(fd);
  const found = await ok(a, 'run auto-cdp :tank-vm1-000 verify');
  t.regex(found, /beta: 512 chunk\(s\) compared, 1 out of sync \(offsets 320K\); 'run auto-cdp :tank-vm1-000 verify --repair' resyncs them/);
  t.regex(found, /gamma: 512 chunk\(s\) compared, 0 out of sync/);
  t.regex(await ok(a, 'run auto-cdp :tank-vm1-000 verify --repair --host beta'), /beta: 512 chunk\(s\) compared, 1 out of sync \(offsets 320K\), being resynced/);
  await statusUntil(a, (x) => x.dirtyChunks === 0 && x.state === 'mirroring', true);
  t.is(await compare(a, b), '0: Images are identical.');
  t.regex(await ok(a, 'run auto-cdp :tank-vm1-000 verify'), /beta: 512 chunk\(s\) compared, 0 out of sync/);

  t.regex(await ok(a, 'setup auto-cdp :tank-vm1-000 detach gamma -y'), /no longer mirrors to gamma\./);
  t.regex(await ok(g, 'show auto-cdp'), /No auto-cdp services/);
  t.truthy(JSON.parse(await ok(g, 'show zvol fs:tank/vm1 --json')));
  await da.lines.wait(/gamma detached/);
  t.deepEqual(
    JSON.parse(await ok(a, 'show auto-cdp :tank-vm1-000 --json')).config.targets.map((x: { host: string }) => x.host),
    ['beta'],
  );
  t.is((await a.cli('setup auto-cdp :tank-vm1-000 detach beta -y')).stderr, "Error: beta is the only target of auto-cdp:tank-vm1-000: destroy the mirror instead ('destroy auto-cdp :tank-vm1-000').");
  t.is((await a.cli('setup auto-cdp :tank-vm1-000 extend beta')).stderr, 'Error: auto-cdp:tank-vm1-000 already mirrors to beta.');
});

test.serial('pause and resume while the daemons run: paused, writes only grow the dirty map; resumed, only those chunks are sent', async (t) => {
  t.timeout(8 * 60_000);
  const { a, b, da } = await mirrored(t, { size: '32M', mode: 'async' });
  await ok(a, 'setup auto-cdp :tank-vm1-000 pause beta');
  await da.lines.wait(/paused to beta/);
  await qemuIo(uri(a), 'write -P 0x61 0 192k', 'write -P 0x62 10M 4k');
  const s = await statusUntil(a, (x) => x.dirtyChunks === 4);
  t.is(s.targets[0].state, 'paused');
  t.regex(await compare(a, b), /^1: Content mismatch at offset 0!/);
  const from = da.lines.lines.length;
  await ok(a, 'setup auto-cdp :tank-vm1-000 resume');
  t.regex(await da.lines.wait(/connected to beta/, from), /4 dirty chunk\(s\) to send/);
  await da.lines.wait(/beta is level/, from);
  t.is(await compare(a, b), '0: Images are identical.');
});

test.serial("local-bind: the master's daemon streams straight to the target daemon's socket (no agent process between them), still only while the target keeps its binding", async (t) => {
  const { a, b, da, db } = await mirrored(t, { mode: 'async' });
  // issue 12's latency: each frame through an agent crossed one more process both ways
  const children = await execa('ps', ['-o', 'args=', '--ppid', String(da.child.pid)], { reject: false });
  t.notRegex(children.stdout, /agent mirror/);
  await qemuIo(uri(a), 'write -P 0x3c 2M 1M', 'write -P 0x4d 9M 4k');
  await statusUntil(a, (x) => x.lagBytes === 0 && x.state === 'mirroring' && x.dirtyChunks === 0);
  t.is(await compare(a, b), '0: Images are identical.');

  // beta forgets alpha: the direct stream is not opened again (the binding is checked through beta's agent first)
  await db.stop();
  await statusUntil(a, (x) => x.state === 'logging');
  const r = await b.cli('setup network ssh-unbind alpha -y');
  t.is(r.exitCode, 0, String(r.stderr));
  const db2 = startDaemon(t, b);
  await db2.lines.wait(/NBD/);
  const refused = await statusUntil(a, (x) => x.state === 'logging' && /not bound/.test(x.reason ?? ''));
  t.regex(refused.targets[0].reason ?? '', /alpha is not bound to beta/);
  t.false(db2.lines.lines.some((l) => /receiving from alpha/.test(l)));
});

/**
 * Peer loss on the slave's write path (003_… "Fencing Failures", slave
 * side), end to end: alpha mirrors to beta (sync, --peer-timeout 2), both
 * daemons running; alpha's daemon is killed (kill -9) and a real NBD client
 * (qemu-io) writes on beta's export, whose writes go to the master while it
 * is there. The fencing policy beta holds for alpha decides:
 *   none → EIO, stays slave; ignore → succeeds, beta takes over (epoch 2);
 *   manual → EIO until alpha is back (then forwarded again);
 *   fence exit 0 → fenced once, takes over, succeeds; fence fails → EIO,
 *   stays slave, alpha's copy still master: no split brain.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { ok, type Appliance } from '../peer/_fixture.js';
import { compare, MIRROR, mirrored, qemuIo, qemuRead, role, startDaemon, uri } from './_pair.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io', 'qemu-img'));

const EIO = /Input\/output error/;
const wrote = /wrote 65536\/65536 bytes/;

/** a fence script on beta for alpha: records each run, exits with `code` */
function fenceScript(b: Appliance, code: number): { command: string; ran: string } {
  const ran = path.join(b.home, 'fenced');
  const command = path.join(b.home, 'fence-alpha');
  writeFileSync(command, `#!/bin/sh\necho "$SYNCSH_FENCE_PEER" >> ${ran}\necho "power ${code ? 'unreachable' : 'off'}"\nexit ${code}\n`);
  chmodSync(command, 0o755);
  return { command, ran };
}

/** the mirror level, one write on beta forwarded, beta's policy for alpha set (none when ''), alpha's daemon killed */
async function masterKilled(t: ExecutionContext, policy: string | ((b: Appliance) => string)) {
  const { a, b, da, db } = await mirrored(t, { create: '--peer-timeout 2' });
  const first = await qemuIo(uri(b), 'write -P 0x11 0 64k');
  t.regex(first.stdout, wrote, `with the master there, a write on the slave is forwarded: ${first.stdout}${first.stderr}`);
  const set = typeof policy === 'string' ? policy : policy(b);
  if (set) await ok(b, `setup network fencing alpha ${set}`);
  await da.stop('SIGKILL');
  return { a, b, da, db, from: db.lines.lines.length };
}

test.serial('slave + no fencing, the master killed: the write fails with EIO and is not applied; the copy stays slave', async (t) => {
  const { b, db, from } = await masterKilled(t, '');
  const r = await qemuIo(uri(b), 'write -P 0x22 0 64k');
  t.regex(r.stdout + r.stderr, EIO, r.stdout + r.stderr);
  await db.lines.wait(/Peer alpha lost \(fencing policy none, this copy slave at epoch 1\): .*the write is refused \(EIO\), this copy stays slave/, from, 30_000);
  t.like(await role(b), { role: 'slave', epoch: 1 });
  t.notRegex(await qemuRead(uri(b), 'read -P 0x11 0 64k'), /verification failed/, 'the refused write changed nothing');
  t.regex(await ok(b, `show auto-cdp :${MIRROR} log`), /Peer alpha lost: .*peer timeout 2 sec/);
});

test.serial('slave + ignore, the master killed: the write succeeds and the copy takes over as master (epoch 2)', async (t) => {
  const { b, db, from } = await masterKilled(t, 'ignore');
  const r = await qemuIo(uri(b), 'write -P 0x33 0 64k', 'write -P 0x34 1M 64k');
  t.regex(r.stdout, /wrote 65536\/65536 bytes[\s\S]*wrote 65536\/65536 bytes/, r.stdout + r.stderr);
  await db.lines.wait(/Peer alpha lost \(fencing policy ignore, this copy slave at epoch 1\): .*takes over as master \(epoch 2\)/, from, 30_000);
  const now = await role(b);
  t.like(now, { role: 'master', epoch: 2, master: null });
  t.deepEqual(
    now.targets.map((x) => x.host),
    ['alpha'],
    'the lost master is its target now',
  );
  t.notRegex(await qemuRead(uri(b), 'read -P 0x33 0 64k', 'read -P 0x34 1M 64k'), /verification failed/);
});

test.serial('slave + manual, the master killed: writes fail with EIO until the master is back, then they are forwarded again', async (t) => {
  const { a, b, db, from } = await masterKilled(t, 'manual');
  for (const p of [0x44, 0x45]) {
    const r = await qemuIo(uri(b), `write -P ${p} 0 64k`);
    t.regex(r.stdout + r.stderr, EIO, r.stdout + r.stderr);
  }
  await db.lines.wait(/fencing policy manual, this copy slave at epoch 1\): .*writes are refused \(EIO\) until this copy is switched to master/, from, 30_000);
  t.like(await role(b), { role: 'slave', epoch: 1 });
  const da = startDaemon(t, a);
  await db.lines.wait(/receiving from alpha/, from, 60_000);
  const r = await qemuIo(uri(b), 'write -P 0x46 0 64k');
  t.regex(r.stdout, wrote, `the master is back: forwarded: ${r.stdout}${r.stderr}`);
  await da.lines.wait(/beta is level/, 0, 60_000);
  t.notRegex(await qemuRead(uri(a), 'read -P 0x46 0 64k'), /verification failed/);
  t.is(await compare(a, b), '0: Images are identical.');
});

test.serial('slave + a fence command that exits 0, the master killed: fenced once, the copy takes over, the writes succeed', async (t) => {
  let ran = '';
  const { b, db, from } = await masterKilled(t, (x) => {
    const fence = fenceScript(x, 0);
    ran = fence.ran;
    return `fence --command '${fence.command}'`;
  });
  const r = await qemuIo(uri(b), 'write -P 0x55 0 64k', 'write -P 0x56 2M 64k');
  t.regex(r.stdout, /wrote 65536\/65536 bytes[\s\S]*wrote 65536\/65536 bytes/, r.stdout + r.stderr);
  await db.lines.wait(/was fenced: this copy takes over as master \(epoch 2\)/, from, 30_000);
  t.true(existsSync(ran));
  t.is(readFileSync(ran, 'utf8'), 'alpha\n', 'fenced once for the loss, not once per write');
  t.like(await role(b), { role: 'master', epoch: 2 });
  t.notRegex(await qemuRead(uri(b), 'read -P 0x56 2M 64k'), /verification failed/);
});

test.serial('slave + a fence command that fails, the master killed: the write fails with EIO, the copy stays slave, the master keeps its role (no split brain)', async (t) => {
  const { a, b, db, from } = await masterKilled(t, (x) => `fence --command '${fenceScript(x, 3).command}'`);
  const r = await qemuIo(uri(b), 'write -P 0x66 0 64k');
  t.regex(r.stdout + r.stderr, EIO, r.stdout + r.stderr);
  await db.lines.wait(/fencing it failed: the write is refused \(EIO\) and this copy stays slave, so there is no split brain/, from, 30_000);
  t.like(await role(b), { role: 'slave', epoch: 1 });
  t.like(await role(a), { role: 'master', epoch: 1 });
  t.notRegex(await qemuRead(uri(b), 'read -P 0x11 0 64k'), /verification failed/);
});

/**
 * A forwarded write whose master hangs without closing its stream: alpha
 * mirrors to beta (sync, --peer-timeout 2), alpha's daemon is stopped with
 * SIGSTOP (its process and its stream stay, nothing answers), and a real
 * NBD client (qemu-io) writes on beta's export. The write's deadline is the
 * peer timeout: when it passes the master counts as lost and beta's
 * fencing policy for alpha decides (003 "Fencing Failures", slave side):
 *   none → EIO within a bounded time, beta stays slave;
 *   ignore → beta takes over (epoch 2) and acks the write it holds; once
 *   alpha runs again it meets the newer epoch, becomes slave and is resynced:
 *   the two images end identical (no two masters).
 */
import { execa } from 'execa';
import type { ExecutionContext } from 'ava';
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { ok } from '../peer/_fixture.js';
import { compare, figuresUntil, freeze, mirrored, qemuIo, qemuRead, role, uri } from './_pair.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io', 'qemu-img'));

const wrote = /wrote 65536\/65536 bytes/;
/** far past the peer timeout (2 s) and its decision, far short of forever */
const BOUND_MS = 30_000;

/** qemu-io that is killed at BOUND_MS: a hang is a failure, never a stuck test */
async function boundedWrite(target: string, ...cmds: string[]) {
  const started = Date.now();
  const r = await execa('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), target], { reject: false, timeout: BOUND_MS });
  return { out: `${r.stdout}${r.stderr}`, timedOut: r.timedOut, ms: Date.now() - started };
}

/** the mirror level, one write on beta forwarded, beta's policy for alpha set, alpha's daemon stopped (SIGCONT at teardown) */
async function masterHung(t: ExecutionContext, policy: string) {
  const m = await mirrored(t, { create: '--peer-timeout 2' });
  const first = await qemuIo(uri(m.b), 'write -P 0x11 0 64k');
  t.regex(first.stdout, wrote, `with the master there, a write on the slave is forwarded: ${first.stdout}${first.stderr}`);
  if (policy) await ok(m.b, `setup network fencing alpha ${policy}`);
  const resume = freeze(t, m.da);
  return { ...m, resume, from: m.db.lines.lines.length };
}

test.serial('slave + no fencing, the master hangs (SIGSTOP): the forwarded write fails with EIO after the peer timeout, the copy stays slave', async (t) => {
  const { a, b, db, from, resume } = await masterHung(t, '');
  const r = await boundedWrite(uri(b), 'write -P 0x22 0 64k');
  t.false(r.timedOut, `the write must not wait forever: ${r.out}`);
  t.regex(r.out, /Input\/output error/, r.out);
  t.true(r.ms >= 1_500, `not before the peer timeout: ${r.ms} ms`);
  await db.lines.wait(/Peer alpha lost \(fencing policy none, this copy slave at epoch 1\): .*the write is refused \(EIO\), this copy stays slave/, from, 30_000);
  t.like(await role(b), { role: 'slave', epoch: 1 });
  // the master runs again: it is still master, beta follows it, and the copies agree
  resume();
  await db.lines.wait(/receiving from alpha/, from, 60_000);
  const again = await boundedWrite(uri(b), 'write -P 0x23 1M 64k');
  t.regex(again.out, wrote, `the master is back: forwarded again: ${again.out}`);
  t.like(await role(a), { role: 'master', epoch: 1 });
  t.notRegex(await qemuRead(uri(a), 'read -P 0x23 1M 64k'), /verification failed/);
  await figuresUntil(a, (f) => f.state === 'mirroring' && f.dirtyChunks === 0 && f.lagBytes === 0);
  t.is(await compare(a, b), '0: Images are identical.');
});

test.serial('slave + ignore, the master hangs (SIGSTOP): the write succeeds on beta, which takes over; the old master, run again, becomes slave and both images end identical', async (t) => {
  const { a, b, da, db, from, resume } = await masterHung(t, 'ignore');
  await ok(b, `setup network local-bind ${a.home}`);
  const r = await boundedWrite(uri(b), 'write -P 0x33 0 64k', 'write -P 0x34 1M 64k');
  t.false(r.timedOut, `the write must not wait forever: ${r.out}`);
  t.regex(r.out, /wrote 65536\/65536 bytes[\s\S]*wrote 65536\/65536 bytes/, r.out);
  await db.lines.wait(/Peer alpha lost \(fencing policy ignore, this copy slave at epoch 1\): .*takes over as master \(epoch 2\)/, from, 30_000);
  t.like(await role(b), { role: 'master', epoch: 2, master: null });
  resume();
  await da.lines.wait(/becomes slave/, 0, 90_000);
  t.like(await role(a), { role: 'slave', epoch: 2, master: { host: 'beta' } });
  await db.lines.wait(/alpha is level/, from, 90_000);
  t.is(await compare(a, b), '0: Images are identical.');
  t.notRegex(await qemuRead(uri(a), 'read -P 0x33 0 64k', 'read -P 0x34 1M 64k'), /verification failed/, 'the acked writes are on both copies');
});

/**
 * Peer loss on the master's write path, end to end: two appliances bound
 * with local-bind, each running `syncsh daemon`, a sync mirror, the
 * target's daemon killed (kill -9), a real NBD client (qemu-io) writing on
 * the master's export. 003_… "Fencing Failures": master + no fencing → the
 * write fails (EIO, nothing written) and the master steps down to slave;
 * master + a fence command that exits 0 → the write succeeds, master stays.
 */
import { execa, type ResultPromise } from 'execa';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { daemonLines } from '../helpers/daemon.js';
import { BIN } from '../helpers/cli.js';
import { ok, Fixture, makeAppliance, type Appliance } from '../peer/_fixture.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io'));
const PEER_TIMEOUT_MS = 2000;

const uri = (x: Appliance) => `nbd+unix:///fs:tank/vm1?socket=${x.home}/run/nbd.sock`;

function startDaemon(t: { teardown(fn: () => unknown): void }, x: Appliance) {
  const child: ResultPromise = execa('node', [BIN, 'daemon'], { env: { ...x.env, SYNCSH_CDP_PEER_TIMEOUT_MS: String(PEER_TIMEOUT_MS) }, reject: false });
  t.teardown(async () => {
    child.kill('SIGKILL');
    await child;
  });
  return { child, lines: daemonLines(child) };
}

/** alpha mirrors fs:tank/vm1 to beta (sync), both daemons running, beta level */
async function mirrored(t: ExecutionContext) {
  t.timeout(8 * 60_000);
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha', { SYNCSH_DRIVERS: 'fs' });
  const b = makeAppliance(f, 'beta', { SYNCSH_DRIVERS: 'fs' });
  await ok(a, 'create folder fs:tank');
  await ok(b, 'create folder fs:tank');
  await ok(a, `setup network local-bind ${b.home}`);
  await ok(a, 'create zvol fs:tank/vm1 --size 16M');
  await ok(a, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode sync -y');
  const db = startDaemon(t, b);
  await db.lines.wait(/NBD/);
  const da = startDaemon(t, a);
  await da.lines.wait(/auto-cdp:tank-vm1-000: beta is level/, 0, 60_000);
  return { a, b, da, db };
}

const qemuIo = (target: string, ...cmds: string[]) => execa('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), target], { reject: false });
const role = async (a: Appliance) => JSON.parse(await ok(a, 'show auto-cdp :tank-vm1-000 --json')).config as { role: string; epoch: number };

test.serial('master + no fencing, the peer killed: the write fails with EIO and is not applied; the master steps down to slave', async (t) => {
  const { a, da, db } = await mirrored(t);
  const before = await qemuIo(uri(a), 'write -P 0x11 0 64k');
  t.regex(before.stdout, /wrote 65536\/65536 bytes/, 'a write with the peer up is mirrored and acknowledged');
  db.child.kill('SIGKILL');
  await db.child;
  const from = da.lines.lines.length;
  const failed = await qemuIo(uri(a), 'write -P 0x22 0 64k');
  t.regex(failed.stdout + failed.stderr, /Input\/output error/, failed.stdout + failed.stderr);
  await da.lines.wait(/Peer beta lost \(fencing policy none, this copy master at epoch 1\): .*steps down to slave/, from, 30_000);
  t.like(await role(a), { role: 'slave', epoch: 1 });
  const read = await execa('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x11 0 64k', uri(a)], { reject: false });
  t.regex(read.stdout, /read 65536\/65536 bytes/, `the refused write changed nothing: ${read.stdout}${read.stderr}`);
  t.regex(await ok(a, 'show auto-cdp :tank-vm1-000 log'), /Peer beta lost: .*peer timeout 2 sec/);
});

test.serial('master + a fence command that exits 0, the peer killed: the peer is fenced once, the write succeeds, master stays', async (t) => {
  const { a, da, db } = await mirrored(t);
  const ran = path.join(a.home, 'fenced');
  const fence = path.join(a.home, 'fence-beta');
  writeFileSync(fence, `#!/bin/sh\necho "$SYNCSH_FENCE_PEER" >> ${ran}\necho "powered off"\n`);
  chmodSync(fence, 0o755);
  await ok(a, `setup network fencing beta fence --command '${fence}'`);
  db.child.kill('SIGKILL');
  await db.child;
  const from = da.lines.lines.length;
  const r = await qemuIo(uri(a), 'write -P 0x33 0 64k', 'write -P 0x34 1M 64k');
  t.regex(r.stdout, /wrote 65536\/65536 bytes[\s\S]*wrote 65536\/65536 bytes/, r.stdout + r.stderr);
  await da.lines.wait(/beta was fenced/, from, 30_000);
  t.true(existsSync(ran));
  t.is(readFileSync(ran, 'utf8'), 'beta\n', 'fenced once for the loss, not once per write');
  t.like(await role(a), { role: 'master', epoch: 1 });
  t.regex(await ok(a, 'show network fencing log'), /Fence of beta: SUCCESS: beta was fenced: .* \(powered off\)/);
  const read = await execa('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x34 1M 64k', uri(a)], { reject: false });
  t.regex(read.stdout, /read 65536\/65536 bytes/);
});

/**
 * `syncsh daemon` serves the appliance's volumes over NBD: the unix socket
 * under the home (0600 in a 0700 directory), a volume created while it runs
 * exported at once, one destroyed withdrawn (its client disconnected), and
 * TCP following `setup appliance nbd-listen` / `nbd-allow` without a restart.
 */
import path from 'node:path';
import net from 'node:net';
import { stat, readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { gatedTest } from '../helpers/system.js';
import { makeAppliance } from '../helpers/appliance.js';
import { BIN, assertBuilt, syncsh } from '../helpers/cli.js';
import { RawClient, nbdClientsMissing, unixUri } from '../helpers/nbd.js';
import { daemonLines } from '../helpers/daemon.js';
import * as P from '../../src/services/nbd/protocol.js';

const test = await gatedTest(['qemu-utils', 'libnbd-bin'], nbdClientsMissing('nbdinfo', 'qemu-io'));
const MiB = 1024 * 1024;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** polls `probe` (a command's answer) until it gives something, for at most 20 s */
async function waitFor<T>(probe: () => Promise<T | null | false>): Promise<T> {
  for (const started = Date.now(); Date.now() - started < 20_000; ) {
    const got = await probe();
    if (got) return got;
  }
  throw new Error('timed out waiting for the daemon to publish its NBD clients');
}

test('syncsh daemon exports zvols on its unix socket and on TCP as nbd-listen / nbd-allow say; show zvol names the clients, destroy waits for them', async (t) => {
  assertBuilt();
  const a = makeAppliance(t);
  for (const cmd of ['create folder fs:tank', 'create zvol fs:tank/vm1 --size 64M']) t.is((await syncsh(['-c', cmd], a.env)).exitCode, 0, cmd);
  const daemon = execa('node', [BIN, 'daemon'], { env: a.env, reject: false });
  t.teardown(async () => {
    daemon.kill('SIGTERM');
    await daemon;
  });
  const out = daemonLines(daemon);
  const socket = path.join(a.home, 'run', 'nbd.sock');
  await out.wait(new RegExp(`NBD server listening on ${socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
  t.is((await stat(socket)).mode & 0o777, 0o600);
  t.is((await stat(path.dirname(socket))).mode & 0o777, 0o700);

  const uri = unixUri(socket, 'fs:tank/vm1');
  t.is(JSON.parse(String((await syncsh(['--json', '-c', 'show zvol fs:tank/vm1'], a.env)).stdout)).nbd, uri, 'show zvol gives the URI the daemon serves');
  const info = JSON.parse((await execa('nbdinfo', ['--json', uri])).stdout).exports[0];
  t.like(info, { 'export-name': 'fs:tank/vm1', 'export-size': 64 * MiB, block_size_minimum: 512, block_size_preferred: 65536 });
  const io = await execa('qemu-io', ['-f', 'raw', '-c', 'write -P 0x3c 1M 128k', '-c', 'flush', uri]);
  t.notRegex(io.stdout, /failed/i);
  // a snapshot taken from another process (the CLI) while the daemon serves it holds the flushed write
  t.is((await syncsh(['-c', 'create auto-sync --from-fs fs:tank/vm1 --to-fs fs:tank/copy1 -y'], a.env)).exitCode, 0);
  const run = await syncsh(['-c', 'run auto-sync :tank-vm1-000'], a.env);
  t.is(run.exitCode, 0, String(run.stderr));
  const copy = await readFile(path.join(a.home, 'fs', 'tank', 'copy1', 'volume.img'));
  t.true(copy.subarray(MiB, MiB + 128 * 1024).equals(Buffer.alloc(128 * 1024, 0x3c)), 'the write reached the replica');
  const back = await execa('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x3c 1M 128k', uri]);
  t.notRegex(back.stdout, /failed|mismatch/i, 'a new connection reads the write back');

  // created while the daemon runs: exported at once
  t.is((await syncsh(['-c', 'create zvol fs:tank/vm2 --size 8M'], a.env)).exitCode, 0);
  t.is((await execa('nbdinfo', ['--size', unixUri(socket, 'fs:tank/vm2')])).stdout.trim(), String(8 * MiB));
  const list = (await execa('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${socket}`])).stdout;
  t.deepEqual(
    JSON.parse(list)
      .exports.map((e: { 'export-name': string }) => e['export-name'])
      .sort(),
    ['fs:tank/copy1', 'fs:tank/vm1', 'fs:tank/vm2'],
  );

  // a client attached: show zvol names it, destroy is refused naming it; once it is gone, destroy goes ahead and the export with it
  const held = await RawClient.connect(t, socket);
  await held.open('fs:tank/vm2');
  const shown = await waitFor(async () => {
    const z = JSON.parse(String((await syncsh(['--json', '-c', 'show zvol fs:tank/vm2'], a.env)).stdout));
    return z.clients.length === 1 ? z : null;
  });
  t.is(typeof shown.clients[0].client, 'string');
  const refusedDestroy = await syncsh(['-c', 'destroy zvol fs:tank/vm2 -y'], a.env);
  t.is(refusedDestroy.exitCode, 1);
  t.regex(String(refusedDestroy.stderr), /The zvol fs:tank\/vm2 has 1 NBD client\(s\) connected .*disconnect them first/);
  held.socket.end();
  await held.closed();
  await waitFor(async () => JSON.parse(String((await syncsh(['--json', '-c', 'show zvol fs:tank/vm2'], a.env)).stdout)).clients.length === 0);
  t.is((await syncsh(['-c', 'destroy zvol fs:tank/vm2 -y'], a.env)).exitCode, 0);
  t.not((await execa('nbdinfo', ['--size', unixUri(socket, 'fs:tank/vm2')], { reject: false })).exitCode, 0);

  // TCP: only once nbd-listen is set; nbd-allow applies without a restart
  const port = await freePort();
  const tcpUri = `nbd://127.0.0.1:${port}/fs:tank/vm1`;
  let mark = out.lines.length;
  t.is((await syncsh(['-c', `setup appliance nbd-listen 127.0.0.1:${port}`], a.env)).exitCode, 0);
  await out.wait(new RegExp(`NBD server listening on 127\\.0\\.0\\.1:${port}$`), mark);
  t.is((await execa('nbdinfo', ['--size', tcpUri])).stdout.trim(), String(64 * MiB));
  mark = out.lines.length;
  t.is((await syncsh(['-c', 'setup appliance nbd-allow 10.9.0.0/16'], a.env)).exitCode, 0);
  await out.wait(new RegExp(`NBD server listening on 127\\.0\\.0\\.1:${port}$`), mark);
  const refused = await RawClient.connect(t, { host: '127.0.0.1', port });
  await refused.closed();
  await out.wait(/refused NBD client 127\.0\.0\.1:\d+: not in the allow-list \(10\.9\.0\.0\/16\)/, mark);
  // the unix socket is not affected by TCP settings
  const unixStill = await RawClient.connect(t, socket);
  await unixStill.open('fs:tank/vm1');
  const c = unixStill.send(P.NBD_CMD_READ, MiB, 512);
  t.like(await unixStill.reply(512), { error: 0, cookie: c });

  mark = out.lines.length;
  t.is((await syncsh(['-c', 'setup appliance nbd-listen none'], a.env)).exitCode, 0);
  await out.wait(/NBD TCP listener stopped/, mark);
  t.not((await execa('nbdinfo', ['--size', tcpUri], { reject: false })).exitCode, 0);
});

test('bad nbd-listen and nbd-allow values are refused by name and change nothing', async (t) => {
  assertBuilt();
  const a = makeAppliance(t);
  t.is((await syncsh(['-c', 'setup appliance nbd-listen 127.0.0.1:10809'], a.env)).exitCode, 0);
  for (const bad of ['1.2.3', 'tank:80', '127.0.0.1:99999', '127.0.0.1:0', 'localhost:10809']) {
    const r = await syncsh(['-c', `setup appliance nbd-listen ${bad}`], a.env);
    t.not(r.exitCode, 0, bad);
    t.true(String(r.stderr).includes(`not "${bad}"`), String(r.stderr));
  }
  const r = await syncsh(['-c', 'setup appliance nbd-allow 10.0.0.0/8 10.0.0.0/33'], a.env);
  t.not(r.exitCode, 0);
  t.regex(String(r.stderr), /"10\.0\.0\.0\/33" is not an address range/);
  const show = JSON.parse(String((await syncsh(['-c', 'show appliance', '--json'], a.env)).stdout));
  t.deepEqual(show.nbdListen, { host: '127.0.0.1', port: 10809 });
  t.deepEqual(show.nbdAllow, ['127.0.0.1/32', '::1/128']);
  t.is(show.nbdSocket, path.join(a.home, 'run', 'nbd.sock'));
});

/**
 * Real NBD clients against a real NbdServer serving FileVolumes: nbdinfo,
 * qemu-io, qemu-img convert + compare, nbdcopy and fio's nbd engine with
 * verify, over the unix socket and over TCP.
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { gatedTest } from '../helpers/system.js';
import { makeImage, nbdClientsMissing, nbdTempDir, startFileServer } from '../helpers/nbd.js';

const MiB = 1024 * 1024;
const test = await gatedTest(['qemu-utils', 'libnbd-bin', 'fio'], nbdClientsMissing('nbdinfo', 'qemu-io', 'qemu-img', 'nbdcopy', 'fio'));

test('nbdinfo: size, block size constraints, flags and --list', async (t) => {
  const dir = nbdTempDir(t);
  const s = await startFileServer(t, { 'fs:tank/vm1': { path: await makeImage(path.join(dir, 'a.img'), 64 * MiB) }, ro: { path: await makeImage(path.join(dir, 'b.img'), MiB), readOnly: true } });
  const info = JSON.parse((await execa('nbdinfo', ['--json', s.uri('fs:tank/vm1')])).stdout);
  const e = info.exports[0];
  t.is(info.protocol, 'newstyle-fixed');
  t.true(info.TLS === false && info.structured === true);
  t.like(e, {
    'export-name': 'fs:tank/vm1',
    'export-size': 64 * MiB,
    block_size_minimum: 512,
    block_size_preferred: 4096,
    block_size_maximum: 32 * MiB,
    is_read_only: false,
    can_flush: true,
    can_fua: true,
    can_trim: true,
    can_zero: true,
    can_multi_conn: true,
  });
  const ro = JSON.parse((await execa('nbdinfo', ['--json', s.uri('ro')])).stdout).exports[0];
  t.is(ro.is_read_only, true);
  const list = JSON.parse((await execa('nbdinfo', ['--json', '--list', `nbd+unix:///?socket=${s.socket}`])).stdout);
  t.deepEqual(list.exports.map((x: { 'export-name': string }) => x['export-name']).sort(), ['fs:tank/vm1', 'ro']);
  const missing = await execa('nbdinfo', [s.uri('nope')], { reject: false });
  t.not(missing.exitCode, 0);
  t.regex(missing.stderr, /No such file or directory for export: nope/, 'NBD_REP_ERR_UNKNOWN, as libnbd words it');
});

test('qemu-io: write -P / read -P, aio, flush, discard, write -z', async (t) => {
  const dir = nbdTempDir(t);
  const image = await makeImage(path.join(dir, 'a.img'), 16 * MiB);
  const s = await startFileServer(t, { vol: { path: image } });
  const r = await execa('qemu-io', [
    '-f',
    'raw',
    '-c',
    'write -P 0xab 0 1M',
    '-c',
    'write -f -P 0x11 1M 64k', // -f: FUA
    '-c',
    'aio_write -P 0xcd 2M 512k',
    '-c',
    'aio_write -P 0xce 3M 4k',
    '-c',
    'aio_flush',
    '-c',
    'read -P 0xab 0 1M',
    '-c',
    'read -P 0x11 1M 64k',
    '-c',
    'read -P 0xcd 2M 512k',
    '-c',
    'read -P 0xce 3M 4k',
    '-c',
    'flush',
    '-c',
    'write -z 8M 2M',
    '-c',
    'read -P 0 8M 2M',
    '-c',
    'write -P 0x22 10M 4k',
    '-c',
    'discard 4M 4M',
    '-c',
    'read -P 0x22 10M 4k',
    s.uri('vol'),
  ]);
  t.notRegex(r.stdout + r.stderr, /Pattern verification failed|error|failed/i, r.stdout);
  t.is(r.stdout.match(/^read /gm)?.length, 6);
  const file = await readFile(image);
  t.true(file.subarray(0, MiB).equals(Buffer.alloc(MiB, 0xab)));
  t.true(file.subarray(2 * MiB, 2 * MiB + 512 * 1024).equals(Buffer.alloc(512 * 1024, 0xcd)));
  const bad = await execa('qemu-io', ['-f', 'raw', '-c', 'write -P 1 16M 4k', s.uri('vol')], { reject: false });
  t.regex(bad.stdout + bad.stderr, /beyond|out of|Input\/output|No space|Invalid/i, 'a write past the end is refused');
});

test('qemu-img convert to and from the export, then compare', async (t) => {
  const dir = nbdTempDir(t);
  const src = path.join(dir, 'src.raw');
  const data = Buffer.alloc(24 * MiB);
  randomBytes(8 * MiB).copy(data, 0);
  randomBytes(MiB).copy(data, 20 * MiB); // a hole between
  await writeFile(src, data);
  const image = await makeImage(path.join(dir, 'a.img'), 24 * MiB);
  const s = await startFileServer(t, { vol: { path: image } });
  await execa('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, s.uri('vol')]);
  await execa('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, s.uri('vol')]);
  const back = path.join(dir, 'back.qcow2');
  await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', s.uri('vol'), back]);
  const cmp = await execa('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', back, src]);
  t.regex(cmp.stdout, /Images are identical/);
  t.true((await readFile(image)).equals(data), 'the image holds exactly what was copied');
});

test('nbdcopy to and from the export, several connections (multi-conn)', async (t) => {
  const dir = nbdTempDir(t);
  const src = path.join(dir, 'src.raw');
  const data = randomBytes(32 * MiB);
  await writeFile(src, data);
  const image = await makeImage(path.join(dir, 'a.img'), 32 * MiB);
  const s = await startFileServer(t, { vol: { path: image } });
  await execa('nbdcopy', ['--flush', '-C', '4', src, s.uri('vol')]);
  t.true((await readFile(image)).equals(data), 'the image holds exactly what was copied');
  const out = path.join(dir, 'out.raw');
  await execa('nbdcopy', ['-C', '4', s.uri('vol'), out]);
  t.true((await readFile(out)).equals(data), 'read back exactly');
});

test('fio --ioengine=nbd: random writes at iodepth 16 verified (crc32c)', async (t) => {
  const dir = nbdTempDir(t);
  const s = await startFileServer(t, { vol: { path: await makeImage(path.join(dir, 'a.img'), 64 * MiB) } });
  const r = await execa(
    'fio',
    ['--name=verify', '--ioengine=nbd', `--uri=${s.uri('vol')}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=32M', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--output-format=json'],
    { reject: false, cwd: dir },
  );
  t.is(r.exitCode, 0, r.stderr);
  const job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
  t.is(job.error, 0);
  t.is(job.write.io_bytes, 32 * MiB);
  t.is(job.read.io_bytes, 32 * MiB, 'fio read back everything it wrote and checked it');
});

test('over TCP: nbdinfo and qemu-io on 127.0.0.1 with a port picked by the server', async (t) => {
  const dir = nbdTempDir(t);
  const s = await startFileServer(t, { vol: { path: await makeImage(path.join(dir, 'a.img'), 8 * MiB) } }, { tcp: { host: '127.0.0.1', port: 0, allow: ['127.0.0.1/32'] } });
  const addr = s.server.tcpAddress!;
  t.true(addr.port > 0);
  const uri = `nbd://127.0.0.1:${addr.port}/vol`;
  t.is((await execa('nbdinfo', ['--size', uri])).stdout.trim(), String(8 * MiB));
  const r = await execa('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 64k', '-c', 'read -P 0x5a 0 64k', uri]);
  t.notRegex(r.stdout, /failed/i);
});

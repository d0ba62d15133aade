/**
 * auto-cdp's resync and dedupe figures, side by side in one run (issue 12):
 *
 * 1. Partial resync vs full sync: a zvol of BENCH_CDP_GIB (default 4) GiB of
 *    random data is mirrored to a new target (full sync: every chunk sent);
 *    then the target's daemon is away while 1% of the chunks are rewritten
 *    (fio, 64 KiB random writes through the export), and comes back: only
 *    the dirty chunks are sent. Bytes on the mirror link and time from
 *    "connected" to "level". Goal: partial/full <= 0.02.
 * 2. Dedupe: ext4 on a mirrored 1 GiB zvol (nbdfuse + losetup + mkfs.ext4),
 *    a 256 MiB file copied in twice; bytes on the mirror link for each copy.
 *    Goal: the second copy sends <= 0.1 of the bytes it wrote.
 *
 * Both appliances on this machine (local-bind, both daemons). The copies
 * are compared byte for byte at the end (BENCH_VERIFY=0 skips).
 *
 *   npm run bench:cdp-resync
 */
import { execa, type ResultPromise } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BIN, syncsh } from './common.js';
import { withCleanup, type CleanupBag } from './system.js';
import { daemonLines } from '../test/helpers/daemon.js';
import { createServices } from '../src/services/index.js';
import type { MirrorStatus, TargetStatus } from '../src/services/cdp/status.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
const CHUNK = 64 << 10;
const gib = Number(process.env.BENCH_CDP_GIB ?? 4); // 0: the dedupe part only
const fileMiB = Number(process.env.BENCH_CDP_FILE_MB) || 256;
const verify = process.env.BENCH_VERIFY !== '0';

await withCleanup(async (bag) => {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR || os.tmpdir(), 'syncsh-bench-cdp-resync-'));
  bag.add(() => rm(work, { recursive: true, force: true }));
  const env = (id: string) => ({ ...process.env, SYNCSH_HOME: path.join(work, id), SYNCSH_APPLIANCE_ID: id, SYNCSH_DRIVERS: 'fs' });
  const alpha = env('alpha');
  const beta = env('beta');
  const cli = async (e: NodeJS.ProcessEnv, line: string) => String((await syncsh(e, line)).stdout);
  const start = (e: NodeJS.ProcessEnv) => {
    const child: ResultPromise = execa('node', [BIN, 'daemon'], { env: e, reject: false });
    bag.add(async () => {
      child.kill('SIGTERM');
      await child;
    });
    return Object.assign(daemonLines(child), { child });
  };
  const uri = (e: NodeJS.ProcessEnv, zvol: string) => `nbd+unix:///${zvol}?socket=${e.SYNCSH_HOME}/run/nbd.sock`;
  /** the master daemon's figures for a mirror, written after `after` (ms) */
  const figures = async (name: string, ok: (x: TargetStatus) => boolean, after = 0): Promise<TargetStatus> => {
    for (;;) {
      try {
        const f = JSON.parse(readFileSync(path.join(alpha.SYNCSH_HOME, 'run', 'cdp-status.json'), 'utf8')) as { mirrors: Record<string, MirrorStatus> };
        const m = f.mirrors[name];
        if (m && Date.parse(m.updatedAt) > after && ok(m.targets[0])) return m.targets[0];
      } catch {
        // not written yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const identical = async (zvol: string) => {
    if (!verify) return 'not compared';
    const r = await execa('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri(alpha, zvol), uri(beta, zvol)], { reject: false });
    return r.exitCode === 0 ? 'byte-identical' : `DIFFER: ${r.stdout}${r.stderr}`;
  };

  for (const e of [alpha, beta]) await cli(e, 'create folder fs:tank');
  await cli(alpha, `setup network local-bind ${beta.SYNCSH_HOME}`);
  // 003's master + manual: writes go on while the target is away (with no policy they fail)
  await cli(alpha, 'setup network fencing beta manual');

  let lb = start(beta);
  await lb.wait(/NBD/);
  const la = start(alpha);
  await la.wait(/NBD/);
  const full = { seconds: 0, bytes: 0 };
  const partial = { seconds: 0, bytes: 0 };
  let resyncEqual = 'not run';
  // ---- 1. partial resync vs full sync ----
  if (gib > 0) {
    await cli(alpha, `create zvol fs:tank/vm1 --size ${gib}G`);
    console.log(`filling a ${gib} GiB zvol with random data …`);
    {
      const fs = await createServices(alpha).storage.usable('fs');
      const vol = await fs.openVolume!('tank/vm1');
      const buf = randomBytes(8 * MiB);
      // every 4 KiB block its own (a counter in each): no block crosses as a dedupe reference
      for (let at = 0; at < gib * GiB; at += buf.length) {
        for (let b = 0; b < buf.length; b += 4096) buf.writeDoubleBE(at + b, b);
        await vol.write(at, buf, { fua: false });
      }
      await vol.flush();
      await vol.close();
    }
    await cli(alpha, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode async -y');
    await la.wait(/auto-cdp:tank-vm1-000: connected to beta/, 0, 600_000);
    let t0 = Date.now();
    await la.wait(/auto-cdp:tank-vm1-000: beta is level/, 0, 3_600_000);
    full.seconds = (Date.now() - t0) / 1000;
    full.bytes = (await figures('tank-vm1-000', (x) => x.state === 'mirroring' && x.lagBytes === 0, Date.now())).sentBytes!;
    console.log(`full sync: ${(full.bytes / MiB).toFixed(1)} MiB in ${full.seconds.toFixed(1)} s`);

    lb.child.kill('SIGTERM');
    await lb.child;
    await la.wait(/lost beta/, 0, 60_000);
    const chunks = (gib * GiB) / CHUNK;
    const changed = Math.round(chunks / 100);
    console.log(`target away; rewriting ${changed} of ${chunks} chunks (1%) …`);
    await execa('fio', ['--name=changes', '--ioengine=nbd', `--uri=${uri(alpha, 'fs:tank/vm1')}`, `--size=${gib}G`, '--rw=randwrite', '--bs=64k', `--io_size=${changed * CHUNK}`, '--refill_buffers', '--randrepeat=0', '--iodepth=4'], {
      cwd: work,
    });
    const away = await figures('tank-vm1-000', (x) => x.state === 'logging' && x.dirtyChunks === changed, Date.now());
    const from = la.lines.length;
    lb = start(beta);
    await la.wait(/auto-cdp:tank-vm1-000: connected to beta/, from, 600_000);
    t0 = Date.now();
    await la.wait(/auto-cdp:tank-vm1-000: beta is level/, from, 3_600_000);
    const partialSeconds = (Date.now() - t0) / 1000;
    const back = await figures('tank-vm1-000', (x) => x.state === 'mirroring' && x.lagBytes === 0, Date.now());
    partial.seconds = partialSeconds;
    partial.bytes = back.sentBytes! - away.sentBytes!;
    resyncEqual = await identical('fs:tank/vm1');
  }

  // ---- 2. dedupe: a file copied twice inside ext4 ----
  await cli(alpha, 'create zvol fs:tank/vm2 --size 1G');
  await cli(alpha, 'create auto-cdp --zvol fs:tank/vm2 --to-host beta --mode async -y');
  await la.wait(/auto-cdp:tank-vm2-000: beta is level/, 0, 600_000);
  const mnt = await ext4On(bag, work, uri(alpha, 'fs:tank/vm2'));
  const source = path.join(work, 'file.bin');
  writeFileSync(source, randomBytes(fileMiB * MiB));
  const copyIn = async (name: string) => {
    const before = await figures('tank-vm2-000', (x) => x.lagBytes === 0, Date.now());
    await execa('cp', [source, path.join(mnt, name)]);
    await execa('sync', ['-f', path.join(mnt, name)]);
    const after = await figures('tank-vm2-000', (x) => x.lagBytes === 0 && x.state === 'mirroring', Date.now());
    return { bytes: after.sentBytes! - before.sentBytes!, deduped: after.dedupedBytes! - before.dedupedBytes! };
  };
  const copy1 = await copyIn('copy1.bin');
  const copy2 = await copyIn('copy2.bin');
  await execa('umount', [mnt]);
  // async: what the unmount wrote reaches the target before the images are compared
  await figures('tank-vm2-000', (x) => x.lagBytes === 0 && x.state === 'mirroring', Date.now());
  const dedupeEqual = await identical('fs:tank/vm2');

  const row = (name: string, ours: string, theirs: string, ratio: number, goal: string, met: boolean) =>
    console.log(`${name.padEnd(34)}${ours.padStart(16)}${theirs.padStart(16)}${ratio.toFixed(4).padStart(9)}${goal.padStart(9)}${met ? '' : '  MISSED'}`);
  console.log(`\nauto-cdp resync and dedupe, both appliances on this machine (local-bind); load ${os.loadavg()[0].toFixed(1)}`);
  console.log(`${'measure'.padEnd(34)}${'ours'.padStart(16)}${'reference'.padStart(16)}${'ratio'.padStart(9)}${'goal'.padStart(9)}`);
  if (gib > 0) row(`resync 1% of ${gib} GiB: MiB sent`, (partial.bytes / MiB).toFixed(1), `${(full.bytes / MiB).toFixed(1)} full`, partial.bytes / full.bytes, '<=0.02', partial.bytes / full.bytes <= 0.02);
  if (gib > 0) row(`resync 1% of ${gib} GiB: seconds`, partial.seconds.toFixed(1), `${full.seconds.toFixed(1)} full`, partial.seconds / full.seconds, '', true);
  row(`ext4 ${fileMiB} MiB 2nd copy: MiB sent`, (copy2.bytes / MiB).toFixed(2), `${fileMiB} written`, copy2.bytes / (fileMiB * MiB), '<=0.1', copy2.bytes <= 0.1 * fileMiB * MiB);
  row(`ext4 ${fileMiB} MiB 1st copy: MiB sent`, (copy1.bytes / MiB).toFixed(2), `${fileMiB} written`, copy1.bytes / (fileMiB * MiB), '', true);
  console.log(`deduped: 2nd copy ${(copy2.deduped / MiB).toFixed(1)} MiB as references; copies: resync ${resyncEqual}, ext4 ${dedupeEqual}`);
});

/** ext4 on an export without kernel NBD (nbdfuse shows it as a file, losetup makes it a device, as test/nbd/ext4.test.ts); undone by the bag */
async function ext4On(bag: CleanupBag, work: string, uri: string): Promise<string> {
  const fuseDir = path.join(work, 'fuse');
  const mnt = path.join(work, 'mnt');
  mkdirSync(fuseDir);
  mkdirSync(mnt);
  const pidfile = path.join(work, 'nbdfuse.pid');
  const fuse = execa('nbdfuse', ['-P', pidfile, path.join(fuseDir, 'disk'), uri], { reject: false });
  let loop: string | null = null;
  bag.add(async () => {
    await execa('umount', [mnt], { reject: false });
    if (loop) await execa('losetup', ['-d', loop], { reject: false });
    await execa('fusermount3', ['-u', fuseDir], { reject: false });
    fuse.kill('SIGTERM');
    await fuse;
  });
  for (const end = Date.now() + 20_000; !existsSync(pidfile); await new Promise((r) => setTimeout(r, 50))) if (Date.now() > end || fuse.exitCode !== null) throw new Error('nbdfuse did not mount');
  loop = (await execa('losetup', ['-f', '--show', path.join(fuseDir, 'disk')])).stdout.trim();
  await execa('mkfs.ext4', ['-q', '-F', loop]);
  await execa('mount', ['-t', 'ext4', loop, mnt]);
  return mnt;
}

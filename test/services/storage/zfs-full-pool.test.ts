/**
 * issue 15 (full-disk/zfs/local): a receive into a nearly full zfs-fuse pool
 * fails for space and leaves the destination mounted as it was. It used to
 * unmount and remount it after every failed receive, though nothing had
 * changed and nothing was undone; the campaign met a remount that zfs-fuse
 * answered "busy" past the 30 s retry (a full pool, load ~20), and the
 * destination stayed unmounted. Checked by the commands the driver runs (a
 * zfs that logs its arguments): no unmount after such a failure.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, statfsSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createZfsDriver, ZfsError } from '../../../src/services/storage/zfs/index.js';
import { tempDir } from '../../helpers/fs-tree.js';
import { replicationWith } from '../../helpers/replication.js';
import { fill } from '../../helpers/small-fs.js';
import { gatedTest } from '../../helpers/system.js';
import { makeZfsPool, zfsMissing } from '../../helpers/zfs-pool.js';

const zfsTest = await gatedTest(['ZFS (zfs-fuse)'], zfsMissing);
const MiB = 1024 * 1024;

/** zfs frees space at its next commit: synced, then read until it holds still */
async function settled(dir: string): Promise<void> {
  await execa('sync', ['-f', dir]);
  const free = () => {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  };
  let last = free();
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    if (free() === last) return;
    last = free();
  }
}

zfsTest('a receive that fails because the pool is full leaves the destination mounted, never unmounting it', async (t) => {
  t.timeout(3 * 60_000);
  const [a, small] = await Promise.all([makeZfsPool(t, { prefix: 'zs' }), makeZfsPool(t, { size: 64 * MiB, prefix: 'zs' })]);
  // the real zfs, each run's arguments logged
  const dir = tempDir(t, 'syncsh-zfslog-');
  const log = path.join(dir, 'ran');
  const logging = path.join(dir, 'zfs');
  writeFileSync(logging, `#!/bin/sh\necho "$*" >> '${log}'\nexec zfs "$@"\n`);
  chmodSync(logging, 0o755);
  const driver = createZfsDriver({ zfs: logging });
  const { replicate } = replicationWith(driver);

  const src = `${a.name}/src`;
  const dst = `${small.name}/dst`;
  await driver.createDataset(src);
  const srcDir = (await driver.getDataset(src))!.mountpoint!;
  writeFileSync(path.join(srcDir, 'first.bin'), randomBytes(MiB));
  await driver.createSnapshot(src, 's1', { recursive: false });
  await replicate(src, 's1', dst);
  writeFileSync(path.join(srcDir, 'second.bin'), randomBytes(8 * MiB));
  await driver.createSnapshot(src, 's2', { recursive: false });
  // the pool filled from outside the destination, as the campaign's filler does, then 1 MiB of room
  // given back: enough for the receive to start (and its change probe), not for the delta
  const filler = path.join(small.mountpoint, 'filler');
  t.teardown(() => rmSync(filler, { force: true }));
  fill(filler);
  await settled(small.mountpoint);
  truncateSync(filler, statSync(filler).size - MiB);
  await settled(small.mountpoint);

  writeFileSync(log, '');
  const error = await t.throwsAsync(replicate(src, 's2', dst, { from: 's1' }), { instanceOf: ZfsError });
  t.is(error!.message, `Receiving into '${dst}' failed: The pool '${small.name}' ran out of space. '${dst}' was left at its previous snapshot 's1'.`);
  const ran = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  t.true(
    ran.some((line) => line.startsWith('receive')),
    'the receive ran (and failed for space)',
  );
  t.deepEqual(
    ran.filter((line) => /^u?n?mount\b/.test(line)),
    [],
    'nothing was unmounted or mounted: the failed receive changed nothing',
  );
  const info = await driver.getDataset(dst);
  t.true(info?.mounted);
  t.is(readFileSync(path.join(info!.mountpoint!, 'first.bin')).length, MiB);
  t.deepEqual(
    (await driver.listSnapshots(dst)).map((s) => s.name),
    ['s1'],
  );
});

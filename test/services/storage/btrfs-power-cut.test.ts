/**
 * btrfs under a power cut: the btrfs image on a disk whose power is cut
 * (test/helpers/power-cut.ts; btrfs has no shutdown ioctl of its own, but
 * its flushes reach the image through the loop device as fsyncs, so cutting
 * the disk under the image cuts btrfs's). A receive that returned is there
 * afterwards: the received snapshot, marker of the next incremental, and
 * the live subvolume with its files.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createBtrfsDriver } from '../../../src/services/storage/btrfs/index.js';
import { btrfsMissing, makeBtrfsVolume } from '../../helpers/btrfs-volume.js';
import { diffTrees, readTree } from '../../helpers/fs-tree.js';
import { makePowerCutDisk, powerCutMissing } from '../../helpers/power-cut.js';
import { replicationWith } from '../../helpers/replication.js';
import { gatedTest } from '../../helpers/system.js';

const btrfsTest = await gatedTest(['btrfs (btrfs-progs, loop devices)', 'ext4 power cut (xfsprogs)'], async () => (await btrfsMissing()) ?? (await powerCutMissing()));
const driver = createBtrfsDriver();
const { replicate } = replicationWith(driver);

btrfsTest('a receive that returned is all there after a power cut the moment it did: snapshot and live files', async (t) => {
  const disk = await makePowerCutDisk(t);
  const vol = await makeBtrfsVolume(t, { under: disk.dir });
  const src = path.join(vol.mountpoint, 'src');
  const dst = path.join(vol.mountpoint, 'dst');
  await driver.createDataset(src);
  mkdirSync(path.join(src, 'dir'));
  for (const [i, size] of [10, 70_000, 1_500_000, 3_000_000].entries()) writeFileSync(path.join(src, 'dir', `f${i}.bin`), randomBytes(size));
  await driver.createSnapshot(src, 's1', { recursive: false });
  const expected = await readTree(src);
  // what was there before the receive is on disk (the test is of the receive)
  await execa('sync');
  await replicate(src, 's1', dst);
  await disk.cut();
  await vol.remount(() => disk.restore());
  t.true(
    (await driver.listSnapshots(dst)).some((s) => s.name === 's1'),
    'the received snapshot',
  );
  t.deepEqual(diffTrees(await readTree(dst), expected), [], 'the live files');
});

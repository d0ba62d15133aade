/**
 * A real filesystem on an export, without kernel NBD: nbdfuse shows the
 * export as a file, losetup makes it a block device, mkfs.ext4 + mount,
 * files written, unmounted, and fsck.ext4 -n finds it clean; the files
 * are there after a second mount. The fuse mount, loop device and ext4
 * mount are undone at teardown, pass or fail.
 */
import path from 'node:path';
import { existsSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { gatedTest, isRoot, kernelHasFilesystem, missingCommand } from '../helpers/system.js';
import { makeImage, nbdTempDir, startFileServer } from '../helpers/nbd.js';

const test = await gatedTest(['libnbd-bin (nbdfuse)', 'fuse3', 'e2fsprogs', 'root', 'ext4'], async () => {
  const missing = await missingCommand('nbdfuse', 'fusermount3', 'losetup', 'mkfs.ext4', 'fsck.ext4', 'mount', 'umount');
  if (missing) return `${missing} is not installed`;
  if (!isRoot()) return 'losetup and mount need root';
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing';
  if (!(await kernelHasFilesystem('ext4'))) return 'the kernel has no ext4';
  return null;
});

async function until(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('nbdfuse + losetup + mkfs.ext4 + mount: files written, unmounted, fsck.ext4 -n clean', async (t) => {
  const dir = nbdTempDir(t);
  const image = await makeImage(path.join(dir, 'disk.img'), 128 * 1024 * 1024);
  const s = await startFileServer(t, { disk: { path: image } });
  const fuseDir = path.join(dir, 'fuse');
  const mnt = path.join(dir, 'mnt');
  mkdirSync(fuseDir);
  mkdirSync(mnt);
  const pidfile = path.join(dir, 'nbdfuse.pid');
  let loop: string | null = null;
  let mounted = false;
  const fuse = execa('nbdfuse', ['-P', pidfile, path.join(fuseDir, 'disk'), s.uri('disk')], { reject: false });
  t.teardown(async () => {
    if (mounted && (await execa('umount', [mnt], { reject: false })).failed) await execa('umount', ['-l', mnt], { reject: false });
    if (loop) await execa('losetup', ['-d', loop], { reject: false });
    await execa('fusermount3', ['-u', fuseDir], { reject: false });
    fuse.kill('SIGTERM');
    await fuse;
  });
  await until(() => existsSync(pidfile) || fuse.exitCode !== null, 'nbdfuse to mount');
  t.is(fuse.exitCode, null, 'nbdfuse is serving');

  loop = (await execa('losetup', ['-f', '--show', path.join(fuseDir, 'disk')])).stdout.trim();
  t.regex(loop, /^\/dev\/loop\d+$/);
  await execa('mkfs.ext4', ['-q', '-F', loop]);
  await execa('mount', ['-t', 'ext4', loop, mnt]);
  mounted = true;
  const files = Array.from({ length: 20 }, (_, i) => ({ name: `f${i}.bin`, data: randomBytes(1024 * (1 + i * 37)) }));
  mkdirSync(path.join(mnt, 'sub'));
  for (const f of files) await writeFile(path.join(mnt, 'sub', f.name), f.data);
  await execa('sync', ['-f', path.join(mnt, 'sub')]);
  await execa('umount', [mnt]);
  mounted = false;

  const fsck = await execa('fsck.ext4', ['-n', '-f', loop], { reject: false });
  t.is(fsck.exitCode, 0, `fsck.ext4 -n: ${fsck.stdout}\n${fsck.stderr}`);

  await execa('mount', ['-t', 'ext4', '-o', 'ro', loop, mnt]);
  mounted = true;
  for (const f of files) t.true((await readFile(path.join(mnt, 'sub', f.name))).equals(f.data), f.name);
  t.true(s.server.clients().some((c) => c.export === 'disk'), 'nbdfuse is a listed client');
});

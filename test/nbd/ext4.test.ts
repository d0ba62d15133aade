/**
 * A real filesystem on an export, without kernel NBD: nbdfuse shows the
 * export as a file, losetup makes it a block device, mkfs.ext4 + mount,
 * files written, unmounted, and fsck.ext4 -n finds it clean; the files
 * are there after a second mount; on a zvol, its auto-sync replica is a
 * clean ext4 with the same files. The fuse mount, loop devices and ext4
 * mounts are undone at teardown, pass or fail.
 *
 * The NBD server runs in a process of its own, never in the test's: this
 * process writes and reads the mounted ext4, and the kernel holds such a
 * call until the server answers, so a server behind it in the same process
 * (its event loop, its libuv threads) could wait on it for good.
 */
import path from 'node:path';
import { existsSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { gatedTest, isRoot, kernelHasFilesystem, missingCommand } from '../helpers/system.js';
import type { ExecutionContext } from 'ava';
import { makeImage, nbdTempDir, serveInProcess, unixUri } from '../helpers/nbd.js';
import { makeAppliance } from '../helpers/appliance.js';
import { assertBuilt, syncsh } from '../helpers/cli.js';
import { startNbdDaemon } from '../helpers/daemon.js';

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

/** the fuse mount, loop device and ext4 mount on `uri`, undone at teardown; the caller writes and checks */
async function attach(t: ExecutionContext, dir: string, uri: string) {
  const fuseDir = path.join(dir, 'fuse');
  const mnt = path.join(dir, 'mnt');
  mkdirSync(fuseDir);
  mkdirSync(mnt);
  const pidfile = path.join(dir, 'nbdfuse.pid');
  const state = { loop: null as string | null, mounted: false };
  const fuse = execa('nbdfuse', ['-P', pidfile, path.join(fuseDir, 'disk'), uri], { reject: false });
  t.teardown(async () => {
    if (state.mounted && (await execa('umount', [mnt], { reject: false })).failed) await execa('umount', ['-l', mnt], { reject: false });
    if (state.loop) await execa('losetup', ['-d', state.loop], { reject: false });
    await execa('fusermount3', ['-u', fuseDir], { reject: false });
    fuse.kill('SIGTERM');
    await fuse;
  });
  await until(() => existsSync(pidfile) || fuse.exitCode !== null, 'nbdfuse to mount');
  t.is(fuse.exitCode, null, 'nbdfuse is serving');
  state.loop = (await execa('losetup', ['-f', '--show', path.join(fuseDir, 'disk')])).stdout.trim();
  t.regex(state.loop, /^\/dev\/loop\d+$/);
  const loop = state.loop;
  return {
    loop,
    mnt,
    async mount(ro = false) {
      await execa('mount', ['-t', 'ext4', ...(ro ? ['-o', 'ro'] : []), loop, mnt]);
      state.mounted = true;
    },
    async umount() {
      await execa('umount', [mnt]);
      state.mounted = false;
    },
  };
}

const someFiles = () => Array.from({ length: 20 }, (_, i) => ({ name: `f${i}.bin`, data: randomBytes(1024 * (1 + i * 37)) }));

/** mkfs, mount, write `files` under sub/, unmount, fsck -n clean */
async function makeExt4(t: ExecutionContext, d: Awaited<ReturnType<typeof attach>>, files: { name: string; data: Buffer }[]): Promise<void> {
  await execa('mkfs.ext4', ['-q', '-F', d.loop]);
  await d.mount();
  mkdirSync(path.join(d.mnt, 'sub'));
  for (const f of files) await writeFile(path.join(d.mnt, 'sub', f.name), f.data);
  await execa('sync', ['-f', path.join(d.mnt, 'sub')]);
  await d.umount();
  const fsck = await execa('fsck.ext4', ['-n', '-f', d.loop], { reject: false });
  t.is(fsck.exitCode, 0, `fsck.ext4 -n: ${fsck.stdout}\n${fsck.stderr}`);
}

test('nbdfuse + losetup + mkfs.ext4 + mount: files written, unmounted, fsck.ext4 -n clean', async (t) => {
  const dir = nbdTempDir(t);
  const image = await makeImage(path.join(dir, 'disk.img'), 128 * 1024 * 1024);
  const socket = path.join(dir, 'nbd.sock');
  await serveInProcess(t, socket, [`disk=${image}`]);
  const d = await attach(t, dir, unixUri(socket, 'disk'));
  const files = someFiles();
  await makeExt4(t, d, files);
  await d.mount(true);
  for (const f of files) t.true((await readFile(path.join(d.mnt, 'sub', f.name))).equals(f.data), f.name);
});

test('ext4 on a zvol served over NBD, replicated by auto-sync while attached: the replica is a clean ext4 with the same files', async (t) => {
  assertBuilt();
  const a = makeAppliance(t);
  const dir = nbdTempDir(t);
  for (const cmd of ['create folder fs:tank', 'create zvol fs:tank/vm1 --size 128M']) t.is((await syncsh(['-c', cmd], a.env)).exitCode, 0, cmd);
  const { socket } = await startNbdDaemon(t, a.env, a.home);
  const d = await attach(t, dir, unixUri(socket, 'fs:tank/vm1'));
  const files = someFiles();
  await makeExt4(t, d, files);
  // replicated from another process while nbdfuse holds the zvol: the snapshot asks the serving daemon to pause writes
  t.is((await syncsh(['-c', 'create auto-sync --from-fs fs:tank/vm1 --to-fs fs:tank/copy1 -y'], a.env)).exitCode, 0);
  const run = await syncsh(['-c', 'run auto-sync :tank-vm1-000'], a.env);
  t.is(run.exitCode, 0, String(run.stderr));
  const replica = path.join(a.home, 'fs', 'tank', 'copy1', 'volume.img');
  const fsck = await execa('fsck.ext4', ['-n', '-f', replica], { reject: false });
  t.is(fsck.exitCode, 0, `fsck.ext4 -n of the replica: ${fsck.stdout}\n${fsck.stderr}`);
  const rmnt = path.join(dir, 'replica');
  mkdirSync(rmnt);
  await execa('mount', ['-t', 'ext4', '-o', 'ro,loop', replica, rmnt]);
  t.teardown(async () => void (await execa('umount', [rmnt], { reject: false })));
  for (const f of files) t.true((await readFile(path.join(rmnt, 'sub', f.name))).equals(f.data), `replica ${f.name}`);
});

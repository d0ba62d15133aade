/**
 * A disk whose power can be cut: ext4 on a loop-mounted image file. A cut is
 * ext4's shutdown ioctl without a log flush (`xfs_io -x -c shutdown`, what
 * xfstests' godown does): from that instant nothing more reaches the image,
 * every later write fails, and what the page cache held and no fsync had
 * forced out is gone once the file system is mounted again, as after a power
 * loss. What was synced (fsync, fdatasync, syncfs) is there; the journal
 * keeps the metadata consistent.
 *
 * Checked on this machine: a file written without fsync is empty after the
 * remount, one fsynced holds its bytes.
 */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, rmdir, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Cleanup } from './netns.js';
import { isRoot, kernelHasFilesystem, missingCommand } from './system.js';

export interface PowerCutDisk {
  /** where the file system is mounted */
  dir: string;
  /** cut the power: nothing written from now on, nor anything not yet synced, survives */
  cut(): Promise<void>;
  /** power back on: unmount (the processes that used it must be gone) and mount again, replaying the journal; `off` then `on` */
  restore(): Promise<void>;
  /** the power kept off after a cut: unmounted (the processes that used it must be gone), not mounted again until `on`; what was under it is missing meanwhile, as a machine without power does not answer */
  off(): Promise<void>;
  /**
   * power back on after `off`: mounted again, replaying the journal. Throws
   * (once mounted) when something was made in the mount point while the
   * disk was off (a process writing to a home it should not have found),
   * naming it; what it made is removed first.
   */
  on(): Promise<void>;
}

/** null when a power-cut disk can be made here, else what is missing */
export async function powerCutMissing(): Promise<string | null> {
  if (!isRoot()) return 'root is needed to loop-mount an ext4 image';
  const command = await missingCommand('xfs_io', 'mkfs.ext4', 'losetup', 'mount', 'umount');
  if (command) return `the ${command} command is not installed (Debian packages xfsprogs, e2fsprogs, util-linux)`;
  if (!existsSync('/dev/loop-control') && !existsSync('/dev/loop0')) return 'there are no loop devices';
  if (!(await kernelHasFilesystem('ext4'))) return 'the kernel has no ext4 support';
  return null;
}

async function umount(dir: string): Promise<void> {
  // the kernel may still be releasing the files of processes just killed
  for (let attempt = 0; ; attempt++) {
    const r = await execa('umount', [dir], { reject: false });
    if (r.exitCode === 0 || /not mounted/.test(r.stderr)) return;
    if (attempt >= 50) throw new Error(`umount ${dir}: ${r.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export async function makePowerCutDisk(c: Cleanup, sizeMiB = 512): Promise<PowerCutDisk> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'syncsh-powercut-'));
  const image = `${dir}.img`;
  let loop: string | null = null;
  let mounted = false;
  c.teardown(async () => {
    if (mounted) {
      const r = await execa('umount', [dir], { reject: false });
      if (r.failed) await execa('umount', ['-l', dir], { reject: false });
    }
    if (loop) await execa('losetup', ['-d', loop], { reject: false });
    await rm(image, { force: true });
    await rmdir(dir).catch(() => undefined);
  });
  await writeFile(image, '');
  await truncate(image, sizeMiB * 1024 * 1024);
  loop = (await execa('losetup', ['-f', '--show', image])).stdout.trim();
  await execa('mkfs.ext4', ['-q', '-E', 'lazy_itable_init=0,lazy_journal_init=0', loop]);
  const mount = async () => {
    await execa('mount', ['-o', 'noatime', loop!, dir]);
    mounted = true;
  };
  await mount();
  const off = async () => {
    await umount(dir);
    mounted = false;
  };
  const on = async () => {
    if (mounted) return;
    const made = (await readdir(dir, { recursive: true })).sort();
    for (const name of await readdir(dir)) await rm(path.join(dir, name), { recursive: true, force: true });
    await mount();
    if (made.length) throw new Error(`while the power of ${dir} was off, something made ${made.slice(0, 12).join(', ')}${made.length > 12 ? ', …' : ''} in its mount point (removed)`);
  };
  return {
    dir,
    async cut() {
      await execa('xfs_io', ['-x', '-c', 'shutdown', dir]);
    },
    async restore() {
      await off();
      await on();
    },
    off,
    on,
  };
}

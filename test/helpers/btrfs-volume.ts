/**
 * A throwaway btrfs filesystem: mkfs.btrfs on an image file in the temp dir,
 * loop-mounted on a temp directory, unmounted and removed at teardown (also
 * when the test fails half-way).
 *
 *   const btrfsTest = await gatedTest(['btrfs'], btrfsMissing);
 *   btrfsTest('x', async (t) => { const vol = await makeBtrfsVolume(t); ... vol.mountpoint ... });
 */
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, rmdir, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isRoot, kernelHasFilesystem, missingCommand } from './system.js';

export interface BtrfsVolume {
  /** where the filesystem is mounted */
  mountpoint: string;
  /** the image file */
  image: string;
  /** unmount, detach the loop device, remove the image; safe to call twice */
  destroy(): Promise<void>;
  /** unmount (detaching its loop device), run `between` (say, the disk under the image powered back on), mount again */
  remount(between?: () => Promise<void>): Promise<void>;
}

export interface BtrfsVolumeOptions {
  /** image size in bytes (default 256 MiB; mkfs.btrfs refuses less than 109 MiB) */
  size?: number;
  /**
   * mount with noatime (default true): with atime, reading a file changes the
   * subvolume, and a destination that was only read looks modified.
   */
  noatime?: boolean;
  /** where the image is made (default the temp dir, beside its mountpoint) */
  under?: string;
}

/** what mkfs.btrfs (v6) accepts at least, with its default DUP metadata */
export const BTRFS_MIN_SIZE = 114_294_784;

/** null when btrfs can be used here, else what is missing */
export async function btrfsMissing(): Promise<string | null> {
  if (!isRoot()) return 'root is needed to loop-mount a btrfs image';
  const command = await missingCommand('btrfs', 'mkfs.btrfs', 'losetup', 'mount', 'umount');
  if (command) return `the ${command} command is not installed (Debian packages btrfs-progs, util-linux)`;
  if (!existsSync('/dev/loop-control') && !existsSync('/dev/loop0')) return 'there are no loop devices';
  if (!(await kernelHasFilesystem('btrfs'))) return 'the kernel has no btrfs support';
  return null;
}

export async function makeBtrfsVolume(t: ExecutionContext, opts: BtrfsVolumeOptions = {}): Promise<BtrfsVolume> {
  const size = opts.size ?? 256 * 1024 * 1024;
  if (size < BTRFS_MIN_SIZE) throw new Error(`A btrfs image needs at least ${BTRFS_MIN_SIZE} bytes; ${size} was asked.`);
  const mountpoint = await mkdtemp(path.join(os.tmpdir(), 'syncsh-btrfs-'));
  const image = path.join(opts.under ?? os.tmpdir(), `${path.basename(mountpoint)}.img`);
  let mounted = false;
  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    if (mounted) {
      const result = await execa('umount', [mountpoint], { reject: false });
      // a process still inside: detach now, the kernel finishes when it leaves
      if (result.failed) await execa('umount', ['-l', mountpoint], { reject: false });
    }
    await detachLoops(image);
    await rm(image, { force: true });
    await rmdir(mountpoint).catch(() => undefined);
  };
  t.teardown(destroy);
  await writeFile(image, '');
  await truncate(image, size);
  await execa('mkfs.btrfs', ['-q', '-f', image]);
  const mount = async () => {
    await execa('mount', ['-o', opts.noatime === false ? 'loop' : 'loop,noatime', image, mountpoint]);
    mounted = true;
  };
  await mount();
  const remount = async (between?: () => Promise<void>) => {
    await execa('umount', [mountpoint]);
    mounted = false;
    await detachLoops(image);
    await between?.();
    await mount();
  };
  return { mountpoint, image, destroy, remount };
}

/** `mount -o loop` normally auto-clears its device; make sure none is left on the image */
async function detachLoops(image: string): Promise<void> {
  const found = await execa('losetup', ['-j', image], { reject: false });
  for (const line of found.stdout.split('\n')) {
    const device = line.split(':')[0];
    if (device?.startsWith('/dev/loop')) await execa('losetup', ['-d', device], { reject: false });
  }
}

/** Keeping what a mounted filesystem shows in step with ZFS. */
import { readFile } from 'node:fs/promises';
import type { ZfsCli } from './cli.js';

/**
 * Remount the mounted FUSE (zfs-fuse) filesystems at and below `name` after
 * a rollback or receive: zfs-fuse lets the kernel cache lookups (Debian's
 * /etc/zfs/zfsrc sets fuse-entry-timeout = 3600), so without a remount a
 * renamed or deleted file can still be found under its old name. Kernel ZFS
 * needs nothing. Best effort: a busy mount stays as it is.
 */
export async function refreshMounts(cli: ZfsCli, name: string): Promise<void> {
  const mounts = await readFile('/proc/mounts', 'utf8').catch(() => '');
  const fuse = new Set(
    mounts
      .split('\n')
      .map((line) => line.split(' '))
      .filter((fields) => fields[2] === 'fuse.zfs' && (fields[0] === name || fields[0]?.startsWith(`${name}/`)))
      .map((fields) => fields[0]!),
  );
  if (fuse.size === 0) return;
  const ordered = [...fuse].sort();
  for (const dataset of [...ordered].reverse()) await cli.zfs(['unmount', dataset]).catch(() => undefined);
  for (const dataset of ordered) await cli.zfs(['mount', dataset]).catch(() => undefined);
}

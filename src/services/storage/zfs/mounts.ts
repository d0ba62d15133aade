/** Keeping what a mounted filesystem shows in step with ZFS. */
import { readFile } from 'node:fs/promises';
import type { ZfsCli } from './cli.js';

/**
 * How long a mount is retried: a loaded zfs-fuse answers "mountpoint or
 * dataset is busy" for a while after an unmount (8 s seen with a few
 * receives and other test files running on two cores).
 */
export const RETRY_FOR_MS = 30_000;

/**
 * Remount the mounted FUSE (zfs-fuse) filesystems at and below `name` after
 * a rollback or receive: zfs-fuse lets the kernel cache lookups (Debian's
 * /etc/zfs/zfsrc sets fuse-entry-timeout = 3600), so without a remount a
 * renamed or deleted file can still be found under its old name. Kernel ZFS
 * needs nothing. A mount that stays busy is left as it is; one that was
 * unmounted here is mounted again, retried for a while (mountAgain). Best
 * effort: it never throws, since what it follows (a receive, a rollback) has
 * already succeeded, and failing it would part the two sides' chains.
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
  const unmounted: string[] = [];
  for (const dataset of [...ordered].reverse()) {
    if (
      await cli.zfs(['unmount', dataset]).then(
        () => true,
        () => false,
      )
    )
      unmounted.push(dataset);
  }
  await mountAgain(cli, unmounted).catch(() => undefined);
}

/**
 * `zfs mount` each of `names` (parents first) that is not mounted, retrying
 * while zfs-fuse says busy (RETRY_FOR_MS); throws the last error of one that
 * still cannot be mounted, after trying all of them.
 */
export async function mountAgain(cli: ZfsCli, names: readonly string[]): Promise<void> {
  let failure: Error | null = null;
  for (const dataset of [...names].sort()) {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      const mounted = (await cli.getProps([dataset], ['mounted']).catch(() => null))?.get(dataset)?.mounted;
      if (mounted === 'yes' || mounted === undefined) break;
      try {
        await cli.zfs(['mount', dataset]);
        break;
      } catch (error) {
        if (Date.now() - started > RETRY_FOR_MS) {
          failure = error as Error;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 100 * attempt)));
      }
    }
  }
  if (failure) throw failure;
}

/** the filesystems at and below `name` that zfs mounts (mounted now, or set to mount: canmount=on and a path) */
export async function mountable(cli: ZfsCli, name: string): Promise<{ mounted: string[]; all: string[] }> {
  const names = await cli.listNames(name, 'filesystem');
  const props = await cli.getProps(names, ['mounted', 'mountpoint', 'canmount']);
  const auto = names.filter((n) => props.get(n)?.canmount === 'on' && props.get(n)?.mountpoint?.startsWith('/'));
  return { mounted: names.filter((n) => props.get(n)?.mounted === 'yes'), all: auto };
}

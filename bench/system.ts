/**
 * Real ZFS pools (file vdevs) and btrfs volumes (loop-mounted images) for
 * the benchmarks, outside ava. zfs-fuse is started and stopped by
 * test/helpers/zfs-fuse.ts, as for the tests (that module does not load
 * ava), so a benchmark and a test run can share the daemon; it is stopped
 * at the end only when it was started that way and no pool is left.
 *
 * Everything made is cleaned up by `withCleanup` when the body ends, also on
 * failure and on Ctrl-C / SIGTERM.
 *
 *   await withCleanup(async (bag) => { const pool = await makePool(bag, 'src', 2 << 30); ... });
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, rmdir, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createPool, stopDaemonIfIdle } from '../test/helpers/zfs-fuse.js';

type Cleanup = () => void | Promise<void>;

export class CleanupBag {
  private readonly cleanups: Cleanup[] = [];
  private running: Promise<void> | null = null;

  add(fn: Cleanup): void {
    this.cleanups.push(fn);
  }

  /** last added first; a failing step is reported and the rest still run */
  run(): Promise<void> {
    this.running ??= (async () => {
      for (const fn of this.cleanups.reverse()) {
        try {
          await fn();
        } catch (error) {
          console.error(`clean-up step failed: ${(error as Error).message}`);
        }
      }
    })();
    return this.running;
  }
}

export async function withCleanup<T>(body: (bag: CleanupBag) => Promise<T>): Promise<T> {
  const bag = new CleanupBag();
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: cleaning up …`);
    void bag.run().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await body(bag);
  } finally {
    await bag.run();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

// ---- ZFS ----

const tmp = os.tmpdir();

export interface Pool {
  name: string;
  mountpoint: string;
}

/** a pool on a sparse file vdev of `bytes` in `dir`, atime off; destroyed with the bag */
export async function makePool(bag: CleanupBag, label: string, bytes: number, dir = tmp): Promise<Pool> {
  const name = `sb${label}${randomBytes(3).toString('hex')}`;
  const file = path.join(dir, `${name}.zpool`);
  const mountpoint = path.join(dir, `${name}.mnt`);
  bag.add(async () => {
    await execa('zfs', ['unmount', name], { reject: false });
    for (let attempt = 1; attempt <= 5; attempt++) {
      const result = await execa('zpool', ['destroy', '-f', name], { reject: false });
      if (!result.failed || /no such pool/i.test(result.stderr)) break;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
    await rm(file, { force: true });
    await rmdir(mountpoint).catch(() => undefined);
    stopDaemonIfIdle();
  });
  await writeFile(file, '');
  await truncate(file, bytes);
  await createPool(name, file, mountpoint, 'off');
  return { name, mountpoint };
}

// ---- btrfs ----

export interface Volume {
  mountpoint: string;
}

/** mkfs.btrfs on a sparse image of `bytes` in `dir`, loop-mounted noatime; unmounted and removed with the bag */
export async function makeVolume(bag: CleanupBag, bytes: number, dir = tmp): Promise<Volume> {
  const mountpoint = await mkdtemp(path.join(dir, 'syncsh-bench-btrfs-'));
  const image = `${mountpoint}.img`;
  let mounted = false;
  bag.add(async () => {
    if (mounted && (await execa('umount', [mountpoint], { reject: false })).failed) await execa('umount', ['-l', mountpoint], { reject: false });
    const loops = await execa('losetup', ['-j', image], { reject: false });
    for (const line of loops.stdout.split('\n')) {
      const device = line.split(':')[0];
      if (device?.startsWith('/dev/loop')) await execa('losetup', ['-d', device], { reject: false });
    }
    await rm(image, { force: true });
    await rmdir(mountpoint).catch(() => undefined);
  });
  await writeFile(image, '');
  await truncate(image, bytes);
  await execa('mkfs.btrfs', ['-q', '-f', image]);
  await execa('mount', ['-o', 'loop,noatime', image, mountpoint]);
  mounted = true;
  return { mountpoint };
}

/** `a | b` without a shell: resolves when both ended, rejects with the first failure's stderr */
export async function pipeline(from: readonly string[], to: readonly string[]): Promise<void> {
  const sender = execa(from[0]!, from.slice(1), { reject: false, stdin: 'ignore', buffer: { stdout: false } });
  const receiver = execa(to[0]!, to.slice(1), { reject: false, stdin: 'pipe' });
  sender.stdout.pipe(receiver.stdin);
  const [a, b] = await Promise.all([sender, receiver]);
  if (a.failed) throw new Error(`${from.join(' ')} failed: ${a.stderr || a.message}`);
  if (b.failed) throw new Error(`${to.join(' ')} failed: ${b.stderr || b.message}`);
}

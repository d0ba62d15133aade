/**
 * Real ZFS pools (file vdevs) and btrfs volumes (loop-mounted images) for
 * the benchmarks, outside ava. The helpers in test/helpers cannot be used
 * here (they load ava), so this follows the same protocol as
 * test/helpers/zfs-pool.ts: zfs-fuse is started when ZFS does not answer,
 * under the same cross-process lock and with the same pidfile and
 * "started by tests" mark, so a benchmark and a test run can share the
 * daemon; it is stopped at the end only when it was started that way and
 * no pool is left.
 *
 * Everything made is cleaned up by `withCleanup` when the body ends, also on
 * failure and on Ctrl-C / SIGTERM.
 *
 *   await withCleanup(async (bag) => { const pool = await makePool(bag, 'src', 2 << 30); ... });
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, rmdir, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

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
const LOCK = path.join(tmp, 'syncsh-zfs-fuse.lock');
const STARTED_MARK = path.join(tmp, 'syncsh-zfs-fuse.started-by-tests');
const PIDFILE = path.join(tmp, 'syncsh-zfs-fuse.pid');

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
    await withLock(async () => stopDaemonIfIdle());
  });
  await writeFile(file, '');
  await truncate(file, bytes);
  await withLock(async () => {
    await ensureDaemon();
    await execa('zpool', ['create', '-f', '-m', mountpoint, '-O', 'atime=off', name, file]);
  });
  return { name, mountpoint };
}

const zfsAnswers = async () => !(await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).failed;

async function ensureDaemon(): Promise<void> {
  if (await zfsAnswers()) return;
  if (existsSync('/dev/zfs')) throw new Error('ZFS does not answer although /dev/zfs exists.');
  if (existsSync(PIDFILE)) {
    const pid = Number(readFileSync(PIDFILE, 'utf8').trim());
    if (!(pid > 0 && alive(pid))) rmSync(PIDFILE, { force: true });
  }
  await execa('zfs-fuse', ['--pidfile', PIDFILE], { stdio: 'ignore' });
  writeFileSync(STARTED_MARK, String(process.pid));
  for (let waited = 0; waited < 15_000; waited += 100) {
    if (await zfsAnswers()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('zfs-fuse was started but zpool does not answer after 15 s.');
}

/** stop a daemon started by tests or benchmarks once no pool is left (never one that was running before) */
async function stopDaemonIfIdle(): Promise<void> {
  if (!existsSync(STARTED_MARK)) return;
  const pools = await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false });
  if (pools.failed || pools.stdout.trim() !== '') return;
  const pid = Number(readFileSync(PIDFILE, 'utf8').trim());
  if (pid > 0 && alive(pid)) {
    process.kill(pid, 'SIGTERM');
    for (const deadline = Date.now() + 10_000; alive(pid) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
  }
  rmSync(PIDFILE, { force: true });
  rmSync(STARTED_MARK, { force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      await mkdir(LOCK);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const age = Date.now() - (await stat(LOCK).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (age > 60_000) await rmdir(LOCK).catch(() => undefined);
      if (tries > 1200) throw new Error(`The lock ${LOCK} has been busy for over 60 s.`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  try {
    return await fn();
  } finally {
    await rmdir(LOCK).catch(() => undefined);
  }
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

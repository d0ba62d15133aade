/**
 * The zfs-fuse protocol shared by the tests (zfs-pool.ts) and the benchmarks
 * (bench/system.ts), so that both can use one daemon at the same time.
 *
 * ZFS is the kernel module when /dev/zfs exists, else zfs-fuse: its daemon
 * is started when ZFS does not answer, with a fixed pidfile and a "started by
 * tests" mark; it is stopped again only when it was started that way and no
 * pool is left. A daemon that was already running is never stopped. Starting,
 * creating a pool and stopping are done under one cross-process lock (a
 * directory in the temp dir).
 *
 * Does not load ava: the benchmarks import it.
 */
import { execa, execaSync } from 'execa';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, rmdir, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const tmp = os.tmpdir();
const LOCK = path.join(tmp, 'syncsh-zfs-fuse.lock');
/** present while a zfs-fuse started by the tests (or benchmarks) runs: tells who may stop it */
const STARTED_MARK = path.join(tmp, 'syncsh-zfs-fuse.started-by-tests');
const PIDFILE = path.join(tmp, 'syncsh-zfs-fuse.pid');

/** `zpool create` of a pool on the vdev file `file`, starting zfs-fuse first when ZFS does not answer */
export async function createPool(name: string, file: string, mountpoint: string, atime: 'on' | 'off'): Promise<void> {
  await withLock(async () => {
    await ensureDaemon();
    await execa('zpool', ['create', '-f', '-m', mountpoint, '-O', `atime=${atime}`, name, file]);
  });
}

/** is ZFS answering? */
async function zfsAnswers(): Promise<boolean> {
  return !(await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).failed;
}

async function ensureDaemon(): Promise<void> {
  if (await zfsAnswers()) return;
  if (existsSync('/dev/zfs')) throw new Error('ZFS does not answer although /dev/zfs exists: `zpool list` fails.');
  // zfs-fuse silently refuses to start over a pidfile left by a daemon that died
  removeStalePidfile();
  // stdio ignored: the daemon would otherwise hold our pipes open and execa would wait forever
  await execa('zfs-fuse', ['--pidfile', PIDFILE], { stdio: 'ignore' });
  writeFileSync(STARTED_MARK, String(process.pid));
  for (let waited = 0; waited < 15_000; waited += 100) {
    if (await zfsAnswers()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('zfs-fuse was started but zpool still does not answer after 15 s.');
}

/**
 * Stop a daemon that tests or benchmarks started, once no pool is left (never
 * one that was running before). Synchronous, so that exit handlers can call it.
 */
export function stopDaemonIfIdle(): void {
  if (!existsSync(STARTED_MARK)) return;
  withLockSync(() => {
    // bounded: a wedged zfs-fuse must not hang the exit of the process that asks
    const pools = execaSync('zpool', ['list', '-H', '-o', 'name'], { reject: false, timeout: 10_000 });
    if (pools.failed || pools.stdout.trim() !== '') return;
    const pid = Number(readFileSync(PIDFILE, 'utf8').trim());
    if (pid > 0 && signal(pid, 'SIGTERM')) {
      // wait it out, so the next user never talks to a daemon on its way down
      const deadline = Date.now() + 10_000;
      while (signal(pid, 0) && Date.now() < deadline) sleepSync(50);
    }
    rmSync(PIDFILE, { force: true });
    rmSync(STARTED_MARK, { force: true });
  });
}

function removeStalePidfile(): void {
  if (!existsSync(PIDFILE)) return;
  const pid = Number(readFileSync(PIDFILE, 'utf8').trim());
  if (!(pid > 0 && signal(pid, 0))) rmSync(PIDFILE, { force: true });
}

/** true when the process was there to receive it (signal 0: is it alive) */
export function signal(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// ---- a lock shared by ava's worker processes and the benchmarks ----

const STALE_MS = 60_000;

async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      await mkdir(LOCK);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const age = Date.now() - (await stat(LOCK).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (age > STALE_MS) await rmdir(LOCK).catch(() => undefined);
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

function withLockSync(fn: () => void): void {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return;
      if (Date.now() - lockTime() > STALE_MS) removeLock();
      if (Date.now() > deadline) return; // leave the daemon running rather than hang the exit
      sleepSync(50);
    }
  }
  try {
    fn();
  } finally {
    removeLock();
  }
}

function lockTime(): number {
  try {
    return statSync(LOCK).mtimeMs;
  } catch {
    return Date.now();
  }
}

function removeLock(): void {
  try {
    rmdirSync(LOCK);
  } catch {
    // already gone
  }
}

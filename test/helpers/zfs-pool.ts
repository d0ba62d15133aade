/**
 * Throwaway ZFS pools on file vdevs, for tests against real ZFS.
 *
 * ZFS is the kernel module when /dev/zfs exists, else zfs-fuse: its daemon
 * is started here when not running, and then stopped again when the last
 * test process that used it exits with no pool left. A daemon that was
 * already running before the tests is never stopped. Several ava workers
 * share the daemon, so starting, creating a pool and stopping are done under
 * one cross-process lock (a directory in the temp dir).
 *
 *   const zfsTest = await gatedTest(['zfs'], zfsMissing);
 *   zfsTest('x', async (t) => { const pool = await makeZfsPool(t); ... });
 */
import type { ExecutionContext } from 'ava';
import { execa, execaSync } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, rm, rmdir, stat, writeFile, truncate } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isRoot, missingCommand } from './system.js';

export interface ZfsPool {
  name: string;
  /** the vdev image file */
  file: string;
  /** where the pool's root dataset is mounted */
  mountpoint: string;
  /** `zpool destroy -f`, remove the file; safe to call twice */
  destroy(): Promise<void>;
}

export interface ZfsPoolOptions {
  /** vdev size in bytes (default 512 MiB; zfs-fuse needs at least 64 MiB) */
  size?: number;
  /**
   * atime on the pool's root (default 'off'): with atime on, merely reading a
   * received file changes the dataset, and the next receive is then refused
   * as "modified since its newest snapshot", as real ZFS does.
   */
  atime?: 'on' | 'off';
}

const MIN_SIZE = 64 * 1024 * 1024;
const tmp = os.tmpdir();
const LOCK = path.join(tmp, 'syncsh-zfs-fuse.lock');
/** present while a zfs-fuse started by the tests runs: tells who may stop it */
const STARTED_MARK = path.join(tmp, 'syncsh-zfs-fuse.started-by-tests');
const PIDFILE = path.join(tmp, 'syncsh-zfs-fuse.pid');

/** null when real ZFS can be used here, else what is missing */
export async function zfsMissing(): Promise<string | null> {
  if (!isRoot()) return 'root is needed to create ZFS pools';
  const command = await missingCommand('zpool', 'zfs');
  if (command) return `the ${command} command is not installed (Debian package zfs-fuse)`;
  if (!existsSync('/dev/zfs')) {
    if (await missingCommand('zfs-fuse')) return 'neither the zfs kernel module (/dev/zfs) nor zfs-fuse is installed';
    if (!existsSync('/dev/fuse')) return '/dev/fuse is missing, so zfs-fuse cannot run';
  }
  return null;
}

let usedHere = false;

export async function makeZfsPool(t: ExecutionContext, opts: ZfsPoolOptions = {}): Promise<ZfsPool> {
  const size = opts.size ?? 512 * 1024 * 1024;
  if (size < MIN_SIZE) throw new Error(`A ZFS pool needs at least ${MIN_SIZE} bytes; ${size} was asked.`);
  const name = `syncsh${process.pid}${randomBytes(3).toString('hex')}`;
  const file = path.join(tmp, `${name}.zpool`);
  const mountpoint = path.join(tmp, `${name}.mnt`);
  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    // zfs-fuse can call a pool busy for many seconds under load while its FUSE mounts wind
    // down: unmount first, then retry for up to 30 s. A pool that still will not go keeps its
    // vdev file, so that it is not left imported with its storage gone (a ghost pool).
    await execa('zfs', ['unmount', name], { reject: false });
    const deadline = Date.now() + 30_000;
    let gone = false;
    for (let attempt = 1; ; attempt++) {
      const result = await execa('zpool', ['destroy', '-f', name], { reject: false });
      if (!result.failed || /no such pool/i.test(result.stderr)) {
        gone = true;
        break;
      }
      if (Date.now() > deadline) {
        t.log(`zpool destroy ${name} still failing after 30 s, its file ${file} is kept: ${result.stderr}`);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 200 * attempt)));
    }
    if (gone) await rm(file, { force: true });
    await rmdir(mountpoint).catch(() => undefined);
  };
  // registered before anything is made, so a failure half-way still cleans up
  t.teardown(destroy);
  await writeFile(file, '');
  await truncate(file, size);
  usedHere = true;
  await withLock(async () => {
    await ensureDaemon();
    await execa('zpool', ['create', '-f', '-m', mountpoint, '-O', `atime=${opts.atime ?? 'off'}`, name, file]);
  });
  return { name, file, mountpoint, destroy };
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

/** at exit: stop a daemon the tests started, once no pool is left (sync: exit handlers cannot wait) */
function stopDaemonIfIdle(): void {
  if (!usedHere || !existsSync(STARTED_MARK)) return;
  withLockSync(() => {
    const pools = execaSync('zpool', ['list', '-H', '-o', 'name'], { reject: false });
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
process.once('exit', stopDaemonIfIdle);

function removeStalePidfile(): void {
  if (!existsSync(PIDFILE)) return;
  const pid = Number(readFileSync(PIDFILE, 'utf8').trim());
  if (!(pid > 0 && signal(pid, 0))) rmSync(PIDFILE, { force: true });
}

/** true when the process was there to receive it */
function signal(pid: number, sig: NodeJS.Signals | 0): boolean {
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

// ---- a lock shared by ava's worker processes ----

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

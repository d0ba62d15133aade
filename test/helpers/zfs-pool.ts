/**
 * Throwaway ZFS pools on file vdevs, for tests against real ZFS.
 *
 * ZFS is the kernel module when /dev/zfs exists, else zfs-fuse, started and
 * stopped as zfs-fuse.ts describes: here it is stopped, when no pool is left,
 * as the last test process that used it exits. Several ava workers share the
 * daemon.
 *
 *   const zfsTest = await gatedTest(['zfs'], zfsMissing);
 *   zfsTest('x', async (t) => { const pool = await makeZfsPool(t); ... });
 */
import type { ExecutionContext } from 'ava';
import { execa, execaSync } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync } from 'node:fs';
import { rm, rmdir, writeFile, truncate } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isRoot, missingCommand } from './system.js';
import { cmdline, hangReport } from './procs.js';
import { LockBusyError, tryLock, type Lock } from '../../src/services/lock.js';
import { createPool, signal, stopDaemonIfIdle } from './zfs-fuse.js';

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
  /** the pool name's start (default 'syncsh'), so that a leftover tells whose it is */
  prefix?: string;
}

const MIN_SIZE = 64 * 1024 * 1024;
const tmp = os.tmpdir();

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

/*
 * One test file at a time uses zfs-fuse: it wedges (commands stuck in D state,
 * pools "busy" for good) when two files' heavy runs overlap. A file takes the
 * turn with its first pool and gives it back when its last pool is destroyed;
 * the turn is a lock file naming the process, taken over when that process is gone.
 */
const TURN = path.join(tmp, 'syncsh-zfs-turn.lock');
let poolsHere = 0;
let turn: Promise<Lock> | null = null;

/** the turn, waited for: a lock of src/services/lock.ts (a dead holder's is taken over by exactly one taker) */
async function takeTurn(): Promise<Lock> {
  const since = Date.now();
  let told = false;
  for (;;) {
    try {
      return tryLock(TURN, 'the zfs-fuse turn', `a test file using zfs-fuse`);
    } catch (error) {
      if (!(error instanceof LockBusyError)) throw error;
      // a turn held this long is worth a line in the log: whose it is, and what waits where
      if (!told && Date.now() - since > 5 * 60_000) {
        told = true;
        const holder = error.owner.pid;
        console.error(`process ${process.pid} has waited 5 min for the zfs-fuse turn, held by ${holder} (${cmdline(holder).join(' ').slice(0, 120)}):\n${hangReport(holder).join('\n')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

async function enterZfs(): Promise<void> {
  if (poolsHere++ === 0) turn = takeTurn();
  await turn;
}

function leaveZfs(): void {
  if (--poolsHere > 0) return;
  const held = turn;
  turn = null;
  void held?.then((lock) => lock.release());
}

export async function makeZfsPool(t: ExecutionContext, opts: ZfsPoolOptions = {}): Promise<ZfsPool> {
  const size = opts.size ?? 512 * 1024 * 1024;
  if (size < MIN_SIZE) throw new Error(`A ZFS pool needs at least ${MIN_SIZE} bytes; ${size} was asked.`);
  const name = `${opts.prefix ?? 'syncsh'}${process.pid}${randomBytes(3).toString('hex')}`;
  const file = path.join(tmp, `${name}.zpool`);
  const mountpoint = path.join(tmp, `${name}.mnt`);
  let destroyed = false;
  await enterZfs();
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    try {
      await destroyPool();
    } finally {
      leaveZfs();
    }
  };
  const destroyPool = async () => {
    // zfs-fuse can call a pool busy for many seconds under load while its FUSE mounts wind
    // down: unmount first, then retry for up to 30 s. A pool that still will not go keeps its
    // vdev file, so that it is not left imported with its storage gone (a ghost pool).
    const mountIds = mountIdsUnder(mountpoint); // before the unmount, which may only detach them
    await noHolders(t, name, mountpoint, mountIds);
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
        t.log(`zpool destroy ${name} still failing after 30 s, its file ${file} is kept for now: ${result.stderr}; ${holdersOf(mountpoint, mountIds)}`);
        keptBusy.set(name, { file, mountpoint });
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
  await createPool(name, file, mountpoint, opts.atime ?? 'off');
  return { name, file, mountpoint, destroy };
}

/**
 * Pools that zfs-fuse still called busy 30 s into their teardown, with no
 * process inside them (seen after a green run: destroyable minutes later):
 * tried again as this test process exits, so that they are not left behind.
 */
const keptBusy = new Map<string, { file: string; mountpoint: string }>();

function destroyKeptBusy(): void {
  const deadline = Date.now() + 30_000;
  for (const [name, { file, mountpoint }] of keptBusy) {
    // zfs-fuse lets a pool go some seconds after its last user did
    let result = execaSync('zpool', ['destroy', '-f', name], { reject: false, timeout: 20_000 });
    while (result.failed && /busy/i.test(result.stderr) && Date.now() < deadline) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1_000);
      result = execaSync('zpool', ['destroy', '-f', name], { reject: false, timeout: 20_000 });
    }
    if (!result.failed || /no such pool/i.test(result.stderr)) {
      rmSync(file, { force: true });
      try {
        rmdirSync(mountpoint);
      } catch {
        // gone already, or not empty: left as it is
      }
    } else console.error(`zpool destroy ${name} still fails as the test process exits; its file ${file} is kept: ${result.stderr || result.shortMessage}`);
  }
}

// at exit: the pools kept busy, then stop a daemon the tests started, once no pool is left
process.once('exit', () => {
  destroyKeptBusy();
  if (poolsHere > 0) {
    poolsHere = 1;
    leaveZfs();
  }
  if (usedHere) stopDaemonIfIdle();
});

/** the mount ids (mountinfo's first field) of the mounts at or under `dir` */
function mountIdsUnder(dir: string): Set<string> {
  const ids = new Set<string>();
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const [id, , , , at] = line.split(' ');
      if (at === dir || at?.startsWith(`${dir}/`)) ids.add(id);
    }
  } catch {
    // no /proc: nothing to name
  }
  return ids;
}

/**
 * The processes with their cwd or root under `dir`, or a file open on one of
 * the mounts `mountIds` (taken before the unmount: once zfs-fuse's mount is
 * detached, its files' paths no longer start with `dir`, but their fdinfo
 * still names the mount). Reads only /proc, never the pool itself.
 */
function holders(dir: string, mountIds: Set<string>): { pid: number; what: string }[] {
  const found: { pid: number; what: string }[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    let hit = ['cwd', 'root'].find((l) => {
      try {
        const to = readlinkSync(`/proc/${pid}/${l}`);
        return to === dir || to.startsWith(`${dir}/`);
      } catch {
        return false;
      }
    });
    if (!hit && mountIds.size) {
      try {
        for (const fd of readdirSync(`/proc/${pid}/fd`)) {
          const mnt = /^mnt_id:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1];
          if (mnt && mountIds.has(mnt)) {
            hit = `fd ${fd} (${readlinkSync(`/proc/${pid}/fd/${fd}`)})`;
            break;
          }
        }
      } catch {
        // gone, or not ours to read
      }
    }
    if (hit) found.push({ pid: Number(pid), what: `${pid} (${cmdline(Number(pid)).join(' ').slice(0, 120) || '?'}) through ${hit}` });
  }
  return found;
}

/** for the log of a pool that stays busy */
export function holdersOf(dir: string, mountIds = mountIdsUnder(dir)): string {
  const found = holders(dir, mountIds);
  return found.length ? `processes holding it: ${found.map((h) => h.what).join('; ')}` : 'no process has its cwd or a file open in it';
}

/**
 * A process with a file open in a pool when zfs-fuse unmounts it gets the
 * mount detached instead of refused, and zfs-fuse then calls the pool busy
 * long after that process is gone (seen: 200 s and more). So whatever the
 * test left running in its pool is waited for (10 s), then named and killed,
 * before the unmount.
 */
async function noHolders(t: ExecutionContext, name: string, dir: string, mountIds: Set<string>): Promise<void> {
  let left = holders(dir, mountIds);
  for (const until = Date.now() + 10_000; left.length && Date.now() < until; left = holders(dir, mountIds)) await new Promise((r) => setTimeout(r, 200));
  left = left.filter((h) => h.pid !== process.pid);
  if (!left.length) return;
  t.log(`pool ${name} is still in use at its teardown; killed: ${left.map((h) => h.what).join('; ')}`);
  for (const h of left) signal(h.pid, 'SIGKILL');
  for (const until = Date.now() + 5_000; left.some((h) => signal(h.pid, 0)) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 100));
}

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
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, unlinkSync } from 'node:fs';
import { readFile, rm, rmdir, writeFile, truncate } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isRoot, missingCommand } from './system.js';
import { cmdline, hangReport } from './procs.js';
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
let turn: Promise<void> | null = null;

async function takeTurn(): Promise<void> {
  const since = Date.now();
  let told = false;
  for (;;) {
    try {
      await writeFile(TURN, String(process.pid), { flag: 'wx' });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number(await readFile(TURN, 'utf8').catch(() => ''));
    if (holder === process.pid) return;
    if (!holder || !signal(holder, 0)) await rm(TURN, { force: true });
    else {
      // a turn held this long is worth a line in the log: whose it is, and what waits where
      if (!told && Date.now() - since > 5 * 60_000) {
        told = true;
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
  try {
    if (Number(readFileSync(TURN, 'utf8')) === process.pid) unlinkSync(TURN);
  } catch {
    // not ours, or gone
  }
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
        t.log(`zpool destroy ${name} still failing after 30 s, its file ${file} is kept: ${result.stderr}; ${holdersOf(mountpoint)}`);
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

// at exit: stop a daemon the tests started, once no pool is left
process.once('exit', () => {
  if (poolsHere > 0) {
    poolsHere = 1;
    leaveZfs();
  }
  if (usedHere) stopDaemonIfIdle();
});

/** which processes have their cwd, root or an open file under `dir` (why a pool is still busy), for the log */
export function holdersOf(dir: string): string {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    const links = ['cwd', 'root'].map((l) => `/proc/${pid}/${l}`);
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) links.push(`/proc/${pid}/fd/${fd}`);
    } catch {
      // gone, or not ours to read
    }
    const hit = links.find((l) => {
      try {
        const to = readlinkSync(l);
        return to === dir || to.startsWith(`${dir}/`);
      } catch {
        return false;
      }
    });
    if (!hit) continue;
    const cmd = (() => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 120);
      } catch {
        return '?';
      }
    })();
    found.push(`${pid} (${cmd}) through ${hit.slice(`/proc/${pid}/`.length)}`);
  }
  return found.length ? `processes inside its mountpoint: ${found.join('; ')}` : 'no process has its cwd or a file inside its mountpoint';
}

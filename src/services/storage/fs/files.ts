/** Small file-system helpers shared by the fs driver's modules. */
import { chmodSync, closeSync, fsyncSync, lstatSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, writeSync, utimesSync, lutimesSync, type Stats } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { loadExeca } from '../../lazy.js';

export function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** JSON file contents, or null when the file does not exist. */
export function readJson<T>(file: string): T | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;
    throw error;
  }
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new Error(`The fs driver's metadata file ${file} is damaged: ${(error as Error).message}.`);
  }
}

/**
 * Replace `file` atomically: a reader sees the old or the new content, never
 * a mix, even if the process dies half-way (temp file, fsync, rename).
 */
export function writeFileAtomic(file: string, data: string | Buffer): void {
  const tmp = tempBeside(file);
  writeFileSynced(tmp, data);
  renameSync(tmp, file);
}

const tempBeside = (file: string) => path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`);

/**
 * Replace `file` for readers (old or new content, never a mix) without
 * syncing, and off the event loop: for figures shown to an operator that the
 * next write replaces anyway, never for state. After a crash a reader may
 * find the old content, or none; that is all such a file promises.
 */
export async function replaceShownFile(file: string, data: string): Promise<void> {
  const tmp = tempBeside(file);
  try {
    await writeFile(tmp, data);
    await rename(tmp, file);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

/**
 * Write a new file and sync it, without the temp file and rename of
 * writeFileAtomic: for files nothing reads until something written after
 * them points there (staging, before its journal exists).
 */
export function writeFileSynced(file: string, data: string | Buffer): void {
  const fd = openSync(file, 'w', 0o644);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, JSON.stringify(value));
}

/**
 * Make every write on the file system holding `dir` durable: syncfs(2),
 * through coreutils' `sync -f` (Node has no syncfs). One call where an fsync
 * per staged file would cost a journal commit each. It fails (a disk gone,
 * an I/O error) rather than let a commit name data that may not be there.
 */
export async function syncFileSystem(dir: string): Promise<void> {
  const { execa } = await loadExeca();
  const r = await execa('sync', ['-f', dir], { reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) throw new Error(`The data written could not be made durable (sync -f ${dir}): ${String(r.stderr).trim() || r.shortMessage}`);
}

/** fsync a directory so a rename inside it is durable. */
export function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* some file systems refuse fsync on directories; the rename is still atomic */
  }
}

/**
 * ns since the epoch -> the seconds value Node's utimes family takes. libuv
 * keeps whole microseconds of it, cutting the rest off, and the double holds
 * today's times to about 0.25 µs: a time aimed at a microsecond's start came
 * back one µs early half the time, so a tree cloned again and again drifted
 * away from its source. Aiming at the middle of the microsecond (away from
 * zero) sets exactly that microsecond, so setting a time read back from a
 * set one changes nothing.
 */
export function nsToSeconds(ns: bigint): number | string {
  // BigInt division and libuv's cut both go toward zero (before 1970 too)
  const us = ns / 1_000n;
  const sec = us / 1_000_000n;
  const middle = ns < 0n ? -0.5 : 0.5;
  const seconds = Number(sec) + (Number(us - sec * 1_000_000n) + middle) / 1e6;
  // Node takes a negative number for "now"; the same number as a string is taken as it is
  return seconds < 0 ? String(seconds) : seconds;
}

/**
 * Does a stat's mtime (Node's number stats: ms in a double, good to about
 * 0.25 µs) equal a manifest mtime (ns as a decimal string)? Node sets
 * times to the microsecond (nsToSeconds), so times are equal within 2 µs.
 */
export function sameMtime(mtimeMs: number, mtimeNs: string): boolean {
  return Math.abs(mtimeMs * 1e6 - Number(mtimeNs)) <= 2_000;
}

/** A number stat's ms as manifest ns (exact to about 0.25 µs). */
export function msToNs(ms: number): string {
  return String(BigInt(Math.round(ms * 1e6)));
}

export function setMtime(file: string, mtimeNs: string, symlink: boolean): void {
  const t = nsToSeconds(BigInt(mtimeNs));
  if (symlink) lutimesSync(file, t, t);
  else utimesSync(file, t, t);
}

export function isEmptyDir(dir: string): boolean {
  return readdirSync(dir).length === 0;
}

/** lstat that says null for a missing path. */
export function lstatOrNull(p: string): Stats | null {
  try {
    return lstatSync(p);
  } catch (error) {
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return null;
    throw error;
  }
}

/**
 * rm -rf that also copes with read-only directories inside the tree (a
 * non-root user cannot delete entries of a 0555 directory without first
 * giving it back its write bit).
 */
export function removeTree(p: string): void {
  try {
    rmSync(p, { recursive: true, force: true });
    return;
  } catch (error) {
    if (errorCode(error) !== 'EACCES' && errorCode(error) !== 'EPERM') throw error;
  }
  const walk = (dir: string) => {
    try {
      chmodSync(dir, 0o700);
    } catch {
      /* best effort */
    }
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(dir, e.name));
  };
  const st = lstatOrNull(p);
  if (st?.isDirectory()) walk(p);
  try {
    chmodSync(path.dirname(p), (Number(lstatSync(path.dirname(p)).mode) & 0o7777) | 0o700);
  } catch {
    /* best effort */
  }
  rmSync(p, { recursive: true, force: true });
}

/**
 * Run `fn`; when it fails for lack of permission on the containing
 * directory, give that directory its owner write bit and try once more (the
 * final directory modes are set again at the end of a commit).
 */
export function withWritableParent<T>(p: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (errorCode(error) !== 'EACCES' && errorCode(error) !== 'EPERM') throw error;
    const dir = path.dirname(p);
    chmodSync(dir, (Number(lstatSync(dir).mode) & 0o7777) | 0o700);
    return fn();
  }
}

export function mode(stMode: number): number {
  return stMode & 0o7777;
}

/** Fill `buf` from `fd` at `position`, as far as the file goes; returns the bytes read. */
export function readFull(fd: number, buf: Buffer, position: number): number {
  let n = 0;
  while (n < buf.length) {
    const got = readSync(fd, buf, n, buf.length - n, position + n);
    if (got === 0) break;
    n += got;
  }
  return n;
}

/**
 * The driver does its file work with synchronous calls (much cheaper than
 * promise calls for many small files); long stretches of it stop every
 * 20 ms to let the event loop run, so a console in the same process stays live.
 */
export class Breather {
  private last = performance.now();

  async breathe(): Promise<void> {
    if (performance.now() - this.last < 20) return;
    await yieldToLoop();
    this.last = performance.now();
  }
}

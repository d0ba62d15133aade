/**
 * A small tmpfs for full-disk tests: mounted on a temp dir, unmounted (and
 * the dir removed) at teardown, even on failure. Needs root.
 */
import { mkdtempSync, rmdirSync, openSync, writeSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { isRoot, kernelHasFilesystem, type SystemCheck } from './system.js';

export const smallFsMissing: SystemCheck = async () => {
  if (!isRoot()) return 'mounting a tmpfs needs root';
  return (await kernelHasFilesystem('tmpfs')) ? null : 'the kernel has no tmpfs';
};

/** mount a tmpfs of `size` (e.g. '256k') and return its path */
export async function smallFs(t: { teardown(fn: () => Promise<void> | void): void }, size: string): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-small-'));
  await execa('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'syncsh-small', dir]);
  t.teardown(async () => {
    await execa('umount', [dir], { reject: false });
    rmdirSync(dir);
  });
  return dir;
}

/** write `file` until the file system is full (ENOSPC); the rest of the disk is then 0 bytes */
export function fill(file: string): void {
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(4096, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    closeSync(fd);
  }
  // A byte-sized tail can still fit; take it too.
  const tail = openSync(file, 'a');
  try {
    for (;;) writeSync(tail, Buffer.alloc(1, 1));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    closeSync(tail);
  }
}

/**
 * Content-addressed block store: one file per distinct chunk, named by the
 * sha256 of its bytes, fanned out over 256 directories. A block file is
 * written to tmp/ and renamed into place, so a name always holds the full,
 * correct bytes. All-zero chunks are never stored: manifests say ZERO_BLOCK
 * and the file is rebuilt with a hole there, so a mostly-empty 2 GiB volume
 * costs almost nothing.
 */
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { errorCode } from './files.js';

export const CHUNK_SIZE = 1 << 20;
/** Stands for an all-zero chunk (its length follows from the file size). */
export const ZERO_BLOCK = '0';
const ZEROS = Buffer.alloc(CHUNK_SIZE);
const HASH = /^[0-9a-f]{64}$/;

export function isBlockHash(h: string): boolean {
  return HASH.test(h);
}

export function isZero(buf: Buffer): boolean {
  return buf.length <= ZEROS.length ? buf.equals(ZEROS.subarray(0, buf.length)) : buf.every((b) => b === 0);
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** The manifest name of a chunk: ZERO_BLOCK or its sha256. */
export function blockName(buf: Buffer): string {
  return isZero(buf) ? ZERO_BLOCK : sha256(buf);
}

export class BlockStore {
  private readonly madeDirs = new Set<string>();

  constructor(readonly dir: string) {}

  pathOf(hash: string): string {
    return path.join(this.dir, hash.slice(0, 2), hash);
  }

  has(hash: string): boolean {
    return existsSync(this.pathOf(hash));
  }

  /**
   * Store `data` under `hash` (already computed by the caller); false when
   * it was there already. Synchronous on purpose: for the many small files
   * of a typical tree, sync calls cost a fraction of their promise versions.
   */
  put(hash: string, data: Buffer): boolean {
    const final = this.pathOf(hash);
    if (existsSync(final)) return false;
    const fan = path.dirname(final);
    const tmpDir = path.join(this.dir, 'tmp');
    if (!this.madeDirs.has(fan)) {
      mkdirSync(fan, { recursive: true });
      mkdirSync(tmpDir, { recursive: true });
      this.madeDirs.add(fan);
    }
    const tmp = path.join(tmpDir, randomUUID());
    try {
      writeFileSync(tmp, data, { mode: 0o444 });
      renameSync(tmp, final);
    } catch (error) {
      rmSync(tmp, { force: true });
      throw error;
    }
    return true;
  }

  private missing(hash: string, what: string): Error {
    return new Error(`The block ${hash} of ${what} is missing from the block store ${this.dir}; that snapshot is damaged.`);
  }

  read(hash: string, what: string): Buffer {
    try {
      return readFileSync(this.pathOf(hash));
    } catch (error) {
      if (errorCode(error) === 'ENOENT') throw this.missing(hash, what);
      throw error;
    }
  }

  /** Read a block into `into` (at least CHUNK_SIZE long); returns its length. */
  readInto(hash: string, into: Buffer, what: string): number {
    let fd: number;
    try {
      fd = openSync(this.pathOf(hash), 'r');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') throw this.missing(hash, what);
      throw error;
    }
    try {
      let n = 0;
      for (;;) {
        const got = readSync(fd, into, n, into.length - n, n);
        if (got === 0) return n;
        n += got;
      }
    } finally {
      closeSync(fd);
    }
  }

  /** Delete a block; returns the bytes freed (0 when it was not there). */
  remove(hash: string): number {
    const p = this.pathOf(hash);
    try {
      const size = statSync(p).size;
      unlinkSync(p);
      return size;
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return 0;
      throw error;
    }
  }

  /** Every stored hash (for a full mark-and-sweep). */
  *all(): Generator<string> {
    let fans: string[];
    try {
      fans = readdirSync(this.dir);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return;
      throw error;
    }
    for (const fan of fans) {
      if (fan.length !== 2) continue;
      for (const name of readdirSync(path.join(this.dir, fan))) if (isBlockHash(name)) yield name;
    }
  }

  /** Half-written blocks of a crashed writer; returns how many were removed. */
  clearTmp(): number {
    const tmpDir = path.join(this.dir, 'tmp');
    let names: string[];
    try {
      names = readdirSync(tmpDir);
    } catch {
      return 0;
    }
    for (const n of names) unlinkSync(path.join(tmpDir, n));
    return names.length;
  }
}

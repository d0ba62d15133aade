/**
 * Send and receive trails (Rockstor's "send/receive trail"): one JSON line
 * per transfer, appended by whichever side ran it, bounded by size-based
 * rotation to FILE.1 … FILE.keep.
 */
import { appendFileSync, existsSync, readFileSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { tryLock, LockBusyError } from './lock.js';

export interface HistoryEntry {
  direction: 'send' | 'receive';
  service: string;
  /** the other appliance */
  peer: string;
  startedAt: string;
  endedAt: string;
  result: 'success' | 'failure' | 'refused';
  bytes: number;
  rateBytesPerSec: number;
  /** the marker snapshot transferred, when there was one */
  snapshot: string | null;
  error: string | null;
}

export interface HistoryOptions {
  /** rotate once the file would pass this size; default 1 MiB */
  maxBytes?: number;
  /** rotated files kept (FILE.1 newest … FILE.keep oldest); default 3 */
  keep?: number;
}

export const DEFAULT_HISTORY_MAX_BYTES = 1024 * 1024;
export const DEFAULT_HISTORY_KEEP = 3;

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

function renameIfExists(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

function checkLimits(maxBytes: number, keep: number): void {
  if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new RangeError(`A rotation size of ${maxBytes} bytes is not a whole number of at least 1.`);
  if (!Number.isInteger(keep) || keep < 0) throw new RangeError(`Keeping ${keep} rotated files is not a whole number of at least 0.`);
}

/**
 * Rotate `file` when it is not empty and its size plus `incomingBytes` (the
 * line about to be written; 0 to test the size alone) passes maxBytes:
 * FILE.keep is dropped, FILE.n becomes FILE.n+1, FILE becomes FILE.1, and the
 * next append creates a fresh FILE. With keep 0 the file is simply removed.
 *
 * Rotation renames and never truncates, so a reader that holds the old file
 * open (tail -F, or a follower comparing inodes) finishes reading it and then
 * finds the new one. The shift runs under FILE.lock so that two writers
 * (daemon and shell) cannot both rotate the same generation; a writer that
 * finds the lock busy skips rotating, since the holder is doing it.
 *
 * Returns whether this call rotated.
 */
export function rotateBySize(file: string, maxBytes: number, keep: number, incomingBytes = 0): boolean {
  checkLimits(maxBytes, keep);
  const due = () => {
    const size = sizeOf(file);
    return size > 0 && size + incomingBytes > maxBytes;
  };
  if (!due()) return false;
  let held;
  try {
    held = tryLock(`${file}.lock`, file, 'rotating');
  } catch (error) {
    if (error instanceof LockBusyError) return false;
    throw error;
  }
  try {
    if (!due()) return false; // another writer rotated while we looked
    if (keep === 0) {
      unlinkSync(file);
      return true;
    }
    try {
      unlinkSync(`${file}.${keep}`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    for (let n = keep - 1; n >= 1; n--) renameIfExists(`${file}.${n}`, `${file}.${n + 1}`);
    renameSync(file, `${file}.1`);
    return true;
  } finally {
    held.release();
  }
}

/** One service's send or receive trail, or both, in one JSON Lines file. */
export class History {
  readonly maxBytes: number;
  readonly keep: number;

  constructor(
    readonly file: string,
    opts: HistoryOptions = {},
  ) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_HISTORY_MAX_BYTES;
    this.keep = opts.keep ?? DEFAULT_HISTORY_KEEP;
    checkLimits(this.maxBytes, this.keep);
  }

  /**
   * Add one entry: a single append of one line (O_APPEND), so concurrent
   * writers interleave whole lines rather than corrupting each other.
   */
  append(entry: HistoryEntry): void {
    const line = `${JSON.stringify(entry)}\n`;
    rotateBySize(this.file, this.maxBytes, this.keep, Buffer.byteLength(line));
    appendFileSync(this.file, line, { mode: 0o644 });
  }

  /** The newest `limit` entries (all by default), newest first, across the rotated files. */
  list(limit = Infinity): HistoryEntry[] {
    const entries: HistoryEntry[] = [];
    if (limit <= 0) return entries;
    for (const file of this.files()) {
      const lines = readLines(file);
      for (let i = lines.length - 1; i >= 0; i--) {
        const entry = parseEntry(lines[i]);
        if (!entry) continue;
        entries.push(entry);
        if (entries.length >= limit) return entries;
      }
    }
    return entries;
  }

  /** the live file, then FILE.1 … FILE.keep, those that exist */
  files(): string[] {
    const all = [this.file, ...Array.from({ length: this.keep }, (_, i) => `${this.file}.${i + 1}`)];
    return all.filter((file) => existsSync(file));
  }
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n');
  } catch (error) {
    // Rotated away between listing and reading: its lines are in the next file.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** A line cut short by a crash, or otherwise not an entry, is skipped rather than failing the listing. */
function parseEntry(line: string): HistoryEntry | null {
  if (line.trim() === '') return null;
  try {
    const value = JSON.parse(line) as unknown;
    if (typeof value !== 'object' || value === null) return null;
    const entry = value as Partial<HistoryEntry>;
    if (entry.direction !== 'send' && entry.direction !== 'receive') return null;
    if (typeof entry.service !== 'string' || typeof entry.startedAt !== 'string') return null;
    return value as HistoryEntry;
  } catch {
    return null;
  }
}

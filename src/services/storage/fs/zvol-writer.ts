/**
 * A zvol being written (served over NBD): the one writer of its image.
 *
 * - Ownership: the serving process registers itself in `<meta>/serving.json`
 *   (pid, control socket) under the dataset lock, so there is one writer per
 *   zvol across processes. Receive, rollback, destroy and resize refuse a
 *   served zvol, naming the process.
 * - Durability: a write's chunks are made durably dirty (dirty-map.ts)
 *   before the data is written; FUA syncs the data before the reply, flush
 *   syncs everything written before it. A pwrite completes whole or not at
 *   all when the process dies, so after kill -9 every block is old or new.
 * - Snapshots are crash-consistent while clients write: `quiesce` stops new
 *   writes, waits for those in flight, runs the snapshot and resumes. A
 *   snapshot taken by another process (`run auto-sync` from the CLI) asks
 *   the serving process over its control socket ("pause" -> "paused", then
 *   "resume" or a closed connection -> it re-reads the map the snapshot
 *   cleared, and resumes).
 */
import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ZVOL_CHUNK } from './block-store.js';
import { forEachRun, zeroRun } from './block-list.js';
import type { Catalog } from './catalog.js';
import { LiveDirtyMap } from './dirty-map.js';
import { writeJsonAtomic } from './files.js';
import { hasJournal, runJournal } from './journal.js';
import { VOLUME_FILE } from './layout.js';
import { lockDatasets, processAlive } from './lock.js';
import { chunksOf, dirtyMapFile, isZvol, liveChanges } from './zvol.js';
import { loadExeca } from '../../lazy.js';
import { VolumeError, type BlockVolume, type Extent, type WriteFlags, type ZeroFlags } from '../../nbd/volume.js';

interface Serving {
  pid: number;
  socket: string;
}

function servingFile(catalog: Catalog, name: string): string {
  return path.join(catalog.layout.datasetMeta(name), 'serving.json');
}

/** The process serving this zvol (a live one), or null. */
export function servedBy(catalog: Catalog, name: string): Serving | null {
  try {
    const s = JSON.parse(readFileSync(servingFile(catalog, name), 'utf8')) as Serving;
    return s.pid && processAlive(s.pid) ? s : null;
  } catch {
    return null;
  }
}

export function refuseServed(catalog: Catalog, name: string, doing: string): void {
  const s = servedBy(catalog, name);
  if (s) throw new Error(`The zvol fs:${name} is served over NBD by process ${s.pid}${s.pid === process.pid ? ' (this one)' : ''}; disconnect its clients (or stop that daemon) before ${doing}.`);
}

/** unix socket paths are limited to 107 bytes: a long home gets its socket in the temp directory */
function socketPath(catalog: Catalog, name: string): string {
  const own = path.join(catalog.layout.datasetMeta(name), 'control.sock');
  if (Buffer.byteLength(own) < 100) return own;
  return path.join(os.tmpdir(), `syncsh-zvol-${createHash('sha256').update(own).digest('hex').slice(0, 16)}.sock`);
}

const live = new Map<string, LiveZvol>();
const PAUSE_TIMEOUT_MS = 30_000;

export class LiveZvol {
  private users = 0;
  private inflight = 0;
  private drained: (() => void) | null = null;
  private gate: Promise<void> | null = null;
  private openGate: (() => void) | null = null;
  private server: net.Server | null = null;
  /** chunks stored (not zero) in the head, one bit each; null when the map cannot vouch (no holes reported) */
  private stored: Buffer | null = null;

  private constructor(
    private readonly catalog: Catalog,
    readonly name: string,
    readonly size: number,
    readonly blockSize: number,
    private readonly fh: FileHandle,
    private readonly map: LiveDirtyMap,
    readonly socket: string,
  ) {}

  /** Open (or share) the writer of a zvol; the caller releases it. */
  static async acquire(catalog: Catalog, name: string): Promise<LiveZvol> {
    const key = catalog.layout.datasetMeta(name);
    let z = live.get(key);
    if (!z) {
      z = await LiveZvol.start(catalog, name);
      live.set(key, z);
    }
    z.users++;
    return z;
  }

  /** the writer of this zvol in this process, if any */
  static here(catalog: Catalog, name: string): LiveZvol | null {
    return live.get(catalog.layout.datasetMeta(name)) ?? null;
  }

  private static async start(catalog: Catalog, name: string): Promise<LiveZvol> {
    const rec = catalog.record(name);
    if (!isZvol(rec)) throw new VolumeError('EINVAL', `The fs dataset ${name} is not a zvol.`);
    const lock = await lockWhenFree(catalog, name);
    try {
      const other = servedBy(catalog, name);
      if (other) throw new VolumeError('EIO', `The zvol fs:${name} is already served by process ${other.pid}.`);
      // A receive or rollback killed mid-commit left the image part old, part new: finished before any client reads it
      // (and before a write a later replay of that commit would overwrite).
      if (hasJournal(catalog, name)) await runJournal(catalog, name);
      const { head } = liveChanges(catalog, name);
      const image = path.join(catalog.liveDir(name), VOLUME_FILE);
      const fh = await open(image, 'r+');
      const map = await LiveDirtyMap.open(dirtyMapFile(catalog.layout, name), ZVOL_CHUNK, chunksOf(rec.volsize), head);
      const z = new LiveZvol(catalog, name, rec.volsize, rec.zvol.blockSize, fh, map, socketPath(catalog, name));
      z.loadBase();
      await z.listen();
      writeJsonAtomic(servingFile(catalog, name), { pid: process.pid, socket: z.socket } satisfies Serving);
      return z;
    } finally {
      lock.release();
    }
  }

  private loadBase(): void {
    const { base, dirty } = liveChanges(this.catalog, this.name);
    if (!dirty) {
      this.stored = null;
      return;
    }
    const bits = Buffer.alloc(Math.ceil(chunksOf(this.size) / 8));
    forEachRun(base, (first, count, name) => {
      if (!zeroRun(name)) for (let c = first; c < first + count; c++) bits[c >> 3] |= 1 << (c & 7);
    });
    this.stored = bits;
  }

  private listen(): Promise<void> {
    rmSync(this.socket, { force: true });
    this.server = net.createServer((conn) => {
      let paused = false;
      let buffered = '';
      const resume = async () => {
        if (!paused) return;
        paused = false;
        await this.resume();
      };
      conn.on('data', (d) => {
        buffered += d.toString();
        for (let at = buffered.indexOf('\n'); at >= 0; at = buffered.indexOf('\n')) {
          const line = buffered.slice(0, at).trim();
          buffered = buffered.slice(at + 1);
          if (line === 'pause' && !paused) {
            paused = true;
            this.pause().then(
              () => conn.write('paused\n'),
              (e: Error) => conn.end(`error ${e.message}\n`),
            );
          } else if (line === 'resume') {
            resume().then(
              () => conn.end('resumed\n'),
              (e: Error) => conn.end(`error ${e.message}\n`),
            );
          }
        }
      });
      // The snapshotting process died or gave up: never stay paused.
      conn.on('close', () => void resume());
      conn.on('error', () => undefined);
    });
    return new Promise((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.socket, () => resolve());
    });
  }

  /** stop new writes and wait for those in flight */
  async pause(): Promise<void> {
    if (this.gate) throw new Error(`The zvol fs:${this.name} is already paused for a snapshot.`);
    this.gate = new Promise((resolve) => (this.openGate = resolve));
    if (this.inflight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
  }

  /** re-read the map (a snapshot cleared it) and let writes go on */
  async resume(): Promise<void> {
    try {
      const { head } = liveChanges(this.catalog, this.name);
      await this.map.reload(head);
      this.loadBase();
    } finally {
      const open = this.openGate;
      this.gate = null;
      this.openGate = null;
      open?.();
    }
  }

  async quiesce<T>(fn: () => Promise<T>): Promise<T> {
    await this.pause();
    try {
      return await fn();
    } finally {
      await this.resume();
    }
  }

  private async enter(): Promise<void> {
    while (this.gate) await this.gate;
    this.inflight++;
  }

  private leave(): void {
    if (--this.inflight === 0 && this.drained) {
      const d = this.drained;
      this.drained = null;
      d();
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    let n = 0;
    while (n < length) {
      const { bytesRead } = await this.fh.read(buf, n, length - n, offset + n);
      if (bytesRead === 0) break; // past the end of a sparse image: zeroes
      n += bytesRead;
    }
    return buf;
  }

  async write(offset: number, data: Buffer, flags: WriteFlags): Promise<void> {
    await this.enter();
    try {
      await this.map.mark(Math.floor(offset / ZVOL_CHUNK), Math.floor((offset + data.length - 1) / ZVOL_CHUNK));
      let n = 0;
      while (n < data.length) n += (await this.fh.write(data, n, data.length - n, offset + n)).bytesWritten;
      if (flags.fua) await this.fh.datasync();
    } catch (error) {
      throw error instanceof VolumeError ? error : new VolumeError((error as NodeJS.ErrnoException).code === 'ENOSPC' ? 'ENOSPC' : 'EIO', (error as Error).message);
    } finally {
      this.leave();
    }
  }

  async flush(): Promise<void> {
    await this.fh.datasync();
  }

  /**
   * The range reads as zeroes afterwards. Whole chunks become holes
   * (`fallocate --punch-hole`; Node has no fallocate), the rest is written.
   */
  async writeZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    await this.enter();
    try {
      const end = offset + length;
      await this.map.mark(Math.floor(offset / ZVOL_CHUNK), Math.floor((end - 1) / ZVOL_CHUNK));
      const lo = Math.ceil(offset / ZVOL_CHUNK) * ZVOL_CHUNK;
      const hi = Math.floor(end / ZVOL_CHUNK) * ZVOL_CHUNK;
      const zeros = Buffer.alloc(Math.min(length, 1 << 20));
      const fill = async (from: number, to: number) => {
        for (let at = from; at < to; at += zeros.length) await this.fh.write(zeros, 0, Math.min(zeros.length, to - at), at);
      };
      if (!flags.noHole && hi - lo >= ZVOL_CHUNK) {
        await fill(offset, lo);
        const { execa } = await loadExeca();
        await execa('fallocate', ['--punch-hole', '--keep-size', '--offset', String(lo), '--length', String(hi - lo), path.join(this.catalog.liveDir(this.name), VOLUME_FILE)]);
        await fill(hi, end);
      } else {
        await fill(offset, end);
      }
      if (flags.fua) await this.fh.datasync();
    } catch (error) {
      throw error instanceof VolumeError ? error : new VolumeError('EIO', (error as Error).message);
    } finally {
      this.leave();
    }
  }

  /** holes: chunks zero in the head and not written since (the map knows, no SEEK_HOLE needed) */
  extents(offset: number, length: number): Extent[] {
    const out: Extent[] = [];
    const end = offset + length;
    for (let at = offset; at < end; ) {
      const c = Math.floor(at / ZVOL_CHUNK);
      const next = Math.min(end, (c + 1) * ZVOL_CHUNK);
      const hole = !!this.stored && (this.stored[c >> 3] & (1 << (c & 7))) === 0 && !this.map.isDirty(c);
      const last = out.at(-1);
      if (last && last.hole === hole) last.length += next - at;
      else out.push({ length: next - at, hole, zero: hole });
      at = next;
    }
    return out;
  }

  async release(): Promise<void> {
    if (--this.users > 0) return;
    live.delete(this.catalog.layout.datasetMeta(this.name));
    rmSync(servingFile(this.catalog, this.name), { force: true });
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    rmSync(this.socket, { force: true });
    await this.fh.datasync().catch(() => undefined);
    await this.fh.close();
    await this.map.close();
  }
}

/** The serving take needs the dataset lock for a moment; a snapshot may hold it for a while. */
async function lockWhenFree(catalog: Catalog, name: string): Promise<{ release(): void }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return lockDatasets(catalog.layout, [name], 'serving it over NBD');
    } catch (error) {
      if (Date.now() > deadline) throw new VolumeError('EIO', (error as Error).message);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** One connection's view of a live zvol (BlockVolume). */
export class ZvolVolume implements BlockVolume {
  readonly minBlockSize = 512;
  readonly preferredBlockSize: number;
  readonly size: number;
  private closed = false;

  constructor(
    private readonly z: LiveZvol,
    readonly readOnly = false,
  ) {
    this.size = z.size;
    this.preferredBlockSize = Math.max(512, z.blockSize);
  }

  static async open(catalog: Catalog, name: string, readOnly = false): Promise<ZvolVolume> {
    return new ZvolVolume(await LiveZvol.acquire(catalog, name), readOnly);
  }

  private check(write: boolean): void {
    if (this.closed) throw new VolumeError('ESHUTDOWN', 'The volume is closed.');
    if (write && this.readOnly) throw new VolumeError('EPERM', 'The export is read-only.');
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(false);
    return this.z.read(offset, length);
  }

  async write(offset: number, data: Buffer, flags: WriteFlags): Promise<void> {
    this.check(true);
    return this.z.write(offset, data, flags);
  }

  async flush(): Promise<void> {
    this.check(false);
    return this.z.flush();
  }

  /** advisory (NBD allows a no-op): the data stays, so nothing to record */
  async trim(_offset: number, _length: number, flags: WriteFlags): Promise<void> {
    this.check(true);
    if (flags.fua) await this.z.flush();
  }

  async writeZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    this.check(true);
    return this.z.writeZeroes(offset, length, flags);
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.check(false);
    return this.z.extents(offset, length);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.z.release();
  }
}

/**
 * Stop the zvol's writer (in this process, or through its control socket)
 * for the length of `fn`: the snapshot then holds every acknowledged write
 * and none after. Nobody serving it: `fn` runs as is (the caller holds the
 * dataset lock, so nobody starts serving meanwhile).
 */
export async function withWritesPaused<T>(catalog: Catalog, name: string, fn: () => Promise<T>): Promise<T> {
  const here = LiveZvol.here(catalog, name);
  if (here) return here.quiesce(fn);
  const other = servedBy(catalog, name);
  if (!other) return fn();
  const conn = await pauseRemote(other, name);
  try {
    return await fn();
  } finally {
    await resumeRemote(conn);
  }
}

function pauseRemote(s: Serving, name: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(s.socket);
    let got = '';
    const fail = (why: string) => {
      conn.destroy();
      reject(new Error(`Cannot pause the writes of zvol fs:${name} for a consistent snapshot: process ${s.pid}, which serves it, ${why}.`));
    };
    conn.once('error', (e) => fail(`does not answer on ${s.socket} (${e.message})`));
    // A writer that cannot drain its writes within this is stuck; the snapshot is not taken.
    conn.setTimeout(PAUSE_TIMEOUT_MS, () => fail(`did not stop its writes within ${PAUSE_TIMEOUT_MS / 1000} s`));
    conn.on('data', (d) => {
      got += d.toString();
      if (got.includes('paused\n')) {
        conn.removeAllListeners('data');
        conn.setTimeout(0);
        resolve(conn);
      } else if (got.includes('\n')) fail(`answered ${JSON.stringify(got.trim())}`);
    });
    conn.write('pause\n');
  });
}

function resumeRemote(conn: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    conn.once('close', () => resolve());
    conn.once('error', () => resolve());
    conn.end('resume\n');
  });
}

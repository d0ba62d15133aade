/**
 * The mirror engine of one master mirror (README.md here): it holds the
 * local zvol open, a persistent dirty map per target, and a link to each
 * target's receiver.
 *
 * A write: its chunks are made durably dirty in every target's map, then it
 * is applied locally, then (inside the chunk lock, so streams see writes in
 * the order they took effect) it gets the next seq and is sent to every
 * target whose link is up. sync: resolved once every such target wrote it
 * (a FUA write: holds it durably; a FLUSH waits for every target's ACK);
 * async: at once. A target's bit is cleared only when it acknowledged the
 * chunk's latest content durably.
 *
 * A target whose link comes up gets a resync set, a copy of its dirty map:
 * those chunks are sent whole (zero runs as one ZERO frame; with compare,
 * only chunks whose sha256 differs there), while new writes are sent live.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { BlockVolume, Extent } from '../nbd/volume.js';
import { LiveDirtyMap } from '../storage/fs/dirty-map.js';
import { FrameType, type Frame, type MirrorHello } from './frames.js';
import type { MirrorConfig, MirrorTarget, MirrorMode } from './model.js';
import { RangeLocks } from './range-locks.js';
import { ResyncSet } from './resync-set.js';
import { OWNED, StreamRefused, TargetLink, type ForwardFrame, type Keep, type MirrorStream } from './target-link.js';
import { BLOCK, PeerBlocks, SAVE_MS } from './dedupe.js';
import { MAP_BASE } from './owed.js';
import type { HistoryEntry } from '../history.js';
import type { TargetStatus } from './status.js';

export const CHUNK = 64 * 1024;
/** a target's dirty maps say dirty relative to this base (dirty-map.ts header): anything else is no map */
/** async: a target with more than this unacknowledged is sent dirty chunks later instead of every write */
const ASYNC_WINDOW = 64 * 1024 * 1024;
/** resync: bytes in flight per target */
const RESYNC_WINDOW = 16 * 1024 * 1024;
/** one ZERO frame covers at most this many chunks (1 GiB) */
const ZERO_RUN = 16384;
/** a chunk written this recently stays dirty in the maps (DataKeeper keeps hot blocks dirty): cleaning it would cost a sync at its next write */
const HOT_MS = 5000;
/**
 * chunks per activity extent (DRBD's activity log, 4 MiB): a write to a clean chunk of a live
 * target marks its whole extent dirty with the one map sync it needs anyway, so the writes
 * after it there need none; the extent stays dirty while written within HOT_MS. While a
 * target is away its map gets exactly the chunks written (the resync sends only those).
 */
const EXTENT = 64;
/** a sequential writer (the extent before was just written) gets this many extents more marked with its sync (32 MiB in all) */
const AHEAD = 7;
/** chunks per hash comparison request */
const HASH_BATCH = 256;

export interface EngineDeps {
  /** this appliance's id (the HELLO's from) */
  me: string;
  /** where the targets' dirty maps live */
  mapDir: string;
  /** the mirror as configured now (the engine follows mode and pause changes) */
  config(): MirrorConfig;
  /** a stream to a target's receiver (through its agent) */
  dial(host: string): Promise<MirrorStream>;
  /** the target finished its resync: its copy is known from now on */
  resynced?(host: string): void;
  log(line: string): void;
  /** how long after a lost link it is tried again */
  retryMs?: number;
  /** HOT_MS (tests: longer than a loaded machine takes between two steps) */
  hotMs?: number;
  /**
   * a write found this target neither live nor paused: resolve to let it
   * through (its dirty map keeps it), throw (EIO) to fail it with nothing
   * changed (the fencing rules, peer-guard.ts); absent: always through
   */
  away?(host: string): Promise<void>;
  /** a resync to a target ended: level, or stopped (its trail, `show auto-cdp :NAME history`) */
  history?(entry: HistoryEntry): void;
  /** dedupe-aware transfer (dedupe.ts); off when false or absent */
  dedupe?: boolean;
  /** how long a link may leave a frame (or HELLO) unanswered before it is down (target-link.ts); absent: for ever */
  silentMs?(): number;
}

interface Target {
  host: string;
  map: LiveDirtyMap;
  link: TargetLink | null;
  connecting: boolean;
  resync: ResyncSet | null;
  /** chunk -> seq of the frame that carries its latest content to this target */
  clearable: Map<number, number>;
  /** acknowledged chunks waiting to be cleared (chunk -> the acknowledged seq), done each tick for those not hot */
  toClean: Map<number, number>;
  /** runs of chunks sent as one ZERO frame, cleared when acknowledged */
  runs: { first: number; last: number; seq: number }[];
  lastError: string | null;
  /** the last connect was refused by the target (not merely unreachable) */
  refused: boolean;
  retryAt: number;
  pumping: boolean;
  /** since when it has had something outstanding (lag in seconds), null when level */
  behindSince: number | null;
  /** what it holds as far as this engine knows, across links (dedupe.ts), and the bytes sent to it */
  known: PeerBlocks;
  /** the resync under way: since when, the bytes sent before it, how many chunks it had */
  resyncRun: { startedAt: number; bytes: number; chunks: number } | null;
}

export class MirrorEngine {
  private seq = 0;
  /** chunk -> seq of its latest local write */
  private readonly lastWrite = new Map<number, number>();
  /** extent -> when it was last written (ms), for HOT_MS */
  private readonly lastWriteAt = new Map<number, number>();
  /** extent -> writes to it under way: none of its bits is cleaned meanwhile (a write in flight may find its bit set and skip the sync) */
  private readonly writing = new Map<number, number>();
  private readonly locks = new RangeLocks();
  private readonly targets = new Map<string, Target>();
  private readonly chunks: number;
  private closed = false;
  private lastMode: MirrorMode | null = null;
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly deps: EngineDeps,
    readonly volume: BlockVolume,
  ) {
    this.chunks = Math.ceil(volume.size / CHUNK);
  }

  static async start(deps: EngineDeps, volume: BlockVolume): Promise<MirrorEngine> {
    const e = new MirrorEngine(deps, volume);
    await e.syncTargets();
    e.timer = setInterval(() => void e.tick(), Math.min(1000, deps.retryMs ?? 1000));
    e.timer.unref();
    void e.tick();
    return e;
  }

  get name(): string {
    return this.deps.config().name;
  }

  private get hotMs(): number {
    return this.deps.hotMs ?? HOT_MS;
  }

  private get mode(): MirrorMode {
    return this.deps.config().mode;
  }

  private targetConfig(host: string): MirrorTarget | undefined {
    return this.deps.config().targets.find((t) => t.host === host);
  }

  private mapFile(host: string): string {
    return path.join(this.deps.mapDir, `${host}.dmap`);
  }

  /** what the target holds, as far as dedupe knows (dedupe.ts), beside its map */
  private knownFile(host: string): string {
    return path.join(this.deps.mapDir, `${host}.known`);
  }

  /** open maps of targets added, close those of targets gone */
  private async syncTargets(): Promise<void> {
    mkdirSync(this.deps.mapDir, { recursive: true });
    const wanted = this.deps.config().targets;
    for (const t of wanted) {
      if (this.targets.has(t.host)) continue;
      // a map missing or of another base is no map: every chunk dirty (the whole copy is sent, or compared)
      const map = await LiveDirtyMap.open(this.mapFile(t.host), CHUNK, this.chunks, MAP_BASE);
      this.targets.set(t.host, {
        host: t.host,
        map,
        link: null,
        connecting: false,
        resync: null,
        clearable: new Map(),
        toClean: new Map(),
        runs: [],
        lastError: null,
        refused: false,
        retryAt: 0,
        pumping: false,
        behindSince: null,
        // what it held when this engine last ran, but for chunks it may have missed since (dirty)
        known: PeerBlocks.load(this.knownFile(t.host), this.deps.dedupe ?? false, (block) => !map.isDirty(Math.floor((block * BLOCK) / CHUNK))),
        resyncRun: null,
      });
    }
    for (const [host, t] of this.targets) {
      if (wanted.some((w) => w.host === host)) continue;
      // detached: its map goes with it (extended again later, it starts from a full or compared sync)
      this.targets.delete(host);
      t.link?.close();
      await t.map.close();
      rmSync(this.mapFile(host), { force: true });
      rmSync(this.knownFile(host), { force: true });
      this.deps.log(`auto-cdp:${this.name}: ${host} detached`);
    }
  }

  private live(t: Target): t is Target & { link: TargetLink } {
    return Boolean(t.link && !t.link.isDown && !this.targetConfig(t.host)?.paused);
  }

  /** the config changed, or time to retry lost links */
  async tick(): Promise<void> {
    if (this.closed) return;
    if (this.lastMode !== this.mode) {
      if (this.lastMode) this.deps.log(`auto-cdp:${this.name}: mode is now ${this.mode}`);
      this.lastMode = this.mode;
    }
    await this.syncTargets();
    const now = Date.now();
    for (const t of this.targets.values()) {
      this.cleanMaps(t, now);
      this.saveKnown(t, SAVE_MS, now);
      const cfg = this.targetConfig(t.host);
      if (!cfg) continue;
      if (cfg.paused) {
        if (t.link) {
          this.deps.log(`auto-cdp:${this.name}: paused to ${t.host}; its dirty map keeps what it misses`);
          this.drop(t, null);
        }
        continue;
      }
      if (!t.link && !t.connecting && Date.now() >= t.retryAt) void this.connect(t);
    }
  }

  private hello(t: Target): MirrorHello {
    const c = this.deps.config();
    return { name: c.name, createdAt: c.createdAt, epoch: c.epoch, role: 'master', from: this.deps.me, zvol: this.targetConfig(t.host)!.zvol, size: c.size, applied: 'asked' };
  }

  private async connect(t: Target): Promise<void> {
    t.connecting = true;
    try {
      const stream = await this.deps.dial(t.host);
      const link = await TargetLink.open(stream, this.hello(t), t.known, this.deps.silentMs?.());
      if (this.closed || !this.targets.has(t.host) || this.targetConfig(t.host)?.paused) {
        link.close();
        return;
      }
      // From this turn on, every write is sent live; every one before is in the map.
      t.link = link;
      t.resync = new ResyncSet(this.chunks, t.map.copyBits());
      t.clearable.clear();
      t.runs = [];
      t.lastError = null;
      t.refused = false;
      if (t.resync.size) {
        t.behindSince ??= Date.now();
        t.resyncRun = { startedAt: Date.now(), bytes: t.known.wireBytes, chunks: t.resync.size };
      }
      link.onAck((seq) => this.acked(t, seq));
      link.onDown((e) => this.drop(t, e));
      link.onForward((f) => this.forwarded(t, link, f));
      this.deps.log(`auto-cdp:${this.name}: connected to ${t.host}; ${t.resync.size} dirty chunk(s) to send`);
      void this.pump(t);
    } catch (error) {
      t.lastError = (error as Error).message;
      t.refused = error instanceof StreamRefused;
      t.retryAt = Date.now() + (this.deps.retryMs ?? 1000);
    } finally {
      t.connecting = false;
    }
  }

  /** the link is gone (or paused): the map keeps everything not acknowledged */
  private drop(t: Target, error: Error | null): void {
    this.resyncEnded(t, error?.message ?? 'paused');
    const link = t.link;
    t.link = null;
    t.resync = null;
    t.clearable.clear();
    t.runs = [];
    if (error) {
      t.lastError = error.message;
      t.retryAt = Date.now() + (this.deps.retryMs ?? 1000);
      if (link) this.deps.log(`auto-cdp:${this.name}: lost ${t.host} (${error.message}); logging changes in its dirty map`);
    }
    link?.close();
  }

  private acked(t: Target, seq: number): void {
    const clean: number[] = [];
    for (const [c, s] of t.clearable) {
      if (s > seq) continue;
      t.clearable.delete(c);
      if ((this.lastWrite.get(c) ?? 0) <= s) clean.push(c);
    }
    for (let i = 0; i < t.runs.length; ) {
      const r = t.runs[i];
      if (r.seq > seq) {
        i++;
        continue;
      }
      for (let c = r.first; c <= r.last; c++) if ((this.lastWrite.get(c) ?? 0) <= r.seq && !t.clearable.has(c)) clean.push(c);
      t.runs.splice(i, 1);
    }
    this.cleanAt(t, clean, seq);
    // cleaned each tick: a scan of every waiting chunk at every ACK cost more than the write it acknowledged
    if (t.link && t.link.unackedBytes === 0 && !t.resync?.size) t.behindSince = null;
  }

  /** chunks the target holds durably as of `seq`: cleaned at the next tick unless written since (cleanMaps) */
  private cleanAt(t: Target, chunks: Iterable<number>, seq: number): void {
    for (const c of chunks) t.toClean.set(c, Math.max(seq, t.toClean.get(c) ?? 0));
  }

  /** clear the acknowledged chunks that were not written since, nor lately */
  private cleanMaps(t: Target, now: number): void {
    const clean: number[] = [];
    for (const [c, seq] of t.toClean) {
      if ((this.lastWrite.get(c) ?? 0) > seq) {
        t.toClean.delete(c); // written since: its own acknowledgement clears it
        continue;
      }
      const x = Math.floor(c / EXTENT);
      if (this.writing.has(x) || now - (this.lastWriteAt.get(x) ?? 0) < this.hotMs) continue;
      t.toClean.delete(c);
      clean.push(c);
    }
    if (clean.length) t.map.clean(clean).catch((e: Error) => this.deps.log(`auto-cdp:${this.name}: could not update the dirty map of ${t.host}: ${e.message}`));
  }

  // ---- writes ----------------------------------------------------------------

  /**
   * make chunks first..last durably dirty, with the rest of their extents (EXTENT): a clean
   * chunk there is the target's as of every write so far, so it is cleaned again like an
   * acknowledged one once its extent is cold
   */
  private markExtents(t: Target, first: number, last: number): Promise<void> {
    const from = first - (first % EXTENT);
    let to = Math.min(this.chunks - 1, last - (last % EXTENT) + EXTENT - 1);
    let clean = false;
    for (let c = from; c <= to && !clean; c++) clean = !t.map.isDirty(c);
    const x = from / EXTENT;
    const now = Date.now();
    if (clean && x > 0 && now - (this.lastWriteAt.get(x - 1) ?? 0) < this.hotMs) {
      // sequential: the extents ahead are marked with the same sync, and count as hot until written
      const end = Math.min(this.chunks - 1, to + AHEAD * EXTENT);
      for (let y = Math.floor(to / EXTENT) + 1; y <= Math.floor(end / EXTENT); y++) if (!this.lastWriteAt.has(y) || now - this.lastWriteAt.get(y)! >= this.hotMs) this.lastWriteAt.set(y, now);
      to = end;
    }
    for (let c = from; c <= to; c++) if ((c < first || c > last) && !t.map.isDirty(c)) t.toClean.set(c, this.seq);
    return t.map.mark(from, to);
  }

  /**
   * A client wrote on the slave's export and its daemon forwarded the write
   * here: it is ordered with this copy's writes (apply), and answered once
   * the slave holds it durably too (its WRITE frame goes out before the
   * answer on the same stream, so the slave has applied it when it acks its
   * client). Durable here as well (fua): the slave's client was acked.
   */
  private forwarded(t: Target, link: TargetLink, f: ForwardFrame): void {
    const v = this.volume;
    const length = f.type === FrameType.FWD_WRITE ? f.data.length : f.length;
    if (length <= 0 || f.offset + length > v.size) {
      link.forwarded(f.id, `a forwarded write of ${length} bytes at ${f.offset} is outside the zvol (${v.size} bytes)`);
      return;
    }
    const done =
      f.type === FrameType.FWD_WRITE
        ? this.apply(
            f.offset,
            length,
            () => v.write(f.offset, f.data, { fua: true }),
            (seq) => ({ type: FrameType.WRITE, seq, offset: f.offset, data: f.data }),
            length,
            true,
            t.host,
            OWNED, // a view of the frame it came in, which nothing reuses
          )
        : this.apply(
            f.offset,
            length,
            () => v.writeZeroes(f.offset, length, { fua: true, noHole: false }),
            (seq) => ({ type: FrameType.ZERO, seq, offset: f.offset, length }),
            64,
            true,
            t.host,
          );
    done.then(
      () => link.forwarded(f.id, ''),
      (e: Error) => link.forwarded(f.id, e.message),
    );
  }

  /**
   * apply a write or zeroes locally and on every live target (see the file's comment); sync:
   * resolved once the targets wrote it, or hold it durably when `durable` (FUA); `origin`: the
   * target that forwarded it, which always gets it live and is waited for until it holds it
   * durably, in either mode; `keep`: how a WRITE frame's data is lent to each link (target-link.ts;
   * absent: each link copies it)
   */
  async apply(offset: number, length: number, local: () => Promise<void>, frameOf: (seq: number) => Frame & { seq: number }, bytes: number, durable = false, origin?: string, keep?: Keep): Promise<void> {
    const first = Math.floor(offset / CHUNK);
    const last = Math.floor((offset + length - 1) / CHUNK);
    const release = await this.locks.lock(first, last);
    const waits: Promise<void>[] = [];
    const extents = { first: Math.floor(first / EXTENT), last: Math.floor(last / EXTENT) };
    for (let x = extents.first; x <= extents.last; x++) this.writing.set(x, (this.writing.get(x) ?? 0) + 1);
    try {
      const all = [...this.targets.values()];
      const away = this.deps.away;
      if (away) for (const t of all) if (!this.live(t) && !this.targetConfig(t.host)?.paused) await away(t.host);
      await Promise.all(all.map((t) => (this.live(t) ? this.markExtents(t, first, last) : t.map.mark(first, last))));
      await local();
      const seq = ++this.seq;
      const at = Date.now();
      for (let c = first; c <= last; c++) this.lastWrite.set(c, seq);
      for (let x = extents.first; x <= extents.last; x++) this.lastWriteAt.set(x, at);
      const whole = (c: number) => offset <= c * CHUNK && offset + length >= Math.min((c + 1) * CHUNK, this.volume.size);
      const sync = this.mode === 'sync';
      for (const t of all) {
        t.behindSince ??= Date.now();
        const waited = sync || t.host === origin;
        const behind = !waited && t.link !== null && t.link.unackedBytes > ASYNC_WINDOW;
        if (this.live(t) && !behind) {
          for (let c = first; c <= last; c++) {
            if (t.resync?.has(c) && !whole(c)) t.clearable.delete(c);
            else {
              t.resync?.delete(c);
              t.clearable.set(c, seq);
            }
          }
          const p = t.link.send(frameOf(seq), bytes, keep, !waited); // async: batched with the next writes' frames
          p.catch(() => undefined);
          if (durable && (sync || t.host === origin)) t.link.requestFlush();
          if (t.host === origin)
            waits.push(p); // the forwarding slave's copy: its client is acked only once it holds the write
          else if (sync)
            // a target lost under the write is logging (the map has it); whether the write may still be acked is the fencing rules' (away), as for one found away; closed: stopped here (a role change), the local copy and the map have it
            waits.push((durable ? p : t.link.applied(seq)).catch(() => (this.closed ? undefined : away?.(t.host))));
        } else {
          for (let c = first; c <= last; c++) {
            t.clearable.delete(c);
            t.resync?.add(c);
          }
          if (behind && !t.pumping) void this.pump(t);
        }
      }
    } finally {
      for (let x = extents.first; x <= extents.last; x++) {
        const n = this.writing.get(x)! - 1;
        if (n) this.writing.set(x, n);
        else this.writing.delete(x);
      }
      release();
    }
    await Promise.all(waits);
  }

  /** sync: every write so far is durable on every live target (the export's FLUSH); async: nothing to wait for */
  async flushTargets(): Promise<void> {
    if (this.mode !== 'sync') return;
    await Promise.all([...this.targets.values()].map((t) => (this.live(t) ? t.link.flushed().catch(() => undefined) : undefined)));
  }

  // ---- resync ----------------------------------------------------------------

  private async pump(t: Target): Promise<void> {
    if (t.pumping) return;
    t.pumping = true;
    const link = t.link;
    try {
      let cursor = 0;
      const compare = () => this.targetConfig(t.host)?.fullSync === 'compare';
      while (!this.closed && t.link === link && link && !link.isDown && t.resync && t.resync.size > 0) {
        const c = t.resync.next(cursor);
        if (c < 0) break;
        while (link.unackedBytes > RESYNC_WINDOW && !link.isDown) await this.ackProgress(link);
        if (link.isDown) break;
        if (compare()) cursor = await this.compareBatch(t, link, c);
        else cursor = await this.sendChunks(t, link, c);
        await link.drained();
      }
      if (t.link === link && link && !link.isDown && t.resync?.size === 0) {
        await this.ackProgress(link, true);
        if (t.link === link && !link.isDown) {
          this.deps.log(`auto-cdp:${this.name}: ${t.host} is level (mirroring)`);
          this.resyncEnded(t, null);
          if (this.targetConfig(t.host)?.fullSync !== 'none') this.deps.resynced?.(t.host);
        }
      }
    } catch (error) {
      this.deps.log(`auto-cdp:${this.name}: resync to ${t.host} stopped: ${(error as Error).message}`);
      if (t.link === link) this.drop(t, error as Error);
    } finally {
      t.pumping = false;
    }
  }

  /** the trail's entry of the resync under way, if one is: level (error null) or stopped */
  private resyncEnded(t: Target, error: string | null): void {
    const run = t.resyncRun;
    if (!run) return;
    t.resyncRun = null;
    const now = Date.now();
    const bytes = t.known.wireBytes - run.bytes;
    try {
      this.deps.history?.({
        direction: 'send',
        service: this.name,
        peer: t.host,
        startedAt: new Date(run.startedAt).toISOString(),
        endedAt: new Date(now).toISOString(),
        result: error ? 'failure' : 'success',
        bytes,
        rateBytesPerSec: Math.round(bytes / Math.max(0.001, (now - run.startedAt) / 1000)),
        snapshot: error ? null : `${run.chunks} chunk(s)`,
        error,
      });
    } catch (e) {
      this.deps.log(`auto-cdp:${this.name}: could not write its history: ${(e as Error).message}`);
    }
  }

  /** wait until some frame is acknowledged (or all, with `all`) */
  private async ackProgress(link: TargetLink, all = false): Promise<void> {
    do {
      if (link.isDown || link.unackedBytes === 0) return;
      await link.nextAck();
    } while (all);
  }

  private async zeroRun(c: number): Promise<number> {
    if (!this.volume.extents) return 0;
    const n = Math.min(ZERO_RUN, this.chunks - c);
    const ext: Extent[] = await this.volume.extents(c * CHUNK, Math.min(n * CHUNK, this.volume.size - c * CHUNK));
    let zeroBytes = 0;
    for (const e of ext) {
      if (!(e.zero || e.hole)) break;
      zeroBytes += e.length;
    }
    return Math.min(n, Math.floor(zeroBytes / CHUNK) || (zeroBytes >= this.volume.size - c * CHUNK ? 1 : 0));
  }

  /** send chunk c (or the zero run it starts) whole; returns where to go on */
  private async sendChunks(t: Target, link: TargetLink, c: number): Promise<number> {
    const run = await this.zeroRun(c);
    if (run > 1 || run === 1) {
      const release = await this.locks.lock(c, c + run - 1);
      try {
        const again = await this.zeroRun(c); // under the lock: nothing wrote meanwhile
        if (again >= run) {
          const seq = ++this.seq;
          for (let k = c; k < c + run; k++) t.resync?.delete(k);
          t.runs.push({ first: c, last: c + run - 1, seq });
          const length = Math.min(run * CHUNK, this.volume.size - c * CHUNK);
          link.send({ type: FrameType.ZERO, seq, offset: c * CHUNK, length }, 64).catch(() => undefined);
          return c + run;
        }
      } finally {
        release();
      }
    }
    const release = await this.locks.lock(c, c);
    try {
      if (!t.resync?.delete(c)) return c + 1; // a whole-chunk write took it meanwhile
      const length = Math.min(CHUNK, this.volume.size - c * CHUNK);
      const data = await this.volume.read(c * CHUNK, length);
      const seq = ++this.seq;
      t.clearable.set(c, seq);
      link.send({ type: FrameType.WRITE, seq, offset: c * CHUNK, data }, length, OWNED).catch(() => undefined);
    } finally {
      release();
    }
    return c + 1;
  }

  /** --no-full-sync: compare the target's sha256 of a batch of chunks with ours; send only those that differ */
  private async compareBatch(t: Target, link: TargetLink, c: number): Promise<number> {
    const count = Math.min(HASH_BATCH, this.chunks - c);
    const seq = ++this.seq;
    const theirs = await link.hashes(seq, c * CHUNK, count);
    const equal: number[] = [];
    for (let k = 0; k < count; k++) {
      const chunk = c + k;
      if (!t.resync?.has(chunk)) continue;
      const release = await this.locks.lock(chunk, chunk);
      try {
        const length = Math.min(CHUNK, this.volume.size - chunk * CHUNK);
        const data = await this.volume.read(chunk * CHUNK, length);
        if ((this.lastWrite.get(chunk) ?? 0) < seq && createHash('sha256').update(data).digest().equals(theirs[k])) {
          // the same there, as of every frame before the request: nothing to send
          t.resync.delete(chunk);
          equal.push(chunk);
          continue;
        }
        if (!t.resync.delete(chunk)) continue;
        const wseq = ++this.seq;
        t.clearable.set(chunk, wseq);
        link.send({ type: FrameType.WRITE, seq: wseq, offset: chunk * CHUNK, data }, length, OWNED).catch(() => undefined);
      } finally {
        release();
      }
    }
    // the equal chunks are clean once the target made the request's place durable: waited for
    // here, not left to `acked`, whose ACK may have come while this loop was still reading
    if (equal.length) {
      link.durable(seq).then(
        () => this.cleanAt(t, equal, seq),
        () => undefined, // the link went down: they stay dirty, and are compared again
      );
    }
    return c + count;
  }

  // ---- verify ----------------------------------------------------------------

  /**
   * DRBD's online verify: compare the sha256 of every chunk here with the
   * target's while clients write. Out of sync: a chunk that differs though
   * its dirty bit is clear and nothing wrote it since the target hashed it.
   * With repair, those chunks are marked dirty and sent again.
   */
  async verify(host: string | undefined, repair: boolean, onProgress?: (host: string, done: number, of: number) => void): Promise<{ host: string; checked: number; outOfSync: number[]; repaired: boolean }[]> {
    const chosen = [...this.targets.values()].filter((t) => host === undefined || t.host === host);
    if (host !== undefined && !chosen.length) throw new Error(`auto-cdp:${this.name} has no target on "${host}".`);
    const out = [];
    for (const t of chosen) {
      const link = t.link;
      if (!link || link.isDown || !this.live(t)) throw new Error(`${t.host} is not connected (${this.targetConfig(t.host)?.paused ? 'paused' : (t.lastError ?? 'logging')}): verify needs the target's copy.`);
      const outOfSync: number[] = [];
      for (let c = 0; c < this.chunks; c += HASH_BATCH) {
        const count = Math.min(HASH_BATCH, this.chunks - c);
        const seq = ++this.seq;
        const theirs = await link.hashes(seq, c * CHUNK, count);
        for (let k = 0; k < count; k++) {
          const chunk = c + k;
          const release = await this.locks.lock(chunk, chunk);
          try {
            // still on its way (to be sent, or sent and not acknowledged), or written since the target hashed it
            if (t.resync?.has(chunk) || t.clearable.has(chunk) || (this.lastWrite.get(chunk) ?? 0) > seq) continue;
            const data = await this.volume.read(chunk * CHUNK, Math.min(CHUNK, this.volume.size - chunk * CHUNK));
            if (createHash('sha256').update(data).digest().equals(theirs[k])) continue;
            outOfSync.push(chunk);
            if (repair) {
              t.toClean.delete(chunk);
              await t.map.mark(chunk, chunk);
              t.resync?.add(chunk);
              t.clearable.delete(chunk);
            }
          } finally {
            release();
          }
        }
        onProgress?.(t.host, c + count, this.chunks);
      }
      if (repair && outOfSync.length) {
        t.behindSince ??= Date.now();
        void this.pump(t);
      }
      this.deps.log(`auto-cdp:${this.name}: verify of ${t.host}: ${outOfSync.length} chunk(s) out of sync of ${this.chunks}${repair && outOfSync.length ? ', resyncing them' : ''}`);
      out.push({ host: t.host, checked: this.chunks, outOfSync, repaired: repair && outOfSync.length > 0 });
    }
    return out;
  }

  // ---- status ----------------------------------------------------------------

  /** the link to a target is up (the peer guard's heartbeat) */
  linkUp(host: string): boolean {
    const t = this.targets.get(host);
    return Boolean(t?.link && !t.link.isDown);
  }

  /** why the link to a target is down, when known */
  linkError(host: string): string | null {
    return this.targets.get(host)?.lastError ?? null;
  }

  /** whether the target refused this engine's last attempt to connect */
  refusedBy(host: string): boolean {
    return this.targets.get(host)?.refused ?? false;
  }

  status(now = Date.now()): TargetStatus[] {
    return [...this.targets.values()].map((t) => {
      const cfg = this.targetConfig(t.host);
      const resyncing = t.resync && t.resync.size > 0;
      const state = cfg?.paused ? 'paused' : !t.link ? 'logging' : resyncing ? 'syncing' : 'mirroring';
      const unacked = t.link?.unackedBytes ?? 0;
      const pending = (t.resync?.size ?? 0) * CHUNK;
      const lagBytes = t.link ? unacked + pending : t.map.dirtyCount() * CHUNK;
      const outstanding = lagBytes > 0 && t.behindSince !== null;
      return {
        host: t.host,
        dirtyChunks: t.map.dirtyCount(),
        syncedPercent: resyncing ? t.resync!.percentDone() : null,
        lagBytes,
        lagSeconds: outstanding ? (now - t.behindSince!) / 1000 : 0,
        state,
        reason: state === 'logging' ? t.lastError : null,
        sentBytes: t.known.wireBytes,
        dedupedBytes: t.known.dedupedBytes,
      };
    });
  }

  /** dedupe's knowledge of a target to disk (a failure costs only whole writes after a restart) */
  private saveKnown(t: Target, everyMs = 0, now = Date.now()): void {
    try {
      t.known.save(this.knownFile(t.host), everyMs, now);
    } catch (error) {
      this.deps.log(`auto-cdp:${this.name}: what ${t.host} holds was not saved for dedupe: ${(error as Error).message}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const t of this.targets.values()) {
      this.resyncEnded(t, 'the daemon stopped');
      t.link?.close();
      // nothing is written here any more: an acknowledged chunk is clean now, hot extent or not (a hand role switch reads this map)
      this.cleanMaps(t, Number.POSITIVE_INFINITY);
      this.saveKnown(t);
      await t.map.close();
    }
    this.targets.clear();
    await this.volume.close();
  }
}

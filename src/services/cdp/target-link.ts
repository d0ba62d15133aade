/**
 * The master's end of one target's stream: frames out in seq order, ACKs
 * in (cumulative: ACK n covers every frame up to n). A frame's promise
 * resolves when the target holds it durably and rejects when the link goes
 * down; the engine then treats the target as away (its dirty map keeps
 * what it missed). APPLIED n (written there, not yet flushed) resolves
 * `applied(n)` sooner.
 *
 * A link that goes silent (a cable cut without a reset, a frozen peer: the
 * stream stays open and nothing comes back) is down once it has waited
 * `silentMs` for an answer: a frame unanswered, or the WELCOME. Without
 * that a sync write waited for the target for good, and the fencing rules
 * (peer-guard.ts) never got to decide.
 */
import type { Readable, Writable } from 'node:stream';
import { encode, frames, FrameType, type Frame, type MirrorHello } from './frames.js';
import { PeerBlocks } from './dedupe.js';

/** a write a client made on the slave's export, forwarded here to be ordered with the master's own */
export type ForwardFrame = Extract<Frame, { type: typeof FrameType.FWD_WRITE | typeof FrameType.FWD_ZERO }>;

export interface MirrorStream {
  input: Readable;
  output: Writable;
  close(): void;
}

interface Waiting {
  seq: number;
  bytes: number;
  sentAt: number;
  resolve(): void;
  reject(error: Error): void;
  /** sent as DEDUP: the WRITE to send instead if the target answers MISS (its data kept until then: `release`), and the copies' sources and bytes */
  fill?: { write: Frame & { type: typeof FrameType.WRITE }; release(): void; sources: { source: number; length: number }[]; deduped: number };
}

/**
 * how a caller lends a WRITE's data to the link (send): keep() once, and the data stays as it is
 * until the link calls the function returned (after the frame went out, or, sent as DEDUP, once
 * acknowledged: a MISS sends it whole)
 */
export type Keep = () => () => void;

/** the data is the link's to keep (read for it, or a view of a received chunk nobody reuses) */
export const OWNED: Keep = () => () => undefined;

/** a frame to go out, made when it does; `sent`: the stream no longer needs its buffers */
type Out = () => { frame: Frame; sent?: () => void };

/** promises for "the target got this far", resolved in seq order */
class SeqWaits {
  private reached = 0;
  private readonly waits: { seq: number; resolve(): void; reject(error: Error): void }[] = [];

  wait(seq: number): Promise<void> {
    if (seq <= this.reached) return Promise.resolve();
    return new Promise((resolve, reject) => {
      let at = this.waits.length;
      while (at > 0 && this.waits[at - 1].seq > seq) at--;
      this.waits.splice(at, 0, { seq, resolve, reject });
    });
  }

  reach(seq: number): void {
    if (seq <= this.reached) return;
    this.reached = seq;
    while (this.waits.length && this.waits[0].seq <= seq) this.waits.shift()!.resolve();
  }

  fail(error: Error): void {
    for (const w of this.waits.splice(0)) w.reject(error);
  }
}

/**
 * async: a frame nobody waits for goes out at most this late, with the ones after it (on this
 * 2-core machine each write to the target's socket cost ~90 µs of the master's loop, mostly
 * waking the target), or at once when this much data is queued
 */
const BATCH_MS = 2;
const BATCH_BYTES = 256 * 1024;

/** the target answered HELLO with anything but WELCOME (or ended the stream): its copy may have moved on (daemon.ts meets it) */
export class StreamRefused extends Error {}

export class TargetLink {
  private readonly waiting: Waiting[] = [];
  /** frames to go out after this turn (put) */
  private readonly outbox: Out[] = [];
  /** data bytes in the outbox, a lazy frame's timer, a flush queued (put) */
  private outboxBytes = 0;
  private batchTimer: NodeJS.Timeout | null = null;
  private flushQueued = false;
  /** the releases of data lent to frames not yet done with it (all called when the link goes down) */
  private readonly lent = new Set<() => void>();
  private readonly hashWaits = new Map<number, { resolve(h: Buffer[]): void; reject(e: Error): void }>();
  private downError: Error | null = null;
  private readonly downListeners: ((e: Error) => void)[] = [];
  private readonly ackListeners: ((seq: number) => void)[] = [];
  private ackWaiters: (() => void)[] = [];
  /** the target wrote (APPLIED or ACK) / holds durably (ACK) every frame up to these */
  private readonly appliedTo = new SeqWaits();
  private readonly durableTo = new SeqWaits();
  private sentSeq = 0;
  private flushAsked = 0;
  private forwardListener: ((f: ForwardFrame) => void) | null = null;
  /** bytes sent and not yet acknowledged */
  unackedBytes = 0;
  /** when the target last sent a frame */
  private heardAt = Date.now();
  private silenceTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly stream: MirrorStream,
    readonly epoch: number,
    /** what the target holds, kept by the engine across links (dedupe.ts); its byte counts are this link's too */
    readonly known: PeerBlocks,
  ) {}

  /** open: HELLO, wait for WELCOME (or the receiver's refusal, thrown); `silentMs`: how long the target may leave the link unanswered */
  static async open(stream: MirrorStream, hello: MirrorHello, known = new PeerBlocks(), silentMs = 0): Promise<TargetLink> {
    const it = frames(stream.input);
    stream.output.write(Buffer.concat(encode({ type: FrameType.HELLO, hello })));
    let timer: NodeJS.Timeout | undefined;
    const silent = new Promise<'silent'>((resolve) => {
      if (silentMs > 0) timer = setTimeout(() => resolve('silent'), silentMs);
    });
    const first = await Promise.race([it.next().catch((e: Error) => ({ done: true as const, value: e })), silent]);
    clearTimeout(timer);
    if (first === 'silent') {
      stream.close();
      throw new Error(`the target did not answer HELLO for ${silentMs / 1000} s`);
    }
    if (first.done || first.value.type !== FrameType.WELCOME) {
      stream.close();
      const why = first.done ? (first.value instanceof Error ? first.value.message : 'the stream ended') : first.value.type === FrameType.ERROR ? first.value.message : `frame ${first.value.type}`;
      throw new StreamRefused(`the target refused the mirror stream: ${why}`);
    }
    const link = new TargetLink(stream, first.value.epoch, known);
    if (silentMs > 0) link.watch(silentMs);
    void link.readAcks(it);
    stream.output.on('error', (e: Error) => link.down(e));
    return link;
  }

  /** down when a frame has waited `ms` with nothing heard from the target since it went out */
  private watch(ms: number): void {
    this.silenceTimer = setInterval(
      () => {
        const oldest = this.waiting[0];
        if (oldest && Date.now() - Math.max(oldest.sentAt, this.heardAt) >= ms) this.down(new Error(`the target did not answer for ${ms / 1000} s`));
      },
      Math.max(50, Math.min(1000, ms / 4)),
    );
    this.silenceTimer.unref();
  }

  get isDown(): boolean {
    return this.downError !== null;
  }

  /** the oldest frame not yet acknowledged was sent this long ago (ms), 0 when none */
  oldestUnackedMs(now = Date.now()): number {
    return this.waiting.length ? now - this.waiting[0].sentAt : 0;
  }

  /** every ACK, with its seq (frames and hash requests up to it are durable there) */
  onAck(listener: (seq: number) => void): void {
    this.ackListeners.push(listener);
  }

  /** resolves at the next ACK (asked for now), or when the link goes down */
  nextAck(): Promise<void> {
    if (this.downError) return Promise.resolve();
    this.requestFlush();
    return new Promise((resolve) => this.ackWaiters.push(resolve));
  }

  onDown(listener: (e: Error) => void): void {
    if (this.downError) listener(this.downError);
    else this.downListeners.push(listener);
  }

  /** the slave's forwarded writes (answered with `forwarded`) */
  onForward(listener: (f: ForwardFrame) => void): void {
    this.forwardListener = listener;
  }

  /** answer a forwarded write: '' once both copies hold it (its WRITE went out before this), else why it failed */
  forwarded(id: number, error: string): void {
    if (!this.downError) this.put({ type: FrameType.FWD_DONE, id, error });
  }

  /**
   * queue a frame (made when it goes out, in order): every frame of one turn goes out in one
   * corked write after it. `lazy` (an async write nobody waits for): it may wait up to BATCH_MS
   * for more to go out with it, unless BATCH_BYTES are queued or a frame that is waited for
   * comes; order is kept either way (one outbox)
   */
  private put(f: Frame | Out, lazy = false, bytes = 0): void {
    this.outbox.push(typeof f === 'function' ? f : () => ({ frame: f }));
    this.outboxBytes += bytes;
    if (!lazy || this.outboxBytes >= BATCH_BYTES) this.flushSoon();
    else this.batchTimer ??= setTimeout(() => this.flushSoon(), BATCH_MS);
  }

  private flushSoon(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    // two checks on: the NBD server uncorks the replies of this turn at the first (its setImmediate
    // comes after this one), so they are out before the frames' hash, encoding and write
    setImmediate(() =>
      setImmediate(() => {
        this.flushQueued = false;
        this.flushOutbox();
      }),
    );
  }

  /**
   * after the turn that queued them: the NBD replies of that turn (async: written as soon as the
   * local write and the map are done) go out before the frames, which cost the hash, the encoding
   * and a write, and wake the target (issue 12's async latency). A single setImmediate ran them
   * before the replies: the server's uncork was queued later in the same turn.
   */
  private flushOutbox(): void {
    if (this.batchTimer) clearTimeout(this.batchTimer);
    this.batchTimer = null;
    this.outboxBytes = 0;
    const out = this.outbox.splice(0);
    if (this.downError) return;
    const output = this.stream.output;
    output.cork();
    for (const make of out) {
      const { frame, sent } = make();
      const parts = encode(frame);
      for (let i = 0; i < parts.length; i++) {
        this.known.wireBytes += parts[i].length;
        // called once written, or with an error when the stream is destroyed (down() releases it too)
        if (sent && i === parts.length - 1) output.write(parts[i], () => sent());
        else output.write(parts[i]);
      }
    }
    output.uncork();
  }

  /** lend a WRITE's data: the release, called once (and dropped from `lent`) */
  private lend(keep: Keep): () => void {
    const give = keep();
    const release = () => {
      if (this.lent.delete(release)) give();
    };
    this.lent.add(release);
    return release;
  }

  /**
   * send a WRITE or ZERO; resolves once the target holds it durably. A WRITE
   * of blocks the target holds already goes as DEDUP (its data kept until
   * acknowledged, to be sent whole on a MISS). A WRITE's data is the
   * caller's, lent with `keep` (the NBD server's pooled buffer, held until
   * the frame no longer needs it); without it the link copies it, since the
   * frame goes out after the caller's write returned (put). `lazy`: nobody
   * waits for it (async mode): it may go out up to BATCH_MS later, batched
   * with the next ones (one write and one wake-up of the target for many).
   */
  send(f: Frame & { seq: number }, bytes: number, keep?: Keep, lazy = false): Promise<void> {
    if (this.downError) return Promise.reject(this.downError);
    // a frame someone waits for asks the target for APPLIED (a lazy one: its ACK, later, is enough)
    let own: Frame = f.type === FrameType.WRITE || f.type === FrameType.ZERO ? { ...f, tell: !lazy } : f;
    let release: () => void = () => undefined;
    if (own.type === FrameType.WRITE) {
      if (keep) release = this.lend(keep);
      else own = { ...own, data: Buffer.from(own.data) };
    }
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const p = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const w: Waiting = { seq: f.seq, bytes, sentAt: Date.now(), resolve, reject };
    this.waiting.push(w);
    this.unackedBytes += bytes;
    this.sentSeq = f.seq;
    this.put(
      () => {
        if (own.type === FrameType.WRITE) {
          const pieces = this.known.enabled ? this.known.plan(own.offset, own.data) : null;
          if (!pieces) return { frame: own, sent: release };
          // kept until acknowledged: a MISS sends it whole
          const sources = pieces.flatMap((x) => ('source' in x ? [{ source: x.source, length: x.length }] : []));
          w.fill = { write: own, release, sources, deduped: sources.reduce((n, x) => n + x.length, 0) };
          return { frame: { type: FrameType.DEDUP, seq: own.seq, offset: own.offset, pieces, tell: own.tell } };
        }
        if (own.type === FrameType.ZERO) this.known.forget(own.offset, own.length);
        return { frame: own };
      },
      lazy,
      f.type === FrameType.WRITE ? f.data.length : 0,
    );
    return p;
  }

  /** resolves once the target has written every frame up to seq (APPLIED or ACK); rejects when the link goes down */
  applied(seq: number): Promise<void> {
    return this.downError ? Promise.reject(this.downError) : this.appliedTo.wait(seq);
  }

  /** resolves once the target has made every frame up to seq durable (ACK); rejects when the link goes down */
  durable(seq: number): Promise<void> {
    return this.downError ? Promise.reject(this.downError) : this.durableTo.wait(seq);
  }

  /** ask the target to make every frame sent so far durable now (it flushes on its own a little later otherwise) */
  requestFlush(): void {
    if (this.downError || this.sentSeq <= this.flushAsked) return;
    this.flushAsked = this.sentSeq;
    this.put({ type: FrameType.FLUSH, seq: this.sentSeq });
  }

  /** resolves once every frame sent so far is durable there (asked for now); rejects when the link goes down */
  flushed(): Promise<void> {
    if (this.downError) return Promise.reject(this.downError);
    this.requestFlush();
    return this.durableTo.wait(this.sentSeq);
  }

  /** the target did not hold what a DEDUP named: it waits for the write whole (nothing after it is applied meanwhile) */
  private missed(seq: number): void {
    const w = this.waiting.find((x) => x.seq === seq);
    if (!w?.fill) throw new Error(`the target missed frame ${seq}, which was not sent as DEDUP`);
    this.known.misses++;
    this.known.dedupedBytes -= w.fill.deduped;
    for (const s of w.fill.sources) this.known.forget(s.source, s.length);
    const { write, release } = w.fill;
    this.put(() => ({ frame: write, sent: release }));
    w.fill = undefined;
  }

  /** sha256 of `count` chunks from `offset` as the target holds them after every frame before this one */
  hashes(seq: number, offset: number, count: number): Promise<Buffer[]> {
    if (this.downError) return Promise.reject(this.downError);
    const p = new Promise<Buffer[]>((resolve, reject) => this.hashWaits.set(seq, { resolve, reject }));
    this.put({ type: FrameType.HASH_REQUEST, seq, offset, count });
    return p;
  }

  /** resolves when the stream can take more (backpressure of the pipe to the agent) */
  async drained(): Promise<void> {
    if (this.downError || !this.stream.output.writableNeedDrain) return;
    await new Promise<void>((resolve) => {
      this.stream.output.once('drain', resolve);
      this.onDown(() => resolve());
    });
  }

  private async readAcks(it: AsyncGenerator<Frame>): Promise<void> {
    try {
      for (;;) {
        const next = await it.next();
        if (next.done) throw new Error('the target closed the mirror stream');
        this.heardAt = Date.now();
        const f = next.value;
        if (f.type === FrameType.APPLIED) {
          this.appliedTo.reach(f.seq);
        } else if (f.type === FrameType.ACK) {
          this.appliedTo.reach(f.seq);
          this.durableTo.reach(f.seq);
          while (this.waiting.length && this.waiting[0].seq <= f.seq) {
            const w = this.waiting.shift()!;
            this.unackedBytes -= w.bytes;
            w.fill?.release(); // a DEDUP held there: no MISS can come for it any more
            w.resolve();
          }
          for (const l of this.ackListeners) l(f.seq);
          for (const w of this.ackWaiters.splice(0)) w();
        } else if (f.type === FrameType.HASHES) {
          const w = this.hashWaits.get(f.seq);
          this.hashWaits.delete(f.seq);
          w?.resolve(f.hashes);
        } else if (f.type === FrameType.FWD_WRITE || f.type === FrameType.FWD_ZERO) {
          if (this.forwardListener) this.forwardListener(f);
          else this.forwarded(f.id, 'this master takes no forwarded writes');
        } else if (f.type === FrameType.MISS) {
          this.missed(f.seq);
        } else if (f.type === FrameType.ERROR) {
          throw new Error(`the target ended the mirror stream: ${f.message}`);
        } else {
          throw new Error(`unexpected frame ${f.type} from the target`);
        }
      }
    } catch (error) {
      this.down(error as Error);
    }
  }

  private down(error: Error): void {
    if (this.downError) return;
    this.downError = error;
    for (const w of this.waiting.splice(0)) w.reject(error);
    this.appliedTo.fail(error);
    this.durableTo.fail(error);
    for (const w of this.hashWaits.values()) w.reject(error);
    this.hashWaits.clear();
    this.unackedBytes = 0;
    if (this.batchTimer) clearTimeout(this.batchTimer);
    this.batchTimer = null;
    if (this.silenceTimer) clearInterval(this.silenceTimer);
    // nothing more goes out: the data lent to frames is the caller's again
    for (const release of [...this.lent]) release();
    for (const w of this.ackWaiters.splice(0)) w();
    for (const l of this.downListeners.splice(0)) l(error);
    this.stream.close();
  }

  close(): void {
    this.down(new Error('the mirror link was closed'));
  }
}

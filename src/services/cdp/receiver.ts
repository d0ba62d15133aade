/**
 * A target's side of a mirror, run by the daemon that owns the target zvol
 * (one writer per zvol): frames from the master's engine arrive through this
 * appliance's agent (which checked the binding) on `run/cdp.sock`. Frames
 * are applied strictly in order; acknowledgements are group commits: once
 * the writes applied so far are flushed, ACK carries the highest seq, so
 * an acknowledged frame is durable here. A flush runs at once when the
 * master asks (FLUSH: its client's FLUSH or FUA, a full resync window),
 * else COMMIT_MS after a write (the master's maps are cleaned from ACKs;
 * a flush per write would share the disk with the master's own writes
 * for nothing). Before that, APPLIED tells the
 * master a frame is written here (in the zvol, so it outlives this process):
 * a sync write without FUA waits only for that (DRBD's protocol C), its
 * FLUSH or FUA for the ACK.
 */
import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import type { BlockVolume } from '../nbd/volume.js';
import type { MirrorStore } from './store.js';
import { encode, frames, FrameType, type Frame, type MirrorHello } from './frames.js';
import type { MirrorConfig } from './model.js';
import { BLOCK, runHashOf, type Piece } from './dedupe.js';

export const CHUNK = 64 * 1024;
/** a write not asked to be durable is flushed at most this long after it */
const COMMIT_MS = 100;

export interface ReceiverDeps {
  store: MirrorStore;
  /** open the target zvol for writing (the daemon's own writer of it) */
  open(zvol: string): Promise<BlockVolume>;
  log?(line: string): void;
  /** the stream is accepted: the slave's export forwards its clients' writes through it; the returned function is called when it ends */
  attach?(name: string, session: ForwardSession): () => void;
}

/**
 * The master's stream as the slave's export sees it: a forwarded write
 * resolves once the master ordered and applied it and this copy holds it
 * (durably: the master waited for this copy's ACK). Rejects with
 * ForwardRefused when the master answered with an error, with another
 * error when the stream ended first (the write may or may not have been
 * applied there: the peer-loss rules decide what happens to it).
 */
export interface ForwardSession {
  readonly from: string;
  readonly epoch: number;
  write(offset: number, data: Buffer): Promise<void>;
  zero(offset: number, length: number): Promise<void>;
  /**
   * The master left a forwarded write unanswered past its deadline: end
   * the stream from this side (its forwarded writes fail with `why`, no
   * frame of it is applied after). Resolves once the stream is closed here.
   */
  abandon(why: Error): Promise<void>;
}

export class ForwardRefused extends Error {}

/** why this appliance does not take the master's stream, or null */
export function refuseHello(h: MirrorHello, caller: string, mine: MirrorConfig | undefined): string | null {
  if (!mine) return `there is no auto-cdp:${h.name} here`;
  if (mine.createdAt !== h.createdAt) return `auto-cdp:${h.name} here is another mirror of that name (created ${mine.createdAt})`;
  if (mine.role !== 'slave') return `auto-cdp:${h.name} is master here (epoch ${mine.epoch}): it takes no writes from ${caller}`;
  if (h.from !== caller) return `the stream says it comes from ${h.from}, but it came from ${caller}`;
  if (mine.master?.host !== caller) return `the master of auto-cdp:${h.name} is ${mine.master?.host}, not ${caller}`;
  if (h.epoch < mine.epoch) return `${caller} is at epoch ${h.epoch}, this copy at ${mine.epoch}: an older master takes no part`;
  if (h.zvol !== mine.zvol || h.size !== mine.size) return `the target here is ${mine.zvol} (${mine.size} bytes), not ${h.zvol} (${h.size} bytes)`;
  return null;
}

/**
 * The bytes a DEDUP frame writes, or null when a copy's source no longer
 * hashes as the master said (then nothing of it may be written). Every
 * source is read before anything is written, so they are what the target
 * held before this frame.
 */
export async function dedupeData(v: BlockVolume, offset: number, pieces: readonly Piece[]): Promise<Buffer | null> {
  const parts: Buffer[] = [];
  let length = 0;
  for (const p of pieces) {
    if ('data' in p) parts.push(p.data);
    else {
      if (p.source < 0 || p.source + p.length > v.size || p.length % BLOCK !== 0) return null;
      const got = await v.read(p.source, p.length);
      if (!runHashOf(got).equals(p.hash)) return null;
      parts.push(got);
    }
    length += p.length;
  }
  if (offset + length > v.size) throw new Error(`a DEDUP frame writes past the end of the target (${offset + length} > ${v.size})`);
  return Buffer.concat(parts, length);
}

/** a frame whose buffers are its own (a held frame outlives the stream's join buffers) */
function ownCopy(f: Frame): Frame {
  if (f.type === FrameType.WRITE || f.type === FrameType.FWD_WRITE) return { ...f, data: Buffer.from(f.data) };
  if (f.type === FrameType.DEDUP) return { ...f, pieces: f.pieces.map((p) => ('data' in p ? { ...p, data: Buffer.from(p.data) } : { ...p, hash: Buffer.from(p.hash) })) };
  return f;
}

export async function receiveMirror(deps: ReceiverDeps, caller: string, input: Readable, output: Writable): Promise<void> {
  const send = (f: Frame) => {
    if (!output.destroyed) output.write(Buffer.concat(encode(f)));
  };
  // the frames' buffers are reused once the next is asked for (frames.ts): what is held past that is copied (held)
  const it = frames(input, true);
  let vol: BlockVolume | null = null;
  let detach: (() => void) | undefined;
  let endForwards: ((why: Error) => void) | undefined;
  let closed!: () => void;
  const over = new Promise<void>((resolve) => (closed = resolve));
  try {
    const first = await it.next();
    if (first.done || first.value.type !== FrameType.HELLO) throw new Error('the stream did not start with HELLO');
    const hello = first.value.hello;
    const why = refuseHello(hello, caller, deps.store.get(hello.name));
    if (why) throw new Error(why);
    // a slave its master's promotion did not reach (cdp.update lost) adopts the newer epoch before it takes a frame:
    // left older, it could be promoted in turn to an epoch that master already holds (two masters of one epoch)
    if (hello.epoch > deps.store.get(hello.name)!.epoch) {
      await deps.store.update(hello.name, (c) => (c.role === 'slave' && c.epoch < hello.epoch ? { ...c, epoch: hello.epoch } : c));
      deps.log?.(`auto-cdp:${hello.name}: epoch ${hello.epoch} of ${caller}, the master, adopted`);
    }
    vol = await deps.open(hello.zvol);
    send({ type: FrameType.WELCOME, epoch: deps.store.get(hello.name)!.epoch });
    deps.log?.(`auto-cdp:${hello.name}: receiving from ${caller} into ${hello.zvol}`);
    const forwards = new Map<number, { resolve(): void; reject(e: Error): void }>();
    let nextForward = 1;
    let ended: Error | null = null;
    const forward = (f: Frame & { id: number }) => {
      if (ended) return Promise.reject(ended);
      return new Promise<void>((resolve, reject) => {
        forwards.set(f.id, { resolve, reject });
        send(f);
      });
    };
    detach = deps.attach?.(hello.name, {
      from: caller,
      epoch: hello.epoch,
      write: (offset, data) => forward({ type: FrameType.FWD_WRITE, id: nextForward++, offset, data }),
      zero: (offset, length) => forward({ type: FrameType.FWD_ZERO, id: nextForward++, offset, length }),
      abandon: (why) => {
        endForwards?.(why);
        input.destroy(why);
        return over;
      },
    });
    endForwards = (why) => {
      ended = why;
      for (const w of forwards.values()) w.reject(why);
      forwards.clear();
    };
    let applied = 0;
    let acked = 0;
    /** the highest seq told APPLIED; one APPLIED per turn covers every frame applied in it */
    let told = 0;
    let telling = false;
    /** the master asks per frame (MirrorHello.applied), and a frame applied since the last APPLIED asked */
    const asks = hello.applied === 'asked';
    let owed = false;
    const tell = () => {
      if (telling || applied === told) return;
      telling = true;
      setImmediate(() => {
        telling = false;
        if (applied > told && applied > acked) send({ type: FrameType.APPLIED, seq: applied });
        told = applied;
      });
    };
    let flushing: Promise<void> | null = null;
    /** the highest seq a FLUSH asked to be durable */
    let asked = 0;
    let timer: NodeJS.Timeout | null = null;
    let failure: Error | null = null;
    const v = vol;
    const commit = () => {
      if (flushing || applied === acked) return;
      if (asked <= acked) {
        timer ??= setTimeout(() => {
          timer = null;
          asked = Math.max(asked, applied);
          commit();
        }, COMMIT_MS);
        return;
      }
      if (timer) clearTimeout(timer);
      timer = null;
      const upTo = applied;
      flushing = v.flush().then(
        () => {
          acked = upTo;
          send({ type: FrameType.ACK, seq: upTo });
          flushing = null;
          commit();
        },
        (error: Error) => {
          failure = error;
          flushing = null;
        },
      );
    };
    /** a DEDUP that missed: nothing after it is applied until its WRITE comes (frames meanwhile wait here, in order) */
    let missed: number | null = null;
    const held: Frame[] = [];
    const apply = async (f: Frame): Promise<void> => {
      if (missed !== null) {
        if (f.type !== FrameType.WRITE || f.seq !== missed) {
          held.push(ownCopy(f));
          return;
        }
        missed = null;
      }
      if ((f.type === FrameType.WRITE || f.type === FrameType.ZERO || f.type === FrameType.DEDUP) && f.tell) owed = true;
      switch (f.type) {
        case FrameType.WRITE:
          await v.write(f.offset, f.data, { fua: false });
          applied = f.seq;
          break;
        case FrameType.DEDUP: {
          const data = await dedupeData(v, f.offset, f.pieces);
          if (!data) {
            missed = f.seq;
            send({ type: FrameType.MISS, seq: f.seq });
            break;
          }
          await v.write(f.offset, data, { fua: false });
          applied = f.seq;
          break;
        }
        case FrameType.ZERO:
          await v.writeZeroes(f.offset, f.length, { fua: false, noHole: false });
          applied = f.seq;
          break;
        case FrameType.FWD_DONE: {
          // every frame before it (the forwarded write's own WRITE) is applied here
          const w = forwards.get(f.id);
          forwards.delete(f.id);
          if (f.error) w?.reject(new ForwardRefused(f.error));
          else w?.resolve();
          break;
        }
        case FrameType.HASH_REQUEST: {
          const hashes: Buffer[] = [];
          for (let i = 0; i < f.count; i++) {
            const at = f.offset + i * CHUNK;
            const len = Math.min(CHUNK, v.size - at);
            hashes.push(
              len > 0
                ? createHash('sha256')
                    .update(await v.read(at, len))
                    .digest()
                : Buffer.alloc(32),
            );
          }
          send({ type: FrameType.HASHES, seq: f.seq, hashes });
          applied = f.seq;
          // the master clears the chunks it found equal at the ACK reaching this seq: with no write
          // after the request, nothing else would make that ACK come
          commit();
          break;
        }
        case FrameType.FLUSH:
          asked = Math.max(asked, f.seq);
          break;
        default:
          throw new Error(`unexpected frame ${f.type} from the master`);
      }
      // the missed frame came: what waited behind it goes now (a new miss holds the rest again, still in order)
      if (missed === null && held.length && f.type === FrameType.WRITE) for (const h of held.splice(0)) await apply(h);
    };
    let ahead = it.next();
    for (;;) {
      const next = await ahead;
      if (next.done) break;
      if (failure) throw failure;
      // the next frame is read while this one is written (a 1 MiB frame is 16 reads): one ahead, as
      // frames.ts's two join buffers allow; applied strictly in order all the same
      ahead = it.next();
      ahead.catch(() => undefined); // awaited at the next turn of this loop (or the stream is over)
      await apply(next.value);
      if (!asks || owed) {
        owed = false;
        tell();
      }
      commit();
    }
    asked = applied; // the master closed the stream: what it sent is flushed now
    commit();
    while (flushing) await flushing;
    if (timer) clearTimeout(timer);
    if (failure) throw failure;
  } catch (error) {
    send({ type: FrameType.ERROR, message: (error as Error).message });
    deps.log?.(`auto-cdp: refused or ended the stream from ${caller}: ${(error as Error).message}`);
  } finally {
    detach?.();
    endForwards?.(new Error(`the mirror stream from ${caller} ended`));
    output.end();
    await vol?.close().catch(() => undefined);
    closed();
  }
}

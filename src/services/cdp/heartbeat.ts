/**
 * Heartbeats on the peer link of a mirror: a `ping` every interval; when no
 * ping has been answered for `peerTimeoutMs` (`--peer-timeout`) the peer is
 * `lost`, and `back` when one is answered again. The deadline is checked
 * exactly (a hanging ping is cut at it), so a loss is reported within the
 * peer timeout of the last answer, never later.
 *
 * A peer that answers but refuses (not bound both ways, a changed host key:
 * auto-sync/epochs.ts NOT_DOWN) is there, so it is not lost: it could still
 * be writing.
 *
 * Time goes through a Clock, so tests drive it with a ManualClock.
 */
import { EventEmitter } from 'node:events';
import { isAbortError, systemClock, type Clock } from '../clock.js';
import { NOT_DOWN } from '../auto-sync/contact.js';

import { DEFAULT_PEER_TIMEOUT_MS } from './model.js';

export { DEFAULT_PEER_TIMEOUT_MS };

export interface HeartbeatOptions {
  peerTimeoutMs?: number;
  /** between pings (default a quarter of the peer timeout) */
  intervalMs?: number;
  clock?: Clock;
}

export interface HeartbeatEvent {
  /** clock time of the event */
  at: number;
  /** clock time of the last answered ping */
  lastAnswer: number;
  /** lost: why the last ping failed */
  why?: string;
}

interface Events {
  lost: [HeartbeatEvent];
  back: [HeartbeatEvent];
  /** every answered ping (tests and `show` synchronise on it) */
  beat: [HeartbeatEvent];
}

/** the ping failed but says the peer is there (it answered and refused) */
const answeredAnyway = (error: unknown): boolean => {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && NOT_DOWN.has(code);
};

export class Heartbeat extends EventEmitter<Events> {
  readonly peerTimeoutMs: number;
  readonly intervalMs: number;
  private readonly clock: Clock;
  private readonly stop = new AbortController();
  private running: Promise<void> | null = null;
  private lastAnswer = 0;
  private lostNow = false;
  private lastWhy = '';

  /** `ping` resolves when the peer answered; it is not called again while one is pending */
  constructor(
    private readonly ping: () => Promise<void>,
    opts: HeartbeatOptions = {},
  ) {
    super();
    this.peerTimeoutMs = opts.peerTimeoutMs ?? DEFAULT_PEER_TIMEOUT_MS;
    if (!Number.isFinite(this.peerTimeoutMs) || this.peerTimeoutMs <= 0) throw new RangeError(`The peer timeout must be a positive number of milliseconds, not ${this.peerTimeoutMs}.`);
    this.intervalMs = opts.intervalMs ?? Math.max(1, Math.floor(this.peerTimeoutMs / 4));
    this.clock = opts.clock ?? systemClock;
  }

  /** is the peer lost now */
  get lost(): boolean {
    return this.lostNow;
  }

  /**
   * The peer is lost now, known from elsewhere (a forwarded write it did not
   * answer within the peer timeout): `lost` at once; `back` when a ping is
   * answered again, as after any loss.
   */
  markLost(why: string): void {
    if (this.lostNow) return;
    this.lostNow = true;
    const now = this.clock.now();
    this.emit('lost', { at: now, lastAnswer: this.lastAnswer, why });
  }

  start(): this {
    if (!this.running) {
      this.lastAnswer = this.clock.now();
      this.running = this.loop().catch((error: unknown) => {
        if (!isAbortError(error)) throw error;
      });
    }
    return this;
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const signal = this.stop.signal;
    let pending: Promise<boolean> | null = null;
    while (!signal.aborted) {
      const began = this.clock.now();
      pending ??= this.ping().then(
        () => true,
        (error: unknown) => {
          if (answeredAnyway(error)) return true;
          this.lastWhy = (error as Error).message;
          return false;
        },
      );
      // up: wait for the answer until the deadline; lost: for one interval, then ping again
      const waitMs = this.lostNow ? this.intervalMs : Math.max(0, this.lastAnswer + this.peerTimeoutMs - began);
      const wait = new AbortController();
      const onStop = () => wait.abort();
      signal.addEventListener('abort', onStop, { once: true });
      const timedOut = this.clock.sleep(waitMs, wait.signal).then(
        () => 'timeout' as const,
        () => 'cancelled' as const,
      );
      const answer = await Promise.race([pending.then((ok) => (ok ? ('ok' as const) : ('failed' as const))), timedOut]);
      wait.abort();
      signal.removeEventListener('abort', onStop);
      if (signal.aborted) return;
      const now = this.clock.now();
      if (answer === 'ok') {
        pending = null;
        this.lastAnswer = now;
        if (this.lostNow) {
          this.lostNow = false;
          this.emit('back', { at: now, lastAnswer: now });
        }
        this.emit('beat', { at: now, lastAnswer: now });
      } else {
        if (answer === 'failed') pending = null; // a hanging ping stays pending: the next beat waits on it
        if (!this.lostNow && now - this.lastAnswer >= this.peerTimeoutMs) {
          this.lostNow = true;
          this.emit('lost', { at: now, lastAnswer: this.lastAnswer, why: answer === 'timeout' ? `no answer for ${Math.round((now - this.lastAnswer) / 100) / 10} sec` : this.lastWhy });
        }
      }
      // the next beat: after the interval (a hanging ping already took it), never past the deadline of a peer still up
      if (answer === 'timeout') continue;
      const next = this.lostNow || answer === 'ok' ? this.intervalMs : Math.min(this.intervalMs, Math.max(0, this.lastAnswer + this.peerTimeoutMs - now));
      await this.clock.sleep(next, signal);
    }
  }
}

/**
 * Time as a dependency. The daemon reads the time and waits through a Clock,
 * so tests can drive "every minute" schedules with a ManualClock instead of
 * sleeping for minutes.
 */
import { setTimeout as timerSleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';

export interface Clock {
  /** milliseconds since the epoch, like Date.now() */
  now(): number;
  /** Resolve after ms; reject with an AbortError when the signal aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The longest a single Node timer can wait; longer timers fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The longest sleepUntil waits before looking at the clock again, so that a
 * wall-clock jump (NTP step, suspend and resume) delays a due run by at most
 * this much.
 */
export const MAX_SLEEP_CHUNK_MS = 60_000;

/** The error sleeps reject with when aborted: name 'AbortError', like node:timers/promises. */
export function abortError(signal: AbortSignal): Error {
  const error = new Error('The operation was aborted.', { cause: signal.reason }) as Error & { code: string };
  error.name = 'AbortError';
  error.code = 'ABORT_ERR';
  return error;
}

export function isAbortError(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError';
}

function checkDuration(ms: number): void {
  if (!Number.isFinite(ms)) throw new RangeError(`A sleep of ${ms} ms is not a finite duration.`);
}

/** The real clock. Sleeps measure monotonic time and never end early. */
export const systemClock: Clock = {
  now: () => Date.now(),
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    checkDuration(ms);
    if (signal?.aborted) throw abortError(signal);
    const end = performance.now() + ms;
    // Timers may fire a millisecond early and overflow past ~24.8 days, so
    // wait in bounded steps until the full duration has passed.
    for (let left = ms; left > 0; left = end - performance.now()) {
      await timerSleep(Math.min(Math.ceil(left), MAX_TIMER_MS), undefined, { signal });
    }
  },
};

/**
 * Wait until clock.now() >= at. Sleeps in chunks of at most
 * MAX_SLEEP_CHUNK_MS and re-reads the clock between them, because the wall
 * clock can jump while a timer is pending.
 */
export async function sleepUntil(clock: Clock, at: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) throw abortError(signal);
  for (let left = at - clock.now(); left > 0; left = at - clock.now()) {
    await clock.sleep(Math.min(left, MAX_SLEEP_CHUNK_MS), signal);
  }
}

interface Sleeper {
  deadline: number;
  order: number;
  resolve(): void;
  reject(error: Error): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** Let code woken by a sleeper run, and schedule its next sleep, before time moves on. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A clock for tests: time stands still until advance() or set() moves it.
 * Moving it forward wakes the sleepers whose deadline has passed, one at a
 * time in deadline order (ties in the order they went to sleep), with now()
 * equal to each sleeper's deadline when it wakes. Await advance()/set() so
 * that woken code has run before the test looks.
 */
export class ManualClock implements Clock {
  private current: number;
  private sleepers: Sleeper[] = [];
  private counter = 0;

  constructor(start: number | Date = 0) {
    this.current = typeof start === 'number' ? start : start.getTime();
  }

  now(): number {
    return this.current;
  }

  /** how many sleeps are pending */
  get pending(): number {
    return this.sleepers.length;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    checkDuration(ms);
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<void>((resolve, reject) => {
      const sleeper: Sleeper = { deadline: this.current + Math.max(0, ms), order: this.counter++, resolve, reject, signal };
      if (signal) {
        sleeper.onAbort = () => {
          this.remove(sleeper);
          reject(abortError(signal));
        };
        signal.addEventListener('abort', sleeper.onAbort, { once: true });
      }
      this.sleepers.push(sleeper);
      this.sleepers.sort((a, b) => a.deadline - b.deadline || a.order - b.order);
      // A zero-length sleep still yields, as setTimeout(0) does, but is due now.
      if (sleeper.deadline <= this.current) void this.wakeDue(this.current);
    });
  }

  /** Move time forward by ms, waking the sleepers that come due. */
  async advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`ManualClock cannot advance by ${ms} ms: give a finite, non-negative duration.`);
    return this.set(this.current + ms);
  }

  /**
   * Set the time. Forward wakes the sleepers that come due; backward (a
   * wall-clock step back) wakes nobody, and sleepers keep their deadlines.
   */
  async set(ms: number): Promise<void> {
    if (!Number.isFinite(ms)) throw new RangeError(`ManualClock cannot be set to ${ms}: give milliseconds since the epoch.`);
    if (ms <= this.current) {
      this.current = ms;
      return;
    }
    await this.wakeDue(ms);
    this.current = Math.max(this.current, ms);
  }

  private async wakeDue(target: number): Promise<void> {
    await settle();
    for (let next = this.sleepers[0]; next && next.deadline <= target; next = this.sleepers[0]) {
      this.remove(next);
      this.current = Math.max(this.current, next.deadline);
      next.resolve();
      await settle();
    }
  }

  private remove(sleeper: Sleeper): void {
    const index = this.sleepers.indexOf(sleeper);
    if (index >= 0) this.sleepers.splice(index, 1);
    if (sleeper.signal && sleeper.onAbort) sleeper.signal.removeEventListener('abort', sleeper.onAbort);
  }
}

/**
 * A transfer's rate limit (the `rate_limit` property): bytes per second
 * over the whole transfer, so a slow start is not made up for by a burst
 * beyond the rate later, and a fast start waits. `0` is no limit.
 */
import { Transform } from 'node:stream';
import { systemClock, type Clock } from '../clock.js';

/** `20M` (per second, powers of 1024), `512K`, `1G`; `0` or `none`: no limit */
export function parseRate(value: string, label = 'rate_limit'): number {
  const v = value.trim();
  if (v === '0' || v.toLowerCase() === 'none') return 0;
  const m = /^(\d+(?:\.\d+)?)([KMG]?)(?:i?B)?(?:\/s)?$/i.exec(v);
  if (!m) throw new Error(`The value of ${label} must be a rate per second such as 20M, 512K or 1G (0 for none), not "${value}".`);
  const bytes = Math.round(Number(m[1]) * { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G']);
  if (bytes < 1024) throw new Error(`The value of ${label} must be at least 1K per second (0 for none), not "${value}".`);
  return bytes;
}

/** how a rate reads back: 20M, 512K, 1.5G, or 0 */
export function formatRate(bytesPerSecond: number): string {
  if (!bytesPerSecond) return '0';
  for (const [unit, size] of [
    ['G', 2 ** 30],
    ['M', 2 ** 20],
    ['K', 2 ** 10],
  ] as const) {
    if (bytesPerSecond >= size) return `${Number((bytesPerSecond / size).toFixed(2))}${unit}`;
  }
  return String(bytesPerSecond);
}

/** how long to wait, `elapsedMs` into a transfer, before `sentBytes` may have gone at `rate` bytes per second */
export function waitMs(sentBytes: number, elapsedMs: number, rate: number): number {
  if (rate <= 0) return 0;
  return Math.max(0, (sentBytes / rate) * 1000 - elapsedMs);
}

/** passes bytes on no faster than `rate` per second, in slices of a tenth of a second's worth */
export function rateLimiter(rate: number, clock: Clock = systemClock): Transform {
  const slice = Math.max(16 << 10, Math.floor(rate / 10));
  let started: number | null = null;
  let sent = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      started ??= clock.now();
      const start = started;
      void (async () => {
        for (let at = 0; at < chunk.length; at += slice) {
          const part = chunk.subarray(at, at + slice);
          sent += part.length;
          const wait = waitMs(sent, clock.now() - start, rate);
          if (wait > 0) await clock.sleep(wait);
          this.push(part);
        }
      })().then(() => done(), done);
    },
  });
}

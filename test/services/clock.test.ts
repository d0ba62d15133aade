import test from 'ava';
import { ManualClock, systemClock, sleepUntil, isAbortError, MAX_SLEEP_CHUNK_MS } from '../../src/services/clock.js';

test('advance wakes due sleepers in deadline order, with now() at each deadline', async (t) => {
  const clock = new ManualClock(1000);
  const woke: Array<[string, number]> = [];
  const nap = (name: string, ms: number) => clock.sleep(ms).then(() => woke.push([name, clock.now()]));
  void nap('c', 300);
  void nap('a', 100);
  void nap('b', 200);
  void nap('b2', 200);
  await clock.advance(250);
  t.deepEqual(woke, [
    ['a', 1100],
    ['b', 1200],
    ['b2', 1200],
  ]);
  t.is(clock.now(), 1250);
  t.is(clock.pending, 1);
  await clock.advance(50);
  t.deepEqual(woke.at(-1), ['c', 1300]);
  t.is(clock.pending, 0);
});

test('a loop sleeping a minute at a time runs once per minute as the clock advances', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 10, 21, 12, 0));
  const ticks: string[] = [];
  const abort = new AbortController();
  const loop = (async () => {
    try {
      for (;;) {
        await clock.sleep(60_000, abort.signal);
        ticks.push(new Date(clock.now()).toISOString().slice(11, 16));
      }
    } catch (error) {
      if (!isAbortError(error)) throw error;
    }
  })();
  await clock.advance(5 * 60_000 + 30_000);
  t.deepEqual(ticks, ['12:01', '12:02', '12:03', '12:04', '12:05']);
  abort.abort();
  await loop;
  t.is(clock.pending, 0);
});

test('set moves time both ways; backward wakes nobody', async (t) => {
  const clock = new ManualClock(new Date(5000));
  let woke = false;
  void clock.sleep(1000).then(() => (woke = true));
  await clock.set(1000);
  t.is(clock.now(), 1000);
  t.false(woke);
  await clock.set(5999);
  t.false(woke);
  await clock.set(6000);
  t.true(woke);
});

test('a zero-length sleep resolves without advancing; bad durations are refused', async (t) => {
  const clock = new ManualClock(0);
  await clock.sleep(0);
  await clock.sleep(-5);
  t.is(clock.now(), 0);
  t.throws(() => clock.sleep(Number.NaN), { message: /NaN ms is not a finite duration/ });
  await t.throwsAsync(clock.advance(-1), { message: /cannot advance by -1 ms/ });
});

test('aborting a manual sleep rejects it with an AbortError and removes it', async (t) => {
  const clock = new ManualClock(0);
  const abort = new AbortController();
  const sleeping = clock.sleep(1000, abort.signal);
  t.is(clock.pending, 1);
  abort.abort();
  const error = await t.throwsAsync(sleeping);
  t.true(isAbortError(error));
  t.is(clock.pending, 0);
  await t.throwsAsync(clock.sleep(10, abort.signal), { name: 'AbortError' });
});

test('sleepUntil re-reads the clock in bounded chunks', async (t) => {
  const clock = new ManualClock(0);
  let done = false;
  const waiting = sleepUntil(clock, 3 * MAX_SLEEP_CHUNK_MS + 5).then(() => (done = true));
  await clock.advance(MAX_SLEEP_CHUNK_MS);
  t.false(done);
  // The wall clock jumps forward past the target: the next chunk ends the wait.
  await clock.set(10 * MAX_SLEEP_CHUNK_MS);
  await waiting;
  t.true(done);
  await sleepUntil(clock, 0); // already past: returns at once
});

test('the system clock sleeps at least the duration and can be aborted', async (t) => {
  const start = performance.now();
  await systemClock.sleep(20);
  t.true(performance.now() - start >= 20);
  t.true(Math.abs(systemClock.now() - Date.now()) < 50);
  const abort = new AbortController();
  setTimeout(() => abort.abort(), 10);
  const error = await t.throwsAsync(systemClock.sleep(10_000, abort.signal));
  t.true(isAbortError(error));
  await t.throwsAsync(systemClock.sleep(1, abort.signal), { name: 'AbortError' });
});

// Calendar arithmetic follows the local zone; pin it to UTC so no
// daylight-saving shift moves a boundary. (Each ava test file runs in its own
// process, and Node re-reads TZ when it is assigned.)
process.env.TZ = 'UTC';

import test from 'ava';
import { parseScheduleSpec, nextRun, describe, type ScheduleSpec } from '../../src/services/schedule.js';
import { ManualClock, sleepUntil } from '../../src/services/clock.js';

const at = (iso: string) => Date.parse(iso.endsWith('Z') ? iso : `${iso}Z`);
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString().replace(':00.000Z', '').replace('.000Z', ''));
const NOW = at('2026-11-21T12:00:00');

test('the zone is pinned to UTC for these tests', (t) => {
  t.is(new Date(0).getTimezoneOffset(), 0);
});

test('interval: no last run means as soon as due', (t) => {
  t.is(nextRun({ type: 'minute', period: 10 }, NOW), NOW);
  t.is(nextRun({ type: 'month', period: 1 }, NOW, null), NOW);
});

test('interval: the next run is the unit boundary of the last run plus the period', (t) => {
  const cases: Array<[ScheduleSpec, string, string]> = [
    [{ type: 'minute', period: 10 }, '2026-11-21T12:03:00', '2026-11-21T12:13'],
    [{ type: 'minute', period: 10 }, '2026-11-21T12:03:40.5', '2026-11-21T12:13'],
    [{ type: 'minute', period: 1 }, '2026-11-21T12:59:59', '2026-11-21T13:00'],
    [{ type: 'hour', period: 1 }, '2026-11-21T12:03:00', '2026-11-21T13:00'],
    [{ type: 'hour', period: 6 }, '2026-11-21T22:30:00', '2026-11-22T04:00'],
    [{ type: 'day', period: 1 }, '2026-11-21T10:00:00', '2026-11-22T00:00'],
    [{ type: 'day', period: 3 }, '2026-12-30T23:59:00', '2027-01-02T00:00'],
    // 2026-11-19 is a Thursday: weeks start on Monday 2026-11-16.
    [{ type: 'week', period: 1 }, '2026-11-19T08:00:00', '2026-11-23T00:00'],
    [{ type: 'week', period: 2 }, '2026-11-16T00:00:00', '2026-11-30T00:00'],
    // Sunday belongs to the week that began the Monday before.
    [{ type: 'week', period: 1 }, '2026-11-22T23:00:00', '2026-11-23T00:00'],
    // Calendar months, not 30 days: from January 31 to February 1, across a year end.
    [{ type: 'month', period: 1 }, '2026-01-31T12:00:00', '2026-02-01T00:00'],
    [{ type: 'month', period: 3 }, '2026-11-15T00:00:00', '2027-02-01T00:00'],
  ];
  for (const [spec, last, expected] of cases) {
    const lastMs = at(last);
    t.is(iso(nextRun(spec, lastMs + 1000, lastMs)), expected, `${describe(spec)} after a run at ${last}`);
  }
});

test('interval: a run that fell due while nothing ran happens at once, not once per missed slot', (t) => {
  const spec = { type: 'minute', period: 10 } as const;
  const after = at('2026-11-21T15:07:00');
  t.is(nextRun(spec, after, at('2026-11-21T12:03:00')), after);
});

test('interval: a bad unit or period is refused with a sentence naming it', (t) => {
  t.throws(() => nextRun({ type: 'minute', period: 0 }, NOW, NOW), { message: 'The schedule period 0 is not a whole number of minutes of at least 1.' });
  t.throws(() => nextRun({ type: 'hour', period: 1.5 }, NOW, NOW), { message: /period 1.5 is not a whole number of hours/ });
  t.throws(() => nextRun({ type: 'fortnight', period: 1 } as unknown as ScheduleSpec, NOW, NOW), { message: /unit "fortnight" is not one of minute, hour, day, week, month/ });
});

test('cron: parsed, validated by croner, and described', (t) => {
  t.deepEqual(parseScheduleSpec('*/5 * * * *', NOW), { cron: '*/5 * * * *' });
  t.deepEqual(parseScheduleSpec('  0   2 * * 1-5 ', NOW), { cron: '0 2 * * 1-5' });
  t.deepEqual(parseScheduleSpec('@hourly', NOW), { cron: '@hourly' });
  t.is(describe({ cron: '*/5 * * * *' }), 'cron */5 * * * *');
});

test('cron: bad expressions are refused with a sentence naming the value', (t) => {
  t.throws(() => parseScheduleSpec('61 * * * *', NOW), { message: 'The schedule "61 * * * *" is not a valid cron expression: Invalid value for minute: 61.' });
  t.throws(() => parseScheduleSpec('* * * *', NOW), { message: /^The schedule "\* \* \* \*" is not a valid cron expression: / });
  // Six fields would mean seconds to croner; the daemon works to the minute.
  t.throws(() => parseScheduleSpec('0 */5 * * * *', NOW), { message: /^The schedule "0 \*\/5 \* \* \* \*" is not a valid cron expression: .*5 parts/ });
  t.throws(() => parseScheduleSpec('every 10 minutes', NOW), { message: /"every 10 minutes" is not a valid cron expression/ });
  t.throws(() => parseScheduleSpec('0 0 30 2 *', NOW), { message: 'The schedule "0 0 30 2 *" is a valid cron expression that never matches a future time.' });
  t.throws(() => parseScheduleSpec('   ', NOW), { message: /^The schedule is empty/ });
});

test('cron: the first match at or after `after`, or after the last run; missed matches run at once', (t) => {
  const spec = { cron: '*/5 * * * *' };
  t.is(iso(nextRun(spec, at('2026-11-21T12:03:10'))), '2026-11-21T12:05');
  t.is(iso(nextRun(spec, at('2026-11-21T12:05:00'))), '2026-11-21T12:05', 'a match exactly at `after` is due now');
  const last = at('2026-11-21T12:05:00.250');
  t.is(iso(nextRun(spec, last + 3000, last)), '2026-11-21T12:10', 'the match a run just served is not served twice');
  const late = at('2026-11-21T13:02:00');
  t.is(nextRun(spec, late, at('2026-11-21T12:05:00')), late);
  t.is(iso(nextRun({ cron: '0 2 * * *' }, at('2026-11-21T12:00:00'))), '2026-11-22T02:00');
  t.is(nextRun({ cron: '0 0 30 2 *' }, NOW), null);
});

test('cron with no last run counts from the creation: a loop waking just after a match still runs it', (t) => {
  const spec = { cron: '*/1 * * * *' };
  const created = at('2026-11-21T12:00:05');
  const woke = at('2026-11-21T12:01:00.004'); // a timer fires a few ms late
  t.is(nextRun(spec, woke, null, created), woke, 'the 12:01 match is due now');
  t.is(iso(nextRun(spec, at('2026-11-21T12:00:30'), null, created)), '2026-11-21T12:01');
  t.is(iso(nextRun(spec, woke, null)), '2026-11-21T12:02', 'without the creation time the match is lost (the old behaviour)');
});

test('once-at: parsed from ISO date-times, stored in UTC, described in local time', (t) => {
  t.deepEqual(parseScheduleSpec('2026-11-21T13:00', NOW), { onceAt: '2026-11-21T13:00:00.000Z' });
  t.deepEqual(parseScheduleSpec('2026-11-21 13:00:30', NOW), { onceAt: '2026-11-21T13:00:30.000Z' });
});

test('once-at: offsets are honoured and past, present and impossible times refused', (t) => {
  t.deepEqual(parseScheduleSpec('2026-11-21T10:30-03:30', NOW), { onceAt: '2026-11-21T14:00:00.000Z' });
  t.deepEqual(parseScheduleSpec('2026-11-22t00:00z', NOW), { onceAt: '2026-11-22T00:00:00.000Z' });
  t.throws(() => parseScheduleSpec('2026-11-21T11:59', NOW), { message: 'The once-at time "2026-11-21T11:59" is in the past (it is now 2026-11-21T12:00:00.000Z).' });
  t.throws(() => parseScheduleSpec('2026-11-21T14:00+02:00', NOW), { message: /is in the past/ });
  t.throws(() => parseScheduleSpec('2027-02-30T10:00', NOW), { message: /^The schedule "2027-02-30T10:00" is not a valid date-time: write it as YYYY-MM-DDTHH:MM/ });
  t.throws(() => parseScheduleSpec('2027-01-01T24:30', NOW), { message: /"2027-01-01T24:30" is not a valid date-time/ });
  t.throws(() => parseScheduleSpec('2027-01-01', NOW), { message: /"2027-01-01" is not a valid date-time/ });
});

test('once-at: due at its time (or at once if late), then never again', (t) => {
  const spec = { onceAt: '2026-11-21T13:00:00.000Z' };
  t.is(iso(nextRun(spec, NOW)), '2026-11-21T13:00');
  t.is(nextRun(spec, at('2026-11-21T15:00:00')), at('2026-11-21T15:00:00'), 'missed while down: run now');
  t.is(iso(nextRun(spec, NOW, at('2026-11-20T09:00:00'))), '2026-11-21T13:00', 'a run before the time does not count');
  t.is(nextRun(spec, at('2026-11-21T13:00:05'), at('2026-11-21T13:00:00')), null);
  t.is(describe(spec), 'once at 2026-11-21 13:00');
  t.is(describe({ onceAt: '2026-11-21T13:00:30.000Z' }), 'once at 2026-11-21 13:00:30');
});

test('describe: intervals read as NMC says them', (t) => {
  t.is(describe({ type: 'minute', period: 10 }), 'every 10 minutes');
  t.is(describe({ type: 'minute', period: 1 }), 'every minute');
  t.is(describe({ type: 'month', period: 2 }), 'every 2 months');
});

test('a manual clock drives an every-10-minutes schedule through an hour without waiting', async (t) => {
  const clock = new ManualClock(at('2026-11-21T12:03:00'));
  const spec = { type: 'minute', period: 10 } as const;
  const runs: string[] = [];
  const abort = new AbortController();
  const daemon = (async () => {
    let last: number | undefined;
    while (!abort.signal.aborted) {
      const due = nextRun(spec, clock.now(), last)!;
      try {
        await sleepUntil(clock, due, abort.signal);
      } catch {
        return;
      }
      last = clock.now();
      runs.push(new Date(last).toISOString().slice(11, 16));
    }
  })();
  await clock.advance(60 * 60_000);
  abort.abort();
  await daemon;
  t.deepEqual(runs, ['12:03', '12:13', '12:23', '12:33', '12:43', '12:53', '13:03']);
});

/**
 * The retention grid (src/services/auto-sync/retention.ts): parsing with
 * sentences naming the bad part, the bucket arithmetic, and a year of
 * hourly markers thinned as each side's grid says, against fixed clocks.
 */
import test from 'ava';
import { before, bucketOf, formatRetention, parseRetention, planRetention, planSide, type Candidate } from '../../src/services/auto-sync/retention.js';

const at = (iso: string) => new Date(iso).getTime();

const parses = test.macro({
  exec(t, input: string, canonical: string) {
    t.is(formatRetention(parseRetention('keep_dst', input)), canonical);
  },
  title: (_, input) => `parses ${JSON.stringify(input)}`,
});
test(parses, '5', '5');
test(parses, '24h 7d 4w 12m', '24h 7d 4w 12m');
test(parses, 'all 1d, 24h, 30d', 'all 1d, 24h 30d');
test(parses, 'ALL 2H,3,  7D', 'all 2h, 3 7d');
test(parses, 'all 1w', 'all 1w');
test(parses, '3, 12m 10y', '3 12m 10y');

const refuses = test.macro({
  exec(t, input: string, message: RegExp) {
    t.throws(() => parseRetention('keep_dst', input), { message });
  },
  title: (_, input) => `refuses ${JSON.stringify(input)}`,
});
test(refuses, '0', /keep_dst must be between 1 and 10000, not 0/);
test(refuses, '', /keep_dst must be a count or a grid such as '24h 7d 4w 12m', not ""/);
test(refuses, '24h 7x', /keep_dst has an unknown unit in "7x"/);
test(refuses, '24h 1constructor', /keep_dst has an unknown unit in "1constructor"/);
test(refuses, '24h daily', /keep_dst has "daily", which is neither a count nor a time such as 24h or 7d/);
test(refuses, '24h 0d', /keep_dst must count between 1 and 10000 in "0d", not 0/);
test(refuses, '24h 12h', /keep_dst has two rules for hours \("12h"\)/);
test(refuses, '24h all 1d', /keep_dst may have "all" only first/);
test(refuses, 'all', /keep_dst needs a time after "all", as in 'all 1d', not ""/);
test(refuses, 'all 3, 24h', /keep_dst needs a time after "all", as in 'all 1d', not "3"/);
test(refuses, '2, 24h 3', /keep_dst has two counts \("2" and "3"\)/);
test(refuses, '-3', /keep_dst has "-3", which is neither/);

test('buckets: hours, UTC days, ISO weeks from Monday, calendar months and years', (t) => {
  t.is(bucketOf('h', at('2026-12-31T23:59:59Z')) - bucketOf('h', at('2026-12-31T23:00:00Z')), 0);
  t.is(bucketOf('d', at('2026-12-31T00:00:00Z')) - bucketOf('d', at('2026-12-30T23:59:59Z')), 1);
  // 2026-12-27 is a Sunday, 2026-12-28 a Monday
  t.is(bucketOf('w', at('2026-12-28T00:00:00Z')) - bucketOf('w', at('2026-12-27T23:59:59Z')), 1);
  t.is(bucketOf('w', at('2026-12-27T23:59:59Z')) - bucketOf('w', at('2026-12-21T00:00:00Z')), 0);
  t.is(bucketOf('m', at('2027-01-01T00:00:00Z')) - bucketOf('m', at('2026-12-31T23:59:59Z')), 1);
  t.is(bucketOf('m', at('2026-12-01T00:00:00Z')) - bucketOf('m', at('2026-01-01T00:00:00Z')), 11);
  t.is(bucketOf('y', at('2027-01-01T00:00:00Z')) - bucketOf('y', at('2026-12-31T23:59:59Z')), 1);
  t.is(before(at('2026-03-31T12:00:00Z'), { n: 1, unit: 'm' }), at('2026-02-28T12:00:00Z'), 'a month before 31 March is the last day of February');
  t.is(before(at('2028-02-29T00:00:00Z'), { n: 1, unit: 'y' }), at('2027-02-28T00:00:00Z'));
  t.is(before(at('2026-01-15T00:00:00Z'), { n: 2, unit: 'm' }), at('2025-11-15T00:00:00Z'));
});

/** a marker at each hour of 2026 */
const YEAR: Candidate[] = Array.from({ length: 365 * 24 }, (_, i) => {
  const createdAt = new Date(at('2026-01-01T00:00:00Z') + i * 3_600_000);
  return { name: `m-${createdAt.toISOString()}`, createdAt };
});
const NOW = at('2026-12-31T23:30:00Z');
const iso = (d: Date) => d.toISOString().replace(':00.000Z', 'Z');
const hoursOf = (day: string) => Array.from({ length: 24 }, (_, h) => `${day}T${String(h).padStart(2, '0')}:00Z`);

test('a year of hourly markers thinned by 24h 7d 4w 12m (the source side)', (t) => {
  const plan = planRetention(YEAR, parseRetention('keep_src', '24h 7d 4w 12m'), NOW);
  t.is(plan.length, YEAR.length);
  const kept = plan.filter((p) => p.keep).map((p) => iso(p.createdAt));
  const expected = [
    // 12m: the newest of each month (December's is the newest of all)
    ...['01-31', '02-28', '03-31', '04-30', '05-31', '06-30', '07-31', '08-31', '09-30', '10-31', '11-30'].map((d) => `2026-${d}T23:00Z`),
    // 4w: the newest of the ISO weeks starting 7, 14, 21 December (and 28, this week)
    '2026-12-13T23:00Z',
    '2026-12-20T23:00Z',
    // 7d: the newest of each of the last seven days (27 December is also its week's)
    ...['25', '26', '27', '28', '29', '30'].map((d) => `2026-12-${d}T23:00Z`),
    // 24h: every hour of the last day
    ...hoursOf('2026-12-31'),
  ];
  t.deepEqual(kept, expected);
  const rules = (time: string) => plan.find((p) => iso(p.createdAt) === time)!.rules;
  t.deepEqual(rules('2026-12-31T23:00Z'), ['24h', '7d', '4w', '12m'], 'the newest marker is kept by every rule');
  t.deepEqual(rules('2026-12-27T23:00Z'), ['7d', '4w']);
  t.deepEqual(rules('2026-11-30T23:00Z'), ['12m']);
  t.deepEqual(rules('2026-12-31T05:00Z'), ['24h']);
  t.deepEqual(rules('2026-12-30T22:00Z'), [], 'pruned: no rule keeps it');
  t.true(plan.filter((p) => !p.keep).every((p) => p.rules.length === 0));
});

test("a year of hourly markers thinned by 'all 1d, 24h, 30d' (the destination side)", (t) => {
  const plan = planRetention(YEAR, parseRetention('keep_dst', 'all 1d, 24h, 30d'), NOW);
  const kept = plan.filter((p) => p.keep).map((p) => iso(p.createdAt));
  const days = Array.from({ length: 29 }, (_, i) => `2026-12-${String(i + 2).padStart(2, '0')}T23:00Z`);
  t.deepEqual(kept, [...days, ...hoursOf('2026-12-31')], 'the newest of 30 days (2 to 31 December) and every marker of the last day');
  t.is(kept.length, 29 + 24);
  t.deepEqual(plan.find((p) => iso(p.createdAt) === '2026-12-31T23:00Z')!.rules, ['all 1d', '24h', '30d']);
  t.deepEqual(plan.find((p) => iso(p.createdAt) === '2026-12-31T00:00Z')!.rules, ['all 1d', '24h']);
  t.deepEqual(plan.find((p) => iso(p.createdAt) === '2026-12-02T23:00Z')!.rules, ['30d']);
  t.false(plan.find((p) => iso(p.createdAt) === '2026-12-01T23:00Z')!.keep, 'the 31st day back is pruned');
});

test('a count keeps the newest N; a count inside a grid adds to the buckets', (t) => {
  const plan = planRetention(YEAR, 3, NOW);
  t.deepEqual(
    plan.filter((p) => p.keep).map((p) => iso(p.createdAt)),
    ['2026-12-31T21:00Z', '2026-12-31T22:00Z', '2026-12-31T23:00Z'],
  );
  t.deepEqual(plan.at(-1)!.rules, ['newest 3']);
  const mixed = planRetention(YEAR, parseRetention('keep_dst', '2, 3d'), NOW);
  t.deepEqual(
    mixed.filter((p) => p.keep).map((p) => `${iso(p.createdAt)} ${p.rules.join('+')}`),
    ['2026-12-29T23:00Z 3d', '2026-12-30T23:00Z 3d', '2026-12-31T22:00Z 2', '2026-12-31T23:00Z 2+3d'],
  );
});

test('the last common marker and held markers stay whatever the grid says', (t) => {
  const markers = YEAR.map((m) => ({ ...m, held: m.name === 'm-2026-02-10T07:00:00.000Z' }));
  const plan = planSide(markers, '1h', NOW, 'm-2026-03-15T05:00:00.000Z');
  t.deepEqual(
    plan.filter((p) => p.keep).map((p) => `${iso(p.createdAt)} ${p.rules.join('+')}`),
    ['2026-02-10T07:00Z held', '2026-03-15T05:00Z last common', '2026-12-31T23:00Z 1h'],
  );
});

test('a marker dated after now (a clock ahead) counts in the current bucket; an empty side plans nothing', (t) => {
  const future = [
    { name: 'a', createdAt: new Date(NOW - 600_000) },
    { name: 'b', createdAt: new Date(NOW + 7_200_000) },
  ];
  t.deepEqual(
    planRetention(future, parseRetention('k', '1h'), NOW).map((p) => [p.name, p.keep]),
    [
      ['a', false],
      ['b', true],
    ],
  );
  t.deepEqual(planRetention([], parseRetention('k', '24h 7d'), NOW), []);
});

/**
 * When a service runs. Three kinds of schedule:
 *  - an interval, NMC style: every N minutes / hours / days / weeks / months;
 *  - a cron expression (five fields, minute resolution), evaluated by croner;
 *  - once, at a given time.
 *
 * All calendar arithmetic (day, week and month boundaries, cron fields, the
 * once-at time when it has no offset) is in the process's local time zone,
 * i.e. TZ. Tests pin TZ=UTC to stay clear of daylight-saving shifts.
 */
import type { Cron } from 'croner';
import { croner } from './lazy.js';
import { SCHEDULE_TYPES, type Schedule } from './auto-sync/model.js';

/** every `period` `type`s, e.g. { type: 'minute', period: 10 } */
export type IntervalSpec = Schedule;
export interface CronSpec {
  cron: string;
}
export interface OnceSpec {
  /** an ISO 8601 date-time with an offset, as parseScheduleSpec normalises it */
  onceAt: string;
}
export type ScheduleSpec = IntervalSpec | CronSpec | OnceSpec;

export const isCronSpec = (spec: ScheduleSpec): spec is CronSpec => 'cron' in spec;
export const isOnceSpec = (spec: ScheduleSpec): spec is OnceSpec => 'onceAt' in spec;
export const isIntervalSpec = (spec: ScheduleSpec): spec is IntervalSpec => 'type' in spec && 'period' in spec;

// YYYY-MM-DD, then T or a space, then HH:MM[:SS[.fff]], then an optional Z or ±HH:MM.
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})?$/i;

function compileCron(expression: string): Cron {
  try {
    // Five fields only: the daemon works to the minute, and a six-field
    // pattern would be read as having a seconds field.
    return new (croner().Cron)(expression, { mode: '5-part', paused: true });
  } catch (error) {
    const reason = (error as Error).message.replace(/^CronPattern:\s*/, '').replace(/\.$/, '');
    throw new Error(`The schedule "${expression}" is not a valid cron expression: ${reason}.`);
  }
}

/** Parse an ISO date-time into ms; without an offset it is local time. */
function parseDateTime(text: string): number | null {
  const match = DATE_TIME.exec(text);
  if (!match) return null;
  const [, y, mo, d, h, mi, s = '0', offset] = match;
  const ms = Date.parse(text.replace(' ', 'T').toUpperCase());
  if (Number.isNaN(ms)) return null;
  // Date.parse rolls 2026-02-30 over into March: read the fields back, in
  // the same zone, and refuse a date-time that does not exist.
  let fields: number[];
  if (offset === undefined) {
    const t = new Date(ms);
    fields = [t.getFullYear(), t.getMonth() + 1, t.getDate(), t.getHours(), t.getMinutes(), t.getSeconds()];
  } else {
    const sign = offset.startsWith('-') ? -1 : 1;
    const offsetMinutes = /^z$/i.test(offset) ? 0 : sign * (Number(offset.slice(1, 3)) * 60 + Number(offset.slice(4, 6)));
    const t = new Date(ms + offsetMinutes * 60_000);
    fields = [t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate(), t.getUTCHours(), t.getUTCMinutes(), t.getUTCSeconds()];
  }
  const wanted = [y, mo, d, h, mi, s].map(Number);
  // A local time inside a spring-forward gap also fails here, which is right: it never happens.
  return fields.every((value, i) => value === wanted[i]) ? ms : null;
}

/**
 * Read a schedule typed by an operator: a five-field cron expression
 * ('*\/5 * * * *', '@hourly') or an ISO date-time for a single run
 * ('2026-11-21T10:00', '2026-11-21 10:00:00Z'). A once-at time must be in
 * the future. Throws an Error whose message is a sentence naming the value.
 */
export function parseScheduleSpec(text: string, now: number = Date.now()): CronSpec | OnceSpec {
  const value = text.trim().replace(/\s+/g, ' ');
  if (value === '') throw new Error('The schedule is empty: give a cron expression such as "*/5 * * * *" or a date-time such as "2026-11-21T10:00".');
  if (/^\d{4}-\d/.test(value)) {
    const at = parseDateTime(value);
    if (at === null) throw new Error(`The schedule "${value}" is not a valid date-time: write it as YYYY-MM-DDTHH:MM[:SS], optionally followed by Z or an offset such as +02:00, for a day and time that exist.`);
    if (at <= now) throw new Error(`The once-at time "${value}" is in the past (it is now ${new Date(now).toISOString()}).`);
    return { onceAt: new Date(at).toISOString() };
  }
  const cron = compileCron(value);
  if (!cron.nextRun(new Date(now))) throw new Error(`The schedule "${value}" is a valid cron expression that never matches a future time.`);
  return { cron: value };
}

function checkInterval(spec: IntervalSpec): void {
  if (!(SCHEDULE_TYPES as readonly string[]).includes(spec.type)) {
    throw new Error(`The schedule unit "${spec.type}" is not one of ${SCHEDULE_TYPES.join(', ')}.`);
  }
  if (!Number.isInteger(spec.period) || spec.period < 1) {
    throw new Error(`The schedule period ${spec.period} is not a whole number of ${spec.type}s of at least 1.`);
  }
}

function onceAtMs(spec: OnceSpec): number {
  const at = Date.parse(spec.onceAt);
  if (Number.isNaN(at)) throw new Error(`The once-at time "${spec.onceAt}" is not a valid date-time.`);
  return at;
}

/**
 * The first boundary of the unit at or before `at`, plus `period` units.
 * Minutes and hours are counted in elapsed time (a DST change does not
 * stretch or skip them); days, weeks (starting Monday) and months follow the
 * local calendar.
 */
function alignedAfter(spec: IntervalSpec, at: number): number {
  const t = new Date(at);
  const n = spec.period;
  switch (spec.type) {
    case 'minute':
      t.setSeconds(0, 0);
      return t.getTime() + n * 60_000;
    case 'hour':
      t.setMinutes(0, 0, 0);
      return t.getTime() + n * 3_600_000;
    case 'day':
      return new Date(t.getFullYear(), t.getMonth(), t.getDate() + n).getTime();
    case 'week': {
      const sinceMonday = (t.getDay() + 6) % 7;
      return new Date(t.getFullYear(), t.getMonth(), t.getDate() - sinceMonday + 7 * n).getTime();
    }
    case 'month':
      return new Date(t.getFullYear(), t.getMonth() + n, 1).getTime();
  }
}

/**
 * When the service should run next, at or after `after` (ms), given when it
 * last ran; null when it never runs again.
 *
 * - Interval: with no last run, at once (`after`). Otherwise the unit
 *   boundary of the last run plus the period: every 10 minutes after a run at
 *   12:03:40 is 12:13:00; every day after a run at 10:00 is the next midnight.
 * - Cron: the first match after the last run or, with no last run, after
 *   `since` (when the service was created) or else at or after `after`. Never
 *   from `after` alone once a schedule is known: a loop that wakes a few ms
 *   after a match would then compute the match after it, for ever.
 * - Once: the time itself, or null when the last run was at or after it.
 *
 * A run that fell due while nothing was running (daemon down, machine
 * asleep) is not skipped: the result is `after`, i.e. run now, once.
 */
export function nextRun(spec: ScheduleSpec, after: number, lastRunAt?: number | null, since?: number | null): number | null {
  const last = lastRunAt ?? null;
  if (isOnceSpec(spec)) {
    const at = onceAtMs(spec);
    if (last !== null && last >= at) return null;
    return Math.max(at, after);
  }
  if (isCronSpec(spec)) {
    const cron = compileCron(spec.cron);
    // croner returns the first match strictly after the date given.
    const from = last ?? since ?? after - 1;
    const next = cron.nextRun(new Date(from));
    if (!next) return null;
    return Math.max(next.getTime(), after);
  }
  checkInterval(spec);
  if (last === null) return after;
  return Math.max(alignedAfter(spec, last), after);
}

function localMinute(ms: number): string {
  const t = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  const seconds = t.getSeconds() || t.getMilliseconds() ? `:${p(t.getSeconds())}` : '';
  return `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ${p(t.getHours())}:${p(t.getMinutes())}${seconds}`;
}

/** 'every minute', 'every 10 minutes', 'cron *\/5 * * * *', 'once at 2026-11-21 10:00' (local time) */
export function describe(spec: ScheduleSpec): string {
  if (isOnceSpec(spec)) return `once at ${localMinute(onceAtMs(spec))}`;
  if (isCronSpec(spec)) return `cron ${spec.cron}`;
  return spec.period === 1 ? `every ${spec.type}` : `every ${spec.period} ${spec.type}s`;
}

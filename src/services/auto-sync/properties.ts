/**
 * The properties an operator sees with `show auto-sync :NAME property` and
 * changes with `setup auto-sync :NAME property KEY VALUE`. Each editable key
 * parses and validates its own value; read-only keys say why they cannot be set.
 */
import { SCHEDULE_TYPES, type AutoSyncConfig, type ScheduleType } from './model.js';
import { parseRetention, RETENTION_HELP, storedRetention } from './retention.js';
import { checkExcludes } from '../storage/fs/excludes.js';
import { formatRate, parseRate } from '../wire/rate-limit.js';
import { CODECS, parseCodec } from '../wire/codec-names.js';

/**
 * The exclude list of a service: patterns apply to the fs driver's file
 * trees only; zfs and btrfs send whole datasets, so any pattern is refused.
 */
export function excludesFor(source: string, patterns: readonly string[]): string[] {
  const checked = checkExcludes(patterns);
  const driver = source.slice(0, source.indexOf(':'));
  if (checked.length && driver !== 'fs') {
    throw new Error(`A ${driver} service replicates whole datasets: exclude patterns (${checked.join(', ')}) work only with the fs driver.`);
  }
  return checked;
}

/** a list typed as one value: a JSON array, or patterns separated by commas; '' or none for no patterns */
export function parseList(value: string): string[] {
  const v = value.trim();
  if (v === '' || v === 'none') return [];
  if (v.startsWith('[')) {
    let list: unknown;
    try {
      list = JSON.parse(v);
    } catch {
      throw new Error(`The list ${v} is not a JSON array of strings.`);
    }
    if (!Array.isArray(list) || list.some((p) => typeof p !== 'string')) throw new Error(`The list ${v} is not a JSON array of strings.`);
    return list as string[];
  }
  return v.split(',').map((p) => p.trim());
}
import { describe as describeSchedule, isIntervalSpec, parseScheduleSpec, type ScheduleSpec } from '../schedule.js';
import { describeMaintenance } from './maintenance.js';

export interface PropertySpec {
  key: string;
  description: string;
  get(config: AutoSyncConfig): string;
  /** returns the changed config; throws a sentence on a bad value. Absent = read-only. */
  set?(config: AutoSyncConfig, value: string): AutoSyncConfig;
  /** values to offer in completion */
  values?: readonly string[];
}

export function parseCount(key: string, value: string, min: number, max = 1_000_000): number {
  if (!/^\d+$/.test(value)) throw new Error(`The value of ${key} must be a whole number, not "${value}".`);
  const n = Number(value);
  if (n < min || n > max) throw new Error(`The value of ${key} must be between ${min} and ${max}, not ${n}.`);
  return n;
}

export function parseYesNo(key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (['yes', 'y', 'on', 'true', '1'].includes(v)) return true;
  if (['no', 'n', 'off', 'false', '0'].includes(v)) return false;
  throw new Error(`The value of ${key} must be yes or no, not "${value}".`);
}

export function parseScheduleType(key: string, value: string): ScheduleType {
  if ((SCHEDULE_TYPES as readonly string[]).includes(value)) return value as ScheduleType;
  throw new Error(`The value of ${key} must be one of ${SCHEDULE_TYPES.join(', ')}, not "${value}".`);
}

/** a cron or once-at schedule typed for `key`, refused when it is the other kind */
export function parseKind(key: string, value: string, kind: 'cron' | 'onceAt'): ScheduleSpec {
  const spec = parseScheduleSpec(value);
  if (!(kind in spec)) throw new Error(`The value of ${key} must be ${kind === 'cron' ? 'a cron expression such as "*/5 * * * *"' : 'a date-time such as 2026-11-21T10:00'}, not "${value}".`);
  return spec;
}

const yesNo = (b: boolean) => (b ? 'yes' : 'no');
const readOnly = (why: string) => why;

export const PROPERTIES: PropertySpec[] = [
  { key: 'name', description: readOnly('instance name (derived from the source)'), get: (c) => c.name },
  { key: 'from_host', description: 'source appliance', get: (c) => c.source.host },
  { key: 'from_fs', description: 'source dataset', get: (c) => c.source.dataset },
  { key: 'to_host', description: 'destination appliance', get: (c) => c.destination.host },
  { key: 'to_fs', description: 'destination dataset', get: (c) => c.destination.dataset },
  { key: 'direction', description: 'local-to-local, local-to-remote or remote-to-local', get: (c) => c.direction },
  {
    key: 'type',
    description: 'schedule unit: minute, hour, day, week or month',
    values: SCHEDULE_TYPES,
    get: (c) => (isIntervalSpec(c.schedule) ? c.schedule.type : '-'),
    set: (c, v) => ({ ...c, schedule: { type: parseScheduleType('type', v), period: isIntervalSpec(c.schedule) ? c.schedule.period : 1 } }),
  },
  {
    key: 'period',
    description: 'run every N schedule units',
    get: (c) => (isIntervalSpec(c.schedule) ? String(c.schedule.period) : '-'),
    set: (c, v) => ({ ...c, schedule: { type: isIntervalSpec(c.schedule) ? c.schedule.type : 'hour', period: parseCount('period', v, 1, 10_000) } }),
  },
  {
    key: 'cron',
    description: 'a five-field cron expression, instead of type and period',
    get: (c) => ('cron' in c.schedule ? c.schedule.cron : '-'),
    set: (c, v) => ({ ...c, schedule: parseKind('cron', v, 'cron') }),
  },
  {
    key: 'once_at',
    description: 'run once at this date-time (YYYY-MM-DDTHH:MM), instead of a repeating schedule',
    get: (c) => ('onceAt' in c.schedule ? c.schedule.onceAt : '-'),
    set: (c, v) => ({ ...c, schedule: parseKind('once_at', v, 'onceAt') }),
  },
  { key: 'schedule', description: 'when the service runs', get: (c) => describeSchedule(c.schedule) },
  {
    key: 'keep_src',
    description: `markers kept on the source: ${RETENTION_HELP}`,
    get: (c) => String(c.keepSrc),
    set: (c, v) => ({ ...c, keepSrc: storedRetention(parseRetention('keep_src', v)) }),
  },
  {
    key: 'keep_dst',
    description: 'markers kept on the destination: a count or a grid, as keep_src',
    get: (c) => String(c.keepDst),
    set: (c, v) => ({ ...c, keepDst: storedRetention(parseRetention('keep_dst', v)) }),
  },
  {
    key: 'recursive',
    description: 'include child datasets',
    values: ['yes', 'no'],
    get: (c) => yesNo(c.recursive),
    set: (c, v) => {
      const recursive = parseYesNo('recursive', v);
      if (recursive && c.source.dataset.startsWith('btrfs:')) {
        throw new Error('A btrfs service cannot be recursive: btrfs send leaves nested subvolumes out. Create one service per subvolume.');
      }
      return { ...c, recursive };
    },
  },
  {
    key: 'exclude',
    description: "gitignore-style patterns left out of the snapshots (fs only), relative to the dataset: '*.tmp, cache/, /build/**' or a JSON array; none for no patterns. Newly excluded paths leave the destination at the next run",
    get: (c) => (c.exclude?.length ? c.exclude.join(', ') : 'none'),
    set: (c, v) => {
      const exclude = excludesFor(c.source.dataset, parseList(v));
      const { exclude: _old, ...rest } = c;
      return exclude.length ? { ...rest, exclude } : rest;
    },
  },
  {
    key: 'rate_limit',
    description: 'bytes per second a transfer may use, such as 20M (powers of 1024); 0 for no limit',
    get: (c) => formatRate(c.rateLimit ?? 0),
    set: (c, v) => {
      const rateLimit = parseRate(v, 'rate_limit');
      const { rateLimit: _old, ...rest } = c;
      return rateLimit ? { ...rest, rateLimit } : rest;
    },
  },
  {
    key: 'compress',
    description: 'how the bytes cross the wire to another appliance: none, gzip, zstd or lz4 (a local-to-local service sends nothing over a wire)',
    values: CODECS,
    get: (c) => c.compress ?? 'none',
    set: (c, v) => ({ ...c, compress: parseCodec(v, 'compress') }),
  },
  {
    key: 'max_delay',
    description: 'seconds without a sync before status is warn (0: never)',
    get: (c) => String(c.maxDelay),
    set: (c, v) => ({ ...c, maxDelay: parseCount('max_delay', v, 0, 10 * 365 * 86400) }),
  },
  {
    key: 'force',
    description: 'roll back a destination that was written to',
    values: ['yes', 'no'],
    get: (c) => yesNo(c.force),
    set: (c, v) => ({ ...c, force: parseYesNo('force', v) }),
  },
  {
    key: 'comment',
    description: 'free text',
    get: (c) => c.comment,
    set: (c, v) => {
      if (v.length > 200) throw new Error(`The comment must be at most 200 characters, not ${v.length}.`);
      if (/[\x00-\x1f\x7f]/.test(v)) throw new Error('The comment must not contain control characters.');
      return { ...c, comment: v };
    },
  },
  { key: 'reverse_capable', description: 'service config kept on both appliances', get: (c) => yesNo(c.reverseCapable) },
  { key: 'autosync_role', description: 'master runs the schedule; non-master waits', get: (c) => c.role },
  { key: 'epoch', description: 'role generation; the higher epoch wins', get: (c) => String(c.epoch) },
  { key: 'enabled', description: 'runs on its schedule', get: (c) => yesNo(c.enabled) },
  { key: 'maintenance', description: 'why the service is in maintenance', get: (c) => (c.maintenance ? describeMaintenance(c.maintenance) : '') },
  { key: 'created', description: 'when the service was created', get: (c) => c.createdAt },
];

export const EDITABLE_KEYS = PROPERTIES.filter((p) => p.set).map((p) => p.key);

export function findProperty(key: string): PropertySpec {
  const spec = PROPERTIES.find((p) => p.key === key);
  if (!spec) throw new Error(`Unknown property "${key}": use one of ${PROPERTIES.map((p) => p.key).join(', ')}.`);
  return spec;
}

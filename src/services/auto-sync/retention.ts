/**
 * Retention of a service's markers on one side (`keep_src`, `keep_dst`):
 * a count (the newest N, as before) or a grid in btrbk's words, e.g.
 * `all 1d, 24h 7d 4w 12m`:
 *
 *   all D   keep every marker newer than D (optional, first)
 *   N       keep the newest N markers
 *   Nh      the newest marker of each of the last N hours (UTC), and so on
 *           for d (days), w (ISO weeks, from Monday), m (months), y (years)
 *
 * The planner is a pure function of the markers, the policy, the time and
 * what must never go (the last common marker, held ones): it says, for each
 * marker, whether it stays and which rules keep it. Snapshots that are not
 * the service's own markers never reach it.
 */

export type Unit = 'h' | 'd' | 'w' | 'm' | 'y';
export const UNITS: Record<Unit, string> = { h: 'hour', d: 'day', w: 'week', m: 'month', y: 'year' };

export interface Span {
  n: number;
  unit: Unit;
}

export interface Grid {
  /** keep every marker newer than this */
  all?: Span;
  /** keep the newest N markers */
  latest?: number;
  /** the newest marker of each of the last n units */
  buckets: Span[];
}

/** a count (the newest N) or a grid */
export type Retention = number | Grid;

const MAX = 10_000;
export const RETENTION_HELP =
  "a count (the newest N markers) or a grid such as 'all 1d, 24h 7d 4w 12m': every marker of the last day, then the newest of each hour for 24 hours, of each day for 7 days, of each ISO week for 4 weeks, of each month for 12 months (units h d w m y, UTC; a bare number in a grid keeps the newest N)";

function span(key: string, part: string): Span | null {
  const m = /^(\d+)([a-z]+)$/.exec(part);
  if (!m) return null;
  const unit = m[2] as Unit;
  if (!Object.hasOwn(UNITS, unit)) throw new Error(`The value of ${key} has an unknown unit in "${part}": use h (hours), d (days), w (weeks), m (months) or y (years).`);
  const n = Number(m[1]);
  if (n < 1 || n > MAX) throw new Error(`The value of ${key} must count between 1 and ${MAX} in "${part}", not ${n}.`);
  return { n, unit };
}

/** parse a count or a grid; throws a sentence naming the bad part */
export function parseRetention(key: string, value: string): Retention {
  const raw = value.trim().toLowerCase();
  if (/^\d+$/.test(raw)) {
    const n = Number(raw);
    if (n < 1 || n > MAX) throw new Error(`The value of ${key} must be between 1 and ${MAX}, not ${n}.`);
    return n;
  }
  const parts = raw.split(/[\s,]+/).filter(Boolean);
  if (!parts.length) throw new Error(`The value of ${key} must be a count or a grid such as '24h 7d 4w 12m', not "${value}".`);
  const grid: Grid = { buckets: [] };
  const seen = new Set<string>();
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (part === 'all') {
      if (i !== 0) throw new Error(`The value of ${key} may have "all" only first, as in 'all 1d, 24h 7d', not in "${value}".`);
      const next = parts[++i];
      const s = next === undefined ? null : span(key, next);
      if (!s) throw new Error(`The value of ${key} needs a time after "all", as in 'all 1d', not "${next ?? ''}".`);
      grid.all = s;
      continue;
    }
    if (/^\d+$/.test(part)) {
      if (grid.latest !== undefined) throw new Error(`The value of ${key} has two counts ("${grid.latest}" and "${part}"): give one.`);
      const n = Number(part);
      if (n < 1 || n > MAX) throw new Error(`The value of ${key} must count between 1 and ${MAX} in "${part}", not ${n}.`);
      grid.latest = n;
      continue;
    }
    const s = span(key, part);
    if (!s) throw new Error(`The value of ${key} has "${part}", which is neither a count nor a time such as 24h or 7d.`);
    if (seen.has(s.unit)) throw new Error(`The value of ${key} has two rules for ${UNITS[s.unit]}s ("${part}"): give one.`);
    seen.add(s.unit);
    grid.buckets.push(s);
  }
  if (!grid.buckets.length && grid.latest === undefined && !grid.all) throw new Error(`The value of ${key} must be a count or a grid such as '24h 7d 4w 12m', not "${value}".`);
  return grid;
}

const spanText = (s: Span) => `${s.n}${s.unit}`;

/** the canonical text of a policy: a count, or a grid as parseRetention reads it */
export function formatRetention(r: Retention): string {
  if (typeof r === 'number') return String(r);
  const rules = [...(r.latest !== undefined ? [String(r.latest)] : []), ...r.buckets.map(spanText)].join(' ');
  return r.all ? `all ${spanText(r.all)}${rules ? `, ${rules}` : ''}` : rules;
}

/** how a policy is stored in the config: a count as a number, a grid as its text */
export function storedRetention(r: Retention): number | string {
  return typeof r === 'number' ? r : formatRetention(r);
}

export function retentionOf(stored: number | string): Retention {
  return typeof stored === 'number' ? stored : parseRetention('the retention', stored);
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** the bucket a time falls in, as a number that grows by one per unit (UTC calendar) */
export function bucketOf(unit: Unit, t: number): number {
  const d = new Date(t);
  switch (unit) {
    case 'h':
      return Math.floor(t / HOUR);
    case 'd':
      return Math.floor(t / DAY);
    case 'w':
      return Math.floor((Math.floor(t / DAY) + 3) / 7); // 1970-01-01 was a Thursday: weeks start on Monday
    case 'm':
      return d.getUTCFullYear() * 12 + d.getUTCMonth();
    case 'y':
      return d.getUTCFullYear();
  }
}

/** `now` minus a span, in calendar terms for months and years */
export function before(now: number, s: Span): number {
  const d = new Date(now);
  switch (s.unit) {
    case 'h':
      return now - s.n * HOUR;
    case 'd':
      return now - s.n * DAY;
    case 'w':
      return now - s.n * 7 * DAY;
    case 'm':
    case 'y': {
      // the same day of the month, or the month's last day when it is shorter (31 March less 1 month: 28 February)
      const month = d.getUTCMonth() - (s.unit === 'm' ? s.n : 12 * s.n);
      const last = new Date(Date.UTC(d.getUTCFullYear(), month + 1, 0)).getUTCDate();
      return Date.UTC(d.getUTCFullYear(), month, Math.min(d.getUTCDate(), last), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds());
    }
  }
}

export interface Candidate {
  name: string;
  createdAt: Date;
}

export interface MarkerPlan {
  name: string;
  createdAt: Date;
  keep: boolean;
  /** why it stays: the rules that keep it ('24h', 'all 1d', 'newest 3', 'last common', 'held'); empty when pruned */
  rules: string[];
}

/**
 * For each marker (any order; returned oldest first): does it stay, and
 * which rules keep it. `protect` maps names that must stay whatever the
 * policy (the last common marker, held ones) to why.
 */
export function planRetention(markers: readonly Candidate[], policy: Retention, now: number, protect: ReadonlyMap<string, string> = new Map()): MarkerPlan[] {
  const sorted = [...markers].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const rules = sorted.map((m) => {
    const why = protect.get(m.name);
    return why ? [why] : [];
  });
  const latest = typeof policy === 'number' ? policy : policy.latest;
  if (latest !== undefined) {
    for (let i = Math.max(0, sorted.length - latest); i < sorted.length; i++) rules[i].push(typeof policy === 'number' ? `newest ${latest}` : String(latest));
  }
  if (typeof policy !== 'number') {
    if (policy.all) {
      const since = before(now, policy.all);
      sorted.forEach((m, i) => {
        if (m.createdAt.getTime() >= since) rules[i].push(`all ${spanText(policy.all!)}`);
      });
    }
    for (const rule of policy.buckets) {
      const current = bucketOf(rule.unit, now);
      const taken = new Set<number>();
      // newest first: the first marker met in a bucket is the one that bucket keeps
      for (let i = sorted.length - 1; i >= 0; i--) {
        // a marker dated after now (a peer's clock ahead) counts in the current bucket
        const b = Math.min(current, bucketOf(rule.unit, sorted[i].createdAt.getTime()));
        if (current - b >= rule.n || taken.has(b)) continue;
        taken.add(b);
        rules[i].push(spanText(rule));
      }
    }
  }
  return sorted.map((m, i) => ({ name: m.name, createdAt: m.createdAt, keep: rules[i].length > 0, rules: rules[i] }));
}

/**
 * The plan for one side's snapshots: only the service's own markers are
 * candidates; the last common one and held ones always stay.
 */
export function planSide(markers: readonly { name: string; createdAt: Date; held: boolean }[], keep: number | string, now: number, lastCommon: string | null): MarkerPlan[] {
  const protect = new Map<string, string>();
  for (const m of markers) if (m.held) protect.set(m.name, 'held');
  if (lastCommon) protect.set(lastCommon, 'last common');
  return planRetention(markers, retentionOf(keep), now, protect);
}

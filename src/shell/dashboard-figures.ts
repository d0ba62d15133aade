/**
 * The dashboard's figures as text, all pure: durations, rates, the lag bars,
 * the services table fitted to a width, the rate chart's series, which
 * service is selected, and the figures printed once without a screen. The
 * screen (dashboard-screen.ts) only places what these return.
 */
import type { DashboardData, DashboardRow, RatePoint } from '../services/auto-sync/dashboard-data.js';
import type { Column } from '../commands/grammar/types.js';
import { fitWidths, renderTable, truncate } from './render.js';

/** 42s, 5m 02s, 3h 07m, 2d 04h; '-' for never */
export function formatDuration(seconds: number | null): string {
  if (seconds === null) return '-';
  const s = Math.max(0, Math.round(seconds));
  const p = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${p(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${p(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${p(Math.floor((s % 86400) / 3600))}h`;
}

export function formatAgo(iso: string | null, now: number): string {
  if (!iso) return 'never';
  return `${formatDuration((now - Date.parse(iso)) / 1000)} ago`;
}

/** a bytes-per-second figure in the unit that suits the largest of them */
export function rateUnit(max: number): { unit: string; divisor: number } {
  if (max >= 1 << 30) return { unit: 'GiB/s', divisor: 1 << 30 };
  if (max >= 1 << 20) return { unit: 'MiB/s', divisor: 1 << 20 };
  if (max >= 1 << 10) return { unit: 'KiB/s', divisor: 1 << 10 };
  return { unit: 'B/s', divisor: 1 };
}

export function formatRate(bytesPerSec: number): string {
  const { unit, divisor } = rateUnit(bytesPerSec);
  const v = bytesPerSec / divisor;
  return `${v >= 100 || divisor === 1 ? Math.round(v) : v.toFixed(1)} ${unit}`;
}

export type Tone = 'good' | 'due' | 'late' | 'off';

/** the colour of a lag bar: late once max-delay has passed or the last run failed */
export function lagTone(row: DashboardRow): Tone {
  if (row.health === 'failure' || row.health === 'maintenance') return 'late';
  if (row.lagRatio === null) return 'off';
  if (row.lagRatio >= 1) return 'late';
  return row.lagRatio >= 0.75 ? 'due' : 'good';
}

/** `[██████░░░░] 62% of 1h 00m` in `width` characters (the bar shrinks first) */
export function lagBar(row: DashboardRow, width: number): string {
  if (row.lagRatio === null) return truncate(`${formatDuration(row.lagSeconds)} (no max-delay)`, width);
  const percent = Math.round(row.lagRatio * 100);
  const label = ` ${percent}% of ${formatDuration(row.maxDelay)}`;
  const inner = Math.max(3, width - label.length - 2);
  const filled = Math.min(inner, Math.round(Math.min(1, row.lagRatio) * inner));
  return truncate(`[${'█'.repeat(filled)}${'░'.repeat(inner - filled)}]${label}`, width);
}

/** one line of the lag pane: the selection mark, the name padded to the others', the bar and its tone */
export interface LagLine {
  mark: '>' | ' ';
  name: string;
  bar: string;
  tone: Tone;
}

/** the lag pane's lines in `width` characters: names take at most half of it */
export function lagLines(rows: DashboardRow[], selected: string | null, width: number): LagLine[] {
  const nameWidth = Math.min(Math.max(4, ...rows.map((r) => r.name.length)), Math.floor(width / 2));
  return rows.map((r) => ({
    mark: r.name === selected ? '>' : ' ',
    name: truncate(r.name, nameWidth).padEnd(nameWidth),
    bar: lagBar(r, width - nameWidth - 3),
    tone: lagTone(r),
  }));
}

/** the services table; on a narrow terminal the name shrinks first, then LAG, ROLE and LAST RUN are left out */
export const TABLE_COLUMNS: Column[] = [
  { key: 'name', header: 'NAME', flexible: true },
  { key: 'state', header: 'STATE' },
  { key: 'role', header: 'ROLE', drop: 2 },
  { key: 'status', header: 'STATUS' },
  { key: 'lastRun', header: 'LAST RUN', drop: 1 },
  { key: 'lag', header: 'LAG', drop: 3 },
];

export function tableRecord(row: DashboardRow, now: number): Record<string, string> {
  return {
    name: row.name,
    state: row.transfer ? `${row.state} ${formatRate(row.transfer.rate)}` : row.state,
    role: row.role,
    status: row.health,
    lastRun: formatAgo(row.lastRunAt, now),
    lag: formatDuration(row.lagSeconds),
  };
}

/** the table's headers, cells and column widths for `width` characters, each column followed by one space */
export function fitTable(records: Record<string, string>[], width: number): { headers: string[]; rows: string[][]; widths: number[] } {
  const all = fitWidths(TABLE_COLUMNS, records, width, 1);
  const kept = TABLE_COLUMNS.map((c, i) => ({ c, w: all[i] })).filter((k) => k.w > 0);
  return {
    headers: kept.map(({ c, w }) => truncate(c.header, w)),
    rows: records.map((r) => kept.map(({ c, w }) => truncate(r[c.key] ?? '', w))),
    widths: kept.map(({ w }) => w),
  };
}

/** the rate chart of the selected service: its label, the x labels, the y values in one unit, the top of the scale */
export interface RateChart {
  label: string;
  x: string[];
  y: number[];
  maxY: number;
}

/** `clock` turns a point's time into its x label (the screen's local time, HH:MM) */
export function rateChart(selected: string | null, points: RatePoint[], clock: (iso: string) => string): RateChart {
  const { unit, divisor } = rateUnit(Math.max(0, ...points.map((p) => p.bytesPerSec)));
  let y = points.length ? points.map((p) => Number((p.bytesPerSec / divisor).toFixed(2))) : [0];
  let x = points.length ? points.map((p) => (p.live ? 'now' : clock(p.at))) : ['-'];
  if (y.length === 1) {
    // one transfer is no line: draw it flat so its rate shows
    y = [y[0], y[0]];
    x = [' ', x[0]];
  }
  const label = !selected ? ' transfer rate ' : points.length ? ` transfer rate of :${selected}, ${unit} ` : ` transfer rate of :${selected}: no transfers yet `;
  return { label, x, y, maxY: Math.max(1, Math.ceil(Math.max(...y) * 1.2)) };
}

/** the selection after a redraw: the same service while it is there, else the first (null: none) */
export function keepSelected(names: string[], selected: string | null): string | null {
  return selected !== null && names.includes(selected) ? selected : (names[0] ?? null);
}

/** the selection moved by `delta` rows, stopping at either end */
export function moveSelected(names: string[], selected: string | null, delta: number): string | null {
  if (!names.length) return null;
  const at = Math.max(0, names.indexOf(selected ?? ''));
  return names[Math.min(names.length - 1, Math.max(0, at + delta))];
}

/** without a screen: the table once, with a lag bar per service */
export function figuresOnce(data: DashboardData, width: number): string[] {
  if (!data.services.length) return ["No auto-sync services. Create one with 'create auto-sync'."];
  const now = Date.parse(data.at);
  const columns: Column[] = [...TABLE_COLUMNS, { key: 'bar', header: 'LAG / MAX-DELAY', drop: 4 }];
  const rows = data.services.map((r) => ({ ...tableRecord(r, now), bar: lagBar(r, 30) }));
  return renderTable(columns, rows, { width, color: false });
}

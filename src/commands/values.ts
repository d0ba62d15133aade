/** Value kinds shared by command declarations: each parses, checks and offers completions. */
import type { ValueSpec } from './grammar/types.js';
import { parseCount, parseRetention, parseScheduleType, parseYesNo, SCHEDULE_TYPES, storedRetention } from '../services/auto-sync/index.js';

export const count = (name = 'N', min = 0, max = 1_000_000): ValueSpec => ({
  name,
  parse: (raw, label) => parseCount(label, raw, min, max),
});

/** a count or a retention grid (retention.ts): a count parses to a number, a grid to its canonical text */
export const retention: ValueSpec = { name: "N|'GRID'", parse: (raw, label) => storedRetention(parseRetention(label, raw)) };

export const yesNo: ValueSpec = { name: 'yes|no', parse: (raw, label) => parseYesNo(label, raw), values: () => ['yes', 'no'] };

export const scheduleType: ValueSpec = { name: 'minute|hour|day|week|month', parse: (raw, label) => parseScheduleType(label, raw), values: () => SCHEDULE_TYPES };

export const text = (name: string, values?: ValueSpec['values']): ValueSpec => ({ name, values });

const SIZE = /^(\d+(?:\.\d+)?)([KMGT]?)(i?B)?$/i;
export function parseSize(raw: string, label: string): number {
  const m = SIZE.exec(raw.trim());
  if (!m) throw new Error(`The value of ${label} must be a size such as 512M or 2G, not "${raw}".`);
  const factor = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  const bytes = Math.round(Number(m[1]) * factor);
  if (bytes < 1 << 20) throw new Error(`The value of ${label} must be at least 1M, not "${raw}".`);
  return bytes;
}
export const size: ValueSpec = { name: 'SIZE', parse: parseSize };

const UNITS = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 } as const;

/** A size in bytes with an optional unit (512, 64K, 10G, 1T); each bad form gets its own sentence. */
export function parseBytes(raw: string, label: string): number {
  const text = raw.trim();
  if (/^-/.test(text)) throw new Error(`The value of ${label} must be a positive size such as 10G, not "${raw}".`);
  const m = /^(\d+(?:\.\d+)?)([A-Za-z]*)$/.exec(text);
  if (!m) throw new Error(`The value of ${label} must be a size such as 10G or 64K, not "${raw}".`);
  const unit = m[2].toUpperCase().replace(/I?B$/, '');
  if (!(unit in UNITS)) throw new Error(`The value of ${label} has an unknown unit "${m[2]}" in "${raw}": use K, M, G, T or P (powers of 1024), or none for bytes.`);
  const bytes = Number(m[1]) * UNITS[unit as keyof typeof UNITS];
  if (bytes === 0) throw new Error(`The value of ${label} must be more than 0 bytes, not "${raw}".`);
  if (!Number.isSafeInteger(bytes)) throw new Error(`The value of ${label} must be a whole number of bytes no larger than 8P, not "${raw}".`);
  return bytes;
}
export const bytes: ValueSpec = { name: 'SIZE', parse: parseBytes };

export function formatBytes(bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v}B` : `${v < 10 ? v.toFixed(1) : Math.round(v)}${units[u]}`;
}

export function formatTime(iso: string | null): string {
  if (!iso) return '-';
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

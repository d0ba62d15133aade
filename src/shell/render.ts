/**
 * Turns a command's Output into lines that fit the terminal. Tables shrink
 * their flexible columns first, then truncate with '…', so a plain 80x24
 * terminal still reads well.
 */
import type { Column, Output } from '../commands/grammar/types.js';

export interface Style {
  width: number;
  color: boolean;
}

const ESC = '\u001b[';
export const paint = {
  bold: (s: string, on: boolean) => (on ? `${ESC}1m${s}${ESC}22m` : s),
  red: (s: string, on: boolean) => (on ? `${ESC}31m${s}${ESC}39m` : s),
  dim: (s: string, on: boolean) => (on ? `${ESC}2m${s}${ESC}22m` : s),
};

export function truncate(text: string, width: number): string {
  if (width <= 0) return '';
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`;
}

/** Column widths that fit: shorten flexible columns, then leave out droppable ones, then shorten any. 0 = left out. */
export function fitWidths(columns: Column[], rows: Record<string, string>[], width: number, gap = 2): number[] {
  const widths = columns.map((c) => Math.max(c.header.length, ...rows.map((r) => (r[c.key] ?? '').length)));
  const total = () => widths.reduce((sum, w) => sum + (w ? w + gap : 0), -gap);
  const shrink = (allowed: (i: number) => boolean, floor: number) => {
    while (total() > width) {
      let widest = -1;
      widths.forEach((w, i) => {
        if (allowed(i) && w > floor && (widest < 0 || w > widths[widest])) widest = i;
      });
      if (widest < 0) return;
      widths[widest]--;
    }
  };
  shrink((i) => Boolean(columns[i].flexible), 16);
  const droppable = columns
    .map((c, i) => ({ i, drop: c.drop ?? 0 }))
    .filter((c) => c.drop > 0)
    .sort((a, b) => b.drop - a.drop);
  for (const { i } of droppable) {
    if (total() <= width) break;
    widths[i] = 0;
  }
  shrink((i) => Boolean(columns[i].flexible), 8);
  shrink((i) => widths[i] > 0, 4);
  return widths;
}

export function renderTable(columns: Column[], rows: Record<string, string>[], style: Style): string[] {
  const widths = fitWidths(columns, rows, style.width);
  const shown = columns.map((c, i) => ({ c, w: widths[i] })).filter((x) => x.w > 0);
  const cell = (c: Column, text: string, w: number) => {
    const t = truncate(text, w);
    return c.align === 'right' ? t.padStart(w) : t.padEnd(w);
  };
  const line = (get: (c: Column) => string) =>
    shown
      .map(({ c, w }) => cell(c, get(c), w))
      .join('  ')
      .trimEnd();
  return [
    paint.bold(
      line((c) => c.header),
      style.color,
    ),
    ...rows.map((r) => line((c) => r[c.key] ?? '')),
  ];
}

export function renderRecord(fields: [string, string][], style: Style): string[] {
  const keyWidth = Math.max(...fields.map(([k]) => k.length));
  const room = Math.max(10, style.width - keyWidth - 3);
  return fields.map(([k, v]) => `${k.padEnd(keyWidth)} : ${truncate(v, room)}`);
}

/** Lines for every output but the live kinds (follow, exit, none). */
export function render(output: Output, style: Style): string[] {
  switch (output.kind) {
    case 'table':
      return output.rows.length || !output.empty ? renderTable(output.columns, output.rows, style) : [output.empty];
    case 'record':
      return renderRecord(output.fields, style);
    case 'lines':
      return output.lines;
    case 'message':
      return [output.text];
    case 'follow':
      return output.initial;
    default:
      return [];
  }
}

/** Lines of a log stand out as in every other view of a log (log-tone.ts). */
export { paintLine as highlightLog } from './log-tone.js';

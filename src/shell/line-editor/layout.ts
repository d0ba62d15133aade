/**
 * Where text goes on a terminal of a given width: the prompt line wrapped
 * into rows (with the cursor's row and column), TAB's choices in columns,
 * `?` help as aligned entries, and paragraphs wrapped at word boundaries.
 * Characters are taken as one column wide.
 */
import type { HelpEntry } from './editing.js';

export interface PromptRows {
  /** prompt + line cut into rows of at most `width` characters */
  rows: string[];
  /** where the cursor sits, relative to the first row */
  cursor: { x: number; y: number };
}

/** Wraps rather than scrolls, so a long line stays readable and copyable. */
export function promptRows(prompt: string, line: string, cursor: number, width: number): PromptRows {
  const w = Math.max(1, width);
  const text = prompt + line;
  const at = prompt.length + cursor;
  const rows: string[] = [];
  for (let i = 0; i < text.length; i += w) rows.push(text.slice(i, i + w));
  const y = Math.floor(at / w);
  // the cursor just past a full last row goes to the start of a new, empty one
  while (rows.length <= y) rows.push('');
  return { rows, cursor: { x: at % w, y } };
}

/** Words in columns, read down then across (as `ls` and bash do). */
export function columns(words: string[], width: number, gap = 2): string[] {
  if (!words.length) return [];
  // the last column needs no gap after it
  const cell = Math.min(Math.max(...words.map((w) => w.length)), Math.max(1, width)) + gap;
  const perRow = Math.max(1, Math.floor((width + gap) / cell));
  const height = Math.ceil(words.length / perRow);
  const lines: string[] = [];
  for (let r = 0; r < height; r++) {
    const row: string[] = [];
    for (let c = 0; c * height + r < words.length; c++) row.push(clip(words[c * height + r], cell - gap).padEnd(cell));
    lines.push(row.join('').trimEnd());
  }
  return lines;
}

/** Text cut at word boundaries into lines of at most `width`; words longer than a line are split. */
export function wrapWords(text: string, width: number): string[] {
  const w = Math.max(1, width);
  const lines: string[] = [];
  for (const paragraph of text.split('\n')) {
    let current = '';
    for (let word of paragraph.split(/\s+/).filter(Boolean)) {
      while (word.length > w) {
        if (current) lines.push(current);
        current = '';
        lines.push(word.slice(0, w));
        word = word.slice(w);
      }
      if (!current) current = word;
      else if (current.length + 1 + word.length <= w) current += ` ${word}`;
      else {
        lines.push(current);
        current = word;
      }
    }
    lines.push(current);
  }
  return lines;
}

/**
 * `?` help: two spaces, the word padded to a common width, the description
 * wrapped under its own column. `bold` styles the words.
 */
export function helpLines(entries: HelpEntry[], width: number, bold: (s: string) => string = (s) => s): string[] {
  const indent = 2;
  const gap = 3;
  // a very long word must not leave descriptions no room
  const wordWidth = Math.min(Math.max(0, ...entries.map((e) => e.word.length)), Math.max(8, Math.floor(width / 3)));
  const descriptionAt = indent + wordWidth + gap;
  const room = Math.max(10, width - descriptionAt);
  const lines: string[] = [];
  for (const { word, description } of entries) {
    if (!word) {
      // a message rather than an entry (the line does not parse)
      lines.push(...wrapWords(description, Math.max(10, width - indent)).map((l) => ' '.repeat(indent) + l));
      continue;
    }
    const head = ' '.repeat(indent) + bold(clip(word, wordWidth)) + ' '.repeat(wordWidth - Math.min(word.length, wordWidth) + gap);
    const wrapped = wrapWords(description, room);
    lines.push((head + wrapped[0]).trimEnd());
    for (const more of wrapped.slice(1)) lines.push(' '.repeat(descriptionAt) + more);
  }
  return lines;
}

function clip(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`;
}

/**
 * The prompt line's editing rules, free of any rendering: a state and a key
 * give the next state and what the editor must do about it (submit, cancel,
 * list completions, show help). The ink component only draws the state.
 */
import type { Key } from '../keys.js';

// What TAB and '?' are given: the grammar's own answers (one definition for both sides).
export type { Completion, HelpEntry } from '../../commands/grammar/complete.js';
import type { Completion, HelpEntry } from '../../commands/grammar/complete.js';

export interface EditorServices {
  complete(line: string, cursor: number): Completion;
  help(line: string, cursor: number): HelpEntry[];
}

export interface LineState {
  line: string;
  cursor: number;
  /** the history as it was when the prompt opened, oldest first */
  history: readonly string[];
  /** the entry shown while walking history; history.length is the line being edited */
  recall: number;
  /** the line being edited, kept while walking history */
  draft: string;
  /** the last key was TAB, so another TAB lists the choices */
  tabbed: boolean;
  /** the text the last Ctrl-U/K/W removed, for Ctrl-Y */
  killed: string;
}

export type Outcome = { kind: 'edit' } | { kind: 'submit' } | { kind: 'cancel' } | { kind: 'eof' } | { kind: 'choices'; choices: string[] } | { kind: 'help'; entries: HelpEntry[] };

export interface Step {
  state: LineState;
  outcome: Outcome;
}

export function initialState(history: readonly string[], line = ''): LineState {
  return { line, cursor: line.length, history, recall: history.length, draft: '', tabbed: false, killed: '' };
}

const EDIT: Outcome = { kind: 'edit' };

const isLowSurrogate = (s: string, i: number) => {
  const code = s.charCodeAt(i);
  return code >= 0xdc00 && code <= 0xdfff;
};
/** index one character left/right of i, never splitting a surrogate pair */
const charBefore = (s: string, i: number) => Math.max(0, i - (i >= 2 && isLowSurrogate(s, i - 1) ? 2 : 1));
const charAfter = (s: string, i: number) => Math.min(s.length, i + (isLowSurrogate(s, i + 1) ? 2 : 1));

/** start of the word before i (a word ends at whitespace, as in bash's Ctrl-W) */
export function wordStartBefore(line: string, i: number): number {
  let j = i;
  while (j > 0 && /\s/.test(line[j - 1])) j--;
  while (j > 0 && !/\s/.test(line[j - 1])) j--;
  return j;
}

export function wordEndAfter(line: string, i: number): number {
  let j = i;
  while (j < line.length && /\s/.test(line[j])) j++;
  while (j < line.length && !/\s/.test(line[j])) j++;
  return j;
}

/** the same state with `line` as the text and the cursor at `cursor` */
function edited(state: LineState, line: string, cursor: number, killed = state.killed): Step {
  return { state: { ...state, line, cursor, killed, tabbed: false }, outcome: EDIT };
}

function moved(state: LineState, cursor: number): Step {
  return { state: { ...state, cursor, tabbed: false }, outcome: EDIT };
}

function insert(state: LineState, text: string): Step {
  const { line, cursor } = state;
  return edited(state, line.slice(0, cursor) + text + line.slice(cursor), cursor + text.length);
}

/** remove line[from, to) and remember it for Ctrl-Y */
function kill(state: LineState, from: number, to: number): Step {
  if (from === to) return moved(state, state.cursor);
  const { line } = state;
  return edited(state, line.slice(0, from) + line.slice(to), from, line.slice(from, to));
}

function recall(state: LineState, index: number): Step {
  if (index < 0 || index > state.history.length || index === state.recall) return moved(state, state.cursor);
  const draft = state.recall === state.history.length ? state.line : state.draft;
  const line = index === state.history.length ? draft : state.history[index];
  return { state: { ...state, line, cursor: line.length, recall: index, draft, tabbed: false }, outcome: EDIT };
}

/**
 * TAB: put in the completion's replacement; when that changes nothing and the
 * previous key was TAB too, list the choices.
 */
function tab(state: LineState, services: EditorServices): Step {
  const { line, cursor } = state;
  const completion = services.complete(line, cursor);
  let next = line;
  let nextCursor = cursor;
  if (completion.replacement !== null) {
    const start = Math.max(0, Math.min(completion.start, cursor));
    const before = line.slice(0, start);
    let after = line.slice(cursor);
    let text = completion.replacement;
    // a unique, complete word is followed by a space, ready for the next one
    if (completion.choices.length === 1 && text === completion.choices[0]) text += ' ';
    // ...but not a second one when the line already has it
    if (text.endsWith(' ') && after.startsWith(' ')) after = after.slice(1);
    next = before + text + after;
    nextCursor = before.length + text.length;
  }
  if (next !== line || nextCursor !== cursor) {
    return { state: { ...state, line: next, cursor: nextCursor, tabbed: true }, outcome: EDIT };
  }
  if (state.tabbed && completion.choices.length) {
    return { state, outcome: { kind: 'choices', choices: completion.choices } };
  }
  return { state: { ...state, tabbed: true }, outcome: EDIT };
}

export function press(state: LineState, key: Key, services: EditorServices): Step {
  const { line, cursor } = state;
  switch (key.name) {
    case 'text':
      if (key.text === '?') return { state: { ...state, tabbed: false }, outcome: { kind: 'help', entries: services.help(line, cursor) } };
      return insert(state, key.text);
    case 'enter':
      return { state, outcome: { kind: 'submit' } };
    case 'ctrl-c':
      return { state, outcome: { kind: 'cancel' } };
    case 'ctrl-d':
      if (line === '') return { state, outcome: { kind: 'eof' } };
      return cursor < line.length ? edited(state, line.slice(0, cursor) + line.slice(charAfter(line, cursor)), cursor) : moved(state, cursor);
    case 'tab':
      return tab(state, services);
    case 'left':
    case 'ctrl-b':
      return moved(state, charBefore(line, cursor));
    case 'right':
    case 'ctrl-f':
      return moved(state, charAfter(line, cursor));
    case 'home':
    case 'ctrl-a':
      return moved(state, 0);
    case 'end':
    case 'ctrl-e':
      return moved(state, line.length);
    case 'word-left':
      return moved(state, wordStartBefore(line, cursor));
    case 'word-right':
      return moved(state, wordEndAfter(line, cursor));
    case 'backspace': {
      if (cursor === 0) return moved(state, cursor);
      const from = charBefore(line, cursor);
      return edited(state, line.slice(0, from) + line.slice(cursor), from);
    }
    case 'delete':
      if (cursor === line.length) return moved(state, cursor);
      return edited(state, line.slice(0, cursor) + line.slice(charAfter(line, cursor)), cursor);
    case 'ctrl-u':
      return kill(state, 0, cursor);
    case 'ctrl-k':
      return kill(state, cursor, line.length);
    case 'ctrl-w':
    case 'kill-word-before':
      return kill(state, wordStartBefore(line, cursor), cursor);
    case 'ctrl-y':
      return state.killed ? insert(state, state.killed) : moved(state, cursor);
    case 'up':
    case 'ctrl-p':
      return recall(state, state.recall - 1);
    case 'down':
    case 'ctrl-n':
      return recall(state, state.recall + 1);
    default:
      // keys with no meaning here (Escape, F-keys, ...) change nothing
      return moved(state, cursor);
  }
}

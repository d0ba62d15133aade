/**
 * Turns what a terminal sends in raw mode into keys. Text typed ahead or
 * pasted arrives as one chunk with its Enter inside ("show folder\r"), so a
 * chunk becomes several keys, each keeping the bytes it came from (`raw`) so
 * that keys left over after Enter can be handed to whoever reads next.
 */

export type NamedKey = 'enter' | 'tab' | 'backspace' | 'delete' | 'left' | 'right' | 'up' | 'down' | 'home' | 'end' | 'word-left' | 'word-right' | 'kill-word-before' | 'escape' | `ctrl-${Lowercase<CtrlLetter>}` | 'unknown';

type CtrlLetter = 'A' | 'B' | 'C' | 'D' | 'E' | 'F' | 'G' | 'K' | 'L' | 'N' | 'O' | 'P' | 'Q' | 'R' | 'S' | 'T' | 'U' | 'V' | 'W' | 'X' | 'Y' | 'Z';

export type Key = { name: 'text'; text: string; raw: string } | { name: NamedKey; raw: string };

const ESC = '\u001b';

/** escape sequences (CSI and SS3) by what follows ESC */
const SEQUENCES: Record<string, NamedKey> = {
  '[A': 'up',
  '[B': 'down',
  '[C': 'right',
  '[D': 'left',
  OA: 'up',
  OB: 'down',
  OC: 'right',
  OD: 'left',
  '[H': 'home',
  '[F': 'end',
  OH: 'home',
  OF: 'end',
  '[1~': 'home',
  '[7~': 'home',
  '[4~': 'end',
  '[8~': 'end',
  '[3~': 'delete',
  // Ctrl/Alt + arrows move by words (xterm modifier 5 = Ctrl, 3 = Alt)
  '[1;5C': 'word-right',
  '[1;5D': 'word-left',
  '[1;3C': 'word-right',
  '[1;3D': 'word-left',
  b: 'word-left',
  f: 'word-right',
  '\u007f': 'kill-word-before',
  '\b': 'kill-word-before',
};

/** ESC [ params final, ESC O final, or ESC and one character (Alt+key) */
const ESCAPE_SEQUENCE = /^\u001b(?:\[[0-9;?]*[ -/]*[@-~]|O[@-~]|[^[O\u001b])?/;

function controlKey(ch: string): NamedKey {
  if (ch === '\r' || ch === '\n') return 'enter';
  if (ch === '\t') return 'tab';
  // terminals send DEL (0x7f) for Backspace; Ctrl-H (0x08) is Backspace too
  if (ch === '\u007f' || ch === '\b') return 'backspace';
  const code = ch.charCodeAt(0);
  if (code >= 1 && code <= 26) return `ctrl-${String.fromCharCode(code + 96)}` as NamedKey;
  return 'unknown';
}

export function decodeKeys(chunk: string): Key[] {
  const keys: Key[] = [];
  let text = '';
  const flushText = () => {
    if (text) keys.push({ name: 'text', text, raw: text });
    text = '';
  };
  for (let i = 0; i < chunk.length; ) {
    const ch = chunk[i];
    if (ch === ESC) {
      flushText();
      const raw = ESCAPE_SEQUENCE.exec(chunk.slice(i))![0];
      keys.push({ name: raw === ESC ? 'escape' : (SEQUENCES[raw.slice(1)] ?? 'unknown'), raw });
      i += raw.length;
    } else if (ch < ' ' || ch === '\u007f') {
      flushText();
      // a CRLF from a paste is one Enter
      const raw = ch === '\r' && chunk[i + 1] === '\n' ? '\r\n' : ch;
      keys.push({ name: controlKey(ch), raw });
      i += raw.length;
    } else if (ch === '?') {
      // '?' is a key of its own: the shell's help key, even in the middle of pasted text
      flushText();
      keys.push({ name: 'text', text: '?', raw: '?' });
      i++;
    } else {
      text += ch;
      i++;
    }
  }
  flushText();
  return keys;
}

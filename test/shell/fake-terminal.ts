/**
 * A Terminal for tests: keys go in through a PassThrough that claims to be a
 * tty, and what is written out is played on a small VT100 screen, so tests
 * read what a person would see (after every erase and cursor move).
 */
import { PassThrough, Writable } from 'node:stream';
import type { Terminal, TerminalInput, TerminalOutput } from '../../src/shell/terminal.js';

export const KEY = {
  enter: '\r',
  tab: '\t',
  backspace: '\u007f',
  delete: '\u001b[3~',
  left: '\u001b[D',
  right: '\u001b[C',
  up: '\u001b[A',
  down: '\u001b[B',
  home: '\u001b[H',
  end: '\u001b[F',
  ctrlA: '\u0001',
  ctrlC: '\u0003',
  ctrlD: '\u0004',
  ctrlE: '\u0005',
  ctrlK: '\u000b',
  ctrlU: '\u0015',
  ctrlW: '\u0017',
} as const;

/** enough of a VT100 for ink, inquirer, ansi-escapes and blessed (scroll regions, line and character insert/delete) */
export class Screen {
  /** every line ever shown, the visible screen being the last `rows` */
  lines: string[][] = [[]];
  x = 0;
  y = 0;
  cursorVisible = true;
  /** the scroll region, rows of the visible screen (DECSTBM); null: the whole screen, scrolling into history */
  private region: { top: number; bottom: number } | null = null;
  private saved = { x: 0, y: 0 };

  constructor(
    readonly columns: number,
    readonly rows: number,
  ) {}

  private get top(): number {
    return Math.max(0, this.lines.length - this.rows);
  }

  private row(y = this.y): string[] {
    while (this.lines.length <= y) this.lines.push([]);
    return this.lines[y];
  }

  private lineFeed(): void {
    if (this.region && this.y === this.top + this.region.bottom) return this.scroll(1);
    this.y++;
    this.row();
  }

  /** the scroll region's lines move up by n (down for n < 0); blank lines come in at the other end */
  private scroll(n: number, from = this.region?.top ?? 0): void {
    const top = this.top;
    const bottom = this.region?.bottom ?? this.rows - 1;
    this.row(top + bottom);
    const blank = () => [] as string[];
    for (let i = 0; i < Math.abs(n); i++) {
      if (n > 0) {
        this.lines.splice(top + from, 1);
        this.lines.splice(top + bottom, 0, blank());
      } else {
        this.lines.splice(top + bottom, 1);
        this.lines.splice(top + from, 0, blank());
      }
    }
  }

  write(data: string): void {
    const csi = /^\u001b\[(\??)([0-9;]*)([A-Za-z@])/;
    for (let i = 0; i < data.length; ) {
      const ch = data[i];
      if (ch === '\u001b') {
        const m = csi.exec(data.slice(i));
        if (m) {
          this.control(m[1], m[2], m[3]);
          i += m[0].length;
        } else {
          const next = data[i + 1];
          if (next === 'D') this.lineFeed();
          else if (next === 'E') {
            this.x = 0;
            this.lineFeed();
          } else if (next === 'M') {
            if (this.y === this.top + (this.region?.top ?? 0)) this.scroll(-1);
            else this.y = Math.max(this.top, this.y - 1);
          } else if (next === '7') this.saved = { x: this.x, y: this.y - this.top };
          else if (next === '8') {
            this.x = this.saved.x;
            this.y = this.top + this.saved.y;
          }
          i += 2; // and ESC c and friends: nothing the tests look at
        }
        continue;
      }
      i++;
      if (ch === '\r') this.x = 0;
      // a tty turns \n into \r\n on output (ONLCR), raw mode included
      else if (ch === '\n') {
        this.x = 0;
        this.lineFeed();
      } else if (ch === '\b') this.x = Math.max(0, this.x - 1);
      else if (ch === '\u0007') continue;
      else {
        if (this.x >= this.columns) {
          this.x = 0;
          this.lineFeed();
        }
        const row = this.row();
        while (row.length < this.x) row.push(' ');
        row[this.x++] = ch;
      }
    }
  }

  private control(privateMode: string, params: string, final: string): void {
    const n = Number(params.split(';')[0]) || 1;
    const cells = (edit: (row: string[]) => void) => {
      const row = this.row();
      while (row.length < this.x) row.push(' ');
      edit(row);
      row.length = Math.min(row.length, this.columns);
    };
    if (privateMode) {
      if (params === '25') this.cursorVisible = final === 'h';
      return;
    }
    const clear = (y: number, from: number, to = Infinity) => {
      const row = this.row(y);
      for (let x = from; x < Math.min(to, row.length); x++) row[x] = ' ';
    };
    switch (final) {
      case 'A':
        this.y = Math.max(this.top, this.y - n);
        break;
      case 'B':
        this.y += n;
        this.row();
        break;
      case 'C':
        this.x = Math.min(this.columns - 1, this.x + n);
        break;
      case 'D':
        this.x = Math.max(0, Math.min(this.x, this.columns - 1) - n);
        break;
      case 'E':
        this.y += n;
        this.x = 0;
        this.row();
        break;
      case 'G':
        this.x = n - 1;
        break;
      case 'H': {
        const [r, c] = params.split(';').map((p) => Number(p) || 1);
        this.y = this.top + (r ?? 1) - 1;
        this.x = (c ?? 1) - 1;
        this.row();
        break;
      }
      case 'K':
        if (params === '2') clear(this.y, 0);
        else if (params === '1') clear(this.y, 0, this.x + 1);
        else clear(this.y, this.x);
        break;
      case 'J':
        if (params === '2' || params === '3') for (let y = this.top; y < this.lines.length; y++) clear(y, 0);
        else {
          clear(this.y, this.x);
          for (let y = this.y + 1; y < this.lines.length; y++) clear(y, 0);
        }
        break;
      case 'r': {
        const [t, b] = params.split(';').map((p) => Number(p) || 0);
        const top = (t || 1) - 1;
        const bottom = (b || this.rows) - 1;
        this.region = top === 0 && bottom === this.rows - 1 ? null : { top, bottom };
        this.x = 0;
        this.y = this.top;
        break;
      }
      case 'd':
        this.y = this.top + n - 1;
        this.row();
        break;
      case 'S':
        this.scroll(n);
        break;
      case 'T':
        this.scroll(-n);
        break;
      case 'L':
        // insert lines at the cursor's row: the region below it moves down
        this.scroll(-n, this.y - this.top);
        break;
      case 'M':
        this.scroll(n, this.y - this.top);
        break;
      case 'X':
        cells((row) => row.splice(this.x, n, ...Array<string>(n).fill(' ')));
        break;
      case '@':
        cells((row) => row.splice(this.x, 0, ...Array<string>(n).fill(' ')));
        break;
      case 'P':
        cells((row) => row.splice(this.x, n));
        break;
      case 's':
        this.saved = { x: this.x, y: this.y - this.top };
        break;
      case 'u':
        this.x = this.saved.x;
        this.y = this.top + this.saved.y;
        break;
      default:
        // colours (m) and the rest change no text
        break;
    }
  }

  /** the visible screen, right-trimmed, without the empty lines at the bottom */
  text(): string {
    const visible = this.lines.slice(this.top).map((r) => r.join('').trimEnd());
    while (visible.length && visible.at(-1) === '') visible.pop();
    return visible.join('\n');
  }

  /** the cursor relative to the screen's top */
  cursor(): { x: number; y: number } {
    return { x: this.x, y: this.y - this.top };
  }
}

export interface FakeTerminal {
  term: Terminal;
  screen: Screen;
  /** everything written, escapes included */
  written(): string;
  type(...keys: string[]): void;
  /** wait until the screen's text passes the test; fails with the screen */
  waitFor(test: RegExp | ((text: string) => boolean), timeoutMs?: number): Promise<string>;
  /** wait until the cursor is at x, y (relative to the screen's top) */
  waitForCursor(x: number, y: number): Promise<void>;
  raw: { mode: boolean };
}

export function fakeTerminal(opts: { columns?: number; rows?: number; color?: boolean; interactive?: boolean } = {}): FakeTerminal {
  const columns = opts.columns ?? 80;
  const rows = opts.rows ?? 24;
  const screen = new Screen(columns, rows);
  const raw = { mode: false };
  const input = new PassThrough() as PassThrough & TerminalInput;
  input.isTTY = true;
  input.setRawMode = (mode: boolean) => {
    raw.mode = mode;
    return input;
  };
  let all = '';
  const output = new Writable({
    write(chunk, _encoding, done) {
      const text = String(chunk);
      all += text;
      screen.write(text);
      done();
    },
  }) as Writable & TerminalOutput;
  output.isTTY = true;
  output.columns = columns;
  output.rows = rows;
  const errors = new Writable({ write: (_c, _e, done) => done() }) as Writable & TerminalOutput;
  const term: Terminal = {
    input,
    output,
    errors,
    interactive: opts.interactive ?? true,
    color: opts.color ?? false,
    columns: () => columns,
    rows: () => rows,
  };
  return {
    term,
    screen,
    raw,
    written: () => all,
    type: (...keys) => {
      for (const k of keys) input.write(k);
    },
    async waitFor(test, timeoutMs = 3000) {
      const passes = typeof test === 'function' ? test : (t: string) => test.test(t);
      await until(
        screen,
        () => passes(screen.text()),
        () => `the screen to show ${test}`,
        timeoutMs,
      );
      return screen.text();
    },
    async waitForCursor(x, y) {
      await until(
        screen,
        () => screen.cursor().x === x && screen.cursor().y === y,
        () => `the cursor at ${x},${y} (it is at ${JSON.stringify(screen.cursor())})`,
      );
    },
  };
}

async function until(screen: Screen, done: () => boolean, what: () => string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`Waited in vain for ${what()}. The screen shows:\n${screen.text()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

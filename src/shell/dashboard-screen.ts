/**
 * The dashboard's screen: blessed and blessed-contrib on the session's own
 * terminal (streams of its own, fed from the Terminal's, never the
 * process's). A table of services across the top, the selected service's
 * rate chart and every service's lag bar under it, its log, and a status
 * line. It places what dashboard-figures.ts computes and reports keys and
 * resizes; what they do is the controller's (dashboard-controller.ts).
 */
import { PassThrough, Writable } from 'node:stream';
import type { Widgets } from 'blessed';
import type { DashboardData } from '../services/auto-sync/dashboard-data.js';
import { blessed, contrib as loadedContrib, type Blessed } from './blessed.js';
import { fitTable, lagLines, rateChart, tableRecord, type Tone } from './dashboard-figures.js';
import { toneOf } from './log-tone.js';
import { truncate } from './render.js';
import type { Terminal, TerminalInput } from './terminal.js';

/** what the controller draws on and hears from */
export interface DashboardScreen {
  /** redraws every pane from the figures */
  draw(data: DashboardData, selected: string | null, note: string): void;
  /** empties the log pane for `name`'s log; how many lines it shows */
  showLog(name: string | null): number;
  /** one more line in the log pane (coloured by what it says) */
  log(line: string): void;
  onKey(keys: string[], then: () => void): void;
  onResize(then: () => void): void;
  /** gives the terminal back: no listeners, raw mode as it was */
  destroy(): void;
}

interface ContribTable extends Widgets.BoxElement {
  rows: Widgets.ListElement;
  options: { columnWidth: number[] };
  setData(data: { headers: string[]; data: string[][] }): void;
}

interface ContribLine extends Widgets.BoxElement {
  options: { maxY?: number };
  setData(series: { title: string; x: string[]; y: number[]; style?: { line: string } }[]): void;
}

interface ContribLog extends Widgets.ListElement {
  logLines: string[];
  log(line: string): void;
}

interface Contrib {
  table(options: object): ContribTable;
  line(options: object): ContribLine;
  log(options: object): ContribLog;
}

const TONES: Record<Tone, string> = { good: 'green', due: 'yellow', late: 'red', off: 'white' };

/** the Terminal's type name (an SSH client's TERM), for blessed's terminfo */
function terminalName(term: Terminal): string {
  const named = (term as Terminal & { name?: string }).name;
  return named && named !== 'dumb' ? named : process.env.TERM && process.env.TERM !== 'dumb' ? process.env.TERM : 'xterm';
}

/**
 * blessed gets streams of its own, fed from and writing to the Terminal's:
 * it leaves listeners and raw mode on whatever it is given, and those must
 * not outlive the dashboard on a session's input.
 */
function screenStreams(term: Terminal) {
  const input = new PassThrough() as PassThrough & TerminalInput & { isRaw: boolean };
  input.isTTY = true;
  input.isRaw = false;
  input.setRawMode = (mode: boolean) => {
    input.isRaw = mode;
    return input;
  };
  const output = new (class extends Writable {
    readonly isTTY = true;
    get columns() {
      return term.columns();
    }
    get rows() {
      return term.rows();
    }
    override _write(chunk: Buffer, _e: BufferEncoding, done: () => void) {
      term.output.write(chunk, () => done());
    }
  })();
  const source = term.input as TerminalInput & { isRaw?: boolean };
  const wasRaw = Boolean(source.isRaw);
  source.setRawMode?.(true);
  const feed = (data: Buffer | string) => input.write(data);
  const resized = () => output.emit('resize');
  source.on('data', feed);
  source.resume();
  term.output.on('resize', resized);
  return {
    input,
    output,
    release() {
      source.off('data', feed);
      term.output.off('resize', resized);
      source.setRawMode?.(wasRaw);
      source.pause();
      input.end();
    },
  };
}

/** the panes: the services across the top, the rate chart and the lag bars under it, the log, a status line */
function layout(b: Blessed, contrib: Contrib, screen: Widgets.Screen, color: boolean) {
  // blessed takes colour names where its typings say numbers
  const border = (color ? { type: 'line', fg: 'cyan' } : { type: 'line' }) as unknown as Widgets.Border;
  // contrib widgets set themselves up when attached: append them, do not give them a parent
  const table = contrib.table({
    top: 0,
    left: 0,
    width: '100%',
    height: '35%',
    label: ' auto-sync services ',
    border,
    keys: false,
    interactive: true,
    columnSpacing: 2,
    columnWidth: [12],
    fg: color ? 'white' : 'default',
    selectedFg: color ? 'black' : 'default',
    selectedBg: color ? 'cyan' : 'default',
  });
  // without colour the selected row is shown in reverse video
  if (!color) table.rows.style = { ...table.rows.style, selected: { inverse: true }, item: {} };
  const chart = contrib.line({
    top: '35%',
    left: 0,
    width: '60%',
    height: '35%',
    label: ' transfer rate ',
    border,
    showLegend: false,
    minY: 0,
    numYLabels: 4,
    xPadding: 3,
    xLabelPadding: 3,
    style: { line: color ? 'yellow' : 'white', text: color ? 'green' : 'white', baseline: color ? 'black' : 'white' },
  });
  const lag = b.box({ top: '35%', left: '60%', width: '40%', height: '35%', label: ' lag / max-delay ', border, tags: true });
  const logPane = contrib.log({ top: '70%', left: 0, width: '100%', height: '30%-1', label: ' log ', border, tags: true, bufferLength: 200 });
  const status = b.box({ bottom: 0, left: 0, width: '100%', height: 1, tags: true });
  for (const widget of [table, lag, chart, logPane, status]) screen.append(widget);
  return { table, lag, chart, logPane, status };
}

/** `fail` is told of an error in a redraw (which runs later, outside the caller) */
export function openDashboardScreen(term: Terminal, fail: (error: Error) => void): DashboardScreen {
  const contrib = loadedContrib as Contrib;
  const color = term.color;
  const tag = (text: string, c: string) => (color ? `{${c}-fg}${text}{/${c}-fg}` : text);
  const esc = (text: string) => blessed.escape(text);

  const streams = screenStreams(term);
  let screen: Widgets.Screen | null = null;
  let widgets;
  try {
    screen = blessed.screen({
      input: streams.input,
      output: streams.output,
      terminal: terminalName(term),
      smartCSR: true,
      autoPadding: true,
      // the session's terminal speaks UTF-8 (the shell, the chart and the bars assume it), whatever this process's locale says
      forceUnicode: true,
      warnings: false,
      title: 'syncsh dashboard',
    } as unknown as Widgets.IScreenOptions);
    // box lines as UTF-8 characters rather than the VT100 line-drawing set, which UTF-8 terminals render unevenly
    (screen as unknown as { tput: { brokenACS: boolean } }).tput.brokenACS = true;
    widgets = layout(blessed, contrib, screen, color);
  } catch (error) {
    try {
      screen?.destroy();
    } finally {
      streams.release();
    }
    throw error;
  }
  const { table, lag, chart, logPane, status } = widgets;
  const shown: Widgets.Screen = screen;
  let destroyed = false;

  let renderQueued = false;
  const render = () => {
    if (renderQueued || destroyed) return;
    renderQueued = true;
    setImmediate(() => {
      renderQueued = false;
      try {
        if (!destroyed) shown.render();
      } catch (error) {
        fail(error instanceof Error ? error : new Error(String(error)));
      }
    });
  };

  return {
    draw(data, selected, note) {
      const now = Date.parse(data.at);
      const index = data.services.findIndex((s) => s.name === selected);

      // contrib's table pads by the untruncated length: hand it cells that fit
      const fitted = fitTable(
        data.services.map((r) => tableRecord(r, now)),
        Math.max(20, Number(table.width) - 3),
      );
      table.options.columnWidth = fitted.widths;
      table.setData({ headers: fitted.headers, data: fitted.rows.length ? fitted.rows : [["no services yet: 'create auto-sync'"]] });
      // the rows are drawn one column in from the header: line the header up with them
      table.setContent(` ${table.getContent()}`);
      if (index >= 0) table.rows.select(index);

      const lines = lagLines(data.services, selected, Math.max(10, Number(lag.width) - 4));
      lag.setContent(lines.map((l) => `${l.mark} ${esc(l.name)} ${tag(esc(l.bar), TONES[l.tone])}`).join('\n'));

      const series = rateChart(selected, (selected && data.rates[selected]) || [], (iso) => new Date(iso).toTimeString().slice(0, 5));
      chart.setLabel(series.label);
      chart.options.maxY = series.maxY;
      chart.setData([{ title: selected ?? '-', x: series.x, y: series.y }]);

      const keys = `${tag('↑/↓', 'cyan')} select  ${tag('r', 'cyan')} run now  ${tag('q', 'cyan')} quit`;
      const time = new Date(now).toTimeString().slice(0, 8);
      status.setContent(`${` ${keys}  ${esc(truncate(note, Math.max(0, Number(shown.width) - 50)))}`.padEnd(10)}{|}${time} `);
      render();
    },
    showLog(name) {
      logPane.logLines = [];
      logPane.setItems([]);
      logPane.setLabel(name ? ` log of :${name} ` : ' log ');
      render();
      return Math.max(5, Number(logPane.height) - 2);
    },
    log(line) {
      const tone = { failure: 'red', warning: 'yellow', plain: null }[toneOf(line)];
      logPane.log(tone ? tag(esc(line), tone) : esc(line));
      render();
    },
    onKey(keys, then) {
      shown.key(keys, () => then());
    },
    onResize(then) {
      shown.on('resize', () => {
        // the chart's canvas is sized when attached: size it again
        chart.emit('attach');
        then();
      });
    },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        shown.destroy();
      } finally {
        streams.release();
      }
    },
  };
}

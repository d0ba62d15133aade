/**
 * `show auto-sync dashboard`: every service at a glance, redrawn every
 * second on the session's own terminal (blessed and blessed-contrib on the
 * Terminal's streams, never the process's): a table of services (state,
 * role, status, last run, lag), a bar per service for its lag against
 * max-delay, a line chart of the selected service's recent transfer rates,
 * and its log, followed. Up/down (or k/j) select, r runs the selected
 * service now, q or Ctrl-C quits back to the prompt.
 *
 * The figures come from one pure function (dashboardData) over what the
 * service layer returns, so they can be checked without a screen. Without a
 * terminal, or with --json, the figures are printed once.
 */
import { PassThrough, Writable } from 'node:stream';
import { blessed, contrib as loadedContrib, type Blessed } from './blessed.js';
import type { Widgets } from 'blessed';
import { healthOf, type Health } from '../services/auto-sync/status.js';
import type { ServiceView } from '../services/auto-sync/index.js';
import type { Role, ServiceState } from '../services/auto-sync/model.js';
import type { Progress } from '../services/auto-sync/run.js';
import type { HistoryEntry } from '../services/history.js';
import type { Services } from '../services/index.js';
import { fitWidths, renderTable, truncate } from './render.js';
import { toneOf } from './log-tone.js';
import type { Column } from '../commands/grammar/types.js';
import type { Terminal, TerminalInput } from './terminal.js';

// ---------------------------------------------------------------------------
// The figures (pure)

export interface DashboardRow {
  name: string;
  state: ServiceState;
  role: Role;
  health: Health;
  lastRunAt: string | null;
  lastResult: 'success' | 'failure' | null;
  /** seconds since the last successful sync; null: never */
  lagSeconds: number | null;
  /** seconds; 0 = off */
  maxDelay: number;
  /** how much of max-delay has passed since the last success (or since creation): 1 = due; null with max-delay off */
  lagRatio: number | null;
  /** the transfer in flight */
  transfer: { bytes: number; rate: number } | null;
}

export interface RatePoint {
  /** when the transfer ended (or the live sample's time) */
  at: string;
  bytesPerSec: number;
  /** the transfer in flight */
  live: boolean;
}

export interface DashboardData {
  at: string;
  services: DashboardRow[];
  /** per service, oldest first */
  rates: Record<string, RatePoint[]>;
}

export interface DashboardInput {
  views: ServiceView[];
  /** both trails of each service, newest first (AutoSyncService.histories) */
  histories: Record<string, HistoryEntry[]>;
  progress: Record<string, Progress | null>;
}

/** the transfers of one service as rate points, oldest first: the sending side's trail, or the receiving side's when this appliance only receives */
export function ratePoints(entries: HistoryEntry[], progress: Progress | null, limit = 20): RatePoint[] {
  const sent = entries.filter((e) => e.direction === 'send');
  const trail = (sent.length ? sent : entries).filter((e) => e.result === 'success' && e.bytes > 0);
  const points = trail
    .map((e) => ({ at: e.endedAt, bytesPerSec: e.rateBytesPerSec, live: false }))
    .sort((a, b) => a.at.localeCompare(b.at))
    .slice(-limit);
  if (progress) points.push({ at: progress.updatedAt, bytesPerSec: progress.rate, live: true });
  return points;
}

export function dashboardData(input: DashboardInput, now: number): DashboardData {
  const services = input.views.map((v): DashboardRow => {
    const c = v.config;
    const health = healthOf(c, v.run, now);
    const since = v.run.lastSuccessAt ? Date.parse(v.run.lastSuccessAt) : Date.parse(c.createdAt);
    const progress = input.progress[c.name] ?? null;
    return {
      name: c.name,
      state: v.state,
      role: c.role,
      health: health.health,
      lastRunAt: v.run.lastRunAt,
      lastResult: v.run.lastResult,
      lagSeconds: health.lagSeconds,
      maxDelay: c.maxDelay,
      lagRatio: c.maxDelay > 0 ? Math.max(0, (now - since) / 1000 / c.maxDelay) : null,
      transfer: progress ? { bytes: progress.bytes, rate: progress.rate } : null,
    };
  });
  const rates = Object.fromEntries(input.views.map((v) => [v.config.name, ratePoints(input.histories[v.config.name] ?? [], input.progress[v.config.name] ?? null)]));
  return { at: new Date(now).toISOString(), services, rates };
}

/** reads what the dashboard shows from the service layer; a service that vanishes meanwhile is left out */
export function gatherDashboard(services: Services, now = Date.now()): DashboardData {
  const views = services.autoSync.list();
  const histories: Record<string, HistoryEntry[]> = {};
  const progress: Record<string, Progress | null> = {};
  for (const v of views) {
    try {
      histories[v.config.name] = services.autoSync.histories(v.config.name, 20);
      progress[v.config.name] = services.autoSync.progress(v.config.name);
    } catch {
      histories[v.config.name] = [];
      progress[v.config.name] = null;
    }
  }
  return dashboardData({ views, histories, progress }, now);
}

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

export function formatRate(bytesPerSec: number): string {
  const { unit, divisor } = rateUnit(bytesPerSec);
  const v = bytesPerSec / divisor;
  return `${v >= 100 || divisor === 1 ? Math.round(v) : v.toFixed(1)} ${unit}`;
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

// ---------------------------------------------------------------------------
// Without a screen: the figures once

function printOnce(data: DashboardData, json: boolean, width: number, print: (lines: string[]) => void): void {
  if (json) {
    print([JSON.stringify(data, null, 2)]);
    return;
  }
  if (!data.services.length) {
    print(["No auto-sync services. Create one with 'create auto-sync'."]);
    return;
  }
  const now = Date.parse(data.at);
  const columns: Column[] = [...TABLE_COLUMNS, { key: 'bar', header: 'LAG / MAX-DELAY', drop: 4 }];
  const rows = data.services.map((r) => ({ ...tableRecord(r, now), bar: lagBar(r, 30) }));
  print(renderTable(columns, rows, { width, color: false }));
}

// ---------------------------------------------------------------------------
// The screen (blessed)

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


export interface DashboardOptions {
  /** ends the dashboard (the command was cancelled) */
  signal: AbortSignal;
  /** seconds between redraws; default 1 */
  refreshSeconds?: number;
  /** told of each command the dashboard runs (r), as its command line */
  record?(line: string): void;
  /** the figures; default: gatherDashboard */
  gather?: (now: number) => DashboardData;
}

/** what the dashboard holds while it runs, for tests */
export interface DashboardHandle {
  done: Promise<void>;
  selected(): string | null;
  screen: Widgets.Screen;
}

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
function layout(blessed: Blessed, contrib: Contrib, screen: Widgets.Screen, color: boolean) {
  // blessed takes colour names where its typings say numbers
  const border = (color ? { type: 'line', fg: 'cyan' } : { type: 'line' }) as unknown as Widgets.Border;
  // contrib widgets set themselves up when attached: append them, do not give them a parent
  const table = contrib.table({
    top: 0, left: 0, width: '100%', height: '35%', label: ' auto-sync services ', border,
    keys: false, interactive: true, columnSpacing: 2, columnWidth: [12],
    fg: color ? 'white' : 'default', selectedFg: color ? 'black' : 'default', selectedBg: color ? 'cyan' : 'default',
  });
  // without colour the selected row is shown in reverse video
  if (!color) table.rows.style = { ...table.rows.style, selected: { inverse: true }, item: {} };
  const chart = contrib.line({
    top: '35%', left: 0, width: '60%', height: '35%', label: ' transfer rate ', border,
    showLegend: false, minY: 0, numYLabels: 4, xPadding: 3, xLabelPadding: 3,
    style: { line: color ? 'yellow' : 'white', text: color ? 'green' : 'white', baseline: color ? 'black' : 'white' },
  });
  const lag = blessed.box({ top: '35%', left: '60%', width: '40%', height: '35%', label: ' lag / max-delay ', border, tags: true });
  const logPane = contrib.log({ top: '70%', left: 0, width: '100%', height: '30%-1', label: ' log ', border, tags: true, bufferLength: 200 });
  const status = blessed.box({ bottom: 0, left: 0, width: '100%', height: 1, tags: true });
  for (const widget of [table, lag, chart, logPane, status]) screen.append(widget);
  return { table, lag, chart, logPane, status };
}

export function startDashboard(services: Services, term: Terminal, opts: DashboardOptions): DashboardHandle {
  const contrib = loadedContrib as Contrib;
  const gather = opts.gather ?? ((now: number) => gatherDashboard(services, now));
  const color = term.color;
  const tag = (text: string, c: string) => (color ? `{${c}-fg}${text}{/${c}-fg}` : text);
  const esc = (text: string) => blessed.escape(text);
  const TONES: Record<Tone, string> = { good: 'green', due: 'yellow', late: 'red', off: 'white' };

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

  let data: DashboardData = { at: new Date().toISOString(), services: [], rates: {} };
  let selected: string | null = null;
  let note = '';
  let following: AbortController | null = null;
  let ended = false;
  let finish: (error?: Error) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = (error) => (error ? reject(error) : resolve());
  });

  let renderQueued = false;
  const render = () => {
    if (renderQueued || ended) return;
    renderQueued = true;
    setImmediate(
      guard(() => {
        renderQueued = false;
        if (!ended) shown.render();
      }),
    );
  };

  const logLine = (line: string) => {
    const tone = { failure: 'red', warning: 'yellow', plain: null }[toneOf(line)];
    logPane.log(tone ? tag(esc(line), tone) : esc(line));
    render();
  };

  const follow = (name: string | null) => {
    following?.abort();
    following = null;
    logPane.logLines = [];
    logPane.setItems([]);
    logPane.setLabel(name ? ` log of :${name} ` : ' log ');
    if (!name) return;
    const abort = new AbortController();
    following = abort;
    try {
      const log = services.autoSync.log(name);
      for (const line of log.tail(Math.max(5, Number(logPane.height) - 2))) logLine(line);
      (async () => {
        for await (const line of log.follow(abort.signal)) if (!abort.signal.aborted) logLine(line);
      })().catch((error: unknown) => logLine(`[ERROR: the log of :${name} cannot be followed: ${(error as Error).message} ]`));
    } catch (error) {
      logLine(`[ERROR: ${(error as Error).message} ]`);
    }
  };

  const draw = () => {
    const now = Date.parse(data.at);
    const names = data.services.map((s) => s.name);
    if (selected === null || !names.includes(selected)) {
      const next = names[0] ?? null;
      if (next !== selected) {
        selected = next;
        follow(selected);
      }
    }
    const index = selected === null ? -1 : names.indexOf(selected);

    // contrib's table pads by the untruncated length: hand it cells that fit
    const fitted = fitTable(data.services.map((r) => tableRecord(r, now)), Math.max(20, Number(table.width) - 3));
    table.options.columnWidth = fitted.widths;
    table.setData({ headers: fitted.headers, data: fitted.rows.length ? fitted.rows : [["no services yet: 'create auto-sync'"]] });
    // the rows are drawn one column in from the header: line the header up with them
    table.setContent(` ${table.getContent()}`);
    if (index >= 0) table.rows.select(index);

    const inner = Math.max(10, Number(lag.width) - 4);
    const nameWidth = Math.min(Math.max(4, ...names.map((n) => n.length)), Math.floor(inner / 2));
    lag.setContent(
      data.services
        .map((r) => {
          const mark = r.name === selected ? '>' : ' ';
          const bar = lagBar(r, inner - nameWidth - 3);
          return `${mark} ${esc(truncate(r.name, nameWidth).padEnd(nameWidth))} ${tag(esc(bar), TONES[lagTone(r)])}`;
        })
        .join('\n'),
    );

    const points = (selected && data.rates[selected]) || [];
    const { unit, divisor } = rateUnit(Math.max(0, ...points.map((p) => p.bytesPerSec)));
    let y = points.length ? points.map((p) => Number((p.bytesPerSec / divisor).toFixed(2))) : [0];
    let x = points.length ? points.map((p) => (p.live ? 'now' : new Date(p.at).toTimeString().slice(0, 5))) : ['-'];
    if (y.length === 1) {
      // one transfer is no line: draw it flat so its rate shows
      y = [y[0], y[0]];
      x = [' ', x[0]];
    }
    chart.setLabel(!selected ? ' transfer rate ' : points.length ? ` transfer rate of :${selected}, ${unit} ` : ` transfer rate of :${selected}: no transfers yet `);
    chart.options.maxY = Math.max(1, Math.ceil(Math.max(...y) * 1.2));
    chart.setData([{ title: selected ?? '-', x, y }]);

    const keys = `${tag('↑/↓', 'cyan')} select  ${tag('r', 'cyan')} run now  ${tag('q', 'cyan')} quit`;
    const time = new Date(now).toTimeString().slice(0, 8);
    status.setContent(` ${keys}  ${esc(truncate(note, Math.max(0, Number(shown.width) - 50)))}`.padEnd(10) + `{|}${time} `);
    render();
  };

  const refresh = () => {
    if (ended) return;
    try {
      data = gather(Date.now());
    } catch (error) {
      note = `Cannot read the services: ${(error as Error).message}`;
    }
    draw();
  };

  const move = (delta: number) => {
    const names = data.services.map((s) => s.name);
    if (!names.length) return;
    const at = Math.max(0, names.indexOf(selected ?? ''));
    const next = names[Math.min(names.length - 1, Math.max(0, at + delta))];
    if (next !== selected) {
      selected = next;
      follow(selected);
      draw();
    }
  };

  const runSelected = () => {
    const name = selected;
    if (!name) return;
    opts.record?.(`run auto-sync :${name} # from the dashboard`);
    note = `running :${name}…`;
    logLine(`[syncsh: running auto-sync:${name} now ]`);
    services.autoSync.run(name, { signal: opts.signal }).then(
      (r) => {
        note = `:${name} ${r.full ? 'full' : 'incremental'} sync OK`;
        if (!ended) logLine(`[syncsh: auto-sync:${name}: ${r.full ? 'full' : 'incremental'} sync OK, ${r.bytes} bytes in ${(r.durationMs / 1000).toFixed(1)} sec ]`);
        guard(refresh)();
      },
      (error: unknown) => {
        note = `:${name} failed`;
        if (!ended) logLine(`[ERROR: run auto-sync :${name}: ${(error as Error).message} ]`);
        guard(refresh)();
      },
    );
    refresh();
  };

  /** back to the prompt; with an error, the command fails with it */
  const quit = (error?: Error) => {
    if (ended) return;
    ended = true;
    clearInterval(timer);
    following?.abort();
    opts.signal.removeEventListener('abort', onAbort);
    term.input.off('end', onAbort);
    try {
      shown.destroy();
    } finally {
      streams.release();
      finish(error);
    }
  };
  const onAbort = () => quit();
  /** a key or timer handler whose error ends the dashboard, not the process */
  const guard = (fn: () => void) => () => {
    try {
      fn();
    } catch (error) {
      quit(error instanceof Error ? error : new Error(String(error)));
    }
  };

  shown.key(['up', 'k'], guard(() => move(-1)));
  shown.key(['down', 'j'], guard(() => move(1)));
  shown.key(['r'], guard(runSelected));
  shown.key(['q', 'Q', 'C-c', 'escape'], () => quit());
  shown.on(
    'resize',
    guard(() => {
      // the chart's canvas is sized when attached: size it again
      chart.emit('attach');
      draw();
    }),
  );
  opts.signal.addEventListener('abort', onAbort);
  term.input.once('end', onAbort);

  const timer = setInterval(guard(refresh), (opts.refreshSeconds ?? 1) * 1000);
  guard(refresh)();
  return { done, selected: () => selected, screen: shown };
}

/** The command's output: the live screen for a person, the figures once otherwise. */
export async function showDashboard(
  services: Services,
  term: Terminal,
  opts: { json: boolean; signal: AbortSignal; print(lines: string[]): void; record?(line: string): void },
): Promise<void> {
  if (!term.interactive || opts.json) {
    printOnce(gatherDashboard(services), opts.json, term.columns(), opts.print);
    return;
  }
  if (opts.signal.aborted) return;
  await startDashboard(services, term, { signal: opts.signal, record: opts.record }).done;
}

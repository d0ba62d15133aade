/**
 * The dashboard: its figures (a pure function of what the service layer
 * returns) and their text, the figures printed once without a terminal, the
 * controller's keys and timer on a screen of the test's own, and the live
 * screen on a fake terminal (a small VT100) with a real appliance: select,
 * run now, resize, quit, and no handler left on the process.
 */
import test from 'ava';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { EMPTY_RUN_STATE, type AutoSyncConfig, type RunState } from '../../src/services/auto-sync/model.js';
import type { ServiceView } from '../../src/services/auto-sync/index.js';
import type { HistoryEntry } from '../../src/services/history.js';
import { ShellSession } from '../../src/shell/session.js';
import { createDialogs } from '../../src/shell/dialogs.js';
import type { Terminal } from '../../src/shell/terminal.js';
import { dashboardData, dashboardSource, gatherDashboard, type DashboardRow } from '../../src/services/auto-sync/dashboard-data.js';
import { figuresOnce, fitTable, formatDuration, keepSelected, lagBar, lagLines, lagTone, moveSelected, rateChart, rateUnit, tableRecord } from '../../src/shell/dashboard-figures.js';
import type { DashboardScreen } from '../../src/shell/dashboard-screen.js';
import type { DashboardData, DashboardSource } from '../../src/services/auto-sync/dashboard-data.js';
import { startDashboard } from '../../src/shell/dashboard-controller.js';
import { keepOffTheProcess } from '../../src/shell/blessed.js';
import { makeAppliance } from '../helpers/appliance.js';
import { fakeTerminal, KEY } from './fake-terminal.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const ago = (seconds: number) => new Date(NOW - seconds * 1000).toISOString();

function view(name: string, config: Partial<AutoSyncConfig> = {}, run: Partial<RunState> = {}, state: ServiceView['state'] = 'online'): ServiceView {
  return {
    config: {
      name,
      source: { host: 'localhost', dataset: `fs:tank/${name}` },
      destination: { host: 'localhost', dataset: `fs:tank/${name}-copy` },
      direction: 'local-to-local',
      schedule: { type: 'hour', period: 1 },
      keepSrc: 3,
      keepDst: 3,
      recursive: true,
      reverseCapable: false,
      maxDelay: 0,
      comment: '',
      force: false,
      enabled: true,
      role: 'master',
      epoch: 1,
      maintenance: null,
      createdAt: ago(86400),
      ...config,
    },
    state,
    run: { ...EMPTY_RUN_STATE, ...run },
    status: 'up',
    runningSince: null,
  };
}

function entry(direction: 'send' | 'receive', endedSecondsAgo: number, rate: number, result: HistoryEntry['result'] = 'success'): HistoryEntry {
  return { direction, service: 'a', peer: 'localhost', startedAt: ago(endedSecondsAgo + 5), endedAt: ago(endedSecondsAgo), result, bytes: rate * 5, rateBytesPerSec: rate, snapshot: 'm', error: null };
}

test('the figures: lag against max-delay, health, the transfer in flight, and recent rates oldest first', (t) => {
  const data = dashboardData(
    {
      views: [
        view('a', { maxDelay: 3600 }, { lastRunAt: ago(1800), lastSuccessAt: ago(1800), lastResult: 'success' }),
        view('b', { maxDelay: 600 }, { lastRunAt: ago(60), lastSuccessAt: ago(900), lastResult: 'failure', lastError: 'no space', consecutiveFailures: 1 }),
        view('c', { maxDelay: 0 }, {}, 'running'),
      ],
      histories: {
        // newest first, as AutoSyncService.histories returns them; a local service has both trails
        a: [entry('receive', 1800, 2000), entry('send', 1800, 2000), entry('send', 3600, 1000, 'failure'), entry('send', 5400, 3000)],
        b: [entry('receive', 900, 500)],
        c: [],
      },
      progress: { a: null, b: null, c: { pid: 1, startedAt: ago(10), updatedAt: ago(1), bytes: 5 << 20, rate: 1 << 20 } },
    },
    NOW,
  );
  const [a, b, c] = data.services;
  t.is(a.health, 'up');
  t.is(a.lagSeconds, 1800);
  t.is(a.lagRatio, 0.5);
  t.is(lagTone(a), 'good');
  t.is(b.health, 'failure');
  t.is(b.lagRatio, 1.5);
  t.is(lagTone(b), 'late');
  t.is(c.health, 'never');
  t.is(c.lagRatio, null, 'no max-delay, no ratio');
  t.is(lagTone(c), 'off');
  t.deepEqual(c.transfer, { bytes: 5 << 20, rate: 1 << 20 });

  // the sending side's successes only, oldest first
  t.deepEqual(
    data.rates.a.map((p) => p.bytesPerSec),
    [3000, 2000],
  );
  // an appliance that only receives charts what it received
  t.deepEqual(
    data.rates.b.map((p) => p.bytesPerSec),
    [500],
  );
  // the transfer in flight is the last point
  t.deepEqual(data.rates.c, [{ at: ago(1), bytesPerSec: 1 << 20, live: true }]);
  t.is(data.at, new Date(NOW).toISOString());
});

test('a service never synced counts its lag against max-delay from its creation', (t) => {
  const [row] = dashboardData({ views: [view('a', { maxDelay: 3600, createdAt: ago(2700) })], histories: {}, progress: {} }, NOW).services;
  t.is(row.lagSeconds, null);
  t.is(row.lagRatio, 0.75);
  t.is(lagTone(row), 'due');
});

test('durations, bars and units read at a glance', (t) => {
  t.is(formatDuration(null), '-');
  t.is(formatDuration(42), '42s');
  t.is(formatDuration(302), '5m 02s');
  t.is(formatDuration(3 * 3600 + 7 * 60), '3h 07m');
  t.is(formatDuration(2 * 86400 + 4 * 3600), '2d 04h');
  const row = { lagRatio: 0.62, maxDelay: 3600, lagSeconds: 2232 } as DashboardRow;
  t.is(lagBar(row, 30), '[█████████░░░░░] 62% of 1h 00m');
  t.is(lagBar({ ...row, lagRatio: 2 }, 30), '[█████████████] 200% of 1h 00m', 'a late service fills its bar');
  t.is(lagBar({ ...row, lagRatio: null, maxDelay: 0 }, 40), '37m 12s (no max-delay)');
  t.deepEqual(rateUnit(512), { unit: 'B/s', divisor: 1 });
  t.deepEqual(rateUnit(3 << 20), { unit: 'MiB/s', divisor: 1 << 20 });
});

test('the table fits its width: the name shrinks, then LAG, ROLE and LAST RUN are left out', (t) => {
  const records = [tableRecord(dashboardData({ views: [view('tank-projects-archive-000', {}, { lastRunAt: ago(65), lastSuccessAt: ago(65) })], histories: {}, progress: {} }, NOW).services[0], NOW)];
  const wide = fitTable(records, 100);
  t.deepEqual(wide.headers, ['NAME', 'STATE', 'ROLE', 'STATUS', 'LAST RUN', 'LAG']);
  t.deepEqual(wide.rows[0], ['tank-projects-archive-000', 'online', 'master', 'up', '1m 05s ago', '1m 05s']);
  const narrow = fitTable(records, 44);
  t.deepEqual(narrow.headers, ['NAME', 'STATE', 'STATUS', 'LAST RUN']);
  t.true(narrow.widths.reduce((a, b) => a + b + 1, 0) <= 44);
  t.regex(narrow.rows[0][0], /^tank-projects-.*…$/);
  t.deepEqual(fitTable(records, 30).headers, ['NAME', 'STATE', 'STATUS']);
});

const selections: [string, string[], string | null, number, string | null][] = [
  ['stays while it is there', ['a', 'b', 'c'], 'b', 0, 'b'],
  ['down one', ['a', 'b', 'c'], 'b', 1, 'c'],
  ['stops at the last', ['a', 'b', 'c'], 'c', 1, 'c'],
  ['stops at the first', ['a', 'b', 'c'], 'a', -1, 'a'],
  ['from a vanished one, from the top', ['a', 'b', 'c'], 'x', 1, 'b'],
  ['nothing to select', [], 'a', 1, null],
];
for (const [what, names, selected, delta, expected] of selections) {
  test(`the selection: ${what}`, (t) => {
    t.is(delta === 0 ? keepSelected(names, selected) : moveSelected(names, selected, delta), expected);
  });
}

test('the selection falls to the first service when the selected one goes, or none', (t) => {
  t.is(keepSelected(['a', 'b'], 'x'), 'a');
  t.is(keepSelected(['a', 'b'], null), 'a');
  t.is(keepSelected([], 'a'), null);
});

test('the lag pane: the selected service marked, names padded to the longest (at most half the width), a bar each', (t) => {
  const rows = [
    { name: 'a', lagRatio: 0.5, maxDelay: 3600, lagSeconds: 1800, health: 'up' },
    { name: 'a-much-longer-name', lagRatio: null, maxDelay: 0, lagSeconds: 60, health: 'up' },
  ] as DashboardRow[];
  const lines = lagLines(rows, 'a', 30);
  t.deepEqual(
    lines.map((l) => [l.mark, l.name, l.tone]),
    [
      ['>', 'a'.padEnd(15), 'good'],
      [' ', 'a-much-longer-…', 'off'],
    ],
  );
  t.is(lines[0].bar, lagBar(rows[0], 12));
  t.is(lines[1].bar, '1m 00s (no …');
});

const clock = (iso: string) => iso.slice(11, 16);
const charts: [string, string | null, { at: string; bytesPerSec: number; live: boolean }[], { label: string; x: string[]; y: number[]; maxY: number }][] = [
  ['nothing selected', null, [], { label: ' transfer rate ', x: [' ', '-'], y: [0, 0], maxY: 1 }],
  ['no transfers yet', 'a', [], { label: ' transfer rate of :a: no transfers yet ', x: [' ', '-'], y: [0, 0], maxY: 1 }],
  ['one transfer is drawn flat', 'a', [{ at: '2026-11-21T11:00:00Z', bytesPerSec: 2048, live: false }], { label: ' transfer rate of :a, KiB/s ', x: [' ', '11:00'], y: [2, 2], maxY: 3 }],
  [
    'in the unit of the largest, the live one as now',
    'a',
    [
      { at: '2026-11-21T11:00:00Z', bytesPerSec: 1 << 20, live: false },
      { at: '2026-11-21T11:30:00Z', bytesPerSec: 3 << 20, live: true },
    ],
    { label: ' transfer rate of :a, MiB/s ', x: ['11:00', 'now'], y: [1, 3], maxY: 4 },
  ],
];
for (const [what, selected, points, expected] of charts) {
  test(`the rate chart: ${what}`, (t) => {
    t.deepEqual(rateChart(selected, points, clock), expected);
  });
}

test('printed once with no services, it says how to make one', (t) => {
  t.deepEqual(figuresOnce({ at: new Date(NOW).toISOString(), services: [], rates: {} }, 80), ["No auto-sync services. Create one with 'create auto-sync'."]);
});

/** a screen of the test's own: what was drawn and logged, and its keys to press */
function recordingScreen() {
  const keys = new Map<string, () => void>();
  const drawn: { selected: string | null; note: string; names: string[] }[] = [];
  const logged: string[] = [];
  let destroyed = 0;
  let onDraw: () => void = () => undefined;
  const screen: DashboardScreen = {
    draw(data, selected, note) {
      drawn.push({ selected, note, names: data.services.map((s) => s.name) });
      onDraw();
    },
    showLog(name) {
      logged.push(`-- log of ${name}`);
      return 5;
    },
    log: (line) => logged.push(line),
    onKey(names, then) {
      for (const n of names) keys.set(n, then);
    },
    onResize: () => undefined,
    destroy: () => void destroyed++,
  };
  return {
    factory: () => screen,
    press: (key: string) => keys.get(key)!(),
    drawn,
    logged,
    destroyed: () => destroyed,
    /** resolves at the next draw that satisfies `ok` */
    nextDraw: (ok: (d: (typeof drawn)[number]) => boolean) =>
      new Promise<void>((resolve) => {
        onDraw = () => {
          if (ok(drawn[drawn.length - 1])) resolve();
        };
      }),
  };
}

/** a source of two services whose runs the test settles */
function scriptedSource() {
  const data: DashboardData = {
    at: new Date(NOW).toISOString(),
    services: dashboardData({ views: [view('a'), view('b')], histories: {}, progress: {} }, NOW).services,
    rates: { a: [], b: [] },
  };
  const runs: { name: string; signal: AbortSignal; settle: (ok: boolean) => void }[] = [];
  let samples = 0;
  const source: DashboardSource = {
    sample: () => {
      samples++;
      return data;
    },
    runNow: (name, signal) =>
      new Promise((resolve, reject) => {
        runs.push({ name, signal, settle: (ok) => (ok ? resolve({ marker: 'm', full: false, bytes: 42, durationMs: 1500 }) : reject(new Error('no space left'))) });
      }),
    runLine: (name) => `run auto-sync :${name} # from the dashboard`,
    log: (name) => ({ tail: () => [`${name}: the last line`], follow: async function* () {} }),
  };
  return { source, runs, samples: () => samples };
}

test('the controller: it samples, selects, follows the selected log, runs it now, and quits', async (t) => {
  const s = recordingScreen();
  const { source, runs } = scriptedSource();
  const f = fakeTerminal();
  const abort = new AbortController();
  const recorded: string[] = [];
  const dashboard = startDashboard(source, f.term, { signal: abort.signal, screen: s.factory, record: (l) => recorded.push(l), refreshSeconds: 3600 });
  t.deepEqual(s.drawn[0], { selected: 'a', note: '', names: ['a', 'b'] });
  t.deepEqual(s.logged, ['-- log of a', 'a: the last line']);

  s.press('down');
  t.is(dashboard.selected(), 'b');
  t.deepEqual(s.logged.slice(-2), ['-- log of b', 'b: the last line']);
  s.press('j');
  t.is(dashboard.selected(), 'b', 'the last stays selected');

  s.press('r');
  t.deepEqual(recorded, ['run auto-sync :b # from the dashboard']);
  t.is(runs[0].name, 'b');
  t.is(runs[0].signal, abort.signal, "the run is cancelled with the dashboard's command");
  t.regex(s.drawn[s.drawn.length - 1].note, /running :b/);
  const succeeded = s.nextDraw((d) => /:b incremental sync OK/.test(d.note));
  runs[0].settle(true);
  await succeeded;
  t.regex(s.logged[s.logged.length - 1], /\[syncsh: auto-sync:b: incremental sync OK, 42 bytes in 1\.5 sec \]/);

  s.press('up');
  s.press('r');
  const failed = s.nextDraw((d) => d.note === ':a failed');
  runs[1].settle(false);
  await failed;
  t.is(s.logged[s.logged.length - 1], '[ERROR: run auto-sync :a: no space left ]');

  s.press('q');
  await dashboard.done;
  t.is(s.destroyed(), 1);
});

test('the controller redraws on its timer, and an error in a key ends the dashboard with it', async (t) => {
  const s = recordingScreen();
  const { source, samples } = scriptedSource();
  const f = fakeTerminal();
  const dashboard = startDashboard(source, f.term, { signal: new AbortController().signal, screen: s.factory, refreshSeconds: 0.05 });
  await s.nextDraw(() => samples() >= 3);
  source.runNow = () => {
    throw new Error('the run could not start');
  };
  s.press('r');
  await t.throwsAsync(dashboard.done, { message: 'the run could not start' });
  t.is(s.destroyed(), 1);
});

/** an appliance with two services, one of them run once */
async function appliance(t: Parameters<typeof makeAppliance>[0]) {
  const a = makeAppliance(t, 'node1');
  const { services } = a;
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/a');
  await services.folders.create('fs:tank/b');
  await services.autoSync.create({ fromFs: 'fs:tank/a', toFs: 'fs:tank/a-copy', maxDelay: 3600 });
  await services.autoSync.create({ fromFs: 'fs:tank/b', toFs: 'fs:tank/b-copy' });
  await services.autoSync.run('tank-a-000');
  return a;
}

test('gathered from a real appliance', async (t) => {
  const { services } = await appliance(t);
  const data = gatherDashboard(services.autoSync);
  t.deepEqual(
    data.services.map((s) => [s.name, s.health, s.state]),
    [
      ['tank-a-000', 'up', 'online'],
      ['tank-b-000', 'never', 'online'],
    ],
  );
  t.is(data.rates['tank-a-000'].length, 1);
  t.deepEqual(data.rates['tank-b-000'], []);
});

test('without a terminal the command prints the figures once, as a table or as JSON', async (t) => {
  const { services } = await appliance(t);
  const f = fakeTerminal({ interactive: false, columns: 120 });
  const session = new ShellSession(services, f.term, createDialogs(f.term));
  t.is((await session.execute('show auto-sync dashboard')).code, 0);
  t.regex(f.screen.text(), /NAME +STATE +ROLE +STATUS +LAST RUN +LAG +LAG \/ MAX-DELAY\ntank-a-000 +online +master +up +\d+s ago +\d+s +\[░+\] 0% of 1h 00m\ntank-b-000 +online +master +never +never +- +- \(no max-delay\)/);
  const g = fakeTerminal({ interactive: false });
  t.is((await new ShellSession(services, g.term, createDialogs(g.term), { json: true }).execute('show auto-sync dashboard')).code, 0);
  const json = JSON.parse(g.written());
  t.deepEqual(
    json.services.map((s: DashboardRow) => s.name),
    ['tank-a-000', 'tank-b-000'],
  );
});

/** the fake terminal, with a size that can change as a window's does */
function resizable(columns: number, rows: number) {
  const f = fakeTerminal({ columns, rows });
  const size = { columns, rows };
  const term: Terminal = { ...f.term, columns: () => size.columns, rows: () => size.rows };
  return {
    f,
    term,
    resize(c: number, r: number) {
      size.columns = c;
      size.rows = r;
      f.term.output.emit('resize');
    },
  };
}

test.serial('the live screen: services, lag, rates and the log; select, run now, resize, quit', async (t) => {
  const { services } = await appliance(t);
  const { f, term, resize } = resizable(100, 30);
  const listenersBefore = term.input.listenerCount('data');
  const processEvents = ['uncaughtException', 'SIGTERM', 'SIGINT', 'SIGQUIT', 'exit'] as const;
  const processListeners = () => processEvents.map((e) => `${e}:${process.listenerCount(e)}`);
  // as serve does at start-up: one session's screen must not install handlers for the whole process
  keepOffTheProcess();
  const handlersBefore = processListeners();
  const recorded: string[] = [];
  const dashboard = startDashboard(dashboardSource(services.autoSync), term, { signal: new AbortController().signal, refreshSeconds: 0.2, record: (l) => recorded.push(l) });
  let screen = await f.waitFor(/auto-sync services[\s\S]*tank-a-000 +online +master +up[\s\S]*tank-b-000 +online +master +never/);
  t.regex(screen, /transfer rate of :tank-a-000, (B|KiB)\/s/);
  t.regex(screen, /> tank-a-000 \[░+\] 0% of 1h 00m/);
  t.regex(screen, /log of :tank-a-000[\s\S]*\[SUCCESS: localhost\/tank\/a => localhost\/tank\/a-copy OK/);
  t.regex(screen, /↑\/↓ select +r run now +q quit +\d\d:\d\d:\d\d *$/);
  t.true(f.raw.mode);
  t.deepEqual(processListeners(), handlersBefore, 'no handler on the process while the screen is up');

  f.type(KEY.down);
  await f.waitFor(/log of :tank-b-000[\s\S]*\[Created auto-sync:tank-b-000/);
  t.is(dashboard.selected(), 'tank-b-000');
  f.type('r');
  screen = await f.waitFor(/\[syncsh: auto-sync:tank-b-000: full sync OK, \d+ bytes in [\d.]+ sec \]/);
  await f.waitFor(/tank-b-000 +online +master +up/);
  t.deepEqual(recorded, ['run auto-sync :tank-b-000 # from the dashboard']);

  // a smaller window: everything is laid out again within it
  resize(80, 24);
  screen = await f.waitFor((text) => {
    const lines = text.split('\n');
    return lines[0].endsWith('┐') && lines[0].length === 80 && /q quit/.test(lines[23] ?? '');
  });
  t.regex(screen, /tank-b-000/);

  f.type('q');
  await dashboard.done;
  t.false(f.raw.mode, 'raw mode is off again');
  t.is(term.input.listenerCount('data'), listenersBefore, "blessed's listeners are gone with it");
  t.deepEqual(processListeners(), handlersBefore);
});

test.serial('Ctrl-C quits, and so does the command being cancelled', async (t) => {
  const { services } = await appliance(t);
  const f = fakeTerminal();
  const first = startDashboard(dashboardSource(services.autoSync), f.term, { signal: new AbortController().signal });
  await f.waitFor(/tank-a-000/);
  f.type(KEY.ctrlC);
  await first.done;

  const g = fakeTerminal();
  const abort = new AbortController();
  const second = startDashboard(dashboardSource(services.autoSync), g.term, { signal: abort.signal });
  await g.waitFor(/tank-a-000/);
  abort.abort();
  await second.done;
  t.pass();
});

test.serial('a run that fails shows its error in the log pane', async (t) => {
  const { services, home } = await appliance(t);
  // the source folder is gone from under the service
  rmSync(path.join(home, 'fs', 'tank', 'a'), { recursive: true, force: true });
  const f = fakeTerminal({ columns: 120, rows: 30 });
  const dashboard = startDashboard(dashboardSource(services.autoSync), f.term, { signal: new AbortController().signal });
  await f.waitFor(/tank-a-000/);
  f.type('r');
  await f.waitFor(/\[ERROR: run auto-sync :tank-a-000: .+/);
  f.type('q');
  await dashboard.done;
  t.pass();
});

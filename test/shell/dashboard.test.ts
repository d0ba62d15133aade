/**
 * The dashboard: its figures (a pure function of what the service layer
 * returns), the figures printed once without a terminal, and the live
 * screen on a fake terminal (a small VT100) with a real appliance: select,
 * run now, resize, quit.
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
import {
  dashboardData,
  fitTable,
  formatDuration,
  gatherDashboard,
  lagBar,
  lagTone,
  rateUnit,
  startDashboard,
  tableRecord,
  type DashboardRow,
} from '../../src/shell/dashboard.js';
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
  t.deepEqual(data.rates.a.map((p) => p.bytesPerSec), [3000, 2000]);
  // an appliance that only receives charts what it received
  t.deepEqual(data.rates.b.map((p) => p.bytesPerSec), [500]);
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
  const data = gatherDashboard(services);
  t.deepEqual(data.services.map((s) => [s.name, s.health, s.state]), [
    ['tank-a-000', 'up', 'online'],
    ['tank-b-000', 'never', 'online'],
  ]);
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
  t.deepEqual(json.services.map((s: DashboardRow) => s.name), ['tank-a-000', 'tank-b-000']);
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
  const recorded: string[] = [];
  const dashboard = startDashboard(services, term, { signal: new AbortController().signal, refreshSeconds: 0.2, record: (l) => recorded.push(l) });
  let screen = await f.waitFor(/auto-sync services[\s\S]*tank-a-000 +online +master +up[\s\S]*tank-b-000 +online +master +never/);
  t.regex(screen, /transfer rate of :tank-a-000, (B|KiB)\/s/);
  t.regex(screen, /> tank-a-000 \[░+\] 0% of 1h 00m/);
  t.regex(screen, /log of :tank-a-000[\s\S]*\[SUCCESS: localhost\/tank\/a => localhost\/tank\/a-copy OK/);
  t.regex(screen, /↑\/↓ select +r run now +q quit +\d\d:\d\d:\d\d *$/);
  t.true(f.raw.mode);

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
});

test.serial('Ctrl-C quits, and so does the command being cancelled', async (t) => {
  const { services } = await appliance(t);
  const f = fakeTerminal();
  const first = startDashboard(services, f.term, { signal: new AbortController().signal });
  await f.waitFor(/tank-a-000/);
  f.type(KEY.ctrlC);
  await first.done;

  const g = fakeTerminal();
  const abort = new AbortController();
  const second = startDashboard(services, g.term, { signal: abort.signal });
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
  const dashboard = startDashboard(services, f.term, { signal: new AbortController().signal });
  await f.waitFor(/tank-a-000/);
  f.type('r');
  await f.waitFor(/\[ERROR: run auto-sync :tank-a-000: .+/);
  f.type('q');
  await dashboard.done;
  t.pass();
});

/**
 * The dashboard's keys and timer: it asks the command's source for the
 * figures every refresh, keeps the selection, follows the selected
 * service's log, and on r runs it now. Up/down (or k/j) select, q, Escape or
 * Ctrl-C quit back to the prompt, and so does the command being cancelled or
 * the terminal's input ending. An error in a key, a timer or a redraw ends
 * the dashboard (the command fails with it), not the session.
 */
import type { DashboardData, DashboardSource } from '../services/auto-sync/dashboard-data.js';
import { keepSelected, moveSelected } from './dashboard-figures.js';
import { openDashboardScreen, type DashboardScreen } from './dashboard-screen.js';
import type { Terminal } from './terminal.js';

export interface DashboardOptions {
  /** ends the dashboard (the command was cancelled) */
  signal: AbortSignal;
  /** seconds between redraws; default 1 */
  refreshSeconds?: number;
  /** told of each command the dashboard runs (r), as its command line */
  record?(line: string): void;
  /** the screen; default: blessed on the terminal */
  screen?: (term: Terminal, fail: (error: Error) => void) => DashboardScreen;
}

/** what the dashboard holds while it runs, for tests */
export interface DashboardHandle {
  done: Promise<void>;
  selected(): string | null;
}

export function startDashboard(source: DashboardSource, term: Terminal, opts: DashboardOptions): DashboardHandle {
  let data: DashboardData = { at: new Date().toISOString(), services: [], rates: {} };
  let selected: string | null = null;
  let note = '';
  let following: AbortController | null = null;
  let ended = false;
  let finish: (error?: Error) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = (error) => (error ? reject(error) : resolve());
  });

  /** back to the prompt; with an error, the command fails with it */
  const quit = (error?: Error) => {
    if (ended) return;
    ended = true;
    clearInterval(timer);
    following?.abort();
    opts.signal.removeEventListener('abort', onAbort);
    term.input.off('end', onAbort);
    try {
      screen.destroy();
    } finally {
      finish(error);
    }
  };
  const onAbort = () => quit();
  /** a key or timer handler whose error ends the dashboard, not the session */
  const guard = (fn: () => void) => () => {
    if (ended) return;
    try {
      fn();
    } catch (error) {
      quit(error instanceof Error ? error : new Error(String(error)));
    }
  };

  const screen = (opts.screen ?? openDashboardScreen)(term, (error) => quit(error));
  const logLine = (line: string) => {
    if (!ended) screen.log(line);
  };

  const follow = (name: string | null) => {
    following?.abort();
    following = null;
    const lines = screen.showLog(name);
    if (!name) return;
    const abort = new AbortController();
    following = abort;
    try {
      const log = source.log(name);
      for (const line of log.tail(lines)) logLine(line);
      (async () => {
        for await (const line of log.follow(abort.signal)) if (!abort.signal.aborted) logLine(line);
      })().catch((error: unknown) => logLine(`[ERROR: the log of :${name} cannot be followed: ${(error as Error).message} ]`));
    } catch (error) {
      logLine(`[ERROR: ${(error as Error).message} ]`);
    }
  };

  const draw = () => {
    const next = keepSelected(
      data.services.map((s) => s.name),
      selected,
    );
    if (next !== selected) {
      selected = next;
      follow(selected);
    }
    screen.draw(data, selected, note);
  };

  const refresh = () => {
    try {
      data = source.sample(Date.now());
    } catch (error) {
      note = `Cannot read the services: ${(error as Error).message}`;
    }
    draw();
  };

  const move = (delta: number) => {
    const next = moveSelected(
      data.services.map((s) => s.name),
      selected,
      delta,
    );
    if (next !== selected) {
      selected = next;
      follow(selected);
      draw();
    }
  };

  const runSelected = () => {
    const name = selected;
    if (!name) return;
    opts.record?.(source.runLine(name));
    note = `running :${name}…`;
    logLine(`[syncsh: running auto-sync:${name} now ]`);
    source.runNow(name, opts.signal).then(
      (r) => {
        note = `:${name} ${r.full ? 'full' : 'incremental'} sync OK`;
        logLine(`[syncsh: auto-sync:${name}: ${r.full ? 'full' : 'incremental'} sync OK, ${r.bytes} bytes in ${(r.durationMs / 1000).toFixed(1)} sec ]`);
        guard(refresh)();
      },
      (error: unknown) => {
        note = `:${name} failed`;
        logLine(`[ERROR: run auto-sync :${name}: ${(error as Error).message} ]`);
        guard(refresh)();
      },
    );
    refresh();
  };

  screen.onKey(
    ['up', 'k'],
    guard(() => move(-1)),
  );
  screen.onKey(
    ['down', 'j'],
    guard(() => move(1)),
  );
  screen.onKey(['r'], guard(runSelected));
  screen.onKey(['q', 'Q', 'C-c', 'escape'], () => quit());
  screen.onResize(guard(draw));
  opts.signal.addEventListener('abort', onAbort);
  term.input.once('end', onAbort);

  const timer = setInterval(guard(refresh), (opts.refreshSeconds ?? 1) * 1000);
  guard(refresh)();
  return { done, selected: () => selected };
}

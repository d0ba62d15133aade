/**
 * `show auto-sync dashboard`: every service at a glance. The command returns
 * a DashboardSource (the figures at a time, a run now, a service's log);
 * here the shell decides how it looks: for a person, the live screen,
 * redrawn every second (dashboard-controller.ts: keys and timer;
 * dashboard-screen.ts: blessed on the session's own terminal); without a
 * terminal, or with --json, the figures once (dashboard-figures.ts).
 */
import type { DashboardSource } from '../services/auto-sync/dashboard-data.js';
import { figuresOnce } from './dashboard-figures.js';
import { startDashboard } from './dashboard-controller.js';
import type { Terminal } from './terminal.js';

export async function showDashboard(source: DashboardSource, term: Terminal, opts: { json: boolean; signal: AbortSignal; print(lines: string[]): void; record?(line: string): void }): Promise<void> {
  if (!term.interactive || opts.json) {
    const data = source.sample(Date.now());
    opts.print(opts.json ? [JSON.stringify(data, null, 2)] : figuresOnce(data, term.columns()));
    return;
  }
  if (opts.signal.aborted) return;
  await startDashboard(source, term, { signal: opts.signal, record: opts.record }).done;
}

/**
 * What `show auto-sync dashboard` shows, as data: every service's state,
 * health, lag against max-delay and the transfer in flight, and each one's
 * recent transfer rates. `dashboardData` is a pure function of what the
 * service layer returns; `dashboardSource` is what the command hands the
 * shell: the figures at a time, a run started now, a service's log. The
 * shell decides how it looks and when to ask again.
 */
import { healthOf, type Health } from './status.js';
import type { AutoSyncService, ServiceView } from './index.js';
import type { Role, ServiceState } from './model.js';
import type { Progress, RunResult } from './run.js';
import type { HistoryEntry } from '../history.js';

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
export function gatherDashboard(autoSync: AutoSyncService, now = Date.now()): DashboardData {
  const views = autoSync.list();
  const histories: Record<string, HistoryEntry[]> = {};
  const progress: Record<string, Progress | null> = {};
  for (const v of views) {
    try {
      histories[v.config.name] = autoSync.histories(v.config.name, 20);
      progress[v.config.name] = autoSync.progress(v.config.name);
    } catch {
      histories[v.config.name] = [];
      progress[v.config.name] = null;
    }
  }
  return dashboardData({ views, histories, progress }, now);
}

/** a service's log as a live view reads it */
export interface FollowedLog {
  tail(lines: number): string[];
  follow(signal: AbortSignal): AsyncIterable<string>;
}

/** what the dashboard command hands the shell */
export interface DashboardSource {
  /** every service's figures at `now` (ms since the epoch) */
  sample(now: number): DashboardData;
  /** runs a service now, as `run auto-sync :NAME` does */
  runNow(name: string, signal: AbortSignal): Promise<RunResult>;
  /** the command line a run from the dashboard stands for (the console audits it) */
  runLine(name: string): string;
  log(name: string): FollowedLog;
}

export function dashboardSource(autoSync: AutoSyncService): DashboardSource {
  return {
    sample: (now) => gatherDashboard(autoSync, now),
    runNow: (name, signal) => autoSync.run(name, { signal }),
    runLine: (name) => `run auto-sync :${name} # from the dashboard`,
    log: (name) => autoSync.log(name),
  };
}

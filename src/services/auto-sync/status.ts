/**
 * How a service is doing, as `show auto-sync :NAME status`, the alerts and
 * the metrics all tell it: one computation, so they never disagree.
 */
import type { AutoSyncConfig, RunState } from './model.js';
import { stamp } from '../service-log.js';
import { describeMaintenance } from './maintenance.js';

export type Health = 'up' | 'warn' | 'maintenance' | 'failure' | 'never';

export interface HealthReport {
  health: Health;
  /** one sentence for people */
  message: string;
  /** seconds since the last successful sync (null: never) */
  lagSeconds: number | null;
}

export function healthOf(config: AutoSyncConfig, run: RunState, now: number): HealthReport {
  const last = run.lastSuccessAt ? Date.parse(run.lastSuccessAt) : null;
  const lagSeconds = last === null ? null : Math.max(0, Math.round((now - last) / 1000));
  const since = last === null ? Date.parse(config.createdAt) : last;
  const late = config.maxDelay > 0 && (now - since) / 1000 > config.maxDelay;
  if (config.maintenance) return { health: 'maintenance', message: `Maintenance: ${describeMaintenance(config.maintenance)}`, lagSeconds };
  if (run.lastResult === 'failure') {
    const tries = run.consecutiveFailures > 1 ? ` (${run.consecutiveFailures} failures in a row)` : '';
    return { health: 'failure', message: `Last run failed${tries}: ${run.lastError ?? 'unknown error'}`, lagSeconds };
  }
  if (late) {
    const what = last === null ? `Never synced since it was created on ${stamp(new Date(since))}` : `Last sync on ${stamp(new Date(last))}`;
    return { health: 'warn', message: `${what}, older than ${config.maxDelay} seconds (max-delay)`, lagSeconds };
  }
  if (last === null) return { health: 'never', message: 'Never synced yet.', lagSeconds };
  return { health: 'up', message: `Last sync on ${stamp(new Date(last))} OK`, lagSeconds };
}

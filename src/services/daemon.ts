/**
 * `syncsh daemon`: runs every enabled master service on its schedule, one
 * run per service at a time, retries failures with backoff, ends transfers
 * that stall, alerts when a service turns warn, failure or maintenance, and
 * picks up configuration changes without a restart. Time comes from a Clock
 * so tests drive a minute schedule without waiting minutes.
 */
import { watch, type FSWatcher } from 'node:fs';
import { systemClock, sleepUntil, isAbortError, type Clock } from './clock.js';
import { nextRun } from './schedule.js';
import { AlertTracker, runAlertCommand, type ServiceHealth } from './alerts.js';
import { healthOf } from './auto-sync/status.js';
import { ServiceLog } from './service-log.js';
import { LockBusyError } from './lock.js';
import { parseDataset } from './datasets.js';
import type { Services } from './index.js';
import { EMPTY_RUN_STATE, type AutoSyncConfig, type RunState } from './auto-sync/model.js';

export interface RetryPolicy {
  /** retries after a failure before waiting for the next scheduled time */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export interface DaemonOptions {
  clock?: Clock;
  retry?: RetryPolicy;
  /** a transfer that sends nothing for this long is ended and retried */
  stallMs?: number;
  /** runs at once, across services */
  concurrency?: number;
  /** the appliance's alert command (argv), run with each alert */
  alertCommand?: string[] | null;
  /** the daemon's own log lines */
  say?: (line: string) => void;
  /** longest sleep between looks at the configuration (ms, real time) */
  maxIdleMs?: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseMs: 30_000, maxMs: 30 * 60_000 };
export const DEFAULT_STALL_MS = 10 * 60_000;

export class StallError extends Error {
  constructor(seconds: number) {
    super(`Stalled: no progress for ${seconds} second${seconds === 1 ? '' : 's'}; the transfer was ended and will be retried.`);
    this.name = 'StallError';
  }
}

/** when a service should run next: a retry after failures, else its schedule */
export function dueAt(config: AutoSyncConfig, run: RunState, now: number, retry: RetryPolicy): number | null {
  const last = run.lastRunAt ? Date.parse(run.lastRunAt) : null;
  // A cron service that never ran counts its matches from its creation (see nextRun).
  const created = Date.parse(config.createdAt);
  const since = Number.isNaN(created) ? null : created;
  if (run.lastResult === 'failure' && last !== null && run.consecutiveFailures <= retry.attempts) {
    const backoff = Math.min(retry.maxMs, retry.baseMs * 2 ** Math.max(0, run.consecutiveFailures - 1));
    const scheduled = nextRun(config.schedule, now, last, since);
    return Math.min(last + backoff, scheduled ?? Infinity);
  }
  return nextRun(config.schedule, now, last, since);
}

function eligible(config: AutoSyncConfig): boolean {
  return config.enabled && config.role === 'master' && !config.maintenance;
}

export class Daemon {
  private readonly clock: Clock;
  private readonly retry: RetryPolicy;
  private readonly stallMs: number;
  private readonly concurrency: number;
  private readonly running = new Map<string, Promise<void>>();
  private readonly alerts: AlertTracker;
  private wake = new AbortController();
  /** when the epoch rule last looked at each reverse-capable service (contactInBackground) */
  private readonly lastLook = new Map<string, number>();
  private watcher: FSWatcher | null = null;

  constructor(
    private readonly services: Services,
    private readonly opts: DaemonOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.stallMs = opts.stallMs ?? DEFAULT_STALL_MS;
    this.concurrency = opts.concurrency ?? 4;
    this.alerts = new AlertTracker({ appliance: services.appliance.id, clock: this.clock });
  }

  private say(line: string): void {
    this.opts.say?.(line);
  }

  /** Runs until the signal aborts; then ends the runs in flight (each leaves its destination as it was) and returns. */
  async run(signal: AbortSignal): Promise<void> {
    await this.recover();
    this.watchConfig();
    this.say(`daemon started on appliance ${this.services.appliance.id} with ${this.services.autoSync.names().length} service(s)`);
    try {
      while (!signal.aborted) {
        const next = this.tick(signal);
        await this.checkHealth();
        const wake = AbortSignal.any([signal, this.wake.signal]);
        const until = Math.min(next, this.clock.now() + (this.opts.maxIdleMs ?? 60_000));
        try {
          await sleepUntil(this.clock, until, wake);
        } catch (error) {
          if (!isAbortError(error)) throw error;
        }
        if (this.wake.signal.aborted) this.wake = new AbortController();
      }
    } finally {
      this.watcher?.close();
      await Promise.allSettled(this.running.values());
      this.say('daemon stopped');
    }
  }

  /** Start what is due; returns when to look again. */
  tick(signal: AbortSignal): number {
    const now = this.clock.now();
    let next = Infinity;
    const states = this.services.autoSync.store.runStates();
    for (const config of this.services.autoSync.store.list()) {
      // the epoch rule (auto-sync/contact.ts): a demoted old master learns it here even with no run due
      if (!this.running.has(config.name)) this.contactInBackground(config, now);
      if (!eligible(config) || this.running.has(config.name)) continue;
      const due = dueAt(config, states[config.name] ?? { ...EMPTY_RUN_STATE }, now, this.retry);
      if (due === null) continue;
      if (due > now) {
        next = Math.min(next, due);
        continue;
      }
      if (this.running.size >= this.concurrency) {
        next = now; // look again as soon as a slot frees (a run's end wakes the loop)
        continue;
      }
      this.start(config.name, signal);
    }
    return next;
  }

  /** the epoch rule for the tick: at most one look per reverse-capable service per `everyMs`, in the background */
  private contactInBackground(config: AutoSyncConfig, now: number, everyMs = 30_000): void {
    if (!config.reverseCapable || config.direction === 'local-to-local') return;
    if (now - (this.lastLook.get(config.name) ?? 0) < everyMs) return;
    this.lastLook.set(config.name, now);
    void this.services.autoSync.contact(config.name).catch(() => undefined);
  }

  private start(name: string, signal: AbortSignal): void {
    const abort = new AbortController();
    const onStop = () => abort.abort(new Error('The daemon is stopping.'));
    signal.addEventListener('abort', onStop, { once: true });
    let lastProgressAt = Date.now();
    // Real time, not the clock's: a stall is the transfer's, not the schedule's.
    const watchdog = setInterval(
      () => {
        if (Date.now() - lastProgressAt > this.stallMs) abort.abort(new StallError(Math.round(this.stallMs / 1000)));
      },
      Math.max(50, Math.min(5_000, this.stallMs / 4)),
    );
    watchdog.unref();
    const log = ServiceLog.forService(this.services.home.logs, name);
    const done = this.services.autoSync
      .run(name, { signal: abort.signal, now: () => this.clock.now(), onProgress: () => (lastProgressAt = Date.now()) })
      .then(
        (r) => this.say(`auto-sync:${name}: ${r.full ? 'full' : 'incremental'} sync OK, ${r.bytes} bytes`),
        (error: Error) => {
          if (error instanceof LockBusyError) return this.say(`auto-sync:${name}: skipped, ${error.message}`);
          if (abort.signal.reason instanceof StallError) log.write(`STALLED: auto-sync:${name}: ${abort.signal.reason.message}`);
          this.say(`auto-sync:${name}: ${error.message}`);
        },
      )
      .finally(() => {
        clearInterval(watchdog);
        signal.removeEventListener('abort', onStop);
        this.running.delete(name);
        this.wake.abort();
      });
    this.running.set(name, done);
  }

  /** alert on a change into warn, failure or maintenance, and on recovery */
  async checkHealth(): Promise<void> {
    const now = this.clock.now();
    for (const view of this.services.autoSync.list()) {
      if (view.config.role !== 'master') continue;
      const report = healthOf(view.config, view.run, now);
      const health: ServiceHealth = report.health === 'never' ? 'up' : report.health;
      const alert = this.alerts.observe(view.config.name, health, report.message);
      if (!alert) continue;
      const log = ServiceLog.forService(this.services.home.logs, view.config.name);
      log.write(alert.level === 'recovered' ? `RECOVERED: auto-sync:${alert.service}: ${alert.message}` : `ALERT (${alert.level}): auto-sync:${alert.service}: ${alert.message}`);
      if (this.opts.alertCommand?.length) {
        const result = await runAlertCommand(this.opts.alertCommand, alert);
        if (!result.ok) log.write(`WARNING: the alert command failed: ${result.error}`);
      }
    }
  }

  /** Whatever a crash left: half-finished receives are finished or cleaned by the driver; stale locks are taken over on use. */
  async recover(): Promise<void> {
    const store = this.services.autoSync.store;
    const states = store.runStates();
    for (const config of store.list()) {
      if (states[config.name]?.inFlight) await this.services.autoSync.recoverInterrupted(config.name, this.clock.now());
      // both ends that are here: a run cut short leaves a half receive on the destination, a half snapshot on the source
      for (const end of [config.source, config.destination]) {
        if (end.host !== 'localhost') continue;
        try {
          const ref = parseDataset(end.dataset);
          const driver = await this.services.storage.usable(ref.driver);
          if (!(await driver.getDataset(ref.name))) continue;
          const done = await driver.recover(ref.name);
          const log = ServiceLog.forService(this.services.home.logs, config.name);
          for (const line of done) log.write(`Recovered after a crash: ${line}`);
        } catch (error) {
          this.say(`auto-sync:${config.name}: recovery of ${end.dataset} failed: ${(error as Error).message}`);
        }
      }
    }
  }

  /** a change to services.json wakes the loop: new, changed and removed services take effect at once */
  private watchConfig(): void {
    try {
      this.watcher = watch(this.services.home.config, { persistent: false }, (_event, file) => {
        if (file === 'services.json' || file === 'state.json') this.wake.abort();
      });
    } catch {
      this.watcher = null; // the loop still looks at least every maxIdleMs
    }
  }
}

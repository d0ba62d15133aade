/**
 * Alerts: deciding when a service's health change is worth telling the
 * operator (AlertTracker), and telling them by running the command they
 * configured (runAlertCommand). A failing alert command is reported, never
 * fatal: the daemon carries on replicating.
 */
import { runProgram } from './run-program.js';
import { systemClock, type Clock } from './clock.js';

export type AlertLevel = 'warn' | 'maintenance' | 'failure' | 'recovered';

export interface Alert {
  service: string;
  level: AlertLevel;
  message: string;
  /** ISO 8601 */
  at: string;
  /** the appliance raising it */
  appliance: string;
}

export interface AlertCommandResult {
  ok: boolean;
  /** a sentence saying what went wrong, when ok is false */
  error?: string;
}

export const DEFAULT_ALERT_TIMEOUT_MS = 10_000;

/**
 * Run the operator's alert command as `command... SERVICE LEVEL MESSAGE`,
 * with the alert as one line of JSON on stdin. Never throws. On timeout
 * (default 10 s) its whole process group is stopped (run-program.ts).
 */
export async function runAlertCommand(command: string[], alert: Alert, opts: { timeoutMs?: number } = {}): Promise<AlertCommandResult> {
  if (!command[0]) return { ok: false, error: 'No alert command is set: the command is empty.' };
  const result = await runProgram([...command, alert.service, alert.level, alert.message], {
    what: 'alert command',
    timeoutMs: opts.timeoutMs ?? DEFAULT_ALERT_TIMEOUT_MS,
    input: `${JSON.stringify(alert)}\n`,
    shown: command.join(' '), // as configured, without the alert's arguments
  });
  return result.ok ? { ok: true } : { ok: false, error: result.error };
}

/** A service's health as the tracker sees it. */
export type ServiceHealth = 'up' | 'warn' | 'maintenance' | 'failure';

export interface AlertTrackerOptions {
  /** the appliance id put into every alert */
  appliance: string;
  clock?: Clock;
  /** health already known (e.g. from before a restart), so it is not alerted again */
  initial?: Record<string, ServiceHealth>;
}

/**
 * Decides when to alert. It remembers each service's last health and emits
 * an alert only when a service moves into warn, maintenance or failure from
 * any other health, and 'recovered' when it moves from one of those back to
 * up. The same health observed again, even with a new message, is silent.
 * A service never seen before counts as up.
 */
export class AlertTracker {
  private readonly last = new Map<string, ServiceHealth>();
  private readonly appliance: string;
  private readonly clock: Clock;

  constructor(opts: AlertTrackerOptions) {
    this.appliance = opts.appliance;
    this.clock = opts.clock ?? systemClock;
    for (const [service, health] of Object.entries(opts.initial ?? {})) this.last.set(service, health);
  }

  /** Record the service's health now; returns the alert to send, or null. */
  observe(service: string, health: ServiceHealth, message: string): Alert | null {
    const before = this.last.get(service) ?? 'up';
    this.last.set(service, health);
    if (health === before) return null;
    const level: AlertLevel = health === 'up' ? 'recovered' : health;
    return { service, level, message, at: new Date(this.clock.now()).toISOString(), appliance: this.appliance };
  }

  healthOf(service: string): ServiceHealth | undefined {
    return this.last.get(service);
  }

  /** Drop a service (destroyed or renamed), so a later one by that name starts afresh. */
  forget(service: string): void {
    this.last.delete(service);
  }
}

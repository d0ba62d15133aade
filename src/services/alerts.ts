/**
 * Alerts: deciding when a service's health change is worth telling the
 * operator (AlertTracker), and telling them by running the command they
 * configured (runAlertCommand). A failing alert command is reported, never
 * fatal: the daemon carries on replicating.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
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
/** after SIGTERM on timeout, how long the command has to exit before SIGKILL */
const KILL_GRACE_MS = 1_000;
/** how much of the command's stderr is quoted in the error */
const STDERR_QUOTE_CHARS = 300;

/**
 * execa hands any file-descriptor number straight to spawn, but its types
 * list only 0-9, so present ours as one of those.
 */
const fileDescriptor = (fd: number) => fd as 3;

/** the last non-empty line the command wrote to stderr, shortened */
function lastStderrLine(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return '';
  }
  const line = text.split('\n').map((l) => l.trim()).filter(Boolean).at(-1) ?? '';
  return line.length > STDERR_QUOTE_CHARS ? `…${line.slice(-STDERR_QUOTE_CHARS)}` : line;
}

/**
 * Run the operator's alert command as `command... SERVICE LEVEL MESSAGE`,
 * with the alert as one line of JSON on stdin. Never throws.
 *
 * The command runs in its own process group, and its stdin and stderr are
 * plain files rather than pipes, so that:
 *  - on timeout (default 10 s) the whole group is stopped (SIGTERM, then
 *    SIGKILL), including anything it started, such as a stuck `curl`;
 *  - a background job it leaves behind (`mail … &`) cannot hold a pipe open
 *    and keep us waiting after the command itself has exited.
 */
export async function runAlertCommand(command: string[], alert: Alert, opts: { timeoutMs?: number } = {}): Promise<AlertCommandResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_ALERT_TIMEOUT_MS;
  const [program, ...args] = command;
  if (!program) return { ok: false, error: 'No alert command is set: the command is empty.' };
  const shown = command.join(' ');
  let dir: string | undefined;
  const fds: number[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-alert-'));
    const inputFile = path.join(dir, 'alert.json');
    const stderrFile = path.join(dir, 'stderr');
    writeFileSync(inputFile, `${JSON.stringify(alert)}\n`);
    const stdin = openSync(inputFile, 'r');
    fds.push(stdin);
    const stderr = openSync(stderrFile, 'w');
    fds.push(stderr);

    const subprocess = execa(program, [...args, alert.service, alert.level, alert.message], {
      stdin: fileDescriptor(stdin),
      stdout: 'ignore',
      stderr: fileDescriptor(stderr),
      detached: true,
      reject: false,
    });
    let timedOut = false;
    const killGroup = (signal: NodeJS.Signals) => {
      if (subprocess.pid === undefined) return;
      try {
        process.kill(-subprocess.pid, signal);
      } catch {
        /* already gone */
      }
    };
    timers.push(
      setTimeout(() => {
        timedOut = true;
        killGroup('SIGTERM');
        timers.push(setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS));
      }, timeoutMs),
    );
    const result = await subprocess;

    if (timedOut) return { ok: false, error: `The alert command "${shown}" did not finish within ${timeoutMs} ms and was stopped.` };
    if (result.exitCode === undefined && result.signal === undefined) {
      // spawn itself failed: no such file, not executable, …
      return { ok: false, error: `The alert command "${shown}" could not be started: ${result.originalMessage || result.shortMessage}.` };
    }
    const said = lastStderrLine(stderrFile);
    const detail = said ? `: ${said}` : '';
    if (result.signal) return { ok: false, error: `The alert command "${shown}" was killed by ${result.signal}${detail}.` };
    if (result.exitCode !== 0) return { ok: false, error: `The alert command "${shown}" exited with code ${result.exitCode}${detail}.` };
    return { ok: true };
  } catch (error) {
    return { ok: false, error: `The alert command "${shown}" could not be run: ${(error as Error).message}.` };
  } finally {
    for (const timer of timers) clearTimeout(timer);
    for (const fd of fds) closeSync(fd);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
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

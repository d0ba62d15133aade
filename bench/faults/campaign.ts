/**
 * The fault campaign (issue 15): randomized trials of each scenario from a
 * seeded PRNG, invariants checked after each, and the table. A scenario sets
 * up its appliances once and runs its trials one after another on them (so
 * leaks and drift add up as in a long-lived appliance); trial k of a run with
 * seed S is replayed by the same seed and --trials k.
 */
import { Fixture } from '../../test/peer/_fixture.js';
import { hangReport, killBelow } from '../../test/helpers/procs.js';

/**
 * A setup or trial that takes longer than this is a hang, not a slow trial
 * (the slowest seen take about a minute): what waits where is logged, the
 * processes it started are killed, and the scenario ends with a violation,
 * so that one wedged scenario (zfs-fuse stuck in the kernel, say) cannot
 * hold a whole run, or CI, until its end.
 */
const HANG_MS = 5 * 60_000;

class Hung extends Error {}

async function beforeHang<T>(work: Promise<T>, what: string, ms: number, log: (line: string) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Hung(`${what} hung: not done after ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([work, hung]);
  } catch (error) {
    if (error instanceof Hung) {
      for (const line of hangReport()) log(line);
      killBelow();
      work.catch(() => undefined); // it may still settle, now that its processes are gone
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** mulberry32: a small seeded PRNG, enough to pick instants and steps */
export function prng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
  };
}

export interface Rng {
  /** in [0, 1) */
  next(): number;
  /** in [min, max] */
  int(min: number, max: number): number;
  pick<T>(xs: readonly T[]): T;
}

export interface TrialOutcome {
  /** what was done, in order, for the replay */
  steps: string[];
  /** broken invariants, as sentences */
  violations: string[];
  /** the next run succeeded without an operator */
  recovered: boolean;
  /** fault to a verified destination again, ms */
  recoveryMs: number | null;
}

export interface ScenarioRun {
  trial(rng: Rng, index: number): Promise<TrialOutcome>;
}

export interface Scenario {
  name: string;
  help: string;
  /** why it cannot run on this machine, or null */
  missing(): Promise<string | null>;
  setup(f: Fixture): Promise<ScenarioRun>;
}

export interface ScenarioResult {
  scenario: string;
  trials: number;
  violations: number;
  recovered: number;
  medianRecoveryMs: number | null;
  skipped?: string;
  /** the first trials with violations, with their steps */
  failures: { trial: number; steps: string[]; violations: string[] }[];
  seconds: number;
}

export interface CampaignOptions {
  trials: number;
  /** stop a scenario's trials once it has run this long (ms), fewer than `trials` then */
  budgetMs?: number;
  seed: number;
  scenarios: Scenario[];
  log?(line: string): void;
  /** a setup, trial or clean-up taking longer is a hang (default 5 min) */
  hangMs?: number;
}

const median = (xs: number[]) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export async function runCampaign(opts: CampaignOptions): Promise<ScenarioResult[]> {
  const log = opts.log ?? (() => undefined);
  const hangMs = opts.hangMs ?? HANG_MS;
  const results: ScenarioResult[] = [];
  for (const scenario of opts.scenarios) {
    const started = Date.now();
    const skipped = await scenario.missing();
    const result: ScenarioResult = { scenario: scenario.name, trials: 0, violations: 0, recovered: 0, medianRecoveryMs: null, failures: [], seconds: 0 };
    if (skipped) {
      results.push({ ...result, skipped });
      log(`${scenario.name}: skipped (${skipped})`);
      continue;
    }
    const rng = prng(opts.seed);
    const times: number[] = [];
    const f = new Fixture();
    // interrupted (Ctrl-C, timeout): the pools, mounts and namespaces of this scenario go first
    const onSignal = (signal: NodeJS.Signals) => void f.close().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const run = await beforeHang(scenario.setup(f), `${scenario.name}: the setup`, hangMs, log);
      for (let i = 1; i <= opts.trials; i++) {
        if (opts.budgetMs !== undefined && i > 1 && Date.now() - started > opts.budgetMs) break;
        let outcome: TrialOutcome;
        try {
          outcome = await beforeHang(run.trial(rng, i), `${scenario.name} #${i}`, hangMs, log);
        } catch (error) {
          const hung = error instanceof Hung;
          outcome = { steps: [hung ? '(the trial hung)' : '(the trial itself failed)'], violations: [hung ? error.message : `the trial failed: ${(error as Error).stack}`], recovered: false, recoveryMs: null };
        }
        result.trials++;
        if (outcome.recovered) result.recovered++;
        if (outcome.recoveryMs !== null) times.push(outcome.recoveryMs);
        if (outcome.violations.length) {
          result.violations += outcome.violations.length;
          if (result.failures.length < 5) result.failures.push({ trial: i, steps: outcome.steps, violations: outcome.violations });
        }
        log(`${scenario.name} #${i}: ${outcome.steps.join('; ')}${outcome.violations.length ? ` => VIOLATION: ${outcome.violations.join(' | ')}` : ''}`);
        // a setup that cannot recover spoils every trial after it
        if (!outcome.recovered && outcome.violations.length) break;
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await beforeHang(f.close(), `${scenario.name}: the clean-up`, hangMs, log).catch((error: Error) => log(error.message));
    }
    result.medianRecoveryMs = median(times);
    result.seconds = (Date.now() - started) / 1000;
    results.push(result);
  }
  return results;
}

export function table(results: ScenarioResult[]): string[] {
  const rows = results.map((r) => [
    r.scenario,
    String(r.trials),
    String(r.violations),
    r.skipped ? `skipped: ${r.skipped}` : `${r.recovered}/${r.trials}`,
    r.medianRecoveryMs === null ? '-' : `${(r.medianRecoveryMs / 1000).toFixed(2)} s`,
    `${r.seconds.toFixed(0)} s`,
  ]);
  const head = ['scenario', 'trials', 'violations', 'recovered without an operator', 'median recovery', 'took'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)];
}

export function summary(results: ScenarioResult[]): string {
  const n = results.reduce((a, r) => a + r.trials, 0);
  const m = results.reduce((a, r) => a + r.violations, 0);
  return `${n} trials, ${m} violations`;
}

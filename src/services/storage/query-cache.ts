/**
 * One spawn per answer within a run. A run asks `zfs list`, `zfs get` and
 * `zpool list` the same questions about the same datasets many times (104
 * commands for one zfs incremental, issue 13); inside `withQueryCache` an
 * answer is reused while it can still be true: no other command has started
 * or ended since it was asked (any of them may change what it says), and it
 * is younger than MAX_AGE_MS. Outside a run nothing is reused.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import path from 'node:path';

export const MAX_AGE_MS = 2_000;

interface Entry {
  at: number;
  generation: number;
  answer: Promise<unknown>;
}

const scope = new AsyncLocalStorage<Map<string, Entry>>();
/** moves whenever a command that is not a query starts or ends */
let generation = 0;

/** the commands whose answers are only read: zfs list/get, zpool list/get; btrfs subvolume show/list, property get, --version */
export function isQuery(file: string, args: readonly string[]): boolean {
  const tool = path.basename(file);
  if (tool === 'btrfs') return args[0] === '--version' || (args[0] === 'subvolume' && (args[1] === 'show' || args[1] === 'list')) || (args[0] === 'property' && args[1] === 'get');
  return (tool === 'zfs' && (args[0] === 'list' || args[0] === 'get')) || (tool === 'zpool' && (args[0] === 'list' || args[0] === 'get'));
}

/** can an answer asked at `entry.at` in `entry.generation` stand for a new question now */
export function reusable(entry: Pick<Entry, 'at' | 'generation'>, now: number, current: number): boolean {
  return entry.generation === current && now >= entry.at && now - entry.at <= MAX_AGE_MS;
}

/** a command other than a query has started or ended */
export function commandChanged(): void {
  generation++;
}

export function withQueryCache<T>(fn: () => Promise<T>): Promise<T> {
  return scope.run(new Map(), fn);
}

/** `ask()` once for this question in this run, while its answer stands (see above) */
export function cachedQuery<T>(kind: string, file: string, args: readonly string[], ask: () => Promise<T>): Promise<T> {
  const answers = scope.getStore();
  if (!answers || !isQuery(file, args)) return ask();
  const key = JSON.stringify([kind, file, ...args]);
  const now = Date.now();
  const known = answers.get(key);
  if (known && reusable(known, now, generation)) return known.answer as Promise<T>;
  for (const [k, e] of answers) if (!reusable(e, now, generation)) answers.delete(k);
  const answer = ask();
  answers.set(key, { at: now, generation, answer });
  answer.catch(() => answers.delete(key));
  return answer;
}

/** per run: the answers runMemo (and runFact) keep, apart from the answers of cachedQuery, which age */
const memosOf = new WeakMap<Map<string, Entry>, Map<string, Promise<unknown>>>();

/**
 * `ask()` once per run for an answer only this process changes (a read-only
 * snapshot's UUIDs and creation): reused whatever ran since, while `keep`
 * says it is of that kind, until `forgetMemo(key)` (the caller changes or
 * removes the thing). Outside a run nothing is kept.
 */
export function runMemo<T>(key: string, ask: () => Promise<T>, keep: (answer: T) => boolean): Promise<T> {
  const answers = scope.getStore();
  if (!answers) return ask();
  let memos = memosOf.get(answers);
  if (!memos) memosOf.set(answers, (memos = new Map()));
  const known = memos.get(key);
  if (known) return known as Promise<T>;
  const answer = ask();
  memos.set(key, answer);
  answer.then(
    (value) => keep(value) || memos.delete(key),
    () => memos.delete(key),
  );
  return answer;
}

/**
 * `ask()` once per run for a fact a run does not undo itself (a pool
 * exists): reused for the whole run, whatever ran since. Only a yes is
 * kept: were the pool gone meanwhile, the next command on it fails and says so.
 */
export function runFact(key: string, ask: () => Promise<boolean>): Promise<boolean> {
  return runMemo(key, ask, (yes) => yes);
}

/** what runMemo kept for `key` no longer stands; with `under`, nor for any key that begins with `key/` */
export function forgetMemo(key: string, under = false): void {
  const answers = scope.getStore();
  const memos = answers && memosOf.get(answers);
  if (!memos) return;
  memos.delete(key);
  if (under) for (const k of [...memos.keys()]) if (k.startsWith(`${key}/`)) memos.delete(k);
}

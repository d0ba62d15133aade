/**
 * A conf-backed configuration file (appliance.json, services.json, …) that
 * opens on first use, so a damaged one breaks only the commands that need
 * it; says which file is damaged, where, and how to recover; and keeps a
 * last good copy beside it (FILE.last-good, written after each successful
 * write). A damaged file is never overwritten: conf reads before it writes.
 */
import Conf, { type Options } from 'conf';
import { copyFileSync, existsSync, readFileSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';

export class ConfigDamagedError extends Error {
  constructor(readonly file: string, message: string) {
    super(message);
    this.name = 'ConfigDamagedError';
  }
}

export const lastGoodOf = (file: string) => `${file}.last-good`;

/** where in `text` a JSON.parse message's "position N" is, as line and column */
function where(text: string, message: string): string {
  if (/end of JSON/.test(message)) return ' at its end';
  const m = /position (\d+)/.exec(message);
  if (!m) return '';
  const before = text.slice(0, Number(m[1]));
  const line = before.split('\n').length;
  return ` at line ${line}, column ${before.length - before.lastIndexOf('\n')}`;
}

/** the sentence for a file conf could not read, or null when `error` is not about its content */
export function damaged(file: string, text: () => string, error: unknown): ConfigDamagedError | null {
  const e = error as Error;
  let what: string;
  if (e?.name === 'SyntaxError') {
    let at = '';
    try {
      at = where(text(), e.message);
    } catch {
      /* the message alone then */
    }
    what = `is not valid JSON${at} (${e.message})`;
  } else if (e?.message?.startsWith('Config schema violation:')) {
    what = `does not hold what it must (${e.message.replace('Config schema violation: ', '').replace(/`/g, '"')})`;
  } else {
    return null;
  }
  const backup = lastGoodOf(file);
  const recover = existsSync(backup)
    ? `The last good copy, from ${statSync(backup).mtime.toISOString()}, is kept beside it: compare them, then copy it over (cp ${backup} ${file}), or repair the file by hand.`
    : `There is no last good copy of it (${backup}): repair it by hand, or move it away to start over without what it held.`;
  return new ConfigDamagedError(file, `The configuration file ${file} is damaged: it ${what}. Nothing was changed. ${recover}`);
}

export class ConfigFile<T extends Record<string, unknown>> {
  readonly file: string;
  private conf: Conf<T> | null = null;

  constructor(private readonly options: Options<T> & { cwd: string; configName: string }) {
    this.file = path.resolve(options.cwd, `${options.configName}.json`);
  }

  get<K extends keyof T>(key: K): T[K] {
    return this.guard(() => this.open().get(key));
  }

  set<K extends keyof T>(key: K, value: T[K]): void {
    this.guard(() => this.open().set(key, value));
    this.keepGood();
  }

  private open(): Conf<T> {
    if (!this.conf) {
      this.conf = new Conf<T>(this.options);
      if (!existsSync(lastGoodOf(this.file))) this.keepGood();
    }
    return this.conf;
  }

  private guard<R>(fn: () => R): R {
    try {
      return fn();
    } catch (error) {
      throw damaged(this.file, () => readFileSync(this.file, 'utf8'), error) ?? error;
    }
  }

  /** copy the file as it is now (just written or read whole) beside it, atomically */
  private keepGood(): void {
    if (!existsSync(this.file)) return;
    const tmp = `${lastGoodOf(this.file)}.tmp-${process.pid}`;
    try {
      copyFileSync(this.file, tmp);
      renameSync(tmp, lastGoodOf(this.file));
    } catch {
      // the copy is a help for recovery, not a condition of the write
    }
  }
}

/**
 * A conf-backed configuration file (appliance.json, services.json, …) that
 * opens on first use, so a damaged one breaks only the commands that need
 * it; says which file is damaged, where, and how to recover; and keeps a
 * last good copy beside it (FILE.last-good, written after each successful
 * write). A damaged file is never overwritten: conf reads before it writes.
 *
 * Reads skip conf (and its schema compiler, most of a `syncsh -c` start)
 * when they can: a file without a schema is plain JSON, and a file that is
 * byte for byte its last good copy is one conf validated when it wrote or
 * read it. Any other file (edited by hand, say) is read and validated by conf.
 */
import type Conf from 'conf';
import type { Options } from 'conf';
import { copyFileSync, existsSync, readFileSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import { conf as confModule } from './lazy.js';

export class ConfigDamagedError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
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
    const known = this.readKnownGood();
    if (known) return (key in known ? known[key] : this.defaultOf(key)) as T[K];
    return this.guard(() => this.open().get(key));
  }

  set<K extends keyof T>(key: K, value: T[K]): void {
    this.guard(() => this.open().set(key, value));
    this.keepGood();
  }

  /** the file's content when it needs no validation (see the top of this file), else null */
  private readKnownGood(): Partial<T> | null {
    let parsed: unknown;
    try {
      const text = readFileSync(this.file);
      if (this.options.schema && !text.equals(readFileSync(lastGoodOf(this.file)))) return null;
      parsed = JSON.parse(text.toString('utf8'));
    } catch {
      return null; // missing, unreadable or not JSON: conf says which
    }
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Partial<T>) : null;
  }

  /** what conf answers for a key the file does not hold: its default, or the schema's */
  private defaultOf<K extends keyof T>(key: K): T[K] | undefined {
    const fromSchema = (this.options.schema as Record<string, { default?: unknown }> | undefined)?.[key as string]?.default;
    return structuredClone((this.options.defaults?.[key] ?? fromSchema) as T[K] | undefined);
  }

  private open(): Conf<T> {
    if (!this.conf) {
      // The schemas are this program's own, not input: checking them against JSON Schema's
      // meta-schema on every open was half of a `syncsh -c` start (bench/cli-start.ts).
      this.conf = new (confModule().default)<T>(this.options.schema ? { ...this.options, ajvOptions: { validateSchema: false, ...this.options.ajvOptions } } : this.options);
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

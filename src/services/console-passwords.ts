/**
 * Console passwords: `$SYNCSH_HOME/console-passwords` (mode 0600), one
 * `user:scrypt$N$r$p$salt$hash` line per operator (see password-hash.ts);
 * blank lines and `#` comments are kept as they are. Written whole to a
 * temporary file and renamed, under a lock, so a reader sees the old file or
 * the new one. `syncsh serve` reads it again on every attempt, as it does
 * authorized_keys, and takes passwords only when password logins are on:
 * `--password-auth yes|no`, or else the setting kept in console.json (read
 * afresh at every attempt too).
 *
 * `services.consolePasswords` (ConsolePasswords) is both for one home: what
 * the console commands change and what `syncsh serve` checks logins against.
 */
import { chmodSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Home } from './home.js';
import { withLock } from './lock.js';
import { hashPassword, parseHash, verifyNothing, verifyPassword, type ScryptParams } from './password-hash.js';

export const PASSWORDS_FILE = 'console-passwords';

const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/** null when `user` may have a console password, else the sentence saying why not */
export function userNameProblem(user: string): string | null {
  if (USER.test(user)) return null;
  return `A console user name is 1 to 64 letters, digits, "_", "." or "-", and does not start with "." or "-": not ${JSON.stringify(user)}.`;
}

export const MIN_PASSWORD = 8;
const MAX_PASSWORD = 1024;

/** null when `password` will do, else the sentence saying why not */
export function passwordProblem(password: string): string | null {
  if (!password) return 'The password is empty.';
  if ([...password].length < MIN_PASSWORD) return `The password must have at least ${MIN_PASSWORD} characters.`;
  if (password.length > MAX_PASSWORD) return `The password must have at most ${MAX_PASSWORD} characters.`;
  if (/[\r\n\0]/.test(password)) return 'The password must not hold a line break or a NUL.';
  return null;
}

export type PasswordCheck = { ok: true } | { ok: false; reason: string };

interface Entry {
  user: string;
  hash: string;
  /** 1-based */
  line: number;
}

function entries(text: string): Entry[] {
  const out: Entry[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon > 0) out.push({ user: line.slice(0, colon), hash: line.slice(colon + 1), line: index + 1 });
  });
  return out;
}

export class PasswordFile {
  constructor(
    readonly file: string,
    private readonly lockFile = `${file}.lock`,
  ) {}

  static inHome(home: Home): PasswordFile {
    return new PasswordFile(path.join(home.root, PASSWORDS_FILE), path.join(home.locks, `${PASSWORDS_FILE}.lock`));
  }

  /** the file's text, '' when there is none */
  private read(): string {
    try {
      return readFileSync(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw new Error(`Cannot read the console password file ${this.file}: ${(error as Error).message}`);
    }
  }

  /** the users that have a password, in the file's order */
  users(): string[] {
    return [...new Set(entries(this.read()).map((e) => e.user))];
  }

  has(user: string): boolean {
    return this.users().includes(user);
  }

  /** Sets (or replaces) the user's password; true when the user had one. */
  async set(user: string, password: string, params?: ScryptParams): Promise<boolean> {
    const bad = userNameProblem(user) ?? passwordProblem(password);
    if (bad) throw new Error(bad);
    const hash = await hashPassword(password, params);
    return this.rewrite((lines) => {
      // a user has one line: the first keeps its place, the others go
      const at = lines.findIndex((l) => entryUser(l) === user);
      const kept = lines.filter((l) => entryUser(l) !== user);
      kept.splice(at < 0 ? kept.length : at, 0, `${user}:${hash}`);
      return { lines: kept, result: at >= 0 };
    });
  }

  /** Removes the user's password; false when there was none. */
  async remove(user: string): Promise<boolean> {
    return this.rewrite((lines) => {
      const kept = lines.filter((l) => entryUser(l) !== user);
      return { lines: kept, result: kept.length !== lines.length };
    });
  }

  private async rewrite<T>(change: (lines: string[]) => { lines: string[]; result: T }): Promise<T> {
    return withLock(this.lockFile, 'The console password file', 'changing a console password', () => {
      const text = this.read();
      const lines = text ? text.replace(/\n$/, '').split('\n') : [];
      const { lines: next, result } = change(lines);
      const tmp = `${this.file}.syncsh-${process.pid}`;
      writeFileSync(tmp, next.length ? `${next.join('\n')}\n` : '', { mode: 0o600 });
      chmodSync(tmp, 0o600);
      renameSync(tmp, this.file);
      return result;
    });
  }

  /**
   * Checks a login against the file as it is now. A missing file lets nobody
   * in; so does one that others may read or write (as sshd's StrictModes). A
   * user with no entry takes as long to refuse as a wrong password.
   */
  async check(user: string, password: string): Promise<PasswordCheck> {
    let text: string;
    try {
      const mode = statSync(this.file).mode & 0o777;
      if (mode & 0o077) {
        await verifyNothing(password);
        return { ok: false, reason: `${this.file} may be read or written by others (mode ${mode.toString(8)}); chmod 600 it` };
      }
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      await verifyNothing(password);
      const code = (error as NodeJS.ErrnoException).code;
      return { ok: false, reason: code === 'ENOENT' ? `there is no console password file at ${this.file}` : `${this.file} cannot be read: ${(error as Error).message}` };
    }
    const entry = entries(text).find((e) => e.user === user);
    if (!entry) {
      await verifyNothing(password);
      return { ok: false, reason: `no console password is set for ${JSON.stringify(user)}` };
    }
    let parsed;
    try {
      parsed = parseHash(entry.hash);
    } catch (error) {
      await verifyNothing(password);
      return { ok: false, reason: `the entry on line ${entry.line} of ${this.file} cannot be used: ${(error as Error).message}` };
    }
    return (await verifyPassword(password, parsed)) ? { ok: true } : { ok: false, reason: 'wrong password' };
  }
}

function entryUser(line: string): string | null {
  const t = line.trim();
  if (!t || t.startsWith('#')) return null;
  const colon = t.indexOf(':');
  return colon > 0 ? t.slice(0, colon) : null;
}

// ---- the setting: whether `syncsh serve` takes passwords ----

/** console.json in the home: `{"passwordAuth": true}`; no file means off */
export const SETTINGS_FILE = 'console.json';

/**
 * The setting, read from the file each time (serve asks at every attempt).
 * Reading never writes, so a reader cannot undo a change made meanwhile.
 */
export function passwordAuthSetting(homeRoot: string): boolean {
  return readSettings(homeRoot).passwordAuth === true;
}

/** the settings file's keys ({} when it is missing); a damaged file is named, never taken as empty */
function readSettings(homeRoot: string): Record<string, unknown> {
  const file = path.join(homeRoot, SETTINGS_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new Error(`Cannot read the console settings ${file}: ${(error as Error).message}`);
  }
  const damaged = (why: string) => new Error(`The console settings ${file} are ${why}. Nothing was changed: repair the file, or remove it to start over (it holds the password-auth setting only; off when there is no file).`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw damaged(`not JSON: ${(error as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw damaged('not a JSON object');
  return parsed as Record<string, unknown>;
}

/** Writes the setting whole (a temporary file renamed), keeping any other keys of the file. */
export function setPasswordAuthSetting(homeRoot: string, on: boolean): void {
  const file = path.join(homeRoot, SETTINGS_FILE);
  // a damaged file stops here, as it is: it is not overwritten
  const settings = readSettings(homeRoot);
  settings.passwordAuth = on;
  const tmp = `${file}.syncsh-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(settings, null, '\t')}\n`, { mode: 0o644 });
  renameSync(tmp, file);
}

/** one home's console passwords and its password-auth setting: the service the console commands call */
export class ConsolePasswords extends PasswordFile {
  constructor(private readonly home: Home) {
    super(path.join(home.root, PASSWORDS_FILE), path.join(home.locks, `${PASSWORDS_FILE}.lock`));
  }

  /** whether `syncsh serve` takes passwords, as the settings say now */
  passwordAuth(): boolean {
    return passwordAuthSetting(this.home.root);
  }

  setPasswordAuth(on: boolean): void {
    setPasswordAuthSetting(this.home.root, on);
  }
}

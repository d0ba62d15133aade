/**
 * What a command may make the appliance run, read or write: the local root
 * shell may do anything; the SSH console (syncsh serve) only what the
 * administrator allowed in the console policy, a root-owned file
 * (/etc/syncsh/console-policy.json, or SYNCSH_CONSOLE_POLICY in serve's environment)
 * that nothing typed at the console can change. src/console/README.md tells
 * the model; every command whose value names a program, a file or a home
 * asks `ctx.access` before anything is stored or touched.
 */
import { lstatSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';

export type AccessKind = 'program' | 'read' | 'write' | 'home' | 'btrfs';

/** the directories the console may name, resolved (absolute, symlinks followed) */
export interface ConsolePolicy {
  programs: string[];
  read: string[];
  write: string[];
  homes: string[];
  /** where btrfs datasets (subvolume paths) may be created, received into or destroyed */
  btrfs: string[];
  /** where it came from: the file, or "the defaults (no …)" */
  source: string;
}

export const DEFAULT_POLICY_FILE = '/etc/syncsh/console-policy.json';

/** the defaults when there is no policy file; relative entries are under the appliance home */
export const DEFAULT_POLICY = { programs: ['/etc/syncsh/alert.d'], read: ['files', 'images'], write: ['files', 'images'], homes: [] as string[], btrfs: ['/mnt'] };

const WHAT: Record<AccessKind, { noun: string; key: keyof typeof DEFAULT_POLICY; verb: string }> = {
  program: { noun: 'a program', key: 'programs', verb: 'run' },
  read: { noun: 'a file', key: 'read', verb: 'read' },
  write: { noun: 'a file', key: 'write', verb: 'write' },
  home: { noun: 'an appliance home', key: 'homes', verb: 'use' },
  btrfs: { noun: 'a btrfs dataset', key: 'btrfs', verb: 'name' },
};

/** A refusal: a sentence saying why and which directories are allowed; the console audits it. */
export class AccessRefused extends Error {
  constructor(
    readonly kind: AccessKind | 'setting',
    readonly target: string,
    message: string,
  ) {
    super(message);
    this.name = 'AccessRefused';
  }
}

export interface Access {
  /** 'local': the root shell on the appliance, allowed everything; 'console': syncsh serve */
  readonly who: 'local' | 'console';
  /** each returns the path to use (the console's: resolved), or throws AccessRefused */
  program(file: string): string;
  readFile(file: string): string;
  writeFile(file: string): string;
  home(dir: string): string;
  /** a dataset named in a command (`btrfs:/path`: a path on this machine, or a peer's); other drivers' names stay inside their pools */
  dataset(name: string): void;
  /** a setting only the appliance's own shell may change (what it exposes to the network) */
  localOnly(setting: string): void;
}

/** the local shell: every path as given, made absolute */
export const LOCAL_ACCESS: Access = {
  who: 'local',
  program: (file) => file,
  readFile: (file) => path.resolve(file),
  writeFile: (file) => path.resolve(file),
  home: (dir) => path.resolve(dir),
  dataset: () => undefined,
  localOnly: () => undefined,
};

/**
 * The path as the kernel will find it: the realpath of its longest existing
 * prefix (symlinks and `..` resolved), with the rest appended normalised.
 */
export function resolvePath(file: string, cwd = process.cwd(), depth = 0): string {
  const absolute = path.resolve(cwd, file);
  let prefix = absolute;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(realpathSync(prefix), ...rest);
    } catch {
      // a dangling symlink is followed too: writing through it would create its target
      let target: string | null = null;
      try {
        if (lstatSync(prefix).isSymbolicLink()) target = readlinkSync(prefix);
      } catch {
        /* not there at all */
      }
      if (target !== null && depth < 40) return path.join(resolvePath(target, path.dirname(prefix), depth + 1), ...rest);
      const parent = path.dirname(prefix);
      if (parent === prefix) return absolute;
      rest.unshift(path.basename(prefix));
      prefix = parent;
    }
  }
}

/** `file` (resolved) is `dir` or lies below it */
export function isUnder(file: string, dir: string): boolean {
  const rel = path.relative(dir, file);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/**
 * The decision, pure: may the console name `resolved` (already resolved) as
 * `kind`? A program must lie strictly below an allowed directory; a file or
 * a home at or below one. Returns null when allowed, else why not.
 */
export function refusal(policy: ConsolePolicy, kind: AccessKind, typed: string, resolved: string): string | null {
  const { noun, key, verb } = WHAT[kind];
  const dirs = policy[key];
  if (dirs.some((d) => isUnder(resolved, d) && (kind !== 'program' || resolved !== d))) return null;
  const shown = resolved === typed ? `"${typed}"` : `"${typed}" (which is ${resolved})`;
  const allowed = dirs.length ? `${verb} ${noun} only under ${dirs.join(', ')}` : `${verb} no ${noun.replace(/^an? /, '')} at all`;
  return `Over the console, the appliance may ${allowed} (console policy: ${policy.source}); ${shown} is not there, so nothing was changed. Use the appliance's own shell, or ask its administrator to allow the directory.`;
}

function entries(value: unknown, key: string, file: string, home: string): string[] {
  if (value === undefined) return DEFAULT_POLICY[key as keyof typeof DEFAULT_POLICY].map((d) => resolvePath(d, home));
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || !v)) throw new Error(`The console policy ${file} is not valid: "${key}" must be a list of directories.`);
  return value.map((d: string) => resolvePath(d, home));
}

/**
 * The policy in force for the appliance at `home`: the file (SYNCSH_CONSOLE_POLICY,
 * else /etc/syncsh/console-policy.json), or the defaults when it does not exist. A policy
 * that lets the console write where programs are run from, or write the policy
 * itself, is refused: the console could allow itself anything.
 */
export function loadConsolePolicy(home: string, env: NodeJS.ProcessEnv = process.env): ConsolePolicy {
  const file = env.SYNCSH_CONSOLE_POLICY || DEFAULT_POLICY_FILE;
  let raw: Record<string, unknown> = {};
  let source = file;
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('it is not a JSON object');
    raw = parsed as Record<string, unknown>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`The console policy ${file} cannot be read: ${(error as Error).message}.`);
    source = `the defaults, as there is no ${file}`;
  }
  const unknown = Object.keys(raw).find((k) => !(k in DEFAULT_POLICY));
  if (unknown) throw new Error(`The console policy ${file} is not valid: unknown key "${unknown}" (programs, read, write, homes and btrfs are known).`);
  const policy: ConsolePolicy = {
    programs: entries(raw.programs, 'programs', file, home),
    read: entries(raw.read, 'read', file, home),
    write: entries(raw.write, 'write', file, home),
    homes: entries(raw.homes, 'homes', file, home),
    btrfs: entries(raw.btrfs, 'btrfs', file, home),
    source,
  };
  for (const w of [...policy.write, ...policy.homes, ...policy.btrfs]) {
    const clash = policy.programs.find((p) => isUnder(p, w) || isUnder(w, p)) ?? (isUnder(resolvePath(file), w) ? resolvePath(file) : undefined);
    if (clash) throw new Error(`The console policy ${file} is not valid: the console could write in ${w}, and so change ${clash}; keep programs and the policy out of the writable directories and homes.`);
  }
  // the home holds the console's own authorized_keys and the configuration: only directories inside it
  const own = resolvePath(home);
  const whole = policy.write.find((w) => isUnder(own, w));
  if (whole)
    throw new Error(
      `The console policy ${file} is not valid: the console could write anywhere in ${whole}, which holds this appliance's home (its configuration and the console's own authorized_keys); allow directories inside the home, such as "files".`,
    );
  return policy;
}

/**
 * The console's access: each check reads the policy again (an administrator's
 * change counts at once) and reports a refusal to `refused` (the audit log)
 * before throwing it.
 */
export function consoleAccess(home: string, env: NodeJS.ProcessEnv, refused: (r: AccessRefused) => void = () => undefined): Access {
  const check =
    (kind: AccessKind) =>
    (typed: string): string => {
      let error: AccessRefused;
      let resolved = typed;
      try {
        const policy = loadConsolePolicy(home, env);
        resolved = kind === 'program' && !path.isAbsolute(typed) ? typed : resolvePath(typed);
        const why = path.isAbsolute(resolved) ? refusal(policy, kind, typed, resolved) : `Over the console, a program must be given by its absolute path, not "${typed}". Nothing was changed.`;
        if (why === null) return resolved;
        error = new AccessRefused(kind, resolved, why);
      } catch (e) {
        if (e instanceof AccessRefused) throw e;
        error = new AccessRefused(kind, resolved, `${(e as Error).message} Until it is fixed, the console may not name programs, files or homes: nothing was changed.`);
      }
      refused(error);
      throw error;
    };
  const btrfs = check('btrfs');
  return {
    who: 'console',
    program: check('program'),
    readFile: check('read'),
    writeFile: check('write'),
    home: check('home'),
    dataset: (name) => {
      const m = /^\s*btrfs:(\/[^@]*)/.exec(name);
      if (m) btrfs(m[1]);
    },
    localOnly: (setting) => {
      const error = new AccessRefused('setting', setting, `Over the console, ${setting} cannot be changed: it decides who on the network reaches this appliance's volumes. Use the appliance's own shell. Nothing was changed.`);
      refused(error);
      throw error;
    },
  };
}

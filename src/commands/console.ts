/**
 * The console family: the operator console over SSH (`syncsh serve`), its
 * password logins (off unless turned on) and the operators' passwords, kept
 * as scrypt hashes in the appliance home and never shown.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { CommandContext, CommandFamily, CommandSpec, ValueSpec } from './grammar/types.js';
import { text, yesNo } from './values.js';
import { confirmed, NOTHING_CHANGED } from './ask.js';
import { loadConsolePolicy } from '../services/access.js';
import { passwordProblem, userNameProblem } from '../services/console-passwords.js';

const words = {
  console: 'the operator console over SSH (syncsh serve) and its password logins',
  password: "an operator's console password, kept as a scrypt hash",
  passwords: 'the users that have a console password (never the hashes)',
  'password-auth': 'whether syncsh serve takes passwords (off unless set here or with --password-auth yes)',
};

/** what the console may name (src/services/access.ts), in one line */
function describePolicy(homeRoot: string): string {
  try {
    const p = loadConsolePolicy(homeRoot);
    const list = (dirs: string[]) => dirs.join(', ') || 'none';
    return `programs in ${list(p.programs)}; files read in ${list(p.read)}, written in ${list(p.write)}; homes in ${list(p.homes)}; btrfs datasets in ${list(p.btrfs)} (${p.source})`;
  } catch (error) {
    return (error as Error).message;
  }
}

/** a console user name; TAB offers the users that have a password */
const userName = (help: string): ValueSpec & { help: string } => ({
  ...text('USER', (ctx) => {
    const services = (ctx as Partial<CommandContext>).services;
    try {
      return services ? services.consolePasswords.users() : [];
    } catch {
      return [];
    }
  }),
  parse(raw) {
    const problem = userNameProblem(raw);
    if (problem) throw new Error(problem);
    return raw;
  },
  help,
});

/** what a script gives with --password-file: the file's text, one trailing line break left out */
function readPasswordFile(file: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (error) {
    throw new Error(`Cannot read the password file ${file}: ${(error as Error).message}`);
  }
}

/** the new password: from the file, or asked twice in a dialog that shows nothing of it */
async function newPassword(ctx: CommandContext, user: string, file: string | undefined): Promise<string> {
  const check = (password: string) => {
    const problem = passwordProblem(password);
    if (problem) throw new Error(`${problem} Nothing was changed.`);
    return password;
  };
  if (file !== undefined) return check(readPasswordFile(file));
  if (!ctx.interactive) throw new Error(`There is no terminal to ask the password of ${user} on: give it with --password-file FILE. Nothing was changed.`);
  const first = check(await ctx.dialogs.password(`New console password for ${user}:`, { help: `At least 8 characters. Kept only as a scrypt hash in ${ctx.services.consolePasswords.file}.` }));
  const again = await ctx.dialogs.password(`The same password again:`);
  if (again !== first) throw new Error('The two passwords differ. Nothing was changed.');
  return first;
}

function whenTaken(ctx: CommandContext): string {
  return ctx.services.consolePasswords.passwordAuth()
    ? 'syncsh serve takes it now.'
    : "Password logins are off in the settings: syncsh serve takes it once 'setup console password-auth yes' turns them on, or when started with --password-auth yes.";
}

const setPassword: CommandSpec = {
  path: 'setup console password <USER>',
  help: "set or change USER's console password (asked twice, never shown; --password-file for scripts)",
  details:
    'The password is asked twice in a dialog that shows nothing of it, or read from --password-file FILE (its one line). Only a scrypt hash with a random salt is kept, in console-passwords in the appliance home (mode 0600). syncsh serve takes passwords only when password logins are on.',
  args: { USER: userName('the user name the operator logs in with (ssh USER@appliance)') },
  options: [{ name: '--password-file', help: 'read the password from FILE instead of asking (scripts; over the console, FILE under the allowed directories)', value: text('FILE') }],
  async run(ctx, input) {
    const user = input.args.USER as string;
    const passwords = ctx.services.consolePasswords;
    const file = input.options['password-file'] as string | undefined;
    const password = await newPassword(ctx, user, file === undefined ? undefined : ctx.access.readFile(file));
    const replaced = await passwords.set(user, password);
    return {
      kind: 'message',
      text: `${replaced ? 'Changed' : 'Set'} the console password of ${user} (a scrypt hash in ${passwords.file}). ${whenTaken(ctx)}`,
      data: { user, replaced, file: passwords.file, passwordAuth: ctx.services.consolePasswords.passwordAuth() },
    };
  },
};

const destroyPassword: CommandSpec = {
  path: 'destroy console password <USER>',
  help: "remove USER's console password (asks first; -y answers yes)",
  args: { USER: userName('a user that has a console password') },
  async run(ctx, input) {
    const user = input.args.USER as string;
    const passwords = ctx.services.consolePasswords;
    if (!passwords.has(user)) {
      const users = passwords.users();
      throw new Error(`${user} has no console password.${users.length ? ` These users have one: ${users.join(', ')}.` : ' Nobody has one.'}`);
    }
    if (!(await confirmed(ctx, `Remove the console password of ${user}?`, `${user} can then log in over the console with a key only; sessions open now go on.`))) return NOTHING_CHANGED;
    await passwords.remove(user);
    return { kind: 'message', text: `Removed the console password of ${user}.`, data: { user, removed: true } };
  },
};

const showPasswords: CommandSpec = {
  path: 'show console passwords',
  help: 'the users that have a console password (the hashes are never shown)',
  async run(ctx) {
    const users = ctx.services.consolePasswords.users();
    return {
      kind: 'table',
      columns: [{ key: 'user', header: 'USER' }],
      rows: users.map((user) => ({ user })),
      data: users.map((user) => ({ user })),
      empty: "Nobody has a console password. Set one with 'setup console password USER'.",
    };
  },
};

const showConsole: CommandSpec = {
  path: 'show console',
  help: "the console's files and whether it takes passwords",
  async run(ctx) {
    const home = ctx.services.home;
    const passwords = ctx.services.consolePasswords;
    const data = {
      passwordAuth: passwords.passwordAuth(),
      passwordFile: passwords.file,
      passwordUsers: passwords.users().length,
      authorizedKeys: path.join(home.root, 'authorized_keys'),
      auditLog: path.join(home.logs, 'audit.log'),
      policy: describePolicy(home.root),
    };
    return {
      kind: 'record',
      fields: [
        ['password_auth', data.passwordAuth ? 'yes' : 'no (serve --password-auth yes overrides)'],
        ['password_file', data.passwordFile],
        ['password_users', String(data.passwordUsers)],
        ['authorized_keys', `${data.authorizedKeys} (unless serve --authorized-keys)`],
        ['audit_log', data.auditLog],
        ['console_may_name', data.policy],
      ],
      data,
    };
  },
};

const setPasswordAuth: CommandSpec = {
  path: 'setup console password-auth <ON>',
  help: 'whether syncsh serve takes passwords (yes|no; off unless set; serve --password-auth overrides)',
  details: 'A running syncsh serve reads this at every login attempt, unless it was started with --password-auth yes|no. Passwords are taken only for the users that have one (setup console password USER); keys work either way.',
  args: { ON: { ...yesNo, help: 'yes to take passwords, no for keys only' } },
  async run(ctx, input) {
    const on = input.args.ON as boolean;
    ctx.services.consolePasswords.setPasswordAuth(on);
    const users = ctx.services.consolePasswords.users().length;
    const textOut = on ? `Password logins are on: syncsh serve takes the passwords of ${users ? `${users} user(s)` : "nobody yet ('setup console password USER' sets one)"}.` : 'Password logins are off: syncsh serve takes keys only.';
    return { kind: 'message', text: textOut, data: { passwordAuth: on } };
  },
};

export const consoleFamily: CommandFamily = {
  words,
  commands: [showConsole, showPasswords, setPassword, setPasswordAuth, destroyPassword],
};

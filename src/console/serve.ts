/**
 * `syncsh serve`: the operator console over SSH. Operators log in with a
 * key listed in the authorized keys file, or with their console password
 * when password logins are on (`--password-auth yes`, or the setting
 * `setup console password-auth yes`), and get the same shell as on the
 * appliance (or run one command: `ssh -p 2222 admin@host 'show auto-sync'`).
 * SIGTERM or SIGINT stop it: no new logins, open sessions are ended.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createServices } from '../services/index.js';
import { loadConsolePolicy } from '../services/access.js';
import { AuditLog } from './audit.js';
import { parseAuthorizedKeys } from './authorized-keys.js';
import { loadOrCreateHostKey } from './host-key.js';
import { passwordAuthSetting, PasswordFile } from './passwords.js';
import { activityLog, recover, stack } from './middleware.js';
import { consoleApp } from './app.js';
import { startConsoleServer } from './server.js';

export interface ServeArgs {
  listen?: string;
  authorizedKeys?: string;
  /** yes|no: whether passwords are taken, whatever the setting says; absent: the setting decides, read on every attempt */
  passwordAuth?: string;
}

/** --password-auth's value: true, false, or undefined for the setting */
export function parsePasswordAuth(text: string | undefined): boolean | undefined {
  if (text === undefined) return undefined;
  if (text === 'yes' || text === 'no') return text === 'yes';
  throw new Error(`--password-auth takes yes or no, not "${text}".`);
}

export const DEFAULT_LISTEN = '127.0.0.1:2222';

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535) throw new Error(`--listen takes ADDRESS:PORT, such as 0.0.0.0:2222 or 127.0.0.1:2222, not "${text}".`);
  return { host: m[1].replace(/^\[|\]$/g, '') || '0.0.0.0', port: Number(m[2]) };
}

function describePasswords(file: PasswordFile, flag: boolean | undefined, enabled: () => boolean): string {
  const why = flag === undefined ? "the setting; 'setup console password-auth yes|no' changes it" : '--password-auth';
  let on: boolean;
  try {
    on = enabled();
  } catch (error) {
    return `password logins are off until their setting can be read: ${(error as Error).message}`;
  }
  if (!on) return `password logins are off (${why})`;
  let users: number;
  try {
    users = file.users().length;
  } catch (error) {
    return `password logins are on (${why}), but ${(error as Error).message}`;
  }
  return `password logins are on (${why}): ${users ? `${users} user(s)` : "nobody yet: 'setup console password USER' adds one"} in ${file.file}`;
}

export async function startServe(args: ServeArgs, env: NodeJS.ProcessEnv): Promise<number> {
  const say = (line: string) => process.stdout.write(`syncsh serve: ${line}\n`);
  let listen;
  let services;
  let hostKey;
  let passwordAuth;
  let policy;
  try {
    listen = parseListen(args.listen ?? DEFAULT_LISTEN);
    passwordAuth = parsePasswordAuth(args.passwordAuth);
    services = createServices(env);
    hostKey = loadOrCreateHostKey(services.home.root);
    policy = loadConsolePolicy(services.home.root, env);
  } catch (error) {
    process.stderr.write(`syncsh serve: ${(error as Error).message}\n`);
    return 2;
  }
  const authorizedKeys = path.resolve(args.authorizedKeys ?? path.join(services.home.root, 'authorized_keys'));
  const audit = AuditLog.inHome(services.home.logs);
  const home = services.home;
  const passwords = {
    file: PasswordFile.inHome(home),
    enabled: passwordAuth === undefined ? () => passwordAuthSetting(home.root) : () => passwordAuth,
  };

  // Each session's errors end that session (see recover); one that escapes
  // through an event handler must not end everyone else's.
  const escaped = (error: unknown) => process.stderr.write(`syncsh serve: an error escaped its session: ${(error as Error)?.stack ?? String(error)}\n`);
  process.on('uncaughtException', escaped);
  process.on('unhandledRejection', escaped);

  const handler = stack(
    consoleApp(services, env),
    recover((s, error) => say(`conn ${s.conn}: the session failed: ${error.stack ?? error.message}`)),
    activityLog(say),
  );
  let server;
  try {
    server = await startConsoleServer({ hostKey: hostKey.privateKey, authorizedKeys, audit, handler, log: say, version: services.appliance.version, passwords }, listen);
  } catch (error) {
    process.stderr.write(`syncsh serve: cannot listen on ${args.listen ?? DEFAULT_LISTEN}: ${(error as Error).message}\n`);
    return 1;
  }
  const { host, port } = server.address();
  if (hostKey.created) say(`generated the host key ${hostKey.file}`);
  say(`listening on ${host.includes(':') ? `[${host}]` : host}:${port}, host key ${hostKey.type} ${hostKey.fingerprint}`);
  const keys = existsSync(authorizedKeys) ? parseAuthorizedKeys(readFileSync(authorizedKeys, 'utf8')).length : 0;
  say(keys ? `${keys} key(s) in ${authorizedKeys}` : `no key can log in yet: add public keys to ${authorizedKeys}`);
  say(describePasswords(passwords.file, passwordAuth, passwords.enabled));
  say(`console policy (${policy.source}): programs from ${policy.programs.join(', ') || 'nowhere'}; files read in ${policy.read.join(', ') || 'none'}; written in ${policy.write.join(', ') || 'none'}; homes under ${policy.homes.join(', ') || 'none'}`);
  say(`audit log ${audit.file}`);

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      say(`${signal}: stopping`);
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      resolve();
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
  // sessions are ended; a client that does not answer is not waited for long
  await Promise.race([server.close(), new Promise((resolve) => setTimeout(resolve, 3000).unref())]);
  return 0;
}

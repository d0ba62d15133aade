/**
 * `syncsh serve`: the operator console over SSH. Operators log in with a
 * key listed in the authorized keys file, or with their console password
 * when password logins are on (`--password-auth yes`, or the setting
 * `setup console password-auth yes`), and get the same shell as on the
 * appliance (or run one command: `ssh -p 2222 admin@host 'show auto-sync'`).
 * SIGTERM or SIGINT stop it: no new logins, each open session is told and
 * ended, status 0.
 *
 * Many sessions share this process, so nothing process-wide changes once it
 * listens: whatever touches the process (the handlers for escaped errors,
 * failpoints, loading ink and blessed, which read or edit the environment
 * and install handlers as they load) happens here, before the first login.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { createServices } from '../services/index.js';
import { loadConsolePolicy } from '../services/access.js';
import { AuditLog } from './audit.js';
import { parseAuthorizedKeys } from './authorized-keys.js';
import { loadOrCreateHostKey } from './host-key.js';
import { passwordAuthSetting, PasswordFile } from './passwords.js';
import { activityLog, recover, stack, type Middleware } from './middleware.js';
import { consoleApp } from './app.js';
import { startConsoleServer } from './server.js';
import { Isolation } from './isolation.js';
import { failpointsEndTheSession } from '../services/failpoints.js';

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
    // sessions share these services: a run typed in one reuses the peer connection (and agent) an earlier one opened, as in the daemon
    services.peers.keepWarm();
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

  // Start-up: everything that touches the process happens now, before the first session.
  failpointsEndTheSession();
  // loaded while the server starts listening; no session runs before they are (see waitFor)
  const loaded = preloadViews();
  loaded.catch(() => undefined);
  // An error that escapes a session ends that session (isolation.ts); one outside every session is the server's own: it stops, status 70.
  const isolation = new Isolation();
  let broken: Error | null = null;
  let stopNow: (why: string) => void = () => undefined;
  const uninstall = isolation.install((error) => {
    process.stderr.write(`syncsh serve: an error outside any session: ${error.stack ?? error.message}\n`);
    broken ??= error;
    stopNow('an internal error');
  });

  const handler = stack(
    consoleApp(services, env),
    recover((s, error) => say(`conn ${s.conn}: the session failed: ${error.stack ?? error.message}`)),
    activityLog(say),
    waitFor(loaded),
  );
  let server;
  try {
    server = await startConsoleServer({ hostKey: hostKey.privateKey, authorizedKeys, audit, handler, log: say, version: services.appliance.version, passwords, isolation }, listen);
  } catch (error) {
    uninstall();
    process.stderr.write(`syncsh serve: cannot listen on ${args.listen ?? DEFAULT_LISTEN}: ${(error as Error).message}\n`);
    return 1;
  }
  const { host, port } = server.address();
  if (hostKey.created) say(`generated the host key ${hostKey.file}`);
  say(`listening on ${host.includes(':') ? `[${host}]` : host}:${port}, host key ${hostKey.type} ${hostKey.fingerprint}`);
  const keys = existsSync(authorizedKeys) ? parseAuthorizedKeys(readFileSync(authorizedKeys, 'utf8')).length : 0;
  say(keys ? `${keys} key(s) in ${authorizedKeys}` : `no key can log in yet: add public keys to ${authorizedKeys}`);
  say(describePasswords(passwords.file, passwordAuth, passwords.enabled));
  say(
    `console policy (${policy.source}): programs from ${policy.programs.join(', ') || 'nowhere'}; files read in ${policy.read.join(', ') || 'none'}; written in ${policy.write.join(', ') || 'none'}; homes under ${policy.homes.join(', ') || 'none'}`,
  );
  say(`audit log ${audit.file}`);

  // the signal handlers stay to the end: with none, signal-exit (held since start-up) would end the process at a second signal, before the sessions are told
  const why = await new Promise<string>((resolve) => {
    let stopping = false;
    const stop = (reason: string) => {
      if (stopping) return;
      stopping = true;
      say(`${reason}: stopping`);
      resolve(reason);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    stopNow = stop;
    if (broken) stop('an internal error');
  });
  // each session is told and ended; a client that does not answer is not waited for long
  await Promise.race([server.close(`the console is stopping (${why})`), new Promise((resolve) => setTimeout(resolve, 3000).unref())]);
  services.peers.close();
  uninstall();
  say('stopped');
  return broken ? 70 : 0;
}

/** a session starts once start-up is over */
function waitFor(startUp: Promise<void>): Middleware {
  return (next) => async (session) => {
    await startUp;
    return next(session);
  };
}

/**
 * ink and blessed, loaded at start-up: ink reads (and its loader edits) the
 * environment as it loads; blessed is made to install no process handlers
 * (shell/blessed.ts). signal-exit (inquirer's dialogs use v4, ink v3) patches
 * process.emit and adds signal listeners while any prompt is open, and undoes
 * it when the last one closes: it is held from now on, so that a session's
 * prompt only joins its list. (The bundle holds its own copy of ink's
 * signal-exit, scripts/bundle.mjs: v3 keeps that list on the process, shared by
 * every copy, so holding this one holds the bundled one too.)
 */
async function preloadViews(): Promise<void> {
  await import('../shell/line-editor/ink.js');
  (await import('../shell/blessed.js')).keepOffTheProcess();
  for (const user of ['@inquirer/core', 'ink']) {
    const onExit = createRequire(import.meta.resolve(user))('signal-exit') as ((cb: () => void) => void) | { onExit(cb: () => void): void };
    if (typeof onExit === 'function') onExit(() => undefined);
    else onExit.onExit(() => undefined);
  }
}

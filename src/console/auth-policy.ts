/**
 * Who may log in to the console, decided per connection: public keys against
 * authorized_keys (re-read on each attempt), and passwords against the
 * console password file when password logins are on (asked on each attempt,
 * so a changed setting counts at once). keyboard-interactive is never
 * offered. Failed attempts are counted (sshd's MaxAuthTries), a login must
 * come within the grace time (LoginGraceTime), and every login and refusal is
 * audited.
 */
import type { AuthContext, AuthenticationType, Connection } from 'ssh2';
import { checkAuthorizedKey, fingerprint } from './authorized-keys.js';
import type { AuditLog } from './audit.js';
import type { PasswordFile } from './passwords.js';

export interface AuthPolicyOptions {
  authorizedKeys: string;
  /** failed attempts before the connection is dropped (sshd's MaxAuthTries); default 6 */
  maxAuthTries?: number;
  /** seconds to log in before the connection is dropped (sshd's LoginGraceTime); default 120 */
  loginGraceSeconds?: number;
  /** Password logins: the file checked on every attempt, and whether they are on. Absent: keys only. */
  passwords?: { file: PasswordFile; enabled(): boolean };
  /** how long a refused password waits for its answer, in ms (a guesser's pace); default 1000 */
  passwordFailureDelayMs?: number;
}

/** one connection as the server knows it */
export interface ConnectionInfo {
  conn: number;
  /** ip:port of the client */
  from: string;
}

export interface AuthPolicyContext {
  log(line: string): void;
  /** an audit line that cannot fail (a log that cannot be written is reported) */
  audited(...args: Parameters<AuditLog['record']>): void;
  /** runs a listener in the connection's scope (isolation.ts) */
  guard<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
}

/** the methods offered: a client that may only use a password is told at once when passwords are off */
function passwordsOn(opts: AuthPolicyOptions, log: (line: string) => void): boolean {
  if (!opts.passwords) return false;
  try {
    return opts.passwords.enabled();
  } catch (error) {
    log(`password logins are off: their setting cannot be read: ${(error as Error).message}`);
    return false;
  }
}

/**
 * Takes the connection's authentication requests; `loggedIn` is told the user
 * once one is accepted.
 */
export function applyAuthPolicy(opts: AuthPolicyOptions, ctx: AuthPolicyContext, client: Connection, info: ConnectionInfo, loggedIn: (user: string) => void): void {
  const { conn, from } = info;
  const { log, audited } = ctx;
  const maxTries = opts.maxAuthTries ?? 6;
  const graceSeconds = opts.loginGraceSeconds ?? 120;
  const failureDelay = opts.passwordFailureDelayMs ?? 1000;
  const methods = (): AuthenticationType[] => (passwordsOn(opts, log) ? ['publickey', 'password'] : ['publickey']);
  let failures = 0;
  /** the connection closed (an answer to a pending password check goes nowhere) */
  let gone = false;

  const grace = setTimeout(
    ctx.guard(() => {
      log(`conn ${conn} from ${from}: no login within ${graceSeconds} sec, dropped`);
      client.end();
    }),
    graceSeconds * 1000,
  );
  grace.unref();
  client.on('close', () => {
    gone = true;
    clearTimeout(grace);
  });

  const refuse = (auth: AuthContext, reason: string) => {
    failures++;
    log(`conn ${conn} from ${from}: refused ${JSON.stringify(auth.username)}: ${reason}`);
    audited('refused', { user: auth.username, from, conn }, reason, { method: auth.method });
    auth.reject(methods());
    if (failures >= maxTries) client.end();
  };
  const accept = (auth: AuthContext, extra: Record<string, string>, how: string) => {
    const user = auth.username;
    clearTimeout(grace);
    audited('login', { user, from, conn }, undefined, { method: auth.method, ...extra });
    log(`conn ${conn} from ${from}: ${JSON.stringify(user)} logged in with ${how}`);
    loggedIn(user);
    auth.accept();
  };

  const password = (auth: AuthContext & { password?: unknown }) => {
    if (!passwordsOn(opts, log)) return refuse(auth, 'password refused: password logins are off');
    // a client asking to change its password sends both: no password is changed here
    const given = auth.password;
    if (typeof given !== 'string') return refuse(auth, 'password refused: a request to change the password is not taken');
    // the answer comes after the check (scrypt, in the thread pool); a refusal after a delay besides
    void opts.passwords!.file.check(auth.username, given).then(
      async (check) => {
        if (check.ok) {
          if (!gone) accept(auth, {}, 'a password');
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, failureDelay));
        if (!gone) refuse(auth, check.reason === 'wrong password' ? 'password refused' : `password refused: ${check.reason}`);
      },
      (error: unknown) => {
        if (!gone) refuse(auth, `password refused: the check failed: ${(error as Error).message}`);
      },
    );
  };

  client.on(
    'authentication',
    ctx.guard((auth: AuthContext) => {
      if (auth.method === 'password') return password(auth);
      if (auth.method !== 'publickey') {
        // 'none' is how a client asks which methods there are
        if (auth.method !== 'none') failures++;
        auth.reject(methods());
        return;
      }
      const check = checkAuthorizedKey(opts.authorizedKeys, auth);
      if (!check.ok) return refuse(auth, check.reason);
      if (!auth.signature) {
        // the client asks whether this key would do; it signs next
        auth.accept();
        return;
      }
      const key = fingerprint(check.key.blob);
      accept(auth, { key }, `${check.key.type} ${key}${check.key.comment ? ` (${check.key.comment})` : ''}`);
    }),
  );
}

/**
 * The SSH console server (ssh2): public-key logins against authorized_keys,
 * and passwords against the console password file when password logins are
 * on (keyboard-interactive is never offered), then per SSH session a pty (recorded), env, window-change, and one shell
 * or exec request, each run by the handler on its own SshTerminal. Port
 * forwarding, agent and X11 forwarding, and subsystems (sftp) are refused:
 * ssh2 rejects what nobody listens for. An error in a connection or a
 * session ends that connection or session only.
 */
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import type { AuthContext, AuthenticationType, Connection, PseudoTtyInfo, ServerChannel, Session } from 'ssh2';
import { checkAuthorizedKey, fingerprint } from './authorized-keys.js';
import type { AuditLog } from './audit.js';
import type { PasswordFile } from './passwords.js';
import type { ConsoleSession, Handler } from './middleware.js';
import { sshTerminal, type PtyInfo, type SshTerminal } from '../shell/ssh-terminal.js';

const { Server } = ssh2;

export interface ConsoleServerOptions {
  hostKey: string;
  authorizedKeys: string;
  audit: AuditLog;
  handler: Handler;
  /** server messages (listening, refusals, sessions); default: nothing */
  log?: (line: string) => void;
  /** failed attempts before the connection is dropped (sshd's MaxAuthTries); default 6 */
  maxAuthTries?: number;
  /** seconds to log in before the connection is dropped (sshd's LoginGraceTime); default 120 */
  loginGraceSeconds?: number;
  /** the identification string's software version */
  version?: string;
  /**
   * Password logins: the file checked on every attempt, and whether they are
   * on (asked on every attempt, so a setting changed counts at once).
   * Absent: keys only.
   */
  passwords?: { file: PasswordFile; enabled(): boolean };
  /** how long a refused password waits for its answer, in ms (a guesser's pace); default 1000 */
  passwordFailureDelayMs?: number;
}

export interface ConsoleServer {
  /** where it listens */
  address(): { host: string; port: number };
  /** open connections */
  connections(): number;
  /** stops listening and ends every connection */
  close(): Promise<void>;
}

const ACCEPTED_ENV = /^(NO_COLOR|COLORTERM|LANG|LANGUAGE|LC_[A-Z]+)$/;

function ptyInfo(info: PseudoTtyInfo): PtyInfo {
  const intr = info.modes?.VINTR;
  return { term: info.term, cols: info.cols, rows: info.rows, intr: typeof intr === 'number' ? intr : undefined };
}

export async function startConsoleServer(opts: ConsoleServerOptions, listen: { host: string; port: number }): Promise<ConsoleServer> {
  const log = opts.log ?? (() => undefined);
  /** an audit line from an event handler: a log that cannot be written is reported, not thrown */
  const audited = (...args: Parameters<AuditLog['record']>) => {
    try {
      opts.audit.record(...args);
    } catch (error) {
      log(`the audit log cannot be written: ${(error as Error).message}`);
    }
  };
  const maxTries = opts.maxAuthTries ?? 6;
  const failureDelay = opts.passwordFailureDelayMs ?? 1000;
  /** whether passwords are taken now; a setting that cannot be read means no */
  const passwordsOn = () => {
    if (!opts.passwords) return false;
    try {
      return opts.passwords.enabled();
    } catch (error) {
      log(`password logins are off: their setting cannot be read: ${(error as Error).message}`);
      return false;
    }
  };
  /** the methods offered: a client that may only use a password is told at once when passwords are off */
  const methods = (): AuthenticationType[] => (passwordsOn() ? ['publickey', 'password'] : ['publickey']);
  const clients = new Set<Connection>();
  let nextConn = 1;

  // keepalives find clients that vanished without a word (a cut link): their sessions end within a minute
  const config = { hostKeys: [opts.hostKey], ident: `syncsh_${opts.version ?? '0'}`, keepaliveInterval: 15_000, keepaliveCountMax: 4 };
  const server = new Server(config, (client, info) => {
    const conn = nextConn++;
    const from = `${info.ip}:${info.port}`;
    let user = '';
    let failures = 0;
    /** the connection closed (an answer to a pending password check goes nowhere) */
    let gone = false;
    clients.add(client);
    const grace = setTimeout(() => {
      log(`conn ${conn} from ${from}: no login within ${opts.loginGraceSeconds ?? 120} sec, dropped`);
      client.end();
    }, (opts.loginGraceSeconds ?? 120) * 1000);
    grace.unref();

    client.on('error', (error: Error) => log(`conn ${conn} from ${from}: ${error.message}`));
    client.on('close', () => {
      gone = true;
      clearTimeout(grace);
      clients.delete(client);
      if (user) audited('logout', { user, from, conn });
    });

    const refuse = (ctx: AuthContext, reason: string) => {
      failures++;
      log(`conn ${conn} from ${from}: refused ${JSON.stringify(ctx.username)}: ${reason}`);
      audited('refused', { user: ctx.username, from, conn }, reason, { method: ctx.method });
      ctx.reject(methods());
      if (failures >= maxTries) client.end();
    };
    const loggedIn = (ctx: AuthContext, extra: Record<string, string>, how: string) => {
      user = ctx.username;
      clearTimeout(grace);
      audited('login', { user, from, conn }, undefined, { method: ctx.method, ...extra });
      log(`conn ${conn} from ${from}: ${JSON.stringify(user)} logged in with ${how}`);
      ctx.accept();
    };

    client.on('authentication', (ctx: AuthContext) => {
      if (ctx.method === 'password') {
        if (!passwordsOn()) return refuse(ctx, 'password refused: password logins are off');
        // a client asking to change its password sends both: no password is changed here
        const password: unknown = ctx.password;
        if (typeof password !== 'string') return refuse(ctx, 'password refused: a request to change the password is not taken');
        // the answer comes after the check (scrypt, in the thread pool); a refusal after a delay besides
        void opts.passwords!.file.check(ctx.username, password).then(
          async (check) => {
            if (check.ok) {
              if (!gone) loggedIn(ctx, {}, 'a password');
              return;
            }
            await new Promise((resolve) => setTimeout(resolve, failureDelay));
            if (!gone) refuse(ctx, check.reason === 'wrong password' ? 'password refused' : `password refused: ${check.reason}`);
          },
          (error: unknown) => {
            if (!gone) refuse(ctx, `password refused: the check failed: ${(error as Error).message}`);
          },
        );
        return;
      }
      if (ctx.method !== 'publickey') {
        // 'none' is how a client asks which methods there are
        if (ctx.method !== 'none') failures++;
        ctx.reject(methods());
        return;
      }
      const check = checkAuthorizedKey(opts.authorizedKeys, ctx);
      if (!check.ok) return refuse(ctx, check.reason);
      if (!ctx.signature) {
        // the client asks whether this key would do; it signs next
        ctx.accept();
        return;
      }
      const key = fingerprint(check.key.blob);
      loggedIn(ctx, { key }, `${check.key.type} ${key}${check.key.comment ? ` (${check.key.comment})` : ''}`);
    });

    client.on('ready', () => {
      client.on('session', (accept) => {
        const session: Session = accept();
        let pty: PtyInfo | null = null;
        const env: Record<string, string> = {};
        let terminal: SshTerminal | null = null;
        let started = false;

        session.on('pty', (accept, _reject, info) => {
          pty = ptyInfo(info);
          accept?.();
        });
        session.on('env', (accept, reject, info) => {
          // as sshd's AcceptEnv: the locale and NO_COLOR, nothing else
          if (!ACCEPTED_ENV.test(info.key) || info.val.length > 256) return reject?.();
          env[info.key] = info.val;
          accept?.();
        });
        session.on('window-change', (accept, _reject, info) => {
          if (pty) {
            pty.cols = info.cols;
            pty.rows = info.rows;
          }
          terminal?.resize(info.cols, info.rows);
          accept?.();
        });
        session.on('signal', (accept, _reject, info) => {
          if (info.name === 'INT') terminal?.onInterrupt?.();
          accept?.();
        });

        const run = (channel: ServerChannel, command: string | null) => {
          if (started) return;
          started = true;
          const term = sshTerminal(channel, { pty, env });
          terminal = term;
          const closed = new AbortController();
          channel.on('error', (error: Error) => log(`conn ${conn}: channel: ${error.message}`));
          channel.once('close', () => {
            term.close();
            closed.abort();
          });
          const consoleSession: ConsoleSession = {
            conn,
            user,
            from,
            command,
            pty,
            env,
            terminal: term,
            closed: closed.signal,
            audit: (line) => opts.audit.record('command', { user, from, conn }, line),
            refused: (what, target, reason) => audited('refused', { user, from, conn }, reason, { what, path: target }),
          };
          opts.handler(consoleSession)
            .catch((error: unknown) => {
              log(`conn ${conn}: ${(error as Error)?.stack ?? String(error)}`);
              return 70;
            })
            .then((code) => {
              if (closed.signal.aborted) return;
              // what was written goes out before the status and the end
              const flushed = (stream: NodeJS.WritableStream) => new Promise<void>((resolve) => stream.write('', () => resolve()));
              void Promise.all([flushed(term.output), flushed(term.errors)]).then(() => {
                if (closed.signal.aborted) return;
                channel.exit(code);
                channel.end();
              });
            });
        };

        session.on('shell', (accept) => run(accept(), null));
        session.on('exec', (accept, _reject, info) => run(accept(), info.command));
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error: Error) => log(`server: ${error.message}`));

  return {
    address() {
      const a = server.address() as AddressInfo;
      return { host: a.address, port: a.port };
    },
    connections: () => clients.size,
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const client of clients) client.end();
      });
    },
  };
}

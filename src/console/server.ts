/**
 * The SSH console server (ssh2), composed as wish composes its middlewares:
 * per connection the auth policy (auth-policy.ts: keys, passwords, tries,
 * grace), then, once logged in, the session requests (session-requests.ts:
 * pty, env, window-change, one shell or exec run by the handler). Each
 * connection and each session is a scope of its own (isolation.ts): an error
 * in one ends that one only. Closing tells every open session why, then ends
 * the connections.
 */
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import type { Connection } from 'ssh2';
import type { AuditLog } from './audit.js';
import { applyAuthPolicy, type AuthPolicyOptions } from './auth-policy.js';
import { Isolation, type Scope } from './isolation.js';
import type { Handler } from './middleware.js';
import { acceptSessions, type OpenSession } from './session-requests.js';

const { Server } = ssh2;

/** the status of a session ended because the server stops (128 + SIGTERM, as a shell killed by it) */
const STOPPED = 143;

export interface ConsoleServerOptions extends AuthPolicyOptions {
  hostKey: string;
  audit: AuditLog;
  handler: Handler;
  /** server messages (listening, refusals, sessions); default: nothing */
  log?: (line: string) => void;
  /** the identification string's software version */
  version?: string;
  /** the scopes sessions run in; serve installs its handlers for escaped errors (default: one of its own, with none installed) */
  isolation?: Isolation;
}

export interface ConsoleServer {
  /** where it listens */
  address(): { host: string; port: number };
  /** open connections */
  connections(): number;
  /** sessions running a shell or a command */
  sessions(): number;
  /** stops listening and ends every connection; with a reason, each open session is told it first */
  close(reason?: string): Promise<void>;
}

export async function startConsoleServer(opts: ConsoleServerOptions, listen: { host: string; port: number }): Promise<ConsoleServer> {
  const log = opts.log ?? (() => undefined);
  const isolation = opts.isolation ?? new Isolation();
  /** an audit line from an event handler: a log that cannot be written is reported, not thrown */
  const audited = (...args: Parameters<AuditLog['record']>) => {
    try {
      opts.audit.record(...args);
    } catch (error) {
      log(`the audit log cannot be written: ${(error as Error).message}`);
    }
  };
  const clients = new Set<Connection>();
  const open = new Set<OpenSession>();
  let nextConn = 1;

  // keepalives find clients that vanished without a word (a cut link): their sessions end within a minute
  const config = { hostKeys: [opts.hostKey], ident: `syncsh_${opts.version ?? '0'}`, keepaliveInterval: 15_000, keepaliveCountMax: 4 };
  const server = new Server(config, (client, info) => {
    const conn = nextConn++;
    const from = `${info.ip}:${info.port}`;
    const scope: Scope = {
      label: `conn ${conn}`,
      fail(error) {
        log(`conn ${conn} from ${from}: the connection failed: ${error.stack ?? error.message}`);
        client.end();
      },
    };
    const guard = <A extends unknown[]>(fn: (...args: A) => void) => isolation.guard(scope, fn);
    let user = '';
    clients.add(client);
    client.on(
      'error',
      guard((error: Error) => log(`conn ${conn} from ${from}: ${error.message}`)),
    );
    client.on(
      'close',
      guard(() => {
        clients.delete(client);
        if (user) audited('logout', { user, from, conn });
      }),
    );
    isolation.run(scope, () => {
      applyAuthPolicy(opts, { log, audited, guard }, client, { conn, from }, (name) => {
        user = name;
      });
      client.on(
        'ready',
        guard(() => acceptSessions({ handler: opts.handler, audit: opts.audit, isolation, log, audited, open }, client, { conn, from, user })),
      );
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
    sessions: () => open.size,
    async close(reason?: string) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      if (reason) {
        // each session's last words and status reach its client before the connection ends (a client that does not answer is not waited for long)
        const told = Promise.all([...open].map((session) => session.end(`syncsh serve: ${reason}: this session is closed.`, STOPPED)));
        await Promise.race([told, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      }
      for (const client of clients) client.end();
      await closed;
    },
  };
}

/**
 * What a logged-in connection may ask for: sessions, and in each a pty
 * (recorded), env (the locale and NO_COLOR only), window-change, the
 * interrupt signal, and one shell or exec request, run by the handler on its
 * own SshTerminal. Port, agent and X11 forwarding and subsystems (sftp) are
 * refused: ssh2 rejects what nobody listens for. Each session is a scope of
 * its own (isolation.ts): whatever fails in it ends it, told on its channel
 * with status 70, and nothing else.
 */
import type { Connection, PseudoTtyInfo, ServerChannel, Session } from 'ssh2';
import type { AuditLog } from './audit.js';
import type { ConnectionInfo } from './auth-policy.js';
import { asError, type Isolation, type Scope } from './isolation.js';
import type { ConsoleSession, Handler } from './middleware.js';
import { sshTerminal, type PtyInfo, type SshTerminal } from '../shell/ssh-terminal.js';

const ACCEPTED_ENV = /^(NO_COLOR|COLORTERM|LANG|LANGUAGE|LC_[A-Z]+)$/;

/** EX_SOFTWARE: the session failed */
const FAILED = 70;

function ptyInfo(info: PseudoTtyInfo): PtyInfo {
  const intr = info.modes?.VINTR;
  return { term: info.term, cols: info.cols, rows: info.rows, intr: typeof intr === 'number' ? intr : undefined };
}

/** a session with a channel, as the server holds it while it runs */
export interface OpenSession {
  /** tells the client why and ends the channel with `code`; resolves once the channel is closed */
  end(message: string, code: number): Promise<void>;
}

export interface SessionRequestContext {
  handler: Handler;
  audit: AuditLog;
  isolation: Isolation;
  log(line: string): void;
  audited(...args: Parameters<AuditLog['record']>): void;
  /** the sessions running now: added when a shell or exec starts, removed when it ends */
  open: Set<OpenSession>;
}

/** takes the connection's session requests once `user` has logged in */
export function acceptSessions(ctx: SessionRequestContext, client: Connection, info: ConnectionInfo & { user: string }): void {
  let sessions = 0;
  client.on('session', (acceptSession) => {
    const number = ++sessions;
    let end: OpenSession['end'] | null = null;
    const scope: Scope = {
      label: `conn ${info.conn} session ${number}`,
      fail(error) {
        ctx.log(`conn ${info.conn}: the session failed: ${error.stack ?? error.message}`);
        // before a shell or exec there is no channel to tell: the connection goes
        if (end) void end(`syncsh: this session failed and is closed: ${error.message}`, FAILED);
        else client.end();
      },
    };
    ctx.isolation.run(scope, () =>
      onSession(ctx, acceptSession(), info, scope, (e) => {
        end = e;
      }),
    );
  });
}

function onSession(ctx: SessionRequestContext, session: Session, info: ConnectionInfo & { user: string }, scope: Scope, started: (end: OpenSession['end']) => void): void {
  const { conn, user, from } = info;
  const guard = <A extends unknown[]>(fn: (...args: A) => void) => ctx.isolation.guard(scope, fn);
  let pty: PtyInfo | null = null;
  const env: Record<string, string> = {};
  let terminal: SshTerminal | null = null;

  session.on(
    'pty',
    guard((accept, _reject, info: PseudoTtyInfo) => {
      pty = ptyInfo(info);
      accept?.();
    }),
  );
  session.on(
    'env',
    guard((accept, reject, info: { key: string; val: string }) => {
      // as sshd's AcceptEnv: the locale and NO_COLOR, nothing else
      if (!ACCEPTED_ENV.test(info.key) || info.val.length > 256) return reject?.();
      env[info.key] = info.val;
      accept?.();
    }),
  );
  session.on(
    'window-change',
    guard((accept, _reject, info: { cols: number; rows: number }) => {
      if (pty) {
        pty.cols = info.cols;
        pty.rows = info.rows;
      }
      terminal?.resize(info.cols, info.rows);
      accept?.();
    }),
  );
  session.on(
    'signal',
    guard((accept, _reject, info: { name: string }) => {
      if (info.name === 'INT') terminal?.onInterrupt?.();
      accept?.();
    }),
  );

  const run = (channel: ServerChannel, command: string | null) => {
    if (terminal) return;
    const term = sshTerminal(channel, { pty, env, guard });
    terminal = term;
    const closed = new AbortController();
    /** the status and the end, after what was written has gone out */
    let sent: Promise<void> | null = null;
    const finish = (code: number, message?: string): Promise<void> => {
      if (sent) return sent;
      if (closed.signal.aborted) return Promise.resolve();
      ctx.open.delete(open);
      if (message) term.errors.write(`${message}\n`);
      const flushed = (stream: NodeJS.WritableStream) => new Promise<void>((resolve) => stream.write('', () => resolve()));
      void Promise.all([flushed(term.output), flushed(term.errors)]).then(
        guard(() => {
          if (closed.signal.aborted) return;
          channel.exit(code);
          channel.end();
        }),
      );
      // the client has the status once it closes its side too
      sent = new Promise<void>((resolve) => closed.signal.addEventListener('abort', () => resolve(), { once: true }));
      return sent;
    };
    const open: OpenSession = { end: (message, code) => finish(code, message) };
    ctx.open.add(open);
    started(open.end);
    channel.on(
      'error',
      guard((error: Error) => ctx.log(`conn ${conn}: channel: ${error.message}`)),
    );
    channel.once(
      'close',
      guard(() => {
        ctx.open.delete(open);
        term.close();
        closed.abort();
      }),
    );
    const consoleSession: ConsoleSession = {
      conn,
      user,
      from,
      command,
      pty,
      env,
      terminal: term,
      closed: closed.signal,
      audit: (line) => ctx.audit.record('command', { user, from, conn }, line),
      refused: (what, target, reason) => ctx.audited('refused', { user, from, conn }, reason, { what, path: target }),
    };
    ctx.handler(consoleSession).then(
      (code) => void finish(code),
      (error: unknown) => {
        const e = asError(error);
        ctx.log(`conn ${conn}: ${e.stack ?? e.message}`);
        void finish(FAILED, `syncsh: this session failed and is closed: ${e.message}`);
      },
    );
  };

  session.on(
    'shell',
    guard((accept) => run(accept(), null)),
  );
  session.on(
    'exec',
    guard((accept, _reject, info: { command: string }) => run(accept(), info.command)),
  );
}

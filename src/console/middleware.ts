/**
 * A console session is handled by a stack of small middlewares around the
 * app, as charmbracelet/wish does it: each gets the session and the next
 * handler, and returns the exit status. The server builds the stack once;
 * every SSH session runs it on its own terminal.
 */
import type { PtyInfo, SshTerminal } from '../shell/ssh-terminal.js';

export interface ConsoleSession {
  /** the connection's number in this server */
  conn: number;
  user: string;
  /** ip:port of the client */
  from: string;
  /** an exec request's command; null for a shell */
  command: string | null;
  pty: PtyInfo | null;
  /** what the client sent with env requests (SendEnv / SetEnv) */
  env: Record<string, string>;
  terminal: SshTerminal;
  /** aborted when the channel closes */
  closed: AbortSignal;
  /** records a command in the audit log */
  audit(command: string): void;
  /** records a refused attempt (a program, file or home the console policy does not allow) */
  refused(what: string, target: string, reason: string): void;
}

/** runs a session; resolves its exit status */
export type Handler = (session: ConsoleSession) => Promise<number>;
export type Middleware = (next: Handler) => Handler;

/** the app wrapped in the middlewares, the first one outermost */
export function stack(app: Handler, ...middlewares: Middleware[]): Handler {
  return middlewares.reduceRight<Handler>((next, middleware) => middleware(next), app);
}

/** An error in a session ends that session only: it is told, and the status is 70 (EX_SOFTWARE). */
export function recover(report: (session: ConsoleSession, error: Error) => void): Middleware {
  return (next) => async (session) => {
    try {
      return await next(session);
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      report(session, e);
      session.terminal.errors.write(`syncsh: this session failed and is closed: ${e.message}\n`);
      return 70;
    }
  };
}

/** one line when a session starts and one when it ends, with its status and length */
export function activityLog(write: (line: string) => void): Middleware {
  return (next) => async (session) => {
    const what = session.command === null ? (session.pty ? `shell (${session.pty.term} ${session.pty.cols}x${session.pty.rows})` : 'shell (no pty)') : `exec ${JSON.stringify(session.command)}`;
    const who = `conn ${session.conn} ${JSON.stringify(session.user)} from ${session.from}`;
    const started = Date.now();
    write(`${who}: ${what}`);
    let code = 70;
    try {
      code = await next(session);
      return code;
    } finally {
      write(`${who}: ${what} ended with status ${code} after ${((Date.now() - started) / 1000).toFixed(1)} sec`);
    }
  };
}

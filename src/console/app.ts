/**
 * The console's app: the same shell as on the appliance's own terminal, one
 * ShellSession per SSH session. A shell request with a pty gets the
 * interactive REPL; without one, commands are read from the channel as from
 * a pipe; an exec request runs its command and exits with the command's
 * status (0 ok, 1 the command failed, 2 it did not parse). There is no way
 * out to the operating system: a line is a command of the grammar or an error.
 */
import path from 'node:path';
import type { Services } from '../services/index.js';
import { consoleAccess, type Access } from '../services/access.js';
import { ShellSession, type Outcome } from '../shell/session.js';
import { createDialogs } from '../shell/dialogs.js';
import { runRepl } from '../shell/repl.js';
import { runScript } from '../shell/script.js';
import type { Terminal } from '../shell/terminal.js';
import type { ConsoleSession, Handler } from './middleware.js';

/** a shell session that writes every command to the audit log before running it */
export class AuditedSession extends ShellSession {
  constructor(
    services: Services,
    term: Terminal,
    private readonly audit: (command: string) => void,
    access: Access,
  ) {
    super(services, term, createDialogs(term), { access });
  }

  override async execute(line: string): Promise<Outcome> {
    const command = line.trim();
    if (command && !command.startsWith('#')) {
      try {
        this.audit(command);
      } catch (error) {
        // no command runs unrecorded
        this.error(`The audit log cannot be written, so the command was not run: ${(error as Error).message}`);
        return { ok: false, exit: false, code: 1 };
      }
    }
    return super.execute(line);
  }

  override recordAction(line: string): void {
    try {
      this.audit(line);
    } catch {
      // the dashboard's run goes ahead; its outcome is in the service log
    }
  }
}

/** where a console user's shell history lives: one file per user name */
export function historyFileOf(homeRoot: string, user: string): string {
  const safe = /^[A-Za-z0-9._-]{1,64}$/.test(user) && !/^\.+$/.test(user) ? user : `user-${Buffer.from(user).toString('hex').slice(0, 64)}`;
  return path.join(homeRoot, 'console', 'history', safe);
}

/** an exec request: each line of the command in turn, stopping at the first failure */
async function runExec(session: ShellSession, command: string): Promise<number> {
  const lines = command.split(/\r?\n/).filter((l) => l.trim());
  let outcome: Outcome = { ok: true, exit: false, code: 0 };
  for (const line of lines) {
    outcome = await session.execute(line);
    if (!outcome.ok || outcome.exit) break;
  }
  return outcome.ok ? 0 : outcome.code;
}

/** `env` is serve's: where the console policy is (SYNCSH_CONSOLE_POLICY), which no console user can change */
export function consoleApp(services: Services, env: NodeJS.ProcessEnv = process.env): Handler {
  return async (s: ConsoleSession) => {
    const access = consoleAccess(services.home.root, env, (r) => s.refused(r.kind, r.target, r.message));
    const session = new AuditedSession(services, s.terminal, (command) => s.audit(command), access);
    // Ctrl-C outside raw mode (no kernel makes it a SIGINT here) cancels the running command
    s.terminal.onInterrupt = () => {
      session.cancel();
    };
    const stop = () => session.cancel();
    s.closed.addEventListener('abort', stop);
    try {
      if (s.command !== null) return await runExec(session, s.command);
      if (s.terminal.interactive) return await runRepl(session, historyFileOf(services.home.root, s.user));
      return await runScript(session);
    } finally {
      s.closed.removeEventListener('abort', stop);
      s.terminal.onInterrupt = null;
    }
  };
}

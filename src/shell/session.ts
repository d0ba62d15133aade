/**
 * One shell session on one terminal: matches a line against the grammar,
 * runs the command with this session's dialogs, and renders what it returns.
 * The REPL, `syncsh -c`, commands on stdin and (later) each SSH channel each
 * get their own session.
 */
import { grammar } from '../commands/index.js';
import { match, GrammarError } from '../commands/grammar/match.js';
import { complete, helpAt, type Completion, type HelpEntry } from '../commands/grammar/complete.js';
import { DialogCancelled, type Dialogs } from '../commands/dialogs.js';
import type { CommandContext, GrammarContext, Output } from '../commands/grammar/types.js';
import type { Services } from '../services/index.js';
import { LOCAL_ACCESS, type Access } from '../services/access.js';
import { isFailpointReached } from '../services/failpoints.js';
import type { Terminal } from './terminal.js';
import { highlightLog, paint, render } from './render.js';

export interface Outcome {
  ok: boolean;
  exit: boolean;
  /** 0 ok, 1 the command failed, 2 the line did not parse */
  code: number;
}

export interface SessionOptions {
  /** --json for every command */
  json?: boolean;
  /** -y for every command */
  yes?: boolean;
  /** what commands may make the appliance run, read or write (default: anything, as on the local root shell) */
  access?: Access;
}

export class ShellSession implements GrammarContext {
  private running: AbortController | null = null;

  constructor(
    readonly services: Services,
    readonly term: Terminal,
    readonly dialogs: Dialogs,
    private readonly opts: SessionOptions = {},
  ) {}

  get prompt(): string {
    try {
      return `syncsh@${this.services.appliance.id}:/$ `;
    } catch {
      // a damaged appliance.json: commands say so; the prompt goes on without the id
      return 'syncsh:/$ ';
    }
  }

  complete(line: string, cursor: number): Completion {
    try {
      return complete(grammar(), line, cursor, this);
    } catch {
      return { replacement: null, start: cursor, choices: [] };
    }
  }

  help(line: string, cursor: number): HelpEntry[] {
    return helpAt(grammar(), line, cursor, this);
  }

  /** Ctrl-C while a command runs */
  cancel(): boolean {
    if (!this.running) return false;
    this.running.abort(new Error('Cancelled by the operator.'));
    return true;
  }

  async execute(line: string): Promise<Outcome> {
    if (!line.trim() || line.trim().startsWith('#')) return { ok: true, exit: false, code: 0 };
    let matched;
    try {
      matched = match(grammar(), line, this);
    } catch (error) {
      this.error((error as Error).message);
      return { ok: false, exit: false, code: error instanceof GrammarError ? 2 : 1 };
    }
    const json = Boolean(this.opts.json || matched.input.options.json);
    const abort = new AbortController();
    this.running = abort;
    const ctx: CommandContext = {
      services: this.services,
      dialogs: this.dialogs,
      interactive: this.term.interactive,
      yes: Boolean(this.opts.yes || matched.input.options.y),
      signal: abort.signal,
      access: this.opts.access ?? LOCAL_ACCESS,
      progress: (text) => {
        if (!json) this.print(text.split('\n'));
      },
    };
    try {
      const output = await matched.command.run(ctx, matched.input);
      if (output.kind === 'exit') return { ok: true, exit: true, code: 0 };
      await this.show(output, json, abort.signal);
      return { ok: true, exit: false, code: 0 };
    } catch (error) {
      // a crash point reached in a console session ends the session, as it would end a process
      if (isFailpointReached(error)) throw error;
      if (error instanceof DialogCancelled) {
        this.print([error.message]);
        return { ok: false, exit: false, code: 1 };
      }
      this.error((error as Error).message);
      return { ok: false, exit: false, code: 1 };
    } finally {
      this.running = null;
    }
  }

  private async show(output: Output, json: boolean, signal: AbortSignal): Promise<void> {
    if (output.kind === 'follow' && this.term.interactive && !json) {
      const { followLive } = await import('./logtail-view.js');
      return followLive(this.term, output, signal);
    }
    if (output.kind === 'dashboard') {
      const { showDashboard } = await import('./dashboard.js');
      return showDashboard(output, this.term, { json, signal, print: (lines) => this.print(lines), record: (line) => this.recordAction(line) });
    }
    if (output.kind === 'follow') {
      const color = this.term.color && !json;
      const emit = (l: string) => this.print([json ? JSON.stringify(l) : highlightLog(l, color)]);
      output.initial.forEach(emit);
      const stopKeys = this.term.interactive ? this.onKeys(['q', '\u0003'], () => this.cancel()) : () => undefined;
      try {
        for await (const l of output.follow(signal)) emit(l);
      } finally {
        stopKeys();
      }
      return;
    }
    if (json) {
      const data = 'data' in output ? output.data : undefined;
      this.print([JSON.stringify(data ?? (output.kind === 'message' ? { message: output.text } : null), null, 2)]);
      return;
    }
    const lines = render(output, { width: this.term.columns(), color: this.term.color });
    this.print(output.kind === 'lines' ? lines.map((l) => highlightLog(l, this.term.color)) : lines);
  }

  /** a command run from inside a live view (the dashboard's r), as the line it stands for; the SSH console audits it */
  recordAction(_line: string): void {}

  /** call `then` when one of `keys` is typed; returns the undo */
  private onKeys(keys: string[], then: () => void): () => void {
    const input = this.term.input;
    const wasRaw = Boolean((input as { isRaw?: boolean }).isRaw);
    input.setRawMode?.(true);
    const listener = (data: Buffer | string) => {
      if (keys.includes(data.toString())) then();
    };
    input.on('data', listener);
    input.resume();
    return () => {
      input.off('data', listener);
      input.setRawMode?.(wasRaw);
      input.pause();
    };
  }

  print(lines: string[]): void {
    const nl = this.term.interactive ? '\r\n' : '\n';
    if (lines.length) this.term.output.write(lines.join(nl) + nl);
  }

  error(message: string): void {
    const nl = this.term.interactive ? '\r\n' : '\n';
    this.term.errors.write(paint.red(`Error: ${message}`, this.term.color) + nl);
  }
}

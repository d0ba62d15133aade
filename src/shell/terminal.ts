/**
 * The terminal a shell session talks to: the process's own tty, a pipe
 * (`syncsh -c`, stdin scripts) or an SSH channel. Nothing in src/shell may
 * touch process.stdin / process.stdout directly: everything goes through one
 * of these, so that every SSH session has its own.
 */
import type { Readable, Writable } from 'node:stream';

export interface TerminalInput extends Readable {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
}

export interface TerminalOutput extends Writable {
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

export interface Terminal {
  input: TerminalInput;
  output: TerminalOutput;
  /** where errors go (stderr for a process; the same channel over SSH) */
  errors: TerminalOutput;
  /** a person is at the other end (dialogs and line editing are possible) */
  interactive: boolean;
  /** colours allowed (false with NO_COLOR or a dumb terminal) */
  color: boolean;
  columns(): number;
  rows(): number;
}

export function processTerminal(env: NodeJS.ProcessEnv = process.env): Terminal {
  const input = process.stdin as TerminalInput;
  const output = process.stdout as TerminalOutput;
  const interactive = Boolean(input.isTTY && output.isTTY);
  return {
    input,
    output,
    errors: process.stderr as TerminalOutput,
    interactive,
    color: interactive && !('NO_COLOR' in env) && env.TERM !== 'dumb',
    // Piped output (a script, grep) is not cut to a width unless COLUMNS asks for one.
    columns: () => output.columns ?? (Number(env.COLUMNS) || (output.isTTY ? 80 : 4096)),
    rows: () => output.rows ?? (Number(env.LINES) || 24),
  };
}

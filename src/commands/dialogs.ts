/**
 * What a command may ask of the person at the terminal. The shell provides
 * the implementation (NMC-style inquirer prompts); commands only call these.
 * A person leaving a dialog (Ctrl-C) raises DialogCancelled, and the command
 * must then change nothing.
 */
export class DialogCancelled extends Error {
  constructor() {
    super('Cancelled: nothing was changed.');
    this.name = 'DialogCancelled';
  }
}

/** Raised when a dialog is needed but no person is at the terminal. */
export class NoTerminalError extends Error {
  constructor(question: string) {
    super(`This command needs an answer to "${question}" but there is no terminal to ask on; pass -y to answer yes, or give the value as an option.`);
    this.name = 'NoTerminalError';
  }
}

export interface Choice<T extends string = string> {
  value: T;
  /** shown in the one-line choice list; defaults to value */
  label?: string;
  /** shown under the list while this choice is highlighted */
  description?: string;
}

export interface Dialogs {
  /** yes / no; resolves true for yes */
  confirm(question: string, opts?: { help?: string; default?: boolean }): Promise<boolean>;
  select<T extends string>(question: string, choices: Choice<T>[], opts?: { help?: string; default?: T }): Promise<T>;
  /** free text; validate returns an error sentence or null */
  input(question: string, opts?: { help?: string; default?: string; validate?: (value: string) => string | null }): Promise<string>;
  /** never echoed */
  password(question: string, opts?: { help?: string }): Promise<string>;
}

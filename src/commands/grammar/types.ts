/**
 * The declarations every command family writes, and what a matched command
 * receives and returns. Parsing, completion, `?` and `help` all read these.
 */
import type { Dialogs } from '../dialogs.js';
import type { Services } from '../../services/index.js';
import type { Access } from '../../services/access.js';
import type { DashboardSource } from '../../services/auto-sync/dashboard-data.js';

/** How a typed value is checked and what may be offered for it. */
export interface ValueSpec {
  /** placeholder shown in usage and help, e.g. N, SECONDS, DATASET */
  name: string;
  /** turn the typed text into a value; throw a sentence naming the bad value */
  parse?(raw: string, label: string): unknown;
  /** candidates for TAB */
  values?(ctx: GrammarContext): readonly string[];
}

export interface ArgSpec extends ValueSpec {
  help: string;
  /** takes every remaining word (as a string[]) */
  rest?: boolean;
}

export interface OptionSpec {
  /** '--from-fs' or '-n' */
  name: string;
  /** another spelling, e.g. '--yes' for '-y' */
  alias?: string;
  help: string;
  /** absent for flags */
  value?: ValueSpec;
  /** may be given several times: the values are collected in a list, in order */
  repeatable?: boolean;
}

export interface CommandSpec {
  /**
   * The words of the command: literal words, `:kind` for an instance
   * (`:auto-sync`), `<NAME>` for an argument and `[<NAME>]` for an optional
   * last argument. E.g. 'show auto-sync :auto-sync property [<KEY>]'.
   */
  path: string;
  /** one line */
  help: string;
  /** a longer paragraph for `help <command>` */
  details?: string;
  args?: Record<string, ArgSpec>;
  options?: OptionSpec[];
  run(ctx: CommandContext, input: CommandInput): Promise<Output>;
}

/** A family of commands, the help of the words it introduces, and the kinds of instance (`:name`) its paths name. */
export interface CommandFamily {
  words: Record<string, string>;
  commands: CommandSpec[];
  /** the `:kind`s this family declares; a path of any family may name them */
  instances?: InstanceKind[];
}

/** An instance of one kind, as completion and `?` offer it. */
export interface Instance {
  name: string;
  description: string;
}

export interface InstanceKind {
  /** the word after ':' in paths, e.g. 'auto-sync' */
  kind: string;
  help: string;
  /** the instances that exist now, read from the services (parsing checks a typed name against them, TAB offers them) */
  list(ctx: GrammarContext): Instance[];
}

/** What the grammar may read of the live system: the services, for the instance kinds' lists. */
export interface GrammarContext {
  services: Services;
}

export interface CommandInput {
  line: string;
  instance?: string;
  args: Record<string, unknown>;
  options: Record<string, unknown>;
}

export interface CommandContext extends GrammarContext {
  services: Services;
  dialogs: Dialogs;
  /** a person is at the terminal */
  interactive: boolean;
  /** -y: answer yes to confirmations */
  yes: boolean;
  signal: AbortSignal;
  /** what this session may make the appliance run, read or write (the local shell: anything; the console: what its policy allows) */
  access: Access;
  /** a progress line while a command works (shown, not part of the result) */
  progress(text: string): void;
}

export interface Column {
  key: string;
  header: string;
  /** right-align numbers */
  align?: 'left' | 'right';
  /** the column may be shortened first when the terminal is narrow */
  flexible?: boolean;
  /** when shortening is not enough, columns with a higher number are left out first */
  drop?: number;
}

/** What a command returns; the shell decides how it looks, --json prints `data`. */
export type Output =
  | { kind: 'table'; columns: Column[]; rows: Record<string, string>[]; data: unknown; empty?: string }
  | { kind: 'record'; fields: [string, string][]; data: unknown }
  | { kind: 'lines'; lines: string[]; data?: unknown }
  | { kind: 'message'; text: string; data?: unknown }
  /** a live view: initial lines, then lines as they come until cancelled */
  | { kind: 'follow'; initial: string[]; follow(signal: AbortSignal): AsyncIterable<string> }
  /** the live dashboard of every service: the figures at a time, a run now, a log; the shell redraws it */
  | ({ kind: 'dashboard' } & DashboardSource)
  | { kind: 'exit' }
  | { kind: 'none' };

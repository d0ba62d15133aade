/**
 * Running a program the operator configured (the alert command, a fence
 * command): execa with argv, never a shell; a time limit; never throws.
 *
 * The program runs in its own process group, and its stdin and output are
 * plain files rather than pipes, so that:
 *  - on timeout the whole group is stopped (SIGTERM, then SIGKILL), including
 *    anything it started, such as a stuck `curl` or `ssh`;
 *  - a background job it leaves behind (`mail … &`) cannot hold a pipe open
 *    and keep us waiting after the program itself has exited.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadExeca } from './lazy.js';

export interface ProgramResult {
  ok: boolean;
  /** a sentence saying what went wrong, when ok is false */
  error?: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** the last lines it wrote (stderr; with `output: 'both'` stdout too), shortened */
  output: string;
}

export interface RunProgramOptions {
  /** what the program is, for the sentences: 'alert command', 'fence command' */
  what: string;
  timeoutMs: number;
  /** written to its stdin (else it reads an empty file) */
  input?: string;
  /** 'stderr' (stdout ignored) or 'both' (stdout and stderr, as the log shows them) */
  output?: 'stderr' | 'both';
  /** how many of its last lines `output` keeps (default 1) */
  lines?: number;
  /** how the sentences show the command (default: argv joined) */
  shown?: string;
  /** added to the environment it inherits */
  env?: Record<string, string>;
}

/** after SIGTERM on timeout, how long the program has to exit before SIGKILL */
const KILL_GRACE_MS = 1_000;
/** how much of its output is quoted */
const QUOTE_CHARS = 300;

/**
 * execa hands any file-descriptor number straight to spawn, but its types
 * list only 0-9, so present ours as one of those.
 */
const fileDescriptor = (fd: number) => fd as 3;

/** the last non-empty lines of a file, shortened */
function lastLines(file: string, count: number): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return '';
  }
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(-count)
    .join(' | ');
  return lines.length > QUOTE_CHARS ? `…${lines.slice(-QUOTE_CHARS)}` : lines;
}

export async function runProgram(argv: string[], opts: RunProgramOptions): Promise<ProgramResult> {
  const [program, ...args] = argv;
  const failed = (error: string, rest: Partial<ProgramResult> = {}): ProgramResult => ({ ok: false, error, exitCode: null, signal: null, timedOut: false, output: '', ...rest });
  if (!program) return failed(`No ${opts.what} is set: the command is empty.`);
  const shown = opts.shown ?? argv.join(' ');
  let dir: string | undefined;
  const fds: number[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-program-'));
    const inputFile = path.join(dir, 'stdin');
    const outputFile = path.join(dir, 'output');
    writeFileSync(inputFile, opts.input ?? '');
    const stdin = openSync(inputFile, 'r');
    fds.push(stdin);
    const out = openSync(outputFile, 'w');
    fds.push(out);

    const { execa } = await loadExeca();
    const subprocess = execa(program, args, {
      stdin: fileDescriptor(stdin),
      stdout: opts.output === 'both' ? fileDescriptor(out) : 'ignore',
      stderr: fileDescriptor(out),
      detached: true,
      reject: false,
      env: opts.env,
    });
    let timedOut = false;
    const killGroup = (signal: NodeJS.Signals) => {
      if (subprocess.pid === undefined) return;
      try {
        process.kill(-subprocess.pid, signal);
      } catch {
        /* already gone */
      }
    };
    timers.push(
      setTimeout(() => {
        timedOut = true;
        killGroup('SIGTERM');
        timers.push(setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS));
      }, opts.timeoutMs),
    );
    const result = await subprocess;
    const said = lastLines(outputFile, opts.lines ?? 1);
    const detail = said ? `: ${said}` : '';
    const facts = { exitCode: result.exitCode ?? null, signal: result.signal ?? null, output: said };

    if (timedOut) return failed(`The ${opts.what} "${shown}" did not finish within ${opts.timeoutMs} ms and was stopped.`, { ...facts, timedOut: true });
    if (result.exitCode === undefined && result.signal === undefined) {
      // spawn itself failed: no such file, not executable, …
      return failed(`The ${opts.what} "${shown}" could not be started: ${result.originalMessage || result.shortMessage}.`, facts);
    }
    if (result.signal) return failed(`The ${opts.what} "${shown}" was killed by ${result.signal}${detail}.`, facts);
    if (result.exitCode !== 0) return failed(`The ${opts.what} "${shown}" exited with code ${result.exitCode}${detail}.`, facts);
    return { ok: true, timedOut: false, ...facts };
  } catch (error) {
    return failed(`The ${opts.what} "${shown}" could not be run: ${(error as Error).message}.`);
  } finally {
    for (const timer of timers) clearTimeout(timer);
    for (const fd of fds) closeSync(fd);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

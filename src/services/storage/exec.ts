/**
 * The one way storage drivers run external commands: execa with an argument
 * array (never a shell string), stderr kept for error messages, and stream
 * helpers for `send | receive` pipelines.
 */
import { appendFileSync } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { types } from 'node:util';
import { execa as spawnCommand } from 'execa';
import { cachedQuery, commandChanged, isQuery } from './query-cache.js';

/**
 * Every command a driver starts goes through here. SYNCSH_COMMAND_LOG=FILE
 * appends each one's argv (a JSON line) to FILE, so a bench or a test can
 * count what one run costs in processes (issue 13: one listing per side).
 */
export const execa = ((file: string, args: readonly string[], options?: object) => {
  const log = process.env.SYNCSH_COMMAND_LOG;
  if (log) appendFileSync(log, `${JSON.stringify([file, ...args])}\n`);
  const query = isQuery(file, args);
  if (!query) commandChanged();
  const child = spawnCommand(file, args, options);
  if (!query) child.then(commandChanged, commandChanged);
  // and, once it ended, how long it took (an object line: the argv lines above stay the count)
  if (log) {
    const started = performance.now();
    const ended = () => appendFileSync(log, `${JSON.stringify({ ended: [file, ...args], ms: Math.round(performance.now() - started), at: Math.round(started) })}\n`);
    child.then(ended, ended);
  }
  return child;
}) as unknown as typeof spawnCommand;

/** A command that exited non-zero (or could not start); `stderr` is what it said. */
export class CommandError extends Error {
  constructor(
    readonly file: string,
    readonly args: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    readonly missing = false,
  ) {
    super(missing ? `The command '${file}' was not found.` : `${[file, ...args].join(' ')} failed${exitCode === undefined ? '' : ` (exit ${exitCode})`}: ${firstLines(stderr)}`);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  /** bytes or text fed to stdin */
  input?: string | Buffer;
  signal?: AbortSignal;
}

/** Run to completion; resolves with stdout, rejects with a CommandError. */
export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  if (opts.input === undefined && !opts.signal) return cachedQuery('run', file, args, () => runNow(file, args, opts));
  return runNow(file, args, opts);
}

async function runNow(file: string, args: readonly string[], opts: RunOptions): Promise<string> {
  const result = await execa(file, args, {
    reject: false,
    stripFinalNewline: true,
    ...(opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input }),
    ...(opts.signal ? { cancelSignal: opts.signal } : {}),
  });
  if (result.failed) throw commandError(file, args, result);
  return result.stdout;
}

/** Like run, but a non-zero exit is an answer, not an error (probes, usage texts). */
export async function probe(file: string, args: readonly string[]): Promise<{ ok: boolean; stdout: string; stderr: string; missing: boolean }> {
  return cachedQuery('probe', file, args, async () => {
    const result = await execa(file, args, { reject: false, stdin: 'ignore' });
    return {
      ok: !result.failed,
      stdout: result.stdout,
      stderr: result.stderr,
      missing: isMissing(result),
    };
  });
}

export interface StreamFromOptions {
  signal?: AbortSignal;
  /** turn the command's failure into the error the stream is destroyed with */
  explain?: (error: CommandError) => Error;
}

/**
 * A command's stdout as a Readable. A non-zero exit destroys the stream with
 * an error carrying stderr; aborting the signal (or destroying the stream)
 * kills the command, so a consumer that gives up never leaves it running.
 */
export function streamFrom(file: string, args: readonly string[], opts: StreamFromOptions = {}): Readable {
  const out = new PassThrough();
  if (opts.signal?.aborted) {
    queueMicrotask(() => out.destroy(abortError(opts.signal!)));
    return out;
  }
  const child = execa(file, args, {
    reject: false,
    stdin: 'ignore',
    buffer: { stdout: false, stderr: true },
    ...(opts.signal ? { cancelSignal: opts.signal } : {}),
  });
  // end:false: the stream ends only once the exit status says the bytes are whole
  child.stdout.pipe(out, { end: false });
  out.on('close', () => {
    if (child.exitCode === null && !child.killed) child.kill('SIGTERM');
  });
  void child.then((result) => {
    if (out.destroyed) return;
    if (opts.signal?.aborted) return void out.destroy(abortError(opts.signal));
    if (result.failed) {
      const error = commandError(file, args, result);
      return void out.destroy(opts.explain ? opts.explain(error) : error);
    }
    out.end();
  });
  return out;
}

export interface FeedResult {
  /** bytes taken from the input stream and written to the command */
  bytes: number;
  /** the command's stdout */
  stdout: string;
}

/**
 * Pipe `input` into a command's stdin and wait for it. When the input fails
 * (cut, corrupt, the sender died) or the signal aborts, stdin is closed
 * early, so the command sees a short stream and fails on its own terms (a
 * receiver then cleans up after itself); it is killed only if it lingers.
 * The input's error (or the abort) is what the caller gets then.
 */
export async function feed(file: string, args: readonly string[], input: Readable, opts: { signal?: AbortSignal; killAfterMs?: number } = {}): Promise<FeedResult> {
  const child = execa(file, args, { reject: false, stdin: 'pipe' });
  const stdin = child.stdin;
  let bytes = 0;
  let inputError: Error | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const stop = () => {
    input.off('data', onData);
    stdin.end();
    killTimer ??= setTimeout(() => child.kill('SIGTERM'), opts.killAfterMs ?? 10_000);
  };
  const onData = (chunk: Buffer) => {
    bytes += chunk.length;
    if (!stdin.write(chunk)) input.pause();
  };
  const onAbort = () => {
    inputError ??= abortError(opts.signal!);
    stop();
  };
  stdin.on('error', () => {}); // EPIPE when the command quits early: its exit status tells why
  stdin.on('drain', () => input.resume());
  input.on('data', onData);
  input.once('end', () => stdin.end());
  input.once('error', (error) => {
    inputError ??= error;
    stop();
  });
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });
  const result = await child;
  clearTimeout(killTimer);
  opts.signal?.removeEventListener('abort', onAbort);
  input.off('data', onData);
  if (!input.readableEnded && !input.destroyed) input.destroy();
  if (inputError) throw inputError;
  if (result.failed) throw commandError(file, args, result);
  return { bytes, stdout: result.stdout };
}

/**
 * Read the first `n` bytes of a stream (fewer if it ends) without losing
 * them: `rest` replays them and then the remainder, and forwards errors.
 * Destroying `rest` destroys the source (so a sending process is stopped).
 */
export function peek(stream: Readable, n: number): Promise<{ head: Buffer; rest: Readable }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    let ended = false;
    const cleanup = () => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    const finish = () => {
      cleanup();
      const all = Buffer.concat(chunks);
      const rest = new PassThrough();
      rest.write(all);
      stream.on('error', (error) => rest.destroy(error));
      rest.on('close', () => {
        if (!stream.destroyed && !stream.readableEnded) stream.destroy();
      });
      if (ended) rest.end();
      else stream.pipe(rest);
      resolve({ head: all.subarray(0, n), rest });
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while (got < n && (chunk = stream.read() as Buffer | null) !== null) {
        chunks.push(chunk);
        got += chunk.length;
      }
      if (got >= n) finish();
    };
    const onEnd = () => {
      ended = true;
      finish();
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('error', onError);
  });
}

/** the CommandError for a failed execa result: its stderr, else the signal that killed it */
export function commandError(file: string, args: readonly string[], result: { exitCode?: number; stderr?: unknown; code?: string; signal?: string }): CommandError {
  const stderr = typeof result.stderr === 'string' ? result.stderr : '';
  return new CommandError(file, args, result.exitCode, stderr || (result.signal ? `killed by ${result.signal}` : ''), isMissing(result));
}

function isMissing(result: { code?: string }): boolean {
  return result.code === 'ENOENT';
}

/** the caller's own Error reason, else a plain Error named AbortError (the default reason is a DOMException) */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (types.isNativeError(reason) && reason.name !== 'AbortError') return reason;
  const error = new Error('The operation was aborted.', { cause: reason });
  error.name = 'AbortError';
  return error;
}

function firstLines(text: string): string {
  const lines = text.trim().split('\n').filter(Boolean);
  return lines.slice(0, 4).join(' / ') || 'no message';
}

/**
 * `show auto-sync :NAME logtail -f` for a person at a terminal: the last
 * lines, then each new line as it is written (ServiceLog.follow keeps going
 * across rotation and truncation), failures in red, and a status line under
 * them until q or Ctrl-C brings the prompt back. Lines are printed above the
 * live status line, so they stay in the terminal's scrollback like tail's.
 * Without a person at the terminal the session prints plain lines instead.
 */
import React, { useEffect, useRef, useState } from 'react';
import { Text, render, useApp, useStdout } from './line-editor/ink.js';
import { useTerminalInput } from './line-editor/use-terminal-input.js';
import { useResize } from './line-editor/use-resize.js';
import { inputView, outputView } from './line-editor/terminal-streams.js';
import { paint, truncate } from './render.js';
import type { Terminal } from './terminal.js';

import { paintLine, toneOf } from './log-tone.js';

export { paintLine, toneOf, type Tone } from './log-tone.js';

/** what the view follows: a follow Output's two parts */
export interface FollowedLog {
  initial: string[];
  follow(signal: AbortSignal): AsyncIterable<string>;
}

export interface LogtailViewProps extends FollowedLog {
  color: boolean;
  /** the status line's text; a default names the keys */
  title?: string;
  /** what was typed after q or Ctrl-C in the same chunk: it belongs to whoever reads next */
  onTypedAhead?(rest: string): void;
}

interface Counts {
  lines: number;
  failures: number;
  /** when the last line came, for the status line */
  lastAt: Date | null;
}

function countOf(lines: string[], before: Counts, at: Date | null): Counts {
  return {
    lines: before.lines + lines.length,
    failures: before.failures + lines.filter((l) => toneOf(l) === 'failure').length,
    lastAt: lines.length ? at : before.lastAt,
  };
}

const time = (d: Date) => d.toTimeString().slice(0, 8);

/** the keys first: a narrow terminal cuts the figures, not how to leave */
export function statusLine(counts: Counts, title: string | undefined): string {
  const parts = [`${counts.lines} line${counts.lines === 1 ? '' : 's'}`];
  if (counts.failures) parts.push(`${counts.failures} failure${counts.failures === 1 ? '' : 's'}`);
  if (counts.lastAt) parts.push(`last at ${time(counts.lastAt)}`);
  return `-- q or Ctrl-C to stop -- ${title ?? 'following the log'}: ${parts.join(', ')}`;
}

export function finalLine(counts: Counts, title: string | undefined): string {
  return statusLine(counts, title).replace('-- q or Ctrl-C to stop -- ', '-- stopped ');
}

export function LogtailView({ initial, follow, color, title, onTypedAhead }: LogtailViewProps) {
  const { exit } = useApp();
  const { stdout, write } = useStdout();
  const [counts, setCounts] = useState<Counts>(() => countOf(initial, { lines: 0, failures: 0, lastAt: null }, null));
  const [done, setDone] = useState<Error | null | undefined>(undefined);
  useResize();

  useEffect(() => {
    if (initial.length) write(`${initial.map((l) => paintLine(l, color)).join('\n')}\n`);
    const abort = new AbortController();
    // lines that come together are printed together: one redraw of the status line per batch
    let batch: string[] = [];
    const flush = () => {
      const lines = batch;
      batch = [];
      if (!lines.length || abort.signal.aborted) return;
      write(`${lines.map((l) => paintLine(l, color)).join('\n')}\n`);
      setCounts((c) => countOf(lines, c, new Date()));
    };
    (async () => {
      for await (const line of follow(abort.signal)) {
        if (!batch.length) setImmediate(flush);
        batch.push(line);
      }
    })().catch((error: unknown) => {
      if (!abort.signal.aborted) setDone(error instanceof Error ? error : new Error(String(error)));
    });
    return () => abort.abort();
  }, []);

  // raw keys as ink reads them (exitOnCtrlC is off: Ctrl-C arrives as \u0003)
  const ending = useRef(false);
  useTerminalInput((raw) => {
    // keys typed after q, until the view is gone, belong to the prompt that comes back
    if (ending.current) return onTypedAhead?.(raw);
    // typed ahead or pasted, keys come several to a chunk: the first q or Ctrl-C ends the view
    const at = raw.search(/[qQ\u0003]/);
    if (at < 0 || done !== undefined) return;
    ending.current = true;
    if (at + 1 < raw.length) onTypedAhead?.(raw.slice(at + 1));
    setDone(null);
  });

  useEffect(() => {
    if (done === undefined) return;
    if (done) exit(done);
    else exit();
  }, [done]);

  const width = Math.max(10, (stdout.columns || 80) - 1);
  // the final frame says what was followed; the prompt comes back under it
  const text = done === undefined ? statusLine(counts, title) : finalLine(counts, title);
  return <Text>{paint.dim(truncate(text, width), color)}</Text>;
}

/**
 * Runs the view on a Terminal until q, Ctrl-C, the signal (the session
 * cancelled the command) or the end of the input (an SSH channel closed).
 */
export async function followLive(term: Terminal, log: FollowedLog, signal: AbortSignal, title?: string): Promise<void> {
  if (signal.aborted) return;
  // as readLine: let a paused tty stdin settle before ink starts reading it
  await new Promise((resolve) => setImmediate(resolve));
  let typedAhead = '';
  const view = <LogtailView initial={log.initial} follow={log.follow} color={term.color} title={title} onTypedAhead={(rest) => (typedAhead += rest)} />;
  const app = render(view, {
    stdin: inputView(term) as unknown as NodeJS.ReadStream,
    stdout: outputView(term) as unknown as NodeJS.WriteStream,
    stderr: term.errors as unknown as NodeJS.WriteStream,
    exitOnCtrlC: false,
    patchConsole: false,
  });
  const stop = () => app.unmount();
  signal.addEventListener('abort', stop);
  term.input.once('end', stop);
  try {
    await app.waitUntilExit();
  } finally {
    signal.removeEventListener('abort', stop);
    term.input.off('end', stop);
  }
  if (typedAhead) term.input.unshift(typedAhead);
}

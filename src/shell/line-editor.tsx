/**
 * The shell's prompt line: an ink component drawing the state that
 * ./line-editor/editing.ts computes, and readLine, which mounts it on a
 * Terminal for one line. Help (`?`) and TAB's choices are printed above the
 * live line as permanent output, then the prompt comes back with the line
 * intact, as in NMC.
 */
import React, { useEffect, useRef, useState } from 'react';
import { StringDecoder } from 'node:string_decoder';
import { decodeKeys } from './keys.js';
import { Box, Static, Text, render, useApp, useCursor } from './line-editor/ink.js';
import { useTerminalInput } from './line-editor/use-terminal-input.js';
import { useResize } from './line-editor/use-resize.js';
import { initialState, press, type Completion, type EditorServices, type HelpEntry, type LineState } from './line-editor/editing.js';
import { columns, helpLines, promptRows } from './line-editor/layout.js';
import { inputView, outputView } from './line-editor/terminal-streams.js';
import { paint } from './render.js';
import type { History } from './history.js';
import type { Terminal, TerminalInput } from './terminal.js';

export type { Completion, HelpEntry } from './line-editor/editing.js';

export interface LineEditorOptions {
  /** e.g. 'syncsh@node1:/$ ' */
  prompt: string;
  history: History;
  complete(line: string, cursor: number): Completion;
  /** what may come next at the cursor, for '?' */
  help(line: string, cursor: number): HelpEntry[];
}

export interface LineEditorProps {
  prompt: string;
  /** history entries, oldest first */
  history: readonly string[];
  services: EditorServices;
  columns: () => number;
  color: boolean;
  /** the line (null for end of input) and the raw keys typed after it, which belong to whoever reads next */
  onDone(line: string | null, typedAhead: string): void;
}

/** how the prompt ended, and what is shown after the line */
interface Ending {
  line: string | null;
  mark: string;
}

interface PrintedBlock {
  id: number;
  lines: string[];
}

export function LineEditor({ prompt, history, services, columns: width, color, onDone }: LineEditorProps) {
  const { exit } = useApp();
  const { setCursorPosition } = useCursor();
  const current = useRef<LineState>(initialState(history));
  const ended = useRef(false);
  const typedAhead = useRef('');
  const [state, setState] = useState(current.current);
  const [printed, setPrinted] = useState<PrintedBlock[]>([]);
  const [ending, setEnding] = useState<Ending | null>(null);
  useResize();

  const bold = (s: string) => paint.bold(s, color);
  const rowsOf = (line: string, cursor: number) => {
    const layout = promptRows(prompt, line, cursor, width());
    if (color && layout.rows[0]?.startsWith(prompt)) layout.rows[0] = bold(prompt) + layout.rows[0].slice(prompt.length);
    return layout;
  };
  /** freeze the prompt line as it is, print `lines` under it; the live prompt follows */
  const printUnderLine = (lines: string[]) => {
    const { line, cursor } = current.current;
    const frozen = rowsOf(line, cursor).rows.filter((r, i) => i === 0 || r !== '');
    setPrinted((blocks) => [...blocks, { id: blocks.length, lines: [...frozen, ...lines] }]);
  };
  const end = (line: string | null, mark = '') => {
    ended.current = true;
    setEnding({ line, mark });
  };

  useTerminalInput((raw) => {
    const keys = decodeKeys(raw);
    for (const [i, key] of keys.entries()) {
      if (ended.current) {
        typedAhead.current += keys
          .slice(i)
          .map((k) => k.raw)
          .join('');
        break;
      }
      const step = press(current.current, key, services);
      current.current = step.state;
      const outcome = step.outcome;
      if (outcome.kind === 'submit') end(step.state.line);
      else if (outcome.kind === 'cancel') end('', '^C');
      else if (outcome.kind === 'eof') end(null);
      else if (outcome.kind === 'choices') printUnderLine(columns(outcome.choices, width()));
      else if (outcome.kind === 'help' && outcome.entries.length) printUnderLine(helpLines(outcome.entries, width(), bold));
    }
    setState(current.current);
  });

  useEffect(() => {
    if (!ending) return;
    onDone(ending.line, typedAhead.current);
    exit();
  }, [ending]);

  const shown = ending ? state.line + ending.mark : state.line;
  const layout = rowsOf(shown, ending ? shown.length : state.cursor);
  // the final frame leaves the terminal's cursor under the line, where the command's output goes
  setCursorPosition(ending ? undefined : layout.cursor);
  // ...and needs no empty row for a cursor at the end of a full one
  const rows = ending ? layout.rows.filter((r, i) => i === 0 || r !== '') : layout.rows;
  return (
    <>
      <Static items={printed}>
        {(block) => (
          <Box key={block.id} flexDirection="column">
            {block.lines.map((l, i) => (
              <Text key={i}>{l || ' '}</Text>
            ))}
          </Box>
        )}
      </Static>
      <Box flexDirection="column">
        {rows.map((r, i) => (
          <Text key={i}>{r || ' '}</Text>
        ))}
      </Box>
    </>
  );
}

/**
 * Reads one line on the terminal: the line on Enter, '' on Ctrl-C (the line
 * stays on screen followed by ^C), null on Ctrl-D on an empty line. With no
 * person at the terminal, reads a plain line without echo or editing.
 */
export async function readLine(term: Terminal, opts: LineEditorOptions): Promise<string | null> {
  if (!term.interactive) return readPlainLine(term.input);
  // Whoever read the input before (a dialog's readline) paused it, and Node stops
  // a paused tty stdin one tick later; ink's reader must start after that, or
  // it never gets a key and the process runs out of work.
  await new Promise((resolve) => setImmediate(resolve));
  let result: string | null = '';
  let typedAhead = '';
  const services: EditorServices = { complete: opts.complete, help: opts.help };
  const app = render(
    <LineEditor
      prompt={opts.prompt}
      history={opts.history.entries()}
      services={services}
      columns={() => term.columns()}
      color={term.color}
      onDone={(line, rest) => {
        result = line;
        typedAhead = rest;
      }}
    />,
    {
      stdin: inputView(term) as unknown as NodeJS.ReadStream,
      stdout: outputView(term) as unknown as NodeJS.WriteStream,
      stderr: term.errors as unknown as NodeJS.WriteStream,
      exitOnCtrlC: false,
      patchConsole: false,
    },
  );
  // the other end went away (an SSH channel closed): no more lines will come
  const inputEnded = () => {
    result = null;
    app.unmount();
  };
  term.input.once('end', inputEnded);
  try {
    await app.waitUntilExit();
  } finally {
    term.input.off('end', inputEnded);
  }
  if (typedAhead) term.input.unshift(typedAhead);
  return result;
}

/** one line from a pipe; what follows it stays in the stream */
function readPlainLine(input: TerminalInput): Promise<string | null> {
  if (input.readableEnded) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder('utf8');
    let text = '';
    const stop = () => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', reject);
      input.pause();
    };
    const onData = (chunk: Buffer | string) => {
      text += typeof chunk === 'string' ? chunk : decoder.write(chunk);
      const newline = text.indexOf('\n');
      if (newline < 0) return;
      stop();
      if (newline + 1 < text.length) input.unshift(text.slice(newline + 1));
      resolve(text.slice(0, newline).replace(/\r$/, ''));
    };
    const onEnd = () => {
      stop();
      text += decoder.end();
      resolve(text ? text : null);
    };
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('error', reject);
    // a 'data' listener alone does not restart a stream paused by the last read
    input.resume();
  });
}

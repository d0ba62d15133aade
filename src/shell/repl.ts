/**
 * The interactive shell: read a line with the ink line editor, run it, and
 * again, until exit, quit or Ctrl-D. Ctrl-C while a command runs cancels it.
 */
import { History } from './history.js';
import type { ShellSession } from './session.js';

export async function runRepl(session: ShellSession, historyFile: string | null): Promise<number> {
  const history = new History(historyFile);
  const term = session.term;
  // The line editor (ink and its layout engine) is most of the shell's start-up: the prompt
  // is on the screen (bold where colour is on, as the editor draws it) while it loads, and the editor draws over it. Keys typed
  // meanwhile wait in the terminal's buffer for the editor.
  const editor = import('./line-editor.js');
  session.print([`syncsh ${session.services.appliance.version} on appliance ${session.services.appliance.id}. Type 'help' or '?' for help, TAB to complete, 'exit' to leave.`]);
  if (term.interactive) term.output.write(term.color ? `\x1b[1m${session.prompt}\x1b[22m` : session.prompt);
  const { readLine } = await editor;
  if (term.interactive) term.output.write('\r\x1b[2K');
  for (;;) {
    const line = await readLine(term, {
      prompt: session.prompt,
      history,
      complete: (l, c) => session.complete(l, c),
      help: (l, c) => session.help(l, c),
    });
    if (line === null) break;
    if (!line.trim()) continue;
    history.add(line);
    // In cooked mode the terminal turns Ctrl-C into SIGINT: let it cancel the running command only.
    const onSigint = () => {
      if (!session.cancel()) term.output.write('\r\n');
    };
    const processTerm = term.input === process.stdin;
    if (processTerm) process.on('SIGINT', onSigint);
    try {
      const outcome = await session.execute(line);
      if (outcome.exit) break;
    } finally {
      if (processTerm) process.off('SIGINT', onSigint);
    }
  }
  return 0;
}

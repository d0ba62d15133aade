/** help, exit and quit. The verbs' own help lines live here too. */
import type { CommandFamily } from './grammar/types.js';
import { helpText } from './grammar/help.js';
import type { Grammar } from './grammar/compile.js';

export const verbWords = {
  show: 'display services, folders, snapshots, properties and logs',
  create: 'create a service or a folder',
  setup: 'change or operate a service',
  destroy: 'remove a service or a folder',
  run: 'run a service now',
  help: 'how to use the shell and each command',
  exit: 'leave the shell',
  quit: 'leave the shell',
};

export function generalFamily(grammar: () => Grammar): CommandFamily {
  return {
    words: verbWords,
    commands: [
      {
        path: 'help [<TOPIC>]',
        help: 'how to use the shell; help WORD... for a command and its options',
        args: { TOPIC: { name: 'TOPIC', help: 'a command or word, e.g. auto-sync or create auto-sync', rest: true, values: () => Object.keys(grammar().words) } },
        async run(_ctx, input) {
          const lines = helpText(grammar(), (input.args.TOPIC as string[] | undefined) ?? []);
          return { kind: 'lines', lines, data: lines };
        },
      },
      { path: 'exit', help: 'leave the shell', run: async () => ({ kind: 'exit' }) },
      { path: 'quit', help: 'leave the shell', run: async () => ({ kind: 'exit' }) },
    ],
  };
}

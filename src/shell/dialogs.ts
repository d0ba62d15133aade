/**
 * Dialogs as NMC shows them, asked on one Terminal: the dialog is drawn in
 * place, and once answered only `Question? Answer` stays on screen. Ctrl-C
 * erases the dialog and raises DialogCancelled; with no person at the
 * terminal every dialog raises NoTerminalError.
 */
import { DialogCancelled, NoTerminalError, type Choice, type Dialogs } from '../commands/dialogs.js';
import { answerLine } from './dialogs/layout.js';
import { holdInput, outputView } from './line-editor/terminal-streams.js';
import type { Terminal } from './terminal.js';

// The prompts (and @inquirer/core under them) load with the first dialog: a command that asks nothing starts without them.
const prompts = () => import('./dialogs/prompts.js');

const YES_NO: Choice<'yes' | 'no'>[] = [{ value: 'yes' }, { value: 'no' }];

interface PromptContext {
  input: Terminal['input'];
  output: Terminal['output'];
  clearPromptOnDone: true;
}

export function createDialogs(term: Terminal): Dialogs {
  /**
   * Runs one prompt with the terminal as its context. The output is a view of
   * term.output that the prompt cannot end (it would, when done). The prompt
   * erases itself when done (clearPromptOnDone); the answer line is ours.
   */
  async function ask<T>(question: string, run: (context: PromptContext) => Promise<T>, shown: (answer: T) => string): Promise<T> {
    if (!term.interactive) throw new NoTerminalError(question);
    let answer: T;
    const release = holdInput(term);
    try {
      answer = await run({ input: term.input, output: outputView(term), clearPromptOnDone: true });
    } catch (error) {
      const { AbortPromptError, CancelPromptError, ExitPromptError } = await import('@inquirer/core');
      if (error instanceof ExitPromptError || error instanceof CancelPromptError || error instanceof AbortPromptError) throw new DialogCancelled();
      throw error;
    } finally {
      release();
    }
    term.output.write(`${answerLine(question, shown(answer), term.color)}\r\n`);
    return answer;
  }

  const display = { color: term.color, width: () => term.columns(), height: () => term.rows() };

  async function select<T extends string>(question: string, choices: Choice<T>[], opts: { help?: string; default?: T } = {}): Promise<T> {
    if (!choices.length) throw new Error(`"${question}" has nothing to choose from.`);
    const labels = choices.map((c) => c.label ?? c.value);
    const initial = Math.max(
      0,
      choices.findIndex((c) => c.value === opts.default),
    );
    const index = await ask(
      question,
      async (context) => (await prompts()).choicePrompt({ question, labels, descriptions: choices.map((c) => c.description), initial, help: opts.help, ...display }, context),
      (i) => labels[i],
    );
    return choices[index].value;
  }

  return {
    select,

    async confirm(question, opts = {}) {
      const labels = YES_NO.map((c) => c.value);
      const index = await ask(
        question,
        async (context) => (await prompts()).choicePrompt({ question, labels, descriptions: [], initial: opts.default === true ? 0 : 1, help: opts.help, ...display }, context),
        (i) => (i === 0 ? 'Yes' : 'No'),
      );
      return index === 0;
    },

    async input(question, opts = {}) {
      return ask(
        question,
        async (context) => (await prompts()).fieldPrompt({ question, default: opts.default, validate: opts.validate, secret: false, help: opts.help, ...display }, context),
        (value) => value,
      );
    },

    async password(question, opts = {}) {
      // the answer line is the question alone: nothing of a password is shown
      return ask(
        question,
        async (context) => (await prompts()).fieldPrompt({ question, secret: true, help: opts.help, ...display }, context),
        () => '',
      );
    },
  };
}

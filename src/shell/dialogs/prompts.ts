/**
 * The two NMC dialogs as @inquirer/core prompts: a choice among a few values
 * on one line, and a typed field (echoed or not). They only draw and take
 * keys; ../dialogs.ts asks them on a Terminal and leaves the answer line.
 */
import { createPrompt, isEnterKey, isTabKey, useEffect, useKeypress, useState } from '@inquirer/core';
import { fieldLines, selectLines } from './layout.js';

const HIDE_CURSOR = '\u001b[?25l'; // inquirer shows it again when the prompt is done

export interface ChoiceConfig {
  question: string;
  labels: string[];
  descriptions: (string | undefined)[];
  initial: number;
  help?: string;
  color: boolean;
  width: () => number;
  height: () => number;
}

const PREVIOUS = new Set(['left', 'up', 'h', 'k']);
const NEXT = new Set(['right', 'down', 'l', 'j']);

/** resolves the index of the chosen label */
export const choicePrompt = createPrompt<number, ChoiceConfig>((config, done) => {
  const [current, setCurrent] = useState(config.initial);
  useKeypress((key) => {
    if (isEnterKey(key)) done(current);
    else if (PREVIOUS.has(key.name) && !key.ctrl) setCurrent(Math.max(0, current - 1));
    else if (NEXT.has(key.name) && !key.ctrl) setCurrent(Math.min(config.labels.length - 1, current + 1));
  });
  const lines = selectLines({
    question: config.question,
    labels: config.labels,
    current,
    help: config.help,
    description: config.descriptions[current],
    width: config.width(),
    height: config.height(),
    color: config.color,
  });
  // the cursor would only blink somewhere meaningless: the highlight shows where one is
  return lines.join('\n') + HIDE_CURSOR;
});

export interface FieldConfig {
  question: string;
  default?: string;
  /** an error sentence, or null when the value will do */
  validate?: (value: string) => string | null;
  /** a password: nothing typed is shown, not even its length */
  secret: boolean;
  help?: string;
  color: boolean;
  width: () => number;
}

export const fieldPrompt = createPrompt<string, FieldConfig>((config, done) => {
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | null>(null);
  // the default is typed in for the person, ready to accept or edit
  useEffect((rl) => {
    if (config.default) {
      rl.write(config.default);
      setValue(config.default);
    }
  }, []);
  useKeypress((key, rl) => {
    if (isEnterKey(key)) {
      const problem = config.validate?.(value);
      if (!problem) {
        done(value);
        return;
      }
      // readline empties its line on Enter: put the value back to be fixed
      rl.write(value);
      setError(problem);
    } else if (isTabKey(key)) {
      // readline inserts the tab; a field has no use for it
      rl.clearLine(0);
      rl.write(value);
    } else {
      setValue(rl.line);
      setError(null);
    }
  });
  const [field, under] = fieldLines({
    question: config.question,
    value: config.secret ? '' : value,
    error,
    help: config.help,
    width: config.width(),
    color: config.color,
  });
  return [config.secret ? field + HIDE_CURSOR : field, under.join('\n')];
});

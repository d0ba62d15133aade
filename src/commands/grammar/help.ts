/** `help` and `help TOPIC`, written from the same declarations the parser uses. */
import { nearest } from './nearest.js';
import { optionsOf, type Grammar } from './compile.js';
import type { CommandSpec } from './types.js';

export function usage(command: CommandSpec): string {
  const words = command.path.split(/\s+/).map((w) => (w.startsWith(':') ? ':NAME' : w));
  const opts = (command.options ?? []).map((o) => (o.value ? `[${o.name} ${o.value.name}]${o.repeatable ? '...' : ''}` : `[${o.name}]`));
  return [...words, ...opts].join(' ');
}

function table(rows: [string, string][], indent = '  '): string[] {
  const width = Math.min(40, Math.max(...rows.map(([a]) => a.length)));
  return rows.map(([a, b]) => `${indent}${a.padEnd(width)}  ${b}`);
}

export function helpText(grammar: Grammar, topic: string[]): string[] {
  if (!topic.length) {
    const verbs = grammar.root.children.flatMap((c) => (c.token?.kind === 'word' ? [[c.token.word, c.token.help] as [string, string]] : []));
    return [
      'Commands are typed as: verb object [:instance] [sub-command] [arguments] [options]',
      "TAB completes a word (twice lists the choices); '?' anywhere shows what may come next.",
      '',
      ...table(verbs),
      '',
      "Type 'help WORD' (e.g. 'help auto-sync' or 'help create auto-sync') for the commands and their options.",
    ];
  }
  const words = topic.map((w) => (w.startsWith(':') ? ':NAME' : w));
  const pathOf = (c: CommandSpec) => c.path.split(/\s+/).map((w) => (w.startsWith(':') ? ':NAME' : w.replace(/^\[?<(.+)>\]?$/, '$1')));
  const exact = grammar.commands.filter((c) => words.every((w, i) => pathOf(c)[i] === w));
  const found = exact.length ? exact : grammar.commands.filter((c) => words.every((w) => pathOf(c).includes(w)));
  if (!found.length) {
    const near = nearest(topic[0], Object.keys(grammar.words));
    throw new Error(`No help on '${topic.join(' ')}'.${near ? ` Did you mean 'help ${near}'?` : " Type 'help' for the list of commands."}`);
  }
  if (found.length === 1 || (exact.length === 1 && pathOf(exact[0]).length === words.length)) {
    const command = exact.length === 1 ? exact[0] : found[0];
    const lines = [usage(command), '', `  ${command.help}`];
    if (command.details) lines.push('', ...command.details.split('\n').map((l) => `  ${l}`));
    const args = Object.entries(command.args ?? {});
    if (args.length) lines.push('', 'Arguments:', ...table(args.map(([name, a]) => [name, a.help])));
    lines.push('', 'Options:', ...table(optionsOf(command).map((o) => [o.value ? `${o.name} ${o.value.name}` : `${o.alias ? `${o.name}, ${o.alias}` : o.name}`, o.help])));
    return lines;
  }
  return table(found.map((c) => [usage(c), c.help]));
}

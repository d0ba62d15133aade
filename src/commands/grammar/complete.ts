/**
 * TAB completion and `?` help at the cursor, both read off the same tree
 * the parser walks.
 */
import { tokenize } from './tokenize.js';
import { optionsOf, type Grammar, type Node } from './compile.js';
import { isOptionToken, optionFor, walkTokens, type Walk } from './match.js';
import type { GrammarContext, OptionSpec } from './types.js';

export interface Completion {
  /** text replacing the word being completed, or null */
  replacement: string | null;
  /** where in the line the word being replaced starts */
  start: number;
  /** all candidates (listed on a second TAB) */
  choices: string[];
}

export interface HelpEntry {
  word: string;
  description: string;
}

interface Position {
  walk: Walk | null;
  error: string | null;
  partial: string;
  start: number;
  /** the option whose value is being typed */
  valueOf: OptionSpec | null;
}

function position(grammar: Grammar, line: string, cursor: number, ctx: GrammarContext): Position {
  const before = line.slice(0, cursor);
  const { tokens, trailingSpace } = tokenize(before);
  const typing = !trailingSpace && tokens.length > 0;
  const partialToken = typing ? tokens[tokens.length - 1] : null;
  const prior = typing ? tokens.slice(0, -1) : tokens;
  let valueOf: OptionSpec | null = null;
  const last = prior.at(-1);
  if (last && isOptionToken(last.text)) {
    const found = optionFor(grammar, last.text);
    if (found?.spec.value && found.inlineValue === null) valueOf = found.spec;
  }
  const partial = partialToken?.text ?? '';
  const start = partialToken?.start ?? cursor;
  try {
    const walkable = valueOf ? prior.slice(0, -1) : prior;
    return { walk: walkTokens(grammar, walkable, ctx), error: null, partial, start, valueOf };
  } catch (error) {
    return { walk: null, error: (error as Error).message, partial, start, valueOf };
  }
}

/** options that may follow: the command's own when the words are complete, else those of every command below */
function optionsBelow(node: Node): OptionSpec[] {
  if (node.command) return optionsOf(node.command);
  const seen = new Set<OptionSpec>();
  const visit = (n: Node) => {
    if (n.command) optionsOf(n.command).forEach((o) => seen.add(o));
    n.children.forEach(visit);
  };
  visit(node);
  return [...seen];
}

function candidates(pos: Position, ctx: GrammarContext): HelpEntry[] {
  const walk = pos.walk!;
  if (pos.valueOf) {
    return (pos.valueOf.value?.values?.(ctx) ?? []).map((v) => ({ word: v, description: pos.valueOf!.help }));
  }
  const used = new Set(walk.options.map((o) => o.spec));
  const options = optionsBelow(walk.node)
    .filter((o) => !used.has(o))
    .map((o) => ({ word: o.name, description: o.value ? `${o.help} (${o.value.name})` : o.help }));
  if (pos.partial.startsWith('-')) return options;
  const out: HelpEntry[] = [];
  for (const child of walk.node.children) {
    const t = child.token!;
    if (t.kind === 'word') out.push({ word: t.word, description: t.help });
    else if (t.kind === 'instance') out.push(...t.of.list(ctx).map((i) => ({ word: `:${i.name}`, description: i.description })));
    else out.push(...(t.spec.values?.(ctx) ?? []).map((v) => ({ word: v, description: t.spec.help })));
  }
  return out;
}

function commonPrefix(words: string[]): string {
  if (!words.length) return '';
  let prefix = words[0];
  for (const w of words) while (!w.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix;
}

export function complete(grammar: Grammar, line: string, cursor: number, ctx: GrammarContext): Completion {
  const pos = position(grammar, line, cursor, ctx);
  if (!pos.walk) return { replacement: null, start: pos.start, choices: [] };
  const choices = [...new Set(candidates(pos, ctx).map((e) => e.word))].filter((w) => w.startsWith(pos.partial)).sort();
  if (!choices.length) return { replacement: null, start: pos.start, choices };
  if (choices.length === 1) return { replacement: `${choices[0]} `, start: pos.start, choices };
  const prefix = commonPrefix(choices);
  return { replacement: prefix.length > pos.partial.length ? prefix : null, start: pos.start, choices };
}

/** What may come next at the cursor, a line of description each (NMC's `?`). */
export function helpAt(grammar: Grammar, line: string, cursor: number, ctx: GrammarContext): HelpEntry[] {
  const pos = position(grammar, line, cursor, ctx);
  if (!pos.walk) return [{ word: '', description: pos.error ?? 'This line does not parse.' }];
  const entries = candidates(pos, ctx).filter((e) => e.word.startsWith(pos.partial));
  const node = pos.walk.node;
  if (!pos.valueOf) {
    for (const child of node.children) {
      const t = child.token!;
      if (t.kind === 'instance' && !t.of.list(ctx).length && !pos.partial) entries.push({ word: ':NAME', description: `${t.of.help} (none exist yet)` });
      if (t.kind === 'arg' && !t.spec.values?.(ctx).length && !pos.partial) entries.push({ word: `<${t.name}>`, description: t.spec.help });
    }
    if (node.command && !pos.partial) entries.push({ word: '<Enter>', description: node.command.help });
  } else if (!entries.length) {
    entries.push({ word: pos.valueOf.value!.name, description: pos.valueOf.help });
  }
  return entries;
}

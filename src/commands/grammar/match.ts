/**
 * Matches a typed line against the grammar tree. Tells apart an unknown or
 * misplaced word, an incomplete command, a bad value and an unknown option,
 * each in a sentence naming the word, what was expected there and the
 * nearest valid word.
 */
import { tokenize, type Token } from './tokenize.js';
import { nearest } from './nearest.js';
import { optionsOf, type Grammar, type Node } from './compile.js';
import type { CommandInput, CommandSpec, GrammarContext, OptionSpec } from './types.js';

export type GrammarErrorKind = 'unknown' | 'incomplete' | 'unexpected' | 'bad-value' | 'unknown-option' | 'unterminated';

export class GrammarError extends Error {
  constructor(
    readonly kind: GrammarErrorKind,
    message: string,
    readonly expected: string[] = [],
    readonly suggestion: string | null = null,
  ) {
    super(message);
    this.name = 'GrammarError';
  }
}

export interface Match {
  command: CommandSpec;
  input: CommandInput;
}

/** what the next word at a node may be, as shown to a person */
export function expectedAt(node: Node): string[] {
  return node.children.map((c) => {
    const t = c.token!;
    return t.kind === 'word' ? t.word : t.kind === 'instance' ? ':NAME' : `<${t.name}>`;
  });
}

const said = (path: string[]) => (path.length ? `'${path.join(' ')}'` : 'the start of the line');
const list = (items: string[]) => items.join(', ');

export function isOptionToken(text: string): boolean {
  return text.length > 1 && text.startsWith('-') && !/^-\d/.test(text);
}

/** the spec of an option token (`--x`, `--x=v`), or null */
export function optionFor(grammar: Grammar, text: string): { spec: OptionSpec; inlineValue: string | null } | null {
  const eq = text.indexOf('=');
  const name = text.startsWith('--') && eq > 0 ? text.slice(0, eq) : text;
  const spec = grammar.options.get(name);
  return spec ? { spec, inlineValue: eq > 0 && text.startsWith('--') ? text.slice(eq + 1) : null } : null;
}

export interface Walk {
  node: Node;
  /** the words matched so far, as typed */
  typed: string[];
  instance?: string;
  args: Record<string, unknown>;
  /** option tokens in the order typed, with their raw values */
  options: { spec: OptionSpec; raw: string | null; typed: string }[];
}

/** Step from a node over one word; throws GrammarError when it fits nowhere. */
export function step(node: Node, text: string, ctx: GrammarContext, walk: Walk): Node {
  if (node.token?.kind === 'arg' && node.token.spec.rest) {
    (walk.args[node.token.name] as string[]).push(text);
    return node;
  }
  const word = node.children.find((c) => c.token?.kind === 'word' && c.token.word === text);
  if (word) return word;
  const instance = node.children.find((c) => c.token?.kind === 'instance');
  if (instance && instance.token?.kind === 'instance' && text.startsWith(':')) {
    const kind = instance.token.of;
    const name = text.slice(1);
    const known = kind.list(ctx).map((i) => i.name);
    if (!known.includes(name)) {
      if (!known.length) throw new GrammarError('bad-value', `No ${kind.kind} service named '${text}': there are none yet (create one with 'create ${kind.kind}').`);
      const near = nearest(name, known);
      throw new GrammarError(
        'bad-value',
        `No ${kind.kind} service named '${text}'.${near ? ` Did you mean ':${near}'?` : ` Known: ${list(known.map((k) => `:${k}`))}.`}`,
        known.map((k) => `:${k}`),
        near ? `:${near}` : null,
      );
    }
    walk.instance = name;
    return instance;
  }
  const arg = node.children.find((c) => c.token?.kind === 'arg');
  if (arg && arg.token?.kind === 'arg') {
    const spec = arg.token.spec;
    if (spec.rest) {
      walk.args[arg.token.name] = [text];
      return arg;
    }
    try {
      walk.args[arg.token.name] = spec.parse ? spec.parse(text, arg.token.name) : text;
    } catch (error) {
      throw new GrammarError('bad-value', (error as Error).message);
    }
    return arg;
  }
  const expected = expectedAt(node);
  if (!expected.length) {
    throw new GrammarError('unexpected', `${said(walk.typed)} takes no more words: unexpected '${text}'.`);
  }
  const words = node.children.flatMap((c) => (c.token?.kind === 'word' ? [c.token.word] : []));
  const instanceNames = instance?.token?.kind === 'instance' ? instance.token.of.list(ctx).map((i) => `:${i.name}`) : [];
  const near = nearest(text, [...words, ...instanceNames]);
  const what = walk.typed.length ? `Unknown word '${text}' after ${said(walk.typed)}` : `Unknown command '${text}'`;
  throw new GrammarError('unknown', `${what}: expected ${list(expected)}.${near ? ` Did you mean '${near}'?` : ''}`, expected, near);
}

/** Walk all tokens (options aside). Throws GrammarError at the first that does not fit. */
export function walkTokens(grammar: Grammar, tokens: Token[], ctx: GrammarContext): Walk {
  const walk: Walk = { node: grammar.root, typed: [], args: {}, options: [] };
  for (let i = 0; i < tokens.length; i++) {
    const text = tokens[i].text;
    const inRest = walk.node.token?.kind === 'arg' && walk.node.token.spec.rest;
    // Once a rest argument has begun, every word is part of it, options included (a command line to store).
    if (isOptionToken(text) && !inRest) {
      const found = optionFor(grammar, text);
      if (!found) {
        const near = nearest(text, [...grammar.options.keys()]);
        throw new GrammarError('unknown-option', `Unknown option '${text}'.${near ? ` Did you mean '${near}'?` : ''}`, [], near);
      }
      let raw = found.inlineValue;
      if (found.spec.value && raw === null) {
        if (i + 1 >= tokens.length) throw new GrammarError('incomplete', `The option ${found.spec.name} needs a value (${found.spec.value.name}).`);
        raw = tokens[++i].text;
      } else if (!found.spec.value && raw !== null) {
        throw new GrammarError('bad-value', `The option ${found.spec.name} takes no value: ${text}.`);
      }
      walk.options.push({ spec: found.spec, raw, typed: text });
      continue;
    }
    walk.node = step(walk.node, text, ctx, walk);
    walk.typed.push(text);
  }
  return walk;
}

export function match(grammar: Grammar, line: string, ctx: GrammarContext): Match {
  const { tokens, unterminated } = tokenize(line);
  if (unterminated) throw new GrammarError('unterminated', 'A quote is not closed.');
  const walk = walkTokens(grammar, tokens, ctx);
  const command = walk.node.command;
  if (!command) {
    const expected = expectedAt(walk.node);
    throw new GrammarError('incomplete', `Incomplete command ${said(walk.typed)}: expected ${list(expected)} (type '?' to see what each does).`, expected);
  }
  const allowed = optionsOf(command);
  const options: Record<string, unknown> = {};
  for (const { spec: seen, raw, typed } of walk.options) {
    // Options of the same name in two commands are two specs: take this command's own.
    const spec = allowed.find((o) => o.name === seen.name);
    if (!spec) {
      const own = command.options?.map((o) => o.name) ?? [];
      throw new GrammarError('unknown-option', `The option ${typed} does not apply to '${walk.typed.join(' ')}'${own.length ? `; it takes ${list(own)}` : ''}.`);
    }
    const key = spec.name.replace(/^-+/, '');
    if (key in options && !spec.repeatable) throw new GrammarError('bad-value', `The option ${spec.name} is given twice.`);
    if (!spec.value) options[key] = true;
    else {
      try {
        const value = spec.value.parse ? spec.value.parse(raw!, spec.name) : raw;
        options[key] = spec.repeatable ? [...((options[key] as unknown[] | undefined) ?? []), value] : value;
      } catch (error) {
        throw new GrammarError('bad-value', (error as Error).message);
      }
    }
  }
  return { command, input: { line, instance: walk.instance, args: walk.args, options } };
}

/**
 * Turns all command declarations into one tree: each node is a word, an
 * instance (`:name`) or an argument; a node with a command is where a line
 * may end. Shared prefixes share nodes (and their help), as in FRRouting.
 */
import type { ArgSpec, CommandFamily, CommandSpec, InstanceKind, OptionSpec } from './types.js';

export type NodeToken = { kind: 'word'; word: string; help: string } | { kind: 'instance'; of: InstanceKind } | { kind: 'arg'; name: string; spec: ArgSpec };

export interface Node {
  token: NodeToken | null;
  children: Node[];
  command?: CommandSpec;
  /** the words from the root to here, for messages */
  path: string[];
}

export interface Grammar {
  root: Node;
  commands: CommandSpec[];
  words: Record<string, string>;
  instanceKinds: Record<string, InstanceKind>;
  /** every option name (and alias) to its spec; an option means the same in every command */
  options: Map<string, OptionSpec>;
  globalOptions: OptionSpec[];
}

export const GLOBAL_OPTIONS: OptionSpec[] = [
  { name: '-y', alias: '--yes', help: 'answer yes to every confirmation' },
  { name: '--json', help: 'print the result as JSON' },
];

export function optionsOf(command: CommandSpec): OptionSpec[] {
  return [...(command.options ?? []), ...GLOBAL_OPTIONS];
}

function sameToken(a: NodeToken, b: NodeToken): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'word' && b.kind === 'word') return a.word === b.word;
  if (a.kind === 'instance' && b.kind === 'instance') return a.of.kind === b.of.kind;
  if (a.kind === 'arg' && b.kind === 'arg') return a.name === b.name;
  return false;
}

export function compile(families: CommandFamily[]): Grammar {
  const words: Record<string, string> = {};
  for (const f of families) for (const [w, h] of Object.entries(f.words)) words[w] ??= h;
  const kinds: Record<string, InstanceKind> = {};
  for (const k of families.flatMap((f) => f.instances ?? [])) {
    if (kinds[k.kind]) throw new Error(`Two families declare the instance kind :${k.kind}.`);
    kinds[k.kind] = k;
  }
  const root: Node = { token: null, children: [], path: [] };
  const options = new Map<string, OptionSpec>();
  const commands = families.flatMap((f) => f.commands);

  for (const command of commands) {
    const parts = command.path.split(/\s+/);
    let node = root;
    parts.forEach((part, index) => {
      const optional = /^\[<.+>\]$/.test(part);
      if (optional && index !== parts.length - 1) throw new Error(`Only the last argument may be optional: ${command.path}`);
      const token = toToken(part, command, words, kinds);
      if (optional && !node.command) node.command = command;
      let child = node.children.find((c) => c.token && sameToken(c.token, token));
      if (!child) {
        child = { token, children: [], path: [...node.path, part.replace(/^\[|\]$/g, '')] };
        node.children.push(child);
      }
      node = child;
    });
    if (node.command) throw new Error(`Two commands share the words "${command.path}".`);
    node.command = command;
    for (const option of optionsOf(command)) {
      for (const name of [option.name, option.alias].filter(Boolean) as string[]) {
        const seen = options.get(name);
        if (seen && Boolean(seen.value) !== Boolean(option.value)) throw new Error(`The option ${name} takes a value in one command and not in another.`);
        if (!seen) options.set(name, option);
      }
    }
  }
  return { root, commands, words, instanceKinds: kinds, options, globalOptions: GLOBAL_OPTIONS };
}

function toToken(part: string, command: CommandSpec, words: Record<string, string>, kinds: Record<string, InstanceKind>): NodeToken {
  if (part.startsWith(':')) {
    const of = kinds[part.slice(1)];
    if (!of) throw new Error(`Unknown instance kind ${part} in "${command.path}".`);
    return { kind: 'instance', of };
  }
  const arg = /^\[?<(.+)>\]?$/.exec(part);
  if (arg) {
    const spec = command.args?.[arg[1]];
    if (!spec) throw new Error(`The argument <${arg[1]}> of "${command.path}" is not declared.`);
    return { kind: 'arg', name: arg[1], spec };
  }
  const help = words[part];
  if (help === undefined) throw new Error(`The word "${part}" of "${command.path}" has no help line.`);
  return { kind: 'word', word: part, help };
}

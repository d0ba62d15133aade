/**
 * Command lines for the grammar fuzz (issue 15), built from the one grammar
 * table: a command's path with its instances and arguments filled in, some of
 * its options with values (TAB's candidates or anything), then mutated (a word
 * dropped, doubled, swapped, cut, or garbage put in). `safe` keeps every
 * path-like value under `sandbox`, for lines that a real shell will run.
 */
import fc from 'fast-check';
import { grammar } from '../../src/commands/index.js';
import { optionsOf } from '../../src/commands/grammar/compile.js';
import { quoteWord } from '../../src/commands/grammar/tokenize.js';
import type { CommandSpec, GrammarContext, ValueSpec } from '../../src/commands/grammar/types.js';
import type { Services } from '../../src/services/index.js';

export const INSTANCES = ['tank-docs-000', 'vol-folder-000'];

/** the grammar reads instances and TAB candidates from the services: a stand-in with two auto-sync services, where every other list is empty */
const endpoint = (dataset: string) => ({ host: 'localhost', dataset });
// any service, store or method: reading gives another such stand-in, calling gives an empty list
const nothing: unknown = new Proxy(() => undefined, { get: (_, key) => (typeof key === 'symbol' || key === 'then' ? undefined : nothing), apply: () => [] });
const services = {
  autoSync: { list: () => INSTANCES.map((name) => ({ config: { name, source: endpoint('fs:tank/docs'), destination: endpoint('fs:tank/copy') }, state: 'online' })), received: () => [] },
};
export const fuzzCtx: GrammarContext = {
  services: new Proxy(services, { get: (known, key) => (known as Record<string | symbol, unknown>)[key] ?? nothing }) as unknown as Services,
};

const garbage = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 8 }),
  fc.constantFrom(
    '',
    '-',
    '--',
    '---',
    '=',
    '--=',
    ':',
    '::',
    '?',
    '"',
    "'",
    '\\',
    '"unclosed',
    "'x",
    '\t',
    '\u0000',
    '\u001b[A',
    '@',
    'fs:',
    'fs:/',
    'zfs:',
    'btrfs:',
    '..',
    '../..',
    '-1',
    '0',
    '1e309',
    'NaN',
    '99999999999999999999',
    '0x10',
    '1G',
    '-5M',
    'yes',
    'no',
    'all',
    '*',
  ),
  fc.integer().map(String),
  fc.string({ minLength: 200, maxLength: 400 }),
);

function valueOf(spec: ValueSpec | undefined): fc.Arbitrary<string> {
  const candidates = spec?.values?.(fuzzCtx) ?? [];
  const plausible = fc.constantFrom('fs:tank/docs', 'fs:tank/copy', 'fs:tank/docs@s1', 'fs:tank', 'tank-docs-000', '10', '64M', 'hour', 'localhost', 'beta', '1d:7,1w:4', 'comment', 'a b');
  return candidates.length ? fc.oneof(fc.constantFrom(...candidates), plausible, garbage) : fc.oneof(plausible, garbage);
}

function wordsOf(command: CommandSpec): fc.Arbitrary<string[]> {
  const parts = command.path.split(/\s+/).map((part): fc.Arbitrary<string[]> => {
    if (part.startsWith(':')) return fc.oneof(fc.constantFrom(...INSTANCES), garbage).map((n) => [`:${n}`]);
    const arg = /^\[?<(.+)>\]?$/.exec(part);
    if (!arg) return fc.constant([part]);
    const spec = command.args?.[arg[1]];
    const one = valueOf(spec);
    const many = spec?.rest ? fc.array(one, { minLength: 1, maxLength: 3 }) : one.map((v) => [v]);
    return part.startsWith('[') ? fc.oneof(fc.constant<string[]>([]), many) : many;
  });
  const options = fc
    .subarray(optionsOf(command), { maxLength: Math.min(4, optionsOf(command).length) })
    .chain((chosen) => fc.tuple(...chosen.map((o) => (o.value ? valueOf(o.value).map((v) => [o.alias && v.length % 2 ? o.alias : o.name, v]) : fc.constant([o.name])))));
  return fc.tuple(fc.tuple(...parts), options).map(([p, o]) => [...p.flat(), ...o.flat()]);
}

type Mutation = (words: string[], r: number, junk: string) => string[];
const mutations: Mutation[] = [
  (w) => w,
  (w, r) => w.filter((_, i) => i !== r % Math.max(1, w.length)),
  (w, r) => w.flatMap((x, i) => (i === r % Math.max(1, w.length) ? [x, x] : [x])),
  (w, r) => {
    const i = r % Math.max(1, w.length),
      j = (r >> 3) % Math.max(1, w.length);
    const c = [...w];
    [c[i], c[j]] = [c[j], c[i]];
    return c;
  },
  (w, r) => w.slice(0, r % (w.length + 1)),
  (w, r, junk) => [...w.slice(0, r % (w.length + 1)), junk, ...w.slice(r % (w.length + 1))],
  (w, r, junk) => w.map((x, i) => (i === r % Math.max(1, w.length) ? x + junk : x)),
  (w, r) => w.map((x, i) => (i === r % Math.max(1, w.length) ? x.slice(0, Math.max(0, x.length - 1 - (r % 3))) : x)),
];

/** how a line is put together from words: quoted as the shell would, or raw (quotes and all) */
const join = (words: string[], raw: boolean) => words.map((w) => (raw ? w : quoteWord(w))).join(' ');

/** a generated, possibly mutated, command line */
export function commandLine(): fc.Arbitrary<string> {
  const commands = grammar().commands;
  return fc.tuple(fc.constantFrom(...commands).chain(wordsOf), fc.integer({ min: 0, max: mutations.length - 1 }), fc.nat(), garbage, fc.boolean()).map(([words, m, r, junk, raw]) => join(mutations[m](words, r, junk), raw));
}

/** a line the real shell may run in its throwaway home: no path outside `sandbox`, no NUL, one line */
export function safeLine(line: string, sandbox: string): string {
  return line
    .replace(/[\r\n\u0000]/g, ' ')
    .replace(/(^|[\s='"=])(\/|~)/g, `$1${sandbox}/`)
    .replace(/\.\.\//g, './');
}

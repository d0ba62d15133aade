import test, { type ExecutionContext } from 'ava';
import { grammar } from '../../src/commands/index.js';
import { match, GrammarError, type GrammarErrorKind } from '../../src/commands/grammar/match.js';
import { complete, helpAt } from '../../src/commands/grammar/complete.js';
import { helpText, usage } from '../../src/commands/grammar/help.js';
import { tokenize } from '../../src/commands/grammar/tokenize.js';
import type { CommandFamily, GrammarContext } from '../../src/commands/grammar/types.js';
import { compile } from '../../src/commands/grammar/compile.js';
import type { Services } from '../../src/services/index.js';

/** the services as far as the grammar reads them: three auto-sync services to list as instances */
const service = (name: string, from: string, to: string) => ({
  config: { name, source: { host: 'localhost', dataset: from }, destination: { host: 'localhost', dataset: to } },
  state: 'online',
});
const ctx: GrammarContext = {
  services: {
    autoSync: {
      list: () => [service('vol-folder-000', 'fs:vol/folder', 'fs:backup/folder'), service('vol-folder-001', 'fs:vol/folder', 'fs:backup/other'), service('tank-data-000', 'fs:tank/data', 'fs:tank/copy')],
      received: () => [],
    },
  } as unknown as Services,
};

const parses = test.macro({
  exec(t: ExecutionContext, line: string, path: string, expect: { instance?: string; args?: Record<string, unknown>; options?: Record<string, unknown> } = {}) {
    const m = match(grammar(), line, ctx);
    t.is(m.command.path, path);
    t.is(m.input.instance, expect.instance);
    t.deepEqual(m.input.args, expect.args ?? {});
    t.deepEqual(m.input.options, expect.options ?? {});
  },
  title: (_t, line) => `parses: ${line}`,
});

test(parses, 'show auto-sync', 'show auto-sync');
test(parses, 'show auto-sync :vol-folder-000', 'show auto-sync :auto-sync', { instance: 'vol-folder-000' });
test(parses, 'show auto-sync :vol-folder-000 property', 'show auto-sync :auto-sync property [<KEY>]', { instance: 'vol-folder-000' });
test(parses, 'show auto-sync :vol-folder-000 property keep_src', 'show auto-sync :auto-sync property [<KEY>]', { instance: 'vol-folder-000', args: { KEY: 'keep_src' } });
test(parses, "setup auto-sync :vol-folder-000 property comment 'nightly copy'", 'setup auto-sync :auto-sync property <KEY> <VALUE>', { instance: 'vol-folder-000', args: { KEY: 'comment', VALUE: 'nightly copy' } });
test(parses, 'show auto-sync :vol-folder-000 logtail', 'show auto-sync :auto-sync logtail', { instance: 'vol-folder-000' });
test(parses, 'show auto-sync :vol-folder-000 logtail -f -n 50', 'show auto-sync :auto-sync logtail', { instance: 'vol-folder-000', options: { f: true, n: 50 } });
test(parses, 'show auto-sync :vol-folder-000 logtail --lines=5', 'show auto-sync :auto-sync logtail', { instance: 'vol-folder-000', options: { n: 5 } });
test(parses, 'show auto-sync :vol-folder-000 log', 'show auto-sync :auto-sync log', { instance: 'vol-folder-000' });
test(parses, 'create auto-sync', 'create auto-sync');
test(
  parses,
  'create auto-sync --from-fs fs:vol/folder --to-fs fs:backup/folder --type minute --period 10 --keep-src 5 --keep-dst 7 --recursive no --reverse-capable no --max-delay 600 --comment "a b" --from-host localhost --to-host localhost -y',
  'create auto-sync',
  {
    options: {
      'from-fs': 'fs:vol/folder',
      'to-fs': 'fs:backup/folder',
      type: 'minute',
      period: 10,
      'keep-src': 5,
      'keep-dst': 7,
      recursive: false,
      'reverse-capable': false,
      'max-delay': 600,
      comment: 'a b',
      'from-host': 'localhost',
      'to-host': 'localhost',
      y: true,
    },
  },
);
test(parses, 'setup auto-sync :vol-folder-000 enable', 'setup auto-sync :auto-sync enable', { instance: 'vol-folder-000' });
test(parses, 'setup auto-sync :vol-folder-000 disable', 'setup auto-sync :auto-sync disable', { instance: 'vol-folder-000' });
test(parses, 'setup auto-sync :vol-folder-000 run', 'setup auto-sync :auto-sync run', { instance: 'vol-folder-000' });
test(parses, 'run auto-sync :tank-data-000', 'run auto-sync :auto-sync', { instance: 'tank-data-000' });
test(parses, 'destroy auto-sync :tank-data-000 -y', 'destroy auto-sync :auto-sync', { instance: 'tank-data-000', options: { y: true } });
test(parses, 'create folder fs:tank/data', 'create folder <DATASET>', { args: { DATASET: 'fs:tank/data' } });
test(parses, 'create folder fs:tank/vol --volume-size 64M', 'create folder <DATASET>', { args: { DATASET: 'fs:tank/vol' }, options: { 'volume-size': 64 << 20 } });
test(parses, 'show folder', 'show folder [<DATASET>]');
test(parses, 'show folder fs:tank', 'show folder [<DATASET>]', { args: { DATASET: 'fs:tank' } });
test(parses, 'destroy folder fs:tank/data', 'destroy folder <DATASET>', { args: { DATASET: 'fs:tank/data' } });
test(parses, 'show snapshot', 'show snapshot [<DATASET>]');
test(parses, 'show snapshot fs:tank/data', 'show snapshot [<DATASET>]', { args: { DATASET: 'fs:tank/data' } });
test(parses, 'help', 'help [<TOPIC>]');
test(parses, 'help create auto-sync', 'help [<TOPIC>]', { args: { TOPIC: ['create', 'auto-sync'] } });
test(parses, 'exit', 'exit');
test(parses, 'quit', 'quit');
test(parses, 'show auto-sync --json', 'show auto-sync', { options: { json: true } });

const rejects = test.macro({
  exec(t: ExecutionContext, line: string, kind: GrammarErrorKind, message: RegExp) {
    const error = t.throws(() => match(grammar(), line, ctx), { instanceOf: GrammarError });
    t.is(error?.kind, kind);
    t.regex(error?.message ?? '', message);
  },
  title: (_t, line) => `rejects: ${line}`,
});

test(rejects, 'shwo auto-sync', 'unknown', /Unknown command 'shwo': expected .*show.*Did you mean 'show'\?/);
test(rejects, 'show auto-snc', 'unknown', /Unknown word 'auto-snc' after 'show': expected .*Did you mean 'auto-sync'\?/);
test(rejects, 'show auto-sync :vol-folder-00', 'bad-value', /No auto-sync service named ':vol-folder-00'\. Did you mean ':vol-folder-000'\?/);
test(rejects, 'setup auto-sync :vol-folder-000', 'incomplete', /Incomplete command 'setup auto-sync :vol-folder-000': expected resync, property, run, enable, disable/);
test(rejects, 'setup auto-sync :vol-folder-000 enabel', 'unknown', /Did you mean 'enable'\?/);
test(rejects, 'show auto-sync :vol-folder-000 log extra', 'unexpected', /'show auto-sync :vol-folder-000 log' takes no more words: unexpected 'extra'/);
test(rejects, 'create auto-sync --form-fs x', 'unknown-option', /Unknown option '--form-fs'\. Did you mean '--from-fs'\?/);
test(rejects, 'create auto-sync --period', 'incomplete', /--period needs a value \(N\)/);
test(rejects, 'create auto-sync --period ten', 'bad-value', /period must be a whole number, not "ten"/);
test(rejects, 'create auto-sync --type fortnight', 'bad-value', /one of minute, hour, day, week, month, not "fortnight"/);
test(rejects, 'create auto-sync --recursive maybe', 'bad-value', /yes or no, not "maybe"/);
test(rejects, 'show auto-sync -f', 'unknown-option', /-f does not apply to 'show auto-sync'/);
test(rejects, 'show auto-sync :vol-folder-000 logtail -n 5 -n 6', 'bad-value', /given twice/);
test(parses, "create auto-sync --from-fs fs:a/b --to-fs fs:a/c --exclude '*.tmp' --exclude cache/ --keep-dst 'all 1d, 24h 7d'", 'create auto-sync', {
  options: { 'from-fs': 'fs:a/b', 'to-fs': 'fs:a/c', exclude: ['*.tmp', 'cache/'], 'keep-dst': 'all 1d, 24h 7d' },
});
test(parses, 'create auto-sync --from-fs fs:a/b --to-fs fs:a/c --keep-src 5', 'create auto-sync', { options: { 'from-fs': 'fs:a/b', 'to-fs': 'fs:a/c', 'keep-src': 5 } });
test(rejects, "create auto-sync --from-fs fs:a/b --to-fs fs:a/c --keep-src '24h 2q'", 'bad-value', /--keep-src has an unknown unit in "2q"/);
test(rejects, 'show auto-sync :vol-folder-000 snapshots --dry-run', 'unknown-option', /--dry-run does not apply/);
test(rejects, "setup auto-sync :vol-folder-000 property comment 'open", 'unterminated', /quote is not closed/);
test(rejects, 'create folder fs:t --volume-size lots', 'bad-value', /size such as 512M/);
test(rejects, 'show', 'incomplete', /Incomplete command 'show': expected auto-sync, folder, snapshot/);

test('tokenize keeps quotes, escapes and positions', (t) => {
  const { tokens, trailingSpace } = tokenize(`setup "a b" c\\ d 'e' `);
  t.deepEqual(
    tokens.map((x) => x.text),
    ['setup', 'a b', 'c d', 'e'],
  );
  t.deepEqual(
    tokens.map((x) => x.start),
    [0, 6, 12, 17],
  );
  t.true(trailingSpace);
});

const completes = test.macro({
  exec(t: ExecutionContext, line: string, replacement: string | null, choices: string[]) {
    const c = complete(grammar(), line, line.length, ctx);
    t.is(c.replacement, replacement);
    t.deepEqual(c.choices, choices);
  },
  title: (_t, line) => `completes: '${line}'`,
});

test(completes, 'sh', 'show ', ['show']);
test(completes, 'se', 'setup ', ['setup']);
test(completes, 'show au', 'auto-', ['auto-cdp', 'auto-sync']);
test(completes, 'show a', null, ['appliance', 'auto-cdp', 'auto-sync']);
test(completes, 'show auto-sync :v', ':vol-folder-00', [':vol-folder-000', ':vol-folder-001']);
test(completes, 'show auto-sync :t', ':tank-data-000 ', [':tank-data-000']);
test(completes, 'setup auto-sync :tank-data-000 ', null, ['disable', 'enable', 'property', 'resolve-split-brain', 'resync', 'reverse-direction', 'run']);
test(completes, 'setup auto-sync :tank-data-000 property ke', 'keep_', ['keep_dst', 'keep_src']);
test(completes, 'show auto-sync :tank-data-000 logtail -', null, ['--json', '-f', '-n', '-y']);
test(completes, 'create auto-sync --type m', null, ['minute', 'month']);
test(completes, 'create auto-sync --recursive ', null, ['no', 'yes']);
test(completes, 'create auto-sync --from-', null, ['--from-fs', '--from-host']);
test(completes, 'create auto-sync --fr', '--from-', ['--from-fs', '--from-host']);
test(completes, 'bogus ', null, []);

test('? lists what may come next, a line of description each', (t) => {
  const top = helpAt(grammar(), '', 0, ctx);
  t.true(top.some((e) => e.word === 'show' && /display/.test(e.description)));
  const after = helpAt(grammar(), 'show auto-sync ', 15, ctx);
  t.true(after.some((e) => e.word === ':vol-folder-000' && /=>/.test(e.description)));
  t.true(after.some((e) => e.word === '<Enter>'));
  const mid = helpAt(grammar(), 'setup auto-sync :vol-folder-000 ', 32, ctx);
  t.deepEqual(mid.map((e) => e.word).sort(), ['disable', 'enable', 'property', 'resolve-split-brain', 'resync', 'reverse-direction', 'run']);
  const bad = helpAt(grammar(), 'shwo ', 5, ctx);
  t.regex(bad[0].description, /Unknown command 'shwo'/);
});

test('every command has help, usage and a help page', (t) => {
  for (const command of grammar().commands) {
    t.true(command.help.length > 5, command.path);
    const words = command.path.split(/\s+/).filter((w) => !/^[:<[]/.test(w));
    const page = helpText(grammar(), words);
    t.true(page.join('\n').includes(command.help), `help ${words.join(' ')}`);
    t.true(usage(command).startsWith(words[0]));
  }
  t.regex(helpText(grammar(), []).join('\n'), /verb object \[:instance\]/);
  t.regex(helpText(grammar(), ['create', 'auto-sync']).join('\n'), /--from-fs DATASET +source dataset/);
  t.throws(() => helpText(grammar(), ['auto-snc']), { message: /Did you mean 'help auto-sync'\?/ });
});

test('a family brings its own instance kind: parsing, TAB and ? list its instances from the services', (t) => {
  const volumes = ['vm1', 'vm2'];
  const family: CommandFamily = {
    words: { show: 'display', mirror: 'a live mirror' },
    instances: [{ kind: 'mirror', help: 'a mirror', list: (c) => (c.services as unknown as { mirrors: string[] }).mirrors.map((name) => ({ name, description: `mirror ${name}` })) }],
    commands: [{ path: 'show mirror :mirror', help: 'one mirror', run: async () => ({ kind: 'none' }) }],
  };
  const g = compile([family]);
  const c: GrammarContext = { services: { mirrors: volumes } as unknown as Services };
  t.is(match(g, 'show mirror :vm2', c).input.instance, 'vm2');
  t.deepEqual(complete(g, 'show mirror :v', 14, c).choices, [':vm1', ':vm2']);
  t.true(helpAt(g, 'show mirror ', 12, c).some((e) => e.word === ':vm1' && e.description === 'mirror vm1'));
  t.throws(() => match(g, 'show mirror :vm3', c), { message: /vm3/ });
  // a kind no family declares, or one declared twice, is a mistake in the table
  t.throws(() => compile([{ ...family, instances: [] }]), { message: 'Unknown instance kind :mirror in "show mirror :mirror".' });
  t.throws(() => compile([family, { words: {}, commands: [], instances: family.instances }]), { message: 'Two families declare the instance kind :mirror.' });
});

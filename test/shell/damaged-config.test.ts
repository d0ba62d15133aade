/**
 * A damaged configuration file, through the real CLI: `help` and the commands
 * that do not need the file work; the others fail (status 1, no stack trace)
 * with a sentence naming the file, where it is damaged and how to recover
 * from the last good copy kept beside it; the damaged file is left as it is.
 */
import test from 'ava';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { syncsh } from '../helpers/cli.js';

const all = (r: { stdout?: unknown; stderr?: unknown }) => `${String(r.stdout ?? '')}${String(r.stderr ?? '')}`;

async function withOneService(t: Parameters<typeof makeAppliance>[0]) {
  const { home, env, services } = makeAppliance(t, 'node1');
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/data');
  const created = await syncsh(['-c', 'create auto-sync --from-fs fs:tank/data --to-fs fs:tank/copy -y'], env);
  if (created.exitCode !== 0) throw new Error(all(created));
  const cli = (line: string) => syncsh(['-c', line], env);
  return { home, env, cli, file: (name: string) => path.join(home, name) };
}

test('each successful write keeps a last good copy beside the file', async (t) => {
  const { file, cli } = await withOneService(t);
  const run = await cli('run auto-sync :tank-data-000');
  t.is(run.exitCode, 0, all(run));
  for (const name of ['services.json', 'state.json', 'appliance.json']) {
    t.true(existsSync(`${file(name)}.last-good`), name);
    t.is(readFileSync(`${file(name)}.last-good`, 'utf8'), readFileSync(file(name), 'utf8'), name);
  }
});

for (const [what, text, where] of [
  ['not JSON', '{"services": {"tank-data-000": {"name": \n', /is not valid JSON at (line 2, column 1|its end)/],
  ['failing the schema', '{"services": {"tank-data-000": 42}}\n', /does not hold what it must \("services\/tank-data-000" must be object\)/],
] as const) {
  test(`services.json ${what}: help and the commands that do not need it work; the others name the file, where, and the last good copy; nothing is overwritten`, async (t) => {
    const { cli, file } = await withOneService(t);
    writeFileSync(file('services.json'), text);

    const help = await cli('help');
    t.is(help.exitCode, 0, all(help));
    t.regex(String(help.stdout), /Commands are typed as/);
    for (const fine of ['show appliance', 'show folder', 'show network']) {
      const r = await cli(fine);
      t.is(r.exitCode, 0, `${fine}: ${all(r)}`);
    }
    for (const needs of ['show auto-sync', 'run auto-sync :tank-data-000', 'create auto-sync --from-fs fs:tank/data --to-fs fs:tank/other -y']) {
      const r = await cli(needs);
      t.is(r.exitCode, 1, `${needs}: ${all(r)}`);
      t.regex(String(r.stderr), new RegExp(`^Error: .*The configuration file ${file('services.json')} is damaged: it `), needs);
      t.regex(String(r.stderr), where, needs);
      t.regex(String(r.stderr), /Nothing was changed\. The last good copy, from \S+, is kept beside it: compare them, then copy it over \(cp \S+services\.json\.last-good \S+services\.json\)/, needs);
      t.notRegex(all(r), /\n\s+at |Conf\._deserialize/, 'no stack trace');
      t.is(readFileSync(file('services.json'), 'utf8'), text, 'the damaged file is left as it was');
    }

    // the way out the sentence gives
    copyFileSync(`${file('services.json')}.last-good`, file('services.json'));
    const back = await cli('show auto-sync');
    t.is(back.exitCode, 0, all(back));
    t.regex(String(back.stdout), /tank-data-000/);
  });
}

test('appliance.json damaged: help works, commands and the daemon say which file (status 1, no stack trace)', async (t) => {
  const { cli, env, file } = await withOneService(t);
  const damaged = '{"id": "node1",';
  writeFileSync(file('appliance.json'), damaged);
  const help = await cli('help auto-sync');
  t.is(help.exitCode, 0, all(help));
  const show = await cli('show appliance');
  t.is(show.exitCode, 1);
  t.regex(String(show.stderr), new RegExp(`^Error: The configuration file ${file('appliance.json')} is damaged: it is not valid JSON at line 1, column 16 `));
  const daemon = await syncsh(['daemon'], env, { timeout: 20_000 });
  t.is(daemon.exitCode, 1, all(daemon));
  t.regex(String(daemon.stderr), /appliance\.json is damaged/);
  t.notRegex(all(daemon), /\n\s+at /);
  t.is(readFileSync(file('appliance.json'), 'utf8'), damaged);
});

test('peers.json damaged: the network commands name it; services and folders work', async (t) => {
  const { cli, file } = await withOneService(t);
  const damaged = '{"outbound": {"beta": ';
  writeFileSync(file('peers.json'), damaged);
  for (const needs of ['show network', 'show network ssh-bindings', 'setup network authorized-keys /etc/ssh/keys']) {
    const r = await cli(needs);
    t.is(r.exitCode, 1, `${needs}: ${all(r)}`);
    t.regex(String(r.stderr), new RegExp(`^Error: The configuration file ${file('peers.json')} is damaged: it is not valid JSON`), needs);
    t.notRegex(all(r), /\n\s+at /);
  }
  const r = await cli('show auto-sync');
  t.is(r.exitCode, 0, all(r));
  t.is(readFileSync(file('peers.json'), 'utf8'), damaged);
});

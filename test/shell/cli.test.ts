import test from 'ava';
import { makeAppliance } from '../helpers/appliance.js';
import { syncsh } from '../helpers/cli.js';

test('-c runs one command: 0 and the output on success', async (t) => {
  const { env } = makeAppliance(t);
  const r = await syncsh(['-c', 'show auto-sync'], env);
  t.is(r.exitCode, 0);
  t.regex(String(r.stdout), /No auto-sync services/);
});

test('-c fails non-zero with the specific error on stderr', async (t) => {
  const { env } = makeAppliance(t);
  const r = await syncsh(['-c', 'shwo auto-sync'], env);
  t.is(r.exitCode, 2);
  t.is(r.stdout, '');
  t.regex(String(r.stderr), /Error: Unknown command 'shwo'.*Did you mean 'show'\?/);
  const missing = await syncsh(['-c', 'create auto-sync --from-fs fs:tank/none --to-fs fs:tank/x -y'], env);
  t.is(missing.exitCode, 1);
  t.regex(String(missing.stderr), /source dataset fs:tank\/none does not exist/);
});

test('a whole session by options, with --json, as a script would', async (t) => {
  const { env } = makeAppliance(t);
  const ok = async (cmd: string) => {
    const r = await syncsh(['-c', cmd], env);
    t.is(r.exitCode, 0, `${cmd}: ${r.stderr}`);
    return String(r.stdout);
  };
  await ok('create folder fs:tank');
  await ok('create folder fs:tank/data');
  t.regex(await ok('create auto-sync --from-fs fs:tank/data --to-fs fs:tank/copy --type minute --period 5 --keep-src 4 -y'), /Created auto-sync:tank-data-000/);
  t.regex(await ok('run auto-sync :tank-data-000'), /full sync OK/);
  const list = JSON.parse(await ok('show auto-sync --json'));
  t.is(list.length, 1);
  t.like(list[0], { name: 'tank-data-000', direction: 'local-to-local', state: 'online', status: 'up', schedule: { type: 'minute', period: 5 }, keepSrc: 4 });
  const folders = JSON.parse((await syncsh(['--json', '-c', 'show folder'], env)).stdout as string);
  t.true(folders.some((f: { qualified: string; mountpoint: string }) => f.qualified === 'fs:tank/copy' && f.mountpoint.endsWith('tank/copy')));
});

test('a dialog with no terminal fails clearly unless -y answers', async (t) => {
  const { env } = makeAppliance(t);
  await syncsh(['-c', 'create folder fs:tank', '-c', 'create folder fs:tank/data'], env);
  await syncsh(['-c', 'create auto-sync --from-fs fs:tank/data --to-fs fs:tank/copy'], env);
  const asked = await syncsh(['-c', 'destroy auto-sync :tank-data-000'], env);
  t.is(asked.exitCode, 1);
  t.regex(String(asked.stderr), /needs an answer to "Destroy auto-sync service 'auto-sync:tank-data-000'\?" but there is no terminal.*-y/);
  t.regex(String((await syncsh(['-c', 'show auto-sync'], env)).stdout), /tank-data-000/);
  const wizard = await syncsh(['-c', 'create auto-sync'], env);
  t.regex(String(wizard.stderr), /needs --from-fs and --to-fs when there is no terminal/);
  t.is((await syncsh(['-c', 'destroy auto-sync :tank-data-000 -y'], env)).exitCode, 0);
});

test('several commands on stdin run in one process; the exit code tells a failure', async (t) => {
  const env = { ...makeAppliance(t).env, SYNCSH_DRIVERS: 'fs' }; // other tests' zfs pools stay out of the listing
  const script = ['create folder fs:tank', 'create folder fs:tank/data', 'show folder', 'bogus', 'show snapshot'].join('\n');
  const r = await syncsh([], env, { input: script });
  t.is(r.exitCode, 2);
  t.regex(String(r.stdout), /fs:tank\/data/);
  t.regex(String(r.stdout), /No snapshots/);
  t.regex(String(r.stderr), /Unknown command 'bogus'/);
});

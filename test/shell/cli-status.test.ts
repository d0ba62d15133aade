import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { syncsh } from '../helpers/cli.js';

async function withService(t: Parameters<typeof makeAppliance>[0]) {
  const a = makeAppliance(t);
  const run = async (cmd: string, code = 0) => {
    const r = await syncsh(['-c', cmd], a.env);
    t.is(r.exitCode, code, `${cmd}: ${r.stderr}`);
    return { out: String(r.stdout), err: String(r.stderr) };
  };
  await run('create folder fs:tank');
  await run('create folder fs:tank/data');
  await writeFile(path.join(a.home, 'fs', 'tank', 'data', 'f.txt'), 'x');
  await run('create auto-sync --from-fs fs:tank/data --to-fs fs:tank/copy --max-delay 3600 -y');
  return { ...a, run };
}

test('status and history, for people and as JSON', async (t) => {
  const { run } = await withService(t);
  t.regex((await run('show auto-sync :tank-data-000 status')).out, /status +: never[\s\S]*reason +: Never synced yet\./);
  await run('run auto-sync :tank-data-000');
  const status = JSON.parse((await run('show auto-sync :tank-data-000 status --json')).out);
  t.like(status, { service: 'tank-data-000', status: 'up', state: 'online', maxDelay: 3600, progress: null });
  t.regex(status.reason, /^Last sync on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d OK$/);
  await run('setup auto-sync :tank-data-000 property force no');
  const history = JSON.parse((await run('show auto-sync :tank-data-000 history --json')).out);
  t.deepEqual(history.map((e: { direction: string; result: string }) => `${e.direction}:${e.result}`).sort(), ['receive:success', 'send:success']);
  t.regex((await run('show auto-sync :tank-data-000 history')).out, /STARTED +SIDE +PEER +RESULT[\s\S]*send +localhost +success/);
});

test('cron and once-at schedules are validated and shown', async (t) => {
  const { run } = await withService(t);
  await run("setup auto-sync :tank-data-000 property cron '*/5 * * * *'");
  t.regex((await run('show auto-sync :tank-data-000 property schedule')).out, /schedule +cron \*\/5 \* \* \* \*/);
  t.regex((await run("setup auto-sync :tank-data-000 property cron 'every tuesday'", 1)).err, /not a valid cron expression/);
  t.regex((await run('setup auto-sync :tank-data-000 property once_at 2001-01-01T00:00', 1)).err, /is in the past/);
  t.regex((await run('create auto-sync --from-fs fs:tank/data --to-fs fs:tank/c2 --cron "0 * * * *" --period 2 -y', 1)).err, /Give one schedule/);
});

test('destroy snapshot asks, refuses the last common one unless forced', async (t) => {
  const { run, home } = await withService(t);
  await run('run auto-sync :tank-data-000');
  await writeFile(path.join(home, 'fs', 'tank', 'data', 'f.txt'), 'y');
  await run('run auto-sync :tank-data-000');
  const snaps = JSON.parse((await run('show snapshot fs:tank/data --json')).out);
  t.is(snaps.length, 2);
  const [older, newest] = snaps.map((s: { name: string }) => `fs:tank/data@${s.name}`);
  t.regex((await run(`destroy snapshot ${older}`, 1)).err, /needs an answer to "Destroy snapshot '.*'\?" but there is no terminal/);
  await run(`destroy snapshot ${older} -y`);
  t.regex((await run(`destroy snapshot ${newest} -y`, 1)).err, /is the last one auto-sync:tank-data-000 has in common with its other side.*--force/);
  t.regex((await run('destroy snapshot fs:tank/data@nope -y', 1)).err, /does not exist/);
  t.regex((await run('destroy snapshot fs:tank/data -y', 1)).err, /DATASET@NAME/);
  await run(`destroy snapshot ${newest} --force -y`);
  t.deepEqual(JSON.parse((await run('show snapshot fs:tank/data --json')).out), []);
});

test('show appliance and the alert command setting', async (t) => {
  const { run } = await withService(t);
  t.regex((await run('show appliance')).out, /id +: node1[\s\S]*alert_command +: -/);
  t.regex((await run('setup appliance alert-command notify-send', 1)).err, /absolute path/);
  await run('setup appliance alert-command /usr/local/bin/page-oncall --team storage');
  t.regex((await run('show appliance')).out, /alert_command +: \/usr\/local\/bin\/page-oncall --team storage/);
  t.deepEqual(JSON.parse((await run('show appliance --json')).out).alertCommand, ['/usr/local/bin/page-oncall', '--team', 'storage']);
  await run('setup appliance alert-command');
  t.is(JSON.parse((await run('show appliance --json')).out).alertCommand, null);
});

test('1,000 services load and list in one command', async (t) => {
  const { services, env } = makeAppliance(t);
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/data');
  const base = await services.autoSync.plan({ fromFs: 'fs:tank/data', toFs: 'fs:tank/c0' });
  await services.autoSync.store.addMany(
    Array.from({ length: 1000 }, (_, i) => ({
      ...base,
      name: `tank-data-${String(i).padStart(3, '0')}`,
      destination: { host: 'localhost', dataset: `fs:tank/c${i}` },
    })),
  );
  const r = await syncsh(['--json', '-c', 'show auto-sync'], env);
  t.is(r.exitCode, 0, String(r.stderr));
  t.is(JSON.parse(String(r.stdout)).length, 1000);
  const one = await syncsh(['-c', 'show auto-sync :tank-data-999'], env);
  t.regex(String(one.stdout), /fs:tank\/c999/);
});

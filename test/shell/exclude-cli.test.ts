/**
 * Excludes through the real executable: --exclude given twice at create,
 * the exclude property shown and changed, and what reaches the destination.
 */
import test from 'ava';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { syncsh } from '../helpers/cli.js';

test('--exclude at create (repeated) and the exclude property decide what the destination gets', async (t) => {
  const { env } = makeAppliance(t);
  const run = async (cmd: string, json = false) => {
    const r = await syncsh(json ? ['--json', '-c', cmd] : ['-c', cmd], env);
    t.is(r.exitCode, 0, `${cmd}: ${r.stderr}`);
    return String(r.stdout);
  };
  await run('create folder fs:tank');
  const folders = JSON.parse(await run('create folder fs:tank/data', true));
  const src = folders.mountpoint as string;
  await mkdir(path.join(src, 'logs', 'old'), { recursive: true });
  await writeFile(path.join(src, 'keep.txt'), 'kept');
  await writeFile(path.join(src, 'logs', 'today.log'), 'log');
  await writeFile(path.join(src, 'logs', 'old', 'gone.log'), 'log');
  await writeFile(path.join(src, 'logs', 'notes.txt'), 'notes');
  await writeFile(path.join(src, 'scratch.tmp'), 'tmp');
  t.regex(await run("create auto-sync --from-fs fs:tank/data --to-fs fs:tank/copy --exclude '*.tmp' --exclude 'logs/**/*.log' -y"), /Created auto-sync:tank-data-000/);
  t.regex(await run('show auto-sync :tank-data-000 property exclude'), /exclude\s+\*\.tmp, logs\/\*\*\/\*\.log/);
  await run('run auto-sync :tank-data-000');
  const dst = JSON.parse(await run('show auto-sync :tank-data-000', true));
  const copy = path.join(path.dirname(src), 'copy');
  t.is(dst.destination.dataset, 'fs:tank/copy');
  t.deepEqual((await readdir(copy, { recursive: true })).sort(), ['keep.txt', 'logs', 'logs/notes.txt', 'logs/old']);

  await run(`setup auto-sync :tank-data-000 property exclude '["logs/"]'`);
  await run('run auto-sync :tank-data-000');
  t.deepEqual((await readdir(copy, { recursive: true })).sort(), ['keep.txt', 'scratch.tmp'], 'logs/ newly excluded left the destination; *.tmp no longer excluded arrived');

  const bad = await syncsh(['-c', "setup auto-sync :tank-data-000 property exclude '/**'"], env);
  t.is(bad.exitCode, 1);
  t.regex(String(bad.stderr), /The exclude pattern "\/\*\*" would leave everything out of the snapshots\./);
  t.regex(await run('show auto-sync :tank-data-000 property exclude'), /exclude\s+logs\//);
});

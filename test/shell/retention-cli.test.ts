/**
 * Retention through the real executable: a grid given at create and as a
 * property, `show auto-sync :NAME snapshots`, `run auto-sync :NAME prune
 * --dry-run` and the prune itself, `help` of keep_src, and bad grids refused
 * with a sentence naming the bad part, changing nothing.
 */
import test from 'ava';
import { makeAppliance } from '../helpers/appliance.js';
import { syncsh } from '../helpers/cli.js';

test('a grid at create and as a property; snapshots, prune --dry-run and prune say and do what the grid keeps', async (t) => {
  const { env } = makeAppliance(t);
  const run = async (cmd: string, json = false) => {
    const r = await syncsh(json ? ['--json', '-c', cmd] : ['-c', cmd], env);
    t.is(r.exitCode, 0, `${cmd}: ${r.stderr}`);
    return String(r.stdout);
  };
  await run('create folder fs:tank');
  await run('create folder fs:tank/data');
  t.regex(await run("create auto-sync --from-fs fs:tank/data --to-fs fs:tank/copy --keep-src 'ALL 1d,24h' --keep-dst 2 -y"), /Created auto-sync:tank-data-000/);
  const config = JSON.parse(await run('show auto-sync :tank-data-000', true));
  t.like(config, { keepSrc: 'all 1d, 24h', keepDst: 2 }, 'the grid is kept in its canonical words, a count as a number');
  for (let i = 0; i < 3; i++) await run('run auto-sync :tank-data-000');

  const table = await run('show auto-sync :tank-data-000 snapshots');
  t.regex(table, /source \(all 1d, 24h\)\s+syncsh-tank-data-000-000001:\S+.*keep: all 1d/);
  t.regex(table, /source \(all 1d, 24h\)\s+syncsh-tank-data-000-000003:\S+.*keep: last common, all 1d, 24h/);
  t.regex(table, /destination \(2\)\s+syncsh-tank-data-000-000003:\S+.*keep: last common, newest 2/);
  t.notRegex(table, /prune/, 'the runs already pruned what their grids let go');

  const bad = await syncsh(['-c', "setup auto-sync :tank-data-000 property keep_src '24h 7x'"], env);
  t.is(bad.exitCode, 1);
  t.regex(String(bad.stderr), /keep_src has an unknown unit in "7x"/);
  t.is(JSON.parse(await run('show auto-sync :tank-data-000', true)).keepSrc, 'all 1d, 24h', 'a refused grid changes nothing');

  await run("setup auto-sync :tank-data-000 property keep_src '1h'");
  const dry = JSON.parse(await run('run auto-sync :tank-data-000 prune --dry-run', true));
  t.deepEqual(
    dry.source.plan.map((m: { keep: boolean }) => m.keep),
    [false, false, true],
  );
  t.regex(await run('run auto-sync :tank-data-000 prune --dry-run'), /source \(1h\)\s+syncsh-tank-data-000-000001:\S+.*prune/);
  t.is(JSON.parse(await run('run auto-sync :tank-data-000 prune --dry-run', true)).source.plan.length, 3, 'a dry run removes nothing');
  t.regex(await run('run auto-sync :tank-data-000 prune'), /pruned localhost\/tank\/data@syncsh-tank-data-000-000001:\S+, localhost\/tank\/data@syncsh-tank-data-000-000002:/);
  t.regex(await run('run auto-sync :tank-data-000 prune'), /nothing to prune/);
  t.regex(await run('run auto-sync :tank-data-000'), /incremental sync OK/, 'the next run is incremental from the marker kept');

  t.regex(await run('help show auto-sync :tank-data-000 snapshots'), /keep_src and keep_dst are a count \(the newest N markers\) or a grid such as 'all 1d, 24h 7d 4w 12m'/);
  const help = await run('show auto-sync :tank-data-000 property keep_src');
  t.regex(help, /a grid such as 'all 1d, 24h 7d 4w 12m'/);
});

test('bad grids at create are refused with the bad part named, and create nothing', async (t) => {
  const { env } = makeAppliance(t);
  await syncsh(['-c', 'create folder fs:tank'], env);
  await syncsh(['-c', 'create folder fs:tank/data'], env);
  for (const [grid, message] of [
    ['24h 12h', /keep-dst has two rules for hours \("12h"\)/],
    ['weekly', /keep-dst has "weekly", which is neither a count nor a time/],
    ['0', /keep-dst must be between 1 and 10000, not 0/],
  ] as const) {
    const r = await syncsh(['-c', `create auto-sync --from-fs fs:tank/data --to-fs fs:tank/copy --keep-dst '${grid}' -y`], env);
    t.not(r.exitCode, 0);
    t.regex(String(r.stderr), message, grid);
  }
  t.regex(String((await syncsh(['-c', 'show auto-sync'], env)).stdout), /No auto-sync services/);
});

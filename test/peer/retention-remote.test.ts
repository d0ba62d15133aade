/**
 * Retention and excludes across two appliances (the agent protocol over a
 * child process): each side of a remote service is thinned by its own grid,
 * through the peer's driver; a prune by hand reaches the peer; exclude
 * patterns travel with the snapshot request to a remote source.
 */
import test from 'ava';
import { readdir } from 'node:fs/promises';
import { isMarkerOf } from '../../src/services/auto-sync/markers.js';
import { Fixture, folderWith, makeAppliance, type Appliance } from './_fixture.js';

async function pairOf(t: { teardown(fn: () => unknown): void }): Promise<{ a: Appliance; b: Appliance }> {
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha');
  const b = makeAppliance(f, 'beta');
  await folderWith(a, 'tank', {});
  await folderWith(b, 'tank', {});
  const r = await a.cli(`setup network local-bind ${b.home}`);
  if (r.exitCode !== 0) throw new Error(String(r.stderr));
  return { a, b };
}

async function markers(x: Appliance, dataset: string, service: string): Promise<string[]> {
  const fs = await x.services.storage.usable('fs');
  return (await fs.listSnapshots(dataset)).filter((s) => isMarkerOf(service, s.name)).map((s) => s.name);
}

test('both sides of a remote service are thinned by their own grids; prune by hand reaches the peer', async (t) => {
  const { a, b } = await pairOf(t);
  await folderWith(a, 'tank/docs', { 'x.txt': 'x\n' });
  const { name } = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: 'beta', toFs: 'fs:tank/docs', recursive: false, keepSrc: '1h', keepDst: 'all 1d' });
  const made: string[] = [];
  for (let i = 0; i < 3; i++) made.push((await a.services.autoSync.run(name)).marker);
  t.deepEqual(await markers(a, 'tank/docs', name), made.slice(-1), 'the source keeps the newest of the hour');
  t.deepEqual(await markers(b, 'tank/docs', name), made, 'the remote destination keeps every marker of the day');

  await a.services.autoSync.setProperty(name, 'keep_dst', '1h');
  const dry = await a.services.autoSync.prune(name, { dryRun: true });
  t.is(dry.destination.host, 'beta');
  t.deepEqual(
    dry.destination.plan.map((m) => [m.name, m.keep, m.rules]),
    [
      [made[0], false, []],
      [made[1], false, []],
      [made[2], true, ['last common', '1h']],
    ],
  );
  t.deepEqual(await markers(b, 'tank/docs', name), made, 'a dry run removes nothing on the peer');
  const done = await a.services.autoSync.prune(name);
  t.deepEqual(done.pruned, [`beta/tank/docs@${made[0]}`, `beta/tank/docs@${made[1]}`]);
  t.deepEqual(await markers(b, 'tank/docs', name), made.slice(-1));
  t.false((await a.services.autoSync.run(name)).full, 'the next run is incremental from the marker kept');
});

test('exclude patterns reach a remote source: its snapshot leaves them out', async (t) => {
  const { a, b } = await pairOf(t);
  await folderWith(b, 'tank/src', { 'keep.txt': 'k', 'a.tmp': 't', 'sub/b.tmp': 't', 'sub/c.txt': 'c' });
  const { name } = await a.services.autoSync.create({ fromHost: 'beta', fromFs: 'fs:tank/src', toFs: 'fs:tank/copy', recursive: false, exclude: ['*.tmp'] });
  await a.services.autoSync.run(name);
  t.deepEqual((await readdir(a.live('tank/copy'), { recursive: true })).sort(), ['keep.txt', 'sub', 'sub/c.txt']);
});

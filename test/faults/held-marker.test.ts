/**
 * Found by the fault campaign (kill-9/zfs/peer, issue 15): a run killed -9
 * after it held its new common marker but before it released the previous
 * one left that previous marker held for good: the next run released only
 * its own previous common marker (the killed run's), retention skipped the
 * held one, and on zfs its space never came back (5–6 snapshots kept where 3
 * were asked). A run now releases every marker of its service held before
 * it began, whatever run left it held. Here killed at the failpoint
 * run.held (after the new marker's hold on the source, before the release).
 */
import test from 'ava';
import { Fixture } from '../peer/_fixture.js';
import { makeWorld, startRun } from '../../bench/faults/world.js';
import { write } from '../reverse/_pair.js';
import { createServices } from '../../src/services/index.js';

test('a run killed between holding its new marker and releasing the old one: the next run leaves only its own marker held', async (t) => {
  const f = new Fixture();
  t.teardown(() => f.close());
  const w = await makeWorld(f, 'local');
  const services = createServices(w.src.env);
  t.teardown(() => services.peers.close());
  const fs = await services.storage.usable('fs');
  const held = async (dataset: string) => (await fs.listSnapshots(dataset)).filter((s) => s.held).map((s) => s.name);

  for (const text of ['one\n', 'two\n']) {
    write(w.srcDir, 'a.txt', text);
    t.is((await startRun(w)).exitCode, 0);
  }
  const second = (await fs.listSnapshots('tank/docs')).at(-1)!.name;
  t.deepEqual(await held('tank/docs'), [second]);

  write(w.srcDir, 'a.txt', 'three\n');
  const killed = await startRun(w, { SYNCSH_FAILPOINTS: 'run.held' });
  t.is(killed.signal, 'SIGKILL');
  const third = (await fs.listSnapshots('tank/docs')).at(-1)!.name;
  t.deepEqual(await held('tank/docs'), [second, third], 'the killed run held its marker and had not released the previous one');

  write(w.srcDir, 'a.txt', 'four\n');
  t.is((await startRun(w)).exitCode, 0);
  const fourth = (await fs.listSnapshots('tank/docs')).at(-1)!.name;
  t.deepEqual(await held('tank/docs'), [fourth], 'the source holds only the new common marker');
  t.deepEqual(await held('tank/copy'), [fourth], 'and so does the destination');
  t.true((await fs.listSnapshots('tank/docs')).length <= 4, 'retention can prune the old markers again');
});

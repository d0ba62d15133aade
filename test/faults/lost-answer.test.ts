/**
 * Found by the fault campaign (link-cut-stall, issue 15): a run whose
 * receive completed on the destination but failed before the source heard
 * of it (a link lost with the answer on its way; here the failpoint
 * run.received:error) dropped its marker on the source. The destination,
 * now at that marker, had moved past every snapshot left in common, so the
 * next run refused it as "written to since its last received snapshot" and
 * waited for an operator. The marker is now kept unless the destination
 * says it lacks it, and the next run goes on from it.
 */
import test from 'ava';
import { Fixture } from '../peer/_fixture.js';
import { destination, makeWorld, recover, source, startRun } from '../../bench/faults/world.js';
import { write } from '../reverse/_pair.js';
import { createServices } from '../../src/services/index.js';

test('a run that fails after the destination received its marker: the next run goes on without an operator', async (t) => {
  const f = new Fixture();
  t.teardown(() => f.close());
  const w = await makeWorld(f, 'local');
  write(w.srcDir, 'a.txt', 'one\n');
  t.is((await startRun(w)).exitCode, 0);
  write(w.srcDir, 'a.txt', 'two\n');
  const expected = await source(w);
  const failed = await startRun(w, { SYNCSH_FAILPOINTS: 'run.received:error' });
  t.is(failed.exitCode, 1);
  t.regex(String(failed.stderr), /Injected failure at run\.received/);
  t.is((await destination(w)).get('a.txt')?.size, 4, 'the destination did receive it');
  const services = createServices(w.src.env);
  t.teardown(() => services.peers.close());
  const fs = await services.storage.usable('fs');
  const dstNewest = (await fs.listSnapshots('tank/copy')).at(-1)!;
  t.true(
    (await fs.listSnapshots('tank/docs')).some((s) => s.id === dstNewest.id),
    'the source keeps the marker the destination holds',
  );
  t.deepEqual((await recover(w, expected)).violations, []);
});

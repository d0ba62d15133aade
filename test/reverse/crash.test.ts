/**
 * kill -9 at each step of a reverse-direction hand-over, driven from the
 * source (the seed's case 1) and from the destination (case 3): the real
 * process dies at a failpoint (SYNCSH_FAILPOINTS), then the appliance that
 * drove it meets its peer again (what the daemon's tick does) and settles
 * the hand-over from its journal. Afterwards: exactly one master, both
 * appliances at one epoch, the source copy mounted, nothing written before
 * the crash lost, and replication working, files checked byte for byte.
 */
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { drThenBack, filesOf, logOf, orphansOf, reversePair, write, type Pair } from './_pair.js';
import type { Appliance } from '../peer/_fixture.js';

const STEPS = ['handover.journaled', 'handover.unmounted', 'handover.synced', 'handover.peer-committed', 'handover.committed', 'handover.mounted'] as const;

/** the appliance whose copy is the source, by the master's config */
async function sourceOf(p: Pair): Promise<Appliance> {
  const a = p.fresh(p.a).autoSync.config(p.name);
  return a.source.host === 'localhost' ? p.a : p.b;
}

async function crashThenSettle(t: import('ava').ExecutionContext, driver: 'a' | 'b', step: (typeof STEPS)[number]) {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  write(p.a.live('tank/docs'), 'late.txt', `written on alpha just before the hand-over (${step})\n`);
  const before = await filesOf(p, p.a);
  const x = driver === 'a' ? p.a : p.b;

  const r = await x.cli(`setup auto-sync :${p.name} reverse-direction -y`, { SYNCSH_FAILPOINTS: step });
  t.is(r.signal, 'SIGKILL', `killed at ${step}: ${String(r.stderr)}`);
  const journal = path.join(x.home, 'handovers', `${p.name}.json`);
  t.true(existsSync(journal), 'the crash left the journal behind');

  // the daemon's tick on the appliance that drove it (any run or reverse-direction there does the same)
  await p.fresh(x).autoSync.contact(p.name);
  // ...and on the other one, which takes a newer epoch if there is one
  await p.fresh(x === p.a ? p.b : p.a).autoSync.contact(p.name);
  t.false(existsSync(journal), 'settled: the journal is gone');
  t.true((await logOf(p, x)).includes('[Reverse-direction: interrupted hand-over found'));

  const ca = p.fresh(p.a).autoSync.config(p.name);
  const cb = p.fresh(p.b).autoSync.config(p.name);
  t.is([ca, cb].filter((c) => c.role === 'master').length, 1, 'exactly one master');
  t.is(ca.epoch, cb.epoch, 'one epoch on both appliances');
  t.is([ca, cb].filter((c) => c.source.host === 'localhost').length, 1, 'exactly one source');
  t.is(ca.maintenance, null);
  t.is(cb.maintenance, null);
  // committed (an epoch moved) or undone (none did): never half way
  const moved = ca.epoch === 2;
  t.is(moved, ['handover.peer-committed', 'handover.committed', 'handover.mounted'].includes(step), `epoch ${ca.epoch} after a crash at ${step}`);

  // the source copy is mounted and holds everything written before the crash
  const source = await sourceOf(p);
  t.is(source, moved ? p.b : p.a);
  const fs = await p.fresh(source).storage.usable('fs');
  t.true((await fs.getDataset('tank/docs'))!.mounted, 'the source copy is mounted again');
  t.deepEqual(await filesOf(p, source), before);

  // and replication goes on from the master, byte for byte
  write(source.live('tank/docs'), 'after.txt', 'written after the recovery\n');
  const master = ca.role === 'master' ? p.a : p.b;
  const run = await master.cli(`run auto-sync :${p.name}`);
  t.is(run.exitCode, 0, String(run.stderr));
  const other = source === p.a ? p.b : p.a;
  t.deepEqual(await filesOf(p, other), await filesOf(p, source));
  t.is((await filesOf(p, other))['late.txt'], before['late.txt']);
  t.deepEqual(readdirSync(path.join(x.home, 'handovers')), []);
}

for (const step of STEPS) {
  test.serial(`kill -9 at ${step}, driven from the source (master): settled, one master, nothing lost`, (t) => crashThenSettle(t, 'a', step));
  test.serial(`kill -9 at ${step}, driven from the destination (non-master): settled, one master, nothing lost`, (t) => crashThenSettle(t, 'b', step));
}

test.serial('a hand-over another live process drives is never second-guessed, even when the peer has committed it', async (t) => {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  // another process (alive) holds the journal, mid-hand-over: beta is at epoch 2 already
  const { spawn } = await import('node:child_process');
  const other = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => other.kill());
  const sa = p.fresh(p.a);
  const journal = sa.autoSync.contactDeps()!.journal;
  journal.put({ service: p.name, epoch: 1, oldSource: 'here', pid: other.pid!, startedAt: new Date().toISOString() });
  const sb = p.fresh(p.b);
  await sb.autoSync.store.update(p.name, (c) => ({ ...c, epoch: 2 }));
  t.is(await sa.autoSync.contact(p.name), 'same');
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'master', epoch: 1 }, 'not adopted behind the driving process');
  t.truthy(journal.get(p.name));
  t.false((await logOf(p, p.a)).includes('interrupted hand-over'));
  // once that process is gone, the journal is settled: beta committed, so alpha takes its view
  other.kill('SIGKILL');
  await new Promise((r) => other.once('exit', r));
  t.is(await p.fresh(p.a).autoSync.contact(p.name), 'adopted');
  t.true((await logOf(p, p.a)).includes('interrupted hand-over found'));
  t.is(journal.get(p.name), null);
});

test.serial('an interrupted hand-over waits while the peer is down: the source stays unmounted, nothing is decided', async (t) => {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  const r = await p.a.cli(`setup auto-sync :${p.name} reverse-direction -y`, { SYNCSH_FAILPOINTS: 'handover.peer-committed' });
  t.is(r.signal, 'SIGKILL');
  p.down(p.b);
  t.is(await p.fresh(p.a).autoSync.contact(p.name), 'unreachable');
  t.false((await (await p.fresh(p.a).storage.usable('fs')).getDataset('tank/docs'))!.mounted, 'not mounted: beta may be master already');
  const again = await p.a.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.not(again.exitCode, 0);
  t.regex(String(again.stderr), /hand-over of auto-sync:tank-docs-000 was interrupted .* settled on the next contact with beta, which is down/);
  p.up(p.b);
  t.is(await p.fresh(p.a).autoSync.contact(p.name), 'adopted');
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'non-master', epoch: 2 });
  t.true((await (await p.fresh(p.b).storage.usable('fs')).getDataset('tank/docs'))!.mounted);
});

test.serial('a failback cut short after its orphan snapshot was taken: the retry moves that orphan aside and takes no second one', async (t) => {
  const { orphanName } = await import('../../src/services/auto-sync/orphans.js');
  const p = await reversePair(t);
  await drThenBack(p, 'unsynced.txt', 'alpha wrote this after the last sync\n');
  const alphaHad = await filesOf(p, p.a);
  // as if alpha died right after taking the orphan snapshot, before moving it and rolling back
  const fsA = await p.fresh(p.a).storage.usable('fs');
  const taken = orphanName(p.name, new Date(Date.now() - 60_000));
  await fsA.createSnapshot('tank/docs', taken, { recursive: false });
  await fsA.holdSnapshot('tank/docs', taken, true);

  t.is(await p.fresh(p.a).autoSync.contact(p.name), 'demoted');
  const orphans = await orphansOf(p, p.a);
  t.deepEqual(
    orphans.map((o) => [o.snapshot, o.dataset]),
    [[taken, `tank/${taken}`]],
  );
  t.deepEqual(await filesOf(p, p.a, `tank/${taken}`), alphaHad);
  t.false((await fsA.listSnapshots('tank/docs')).some((s) => s.name.startsWith('orphan-')));
});

/**
 * Reverse-direction of a remote-to-local service (the seed's product had
 * only local-to-remote): created on beta, which runs it and pulls alpha's
 * tank/docs. Master is beta, the source is on alpha. The four cases go by
 * the copy an appliance holds: from alpha (source) with beta up, from beta
 * (destination) with alpha up, from alpha with beta down (refused), and
 * from beta with alpha down (disaster recovery), then failback.
 */
import test from 'ava';
import { filesOf, logOf, orphansOf, reversePair, write } from './_pair.js';

test.serial('a pull service is reverse-capable: beta master (remote-to-local), alpha non-master holding the source', async (t) => {
  const p = await reversePair(t, undefined, { pull: true });
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 1, direction: 'remote-to-local', source: { host: 'alpha' } });
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'non-master', epoch: 1, direction: 'local-to-remote', destination: { host: 'beta' } });
  const run = await p.b.cli(`run auto-sync :${p.name}`);
  t.is(run.exitCode, 0, String(run.stderr));
  t.deepEqual(await filesOf(p, p.b), await filesOf(p, p.a));
});

for (const from of ['b', 'a'] as const) {
  test.serial(`hand-over of a pull service driven from ${from === 'b' ? 'the master (destination)' : 'the non-master (source)'}: beta becomes the source, alpha pulls`, async (t) => {
    const p = await reversePair(t, undefined, { pull: true });
    await p.fresh(p.b).autoSync.run(p.name);
    write(p.a.live('tank/docs'), 'late.txt', 'alpha wrote this just before\n');
    const x = from === 'a' ? p.a : p.b;
    const r = await x.cli(`setup auto-sync :${p.name} reverse-direction -y`);
    t.is(r.exitCode, 0, String(r.stderr));
    // the master role moved with the direction: alpha runs now, pulling from beta
    t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'master', epoch: 2, direction: 'remote-to-local', source: { host: 'beta' } });
    t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'non-master', epoch: 2, direction: 'local-to-remote', destination: { host: 'alpha' } });
    const log = await logOf(p, x);
    const shape = from === 'b' ? '[Reverse-direction: R2L, master, remote_up. ]' : '[Reverse-direction: L2R, non-master, remote_up. ]';
    for (const line of [shape, '[Reverse-direction: Unmounting master copy of a folder ]', '[Reverse-direction: Syncing last delta before changing direction ]']) t.true(log.includes(line), line);
    const fsA = await p.fresh(p.a).storage.usable('fs');
    const fsB = await p.fresh(p.b).storage.usable('fs');
    t.false((await fsA.getDataset('tank/docs'))!.mounted, "alpha's copy is a destination now");
    t.true((await fsB.getDataset('tank/docs'))!.mounted, "beta's copy is the source");
    t.is((await filesOf(p, p.b))['late.txt'], 'alpha wrote this just before\n');
    write(p.b.live('tank/docs'), 'from-beta.txt', 'beta writes now\n');
    const run = await p.a.cli(`run auto-sync :${p.name}`);
    t.is(run.exitCode, 0, String(run.stderr));
    t.deepEqual(await filesOf(p, p.a), await filesOf(p, p.b));
    t.is((await filesOf(p, p.a))['from-beta.txt'], 'beta writes now\n');
    t.regex(String((await p.b.cli(`run auto-sync :${p.name}`)).stderr), /non-master/);
  });
}

test.serial('pull service, from the source with the destination down: refused, nothing changes', async (t) => {
  const p = await reversePair(t, undefined, { pull: true });
  await p.fresh(p.b).autoSync.run(p.name);
  p.down(p.b);
  const r = await p.a.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.not(r.exitCode, 0);
  t.regex(String(r.stderr), /\(beta\) is down: reverse-direction on the appliance that holds the source needs it up.*Nothing was changed; this appliance stays non-master and its copy stays writable/s);
  p.up(p.b);
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'non-master', epoch: 1 });
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 1 });
});

test.serial('pull service, disaster recovery on the master (destination) with the source down, then failback', async (t) => {
  const p = await reversePair(t, undefined, { pull: true });
  await p.fresh(p.b).autoSync.run(p.name);
  const synced = await filesOf(p, p.b);
  write(p.a.live('tank/docs'), 'unpulled.txt', 'alpha wrote this after the last pull\n');
  const alphaHad = await filesOf(p, p.a);
  p.down(p.a);
  const r = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  const out = String(r.stdout) + String(r.stderr);
  t.regex(out, /IMPORTANT! You are about to reverse direction of 'auto-sync:tank-docs-000' from the destination appliance/);
  t.regex(out, /WILL BE KEPT on the source appliance, as an orphan snapshot of alpha:fs:tank\/docs \(kept in fs:tank\/orphan-tank-docs-000-DATE\)/);
  t.true((await logOf(p, p.b)).includes('[Reverse-direction: DR scenario. We are the destination (master, R2L) and remote is down ]'));
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 2, direction: 'local-to-remote', destination: { host: 'alpha' } });
  t.deepEqual(await filesOf(p, p.b), synced);
  write(p.b.live('tank/docs'), 'dr.txt', 'beta wrote this during the disaster\n');

  // alpha is back: the epoch rule makes its copy the destination, keeping what it wrote
  p.up(p.a);
  t.is(await p.fresh(p.a).autoSync.contact(p.name), 'demoted');
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'non-master', epoch: 2, direction: 'remote-to-local', source: { host: 'beta' } });
  const orphans = await orphansOf(p, p.a);
  t.is(orphans.length, 1);
  t.deepEqual(await filesOf(p, p.a, orphans[0].dataset), alphaHad);
  const run = await p.b.cli(`run auto-sync :${p.name}`);
  t.is(run.exitCode, 0, String(run.stderr));
  t.deepEqual(await filesOf(p, p.a), await filesOf(p, p.b));
  t.is((await filesOf(p, p.a))['dr.txt'], 'beta wrote this during the disaster\n');
});

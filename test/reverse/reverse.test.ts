/**
 * Reverse-direction on the fs driver, two appliances on one machine
 * (local-bind both ways): enabling, the four cases of the NexentaStor
 * document, disaster recovery then failback with the old master's changes
 * kept as an orphan, and split brain detection.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { drThenBack, filesOf, logOf, orphansOf, reversePair, write } from './_pair.js';
import { SEED } from './_seed.js';

test.serial('create --reverse-capable yes copies the config to the peer: master here, non-master there, same epoch', async (t) => {
  const p = await reversePair(t);
  const ca = p.fresh(p.a).autoSync.config(p.name);
  const cb = p.fresh(p.b).autoSync.config(p.name);
  t.like(ca, { role: 'master', epoch: 1, reverseCapable: true, direction: 'local-to-remote', source: { host: 'localhost', dataset: 'fs:tank/docs' }, destination: { host: 'beta' } });
  t.like(cb, { role: 'non-master', epoch: 1, reverseCapable: true, direction: 'remote-to-local', source: { host: 'alpha', dataset: 'fs:tank/docs' }, destination: { host: 'localhost' } });
  const shown = await p.a.cli(`show auto-sync :${p.name}`);
  t.regex(String(shown.stdout), /autosync_role\s+: master/);
  t.regex(String((await p.b.cli(`show auto-sync :${p.name}`)).stdout), /autosync_role\s+: non-master/);
  // a non-master does not run
  t.regex(String((await p.b.cli(`run auto-sync :${p.name}`)).stderr), /non-master/);
});

test.serial('setup reverse-direction on a service without the capability asks to enable it (-y)', async (t) => {
  const p = await reversePair(t);
  await p.a.cli(`show auto-sync :${p.name}`);
  // a second, plain service
  const { writeTree } = await import('../helpers/fs-tree.js');
  const dir = p.a.live('tank/more');
  await p
    .fresh(p.a)
    .storage.usable('fs')
    .then((fs) => fs.createDataset('tank/more'));
  await writeTree(dir, { 'm.txt': 'more\n' });
  const c = await p.a.cli('create auto-sync --from-fs fs:tank/more --to-host beta --to-fs fs:tank/more --recursive no -y');
  t.is(c.exitCode, 0, String(c.stderr));
  const name = /auto-sync:(\S+?):/.exec(String(c.stdout))![1];
  t.is(p.fresh(p.b).autoSync.store.get(name), undefined);
  const noTty = await p.a.cli(`setup auto-sync :${name} reverse-direction`);
  t.not(noTty.exitCode, 0);
  t.regex(String(noTty.stdout) + String(noTty.stderr), /Do you want enable 'reverse-direction' feature\?/);
  const r = await p.a.cli(`setup auto-sync :${name} reverse-direction -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout) + String(r.stderr), /Reverse-direction feature is currently disabled/);
  t.like(p.fresh(p.b).autoSync.config(name), { role: 'non-master', epoch: 1, reverseCapable: true });
  t.like(p.fresh(p.a).autoSync.config(name), { role: 'master', epoch: 1, reverseCapable: true });
});

test.serial('case 1: master, peer up: last delta, roles swap at epoch+1, replication flows the other way', async (t) => {
  const p = await reversePair(t);
  const A = p.a.live('tank/docs');
  const B = p.b.live('tank/docs');
  await p.fresh(p.a).autoSync.run(p.name);
  write(A, 'late.txt', 'written on alpha just before the reversal\n');
  const r = await p.a.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /Reversed direction for 1 auto-sync instance/);
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'non-master', epoch: 2, direction: 'remote-to-local', source: { host: 'beta' }, destination: { host: 'localhost' } });
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 2, direction: 'local-to-remote', source: { host: 'localhost' }, destination: { host: 'alpha' } });
  const log = await logOf(p, p.a);
  for (const line of [SEED.fmri(p.name), SEED.alive, SEED.l2rUp, SEED.unmounting, SEED.syncing, SEED.mountingRemote]) t.true(log.includes(line), line);
  t.regex(log, /Starting incremental fs send\/recv of delta -I tank\/docs@syncsh-/);
  // beta now holds the late file and is the writable source; the flow is reversed
  t.is(readFileSync(path.join(B, 'late.txt'), 'utf8'), 'written on alpha just before the reversal\n');
  t.deepEqual(await filesOf(p, p.a), await filesOf(p, p.b));
  write(B, 'from-beta.txt', 'beta writes now\n');
  const run = await p.fresh(p.b).autoSync.run(p.name);
  t.false(run.full);
  const alpha = await filesOf(p, p.a);
  t.is(alpha['from-beta.txt'], 'beta writes now\n');
  t.deepEqual(alpha, await filesOf(p, p.b));
});

test.serial('case 2: master, peer down: refused, saying why and what to do; nothing changes', async (t) => {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  p.down(p.b);
  const r = await p.a.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.not(r.exitCode, 0);
  t.regex(String(r.stderr), /\(beta\) is down: reverse-direction on the master needs it up.*Nothing was changed.*Bring beta up/s);
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'master', epoch: 1 });
  const log = await logOf(p, p.a);
  t.true(log.includes('[Reverse-direction: remote appliance: down ]'));
  // the source stays mounted and writable
  write(p.a.live('tank/docs'), 'still.txt', 'still writable\n');
  p.up(p.b);
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'non-master', epoch: 1 });
});

test.serial('case 3: non-master, peer up: the hand-over driven from the non-master', async (t) => {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  write(p.a.live('tank/docs'), 'd/late.txt', 'late on alpha\n');
  const r = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 2, direction: 'local-to-remote', destination: { host: 'alpha' } });
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'non-master', epoch: 2, direction: 'remote-to-local', source: { host: 'beta' } });
  const log = await logOf(p, p.b);
  for (const line of ['[Reverse-direction: remote appliance: alive ]', '[Reverse-direction: Unmounting master copy of a folder ]', '[Reverse-direction: Syncing last delta before changing direction ]']) t.true(log.includes(line), line);
  t.is(readFileSync(path.join(p.b.live('tank/docs'), 'd/late.txt'), 'utf8'), 'late on alpha\n');
  t.false((await (await p.fresh(p.a).storage.usable('fs')).getDataset('tank/docs'))!.mounted, 'the old master copy is unmounted');
  t.deepEqual(await filesOf(p, p.a), await filesOf(p, p.b));
  write(p.b.live('tank/docs'), 'b.txt', 'from beta\n');
  await p.fresh(p.b).autoSync.run(p.name);
  t.is((await filesOf(p, p.a))['b.txt'], 'from beta\n');
  t.deepEqual(await filesOf(p, p.a), await filesOf(p, p.b));
  // the old master does not run any more
  t.regex(String((await p.a.cli(`run auto-sync :${p.name}`)).stderr), /non-master/);
});

test.serial('case 4 then failback: DR on the non-master; the old master comes back, keeps its changes as an orphan, rolls back, receives', async (t) => {
  const p = await reversePair(t);
  const A = p.a.live('tank/docs');
  const B = p.b.live('tank/docs');
  await p.fresh(p.a).autoSync.run(p.name);
  const synced = await filesOf(p, p.b);
  // alpha writes after the last replication, then goes down
  write(A, 'lost-on-nexenta.txt', 'alpha wrote this after the last sync\n');
  write(A, 'a.txt', 'alpha changed this too\n');
  p.down(p.a);
  const noTty = await p.b.cli(`setup auto-sync :${p.name} reverse-direction`);
  t.not(noTty.exitCode, 0, 'no terminal, no -y: refused');
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'non-master', epoch: 1 });
  const r = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  const out = String(r.stdout) + String(r.stderr);
  t.regex(out, /IMPORTANT! You are about to reverse direction of 'auto-sync:tank-docs-000' from non-master appliance/);
  t.regex(out, /WILL BE KEPT on the master, as an orphan snapshot/);
  t.notRegex(out, /LOOSE/);
  t.regex(out, /Reversed direction for 1 auto-sync instance/);
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 2, direction: 'local-to-remote' });
  let log = await logOf(p, p.b);
  for (const line of ['[Reverse-direction: remote appliance: down ]', '[Reverse-direction: DR scenario. We are non-master and remote is down ]', '[Rereading configuration. ]']) t.true(log.includes(line), line);
  // beta's copy is mounted and writable, at the last synced state
  t.deepEqual(await filesOf(p, p.b), synced);
  write(B, 'dr.txt', 'written on beta during the disaster\n');
  // while alpha is down, beta's runs fail (and change nothing)
  await t.throwsAsync(p.fresh(p.b).autoSync.run(p.name));

  // alpha comes back; it still believes it is master at epoch 1. Its own run meets epoch 2 first.
  p.up(p.a);
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'master', epoch: 1 });
  const own = await p.a.cli(`run auto-sync :${p.name}`);
  t.not(own.exitCode, 0);
  t.regex(String(own.stderr), /non-master/);
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'non-master', epoch: 2, source: { host: 'beta' }, destination: { host: 'localhost' } });
  log = await logOf(p, p.a);
  t.true(log.includes('[Reverse-direction: sync_configuration_with_remote_side() - DR case, rolling back to last synced state ]'));
  t.regex(log, /\[RECOVERED => beta:fs:tank\/docs@syncsh-tank-docs-000-\d+:[0-9a-f]+ OK \(\d+ sec\) \]/);

  // the changes are kept, listed, and hold exactly what alpha wrote
  const listed = await p.a.cli(`show auto-sync :${p.name} orphans --json`);
  t.is(listed.exitCode, 0, String(listed.stderr));
  const orphans = JSON.parse(String(listed.stdout)) as { snapshot: string; dataset: string }[];
  t.is(orphans.length, 1);
  t.regex(orphans[0].snapshot, /^orphan-tank-docs-000-\d{8}T\d{6}Z$/);
  t.regex(String((await p.a.cli(`show auto-sync :${p.name} orphans`)).stdout), /orphan-tank-docs-000-/);
  // kept in a dataset of its own next to the copy (a rollback must not have to destroy it), held
  t.is(orphans[0].dataset, `tank/${orphans[0].snapshot}`);
  const fsA = await p.fresh(p.a).storage.usable('fs');
  t.true((await fsA.listSnapshots(orphans[0].dataset)).find((s) => s.name === orphans[0].snapshot)!.held);
  t.false(
    (await fsA.listSnapshots('tank/docs')).some((s) => s.name === orphans[0].snapshot),
    'not on the copy any more',
  );

  // alpha was rolled back to the last synced state, and data now flows into it
  t.deepEqual(await filesOf(p, p.a), synced);
  const run = await p.fresh(p.b).autoSync.run(p.name);
  t.false(run.full);
  const now = await filesOf(p, p.a);
  t.is(now['dr.txt'], 'written on beta during the disaster\n');
  t.false('lost-on-nexenta.txt' in now);
  t.deepEqual(now, await filesOf(p, p.b));

  // the orphan survived the incoming run and its pruning, and holds exactly what alpha had
  const kept = await filesOf(p, p.a, orphans[0].dataset);
  t.is(kept['lost-on-nexenta.txt'], 'alpha wrote this after the last sync\n');
  t.is(kept['a.txt'], 'alpha changed this too\n');
  t.deepEqual(Object.keys(kept).sort(), [...Object.keys(synced), 'lost-on-nexenta.txt'].sort());

  // destroying it takes an explicit, confirmed command
  const refused = await p.a.cli(`destroy auto-sync :${p.name} orphan ${orphans[0].snapshot}`);
  t.not(refused.exitCode, 0);
  t.truthy(await fsA.getDataset(orphans[0].dataset));
  const gone = await p.a.cli(`destroy auto-sync :${p.name} orphan ${orphans[0].snapshot} -y`);
  t.is(gone.exitCode, 0, String(gone.stderr));
  t.is(await fsA.getDataset(orphans[0].dataset), null);
  t.regex(String((await p.a.cli(`show auto-sync :${p.name} orphans`)).stdout), /No orphans/);
});

test.serial('a crash between the two config writes of a hand-over still leaves exactly one master', async (t) => {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  const before = p.fresh(p.a).autoSync.config(p.name);
  const r = await p.a.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  // as if alpha crashed after writing beta's config (peer first) and before its own: master at epoch 1 here, master at 2 there
  await p.fresh(p.a).autoSync.store.update(p.name, () => before);
  const masters = () => [p.fresh(p.a), p.fresh(p.b)].filter((s) => s.autoSync.config(p.name).role === 'master').length;
  t.is(masters(), 2, 'two masters on disk, at different epochs');
  // the old one meets the higher epoch on contact (the daemon's tick does this too) and demotes itself first
  t.is(await p.fresh(p.a).autoSync.contact(p.name), 'demoted');
  t.is(masters(), 1);
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'non-master', epoch: 2 });
  t.deepEqual(await orphansOf(p, p.a), [], 'nothing was written after the last delta: no orphan');
  write(p.b.live('tank/docs'), 'after.txt', 'after\n');
  await p.fresh(p.b).autoSync.run(p.name);
  t.deepEqual(await filesOf(p, p.a), await filesOf(p, p.b));
});

test.serial("the daemon's tick demotes an old master that comes back, with no run due", async (t) => {
  const { Daemon } = await import('../../src/services/daemon.js');
  const { until } = await import('../peer/_fixture.js');
  const p = await reversePair(t);
  await drThenBack(p, 'x.txt', 'unreplicated\n');
  const sa = p.fresh(p.a);
  const stop = new AbortController();
  t.teardown(() => stop.abort());
  new Daemon(sa, { say: () => undefined }).tick(stop.signal);
  await until('alpha demoted by the tick', () => sa.autoSync.store.get(p.name)?.role === 'non-master', 20_000);
  t.like(sa.autoSync.config(p.name), { epoch: 2, source: { host: 'beta' } });
  t.is(sa.autoSync.store.runState(p.name).inFlight, false);
  t.is((await orphansOf(p, p.a)).length, 1);
});

test.serial('after DR, nothing is sent into the old master before it kept its changes, even with force yes; an older config never overwrites a newer one', async (t) => {
  const p = await reversePair(t);
  await drThenBack(p, 'lost.txt', 'alpha wrote this after the last sync\n');
  t.is((await p.b.cli(`setup auto-sync :${p.name} property force yes`)).exitCode, 0);
  const refused = await p.b.cli(`run auto-sync :${p.name}`);
  t.not(refused.exitCode, 0);
  t.regex(String(refused.stderr), /alpha still holds auto-sync:tank-docs-000 as its source at an older epoch .*nothing was sent/);
  // nor does a hand-over's last delta go into it
  const handOver = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.not(handOver.exitCode, 0);
  t.regex(String(handOver.stderr), /alpha still holds auto-sync:tank-docs-000 as its source at an older epoch .*nothing was sent/);
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 2 });
  t.is(readFileSync(path.join(p.a.live('tank/docs'), 'lost.txt'), 'utf8'), 'alpha wrote this after the last sync\n');

  // alpha's stale view cannot replace beta's newer one
  const stale = p.fresh(p.a).autoSync.config(p.name);
  const { toPeerView } = await import('../../src/services/auto-sync/endpoints.js');
  await t.throwsAsync(p.fresh(p.a).peers.peerSide('beta').putConfig(toPeerView(stale, 'alpha')), { message: /holds auto-sync:tank-docs-000 at epoch 2, newer than 1/ });
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 2 });

  // alpha meets epoch 2, keeps its change as an orphan; then beta's run goes through
  t.is(await p.fresh(p.a).autoSync.contact(p.name), 'demoted');
  t.is((await orphansOf(p, p.a)).length, 1);
  const run = await p.b.cli(`run auto-sync :${p.name}`);
  t.is(run.exitCode, 0, String(run.stderr));
  t.deepEqual(await filesOf(p, p.a), await filesOf(p, p.b));
  t.notRegex(await logOf(p, p.a), /\[\[/, 'one bracket per log line');
});

test.serial('a property set on either appliance is set on the other copy too; with the other down, here only, with a warning', async (t) => {
  const p = await reversePair(t);
  t.is((await p.a.cli(`setup auto-sync :${p.name} property keep_dst 7`)).exitCode, 0);
  t.is(p.fresh(p.b).autoSync.config(p.name).keepDst, 7);
  t.is((await p.b.cli(`setup auto-sync :${p.name} property comment 'from beta'`)).exitCode, 0);
  t.is(p.fresh(p.a).autoSync.config(p.name).comment, 'from beta');
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'non-master', source: { host: 'alpha' } }, 'roles and endpoints stay as they were');
  p.down(p.b);
  const r = await p.a.cli(`setup auto-sync :${p.name} property comment 'alpha only'`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout) + String(r.stderr), /Warning: comment was set here only \(.*\); set it on beta too once it answers/);
  p.up(p.b);
  t.is(p.fresh(p.a).autoSync.config(p.name).comment, 'alpha only');
  t.is(p.fresh(p.b).autoSync.config(p.name).comment, 'from beta');
});

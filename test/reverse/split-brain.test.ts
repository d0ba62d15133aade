/**
 * Split brain, then the operator picks the winner: `setup auto-sync :NAME
 * resolve-split-brain --winner here|peer -y`. The kept copy becomes the
 * source at the next epoch, the other keeps what it wrote as a held orphan,
 * is rolled back and receives; nothing is lost. Bad input changes nothing.
 */
import test from 'ava';
import { filesOf, logOf, orphansOf, reversePair, write, type Pair } from './_pair.js';
import { BIN } from '../helpers/cli.js';
import { openScreen, tmuxAvailable } from '../helpers/tmux.js';
import { requireSystem } from '../helpers/system.js';
import { FAST_ENV } from '../peer/_fixture.js';

/** both appliances master at epoch 1, both wrote after the last common snapshot: maintenance on both */
async function splitBrain(t: import('ava').ExecutionContext): Promise<Pair> {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  const sb = p.fresh(p.b);
  await sb.autoSync.store.update(p.name, (c) => ({ ...c, role: 'master', source: c.destination, destination: c.source, direction: 'local-to-remote' }));
  await (await sb.storage.usable('fs')).mount('tank/docs');
  write(p.a.live('tank/docs'), 'a-side.txt', 'alpha wrote this\n');
  write(p.b.live('tank/docs'), 'b-side.txt', 'beta wrote this\n');
  t.not((await p.a.cli(`run auto-sync :${p.name}`)).exitCode, 0);
  t.regex(p.fresh(p.b).autoSync.config(p.name).maintenance?.reason ?? '', /^Split brain/);
  return p;
}

test.serial('split brain: same epoch, both master, both wrote after the last common snapshot: maintenance on both, nothing rolled back', async (t) => {
  const p = await splitBrain(t);
  t.like(p.fresh(p.a).autoSync.config(p.name).maintenance, { kind: 'split-brain', fix: `setup auto-sync :${p.name} resolve-split-brain` });
  t.regex(p.fresh(p.a).autoSync.config(p.name).maintenance?.reason ?? '', /^Split brain: both appliances are master/);
  t.is((await filesOf(p, p.a))['a-side.txt'], 'alpha wrote this\n');
  t.is((await filesOf(p, p.b))['b-side.txt'], 'beta wrote this\n');
  t.true((await logOf(p, p.a)).includes('ALERT: auto-sync:tank-docs-000 put in maintenance: Split brain'));
  const r = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  t.not(r.exitCode, 0, 'no reverse-direction out of split brain');
  t.regex(String(r.stderr), /Split brain/);
  // enable does not clear a split brain, on either side: the refusal names resolve-split-brain
  for (const side of [p.a, p.b]) {
    const e = await side.cli(`setup auto-sync :${p.name} enable`);
    t.not(e.exitCode, 0);
    t.regex(String(e.stderr), new RegExp(`split brain, which enable does not clear: .*Run 'setup auto-sync :${p.name} resolve-split-brain'`));
    t.is(p.fresh(side).autoSync.config(p.name).maintenance?.kind, 'split-brain');
  }
});

for (const [label, from, winner] of [
  ['keeps the copy here', 'a', 'here'],
  ['keeps the copy on the peer', 'a', 'peer'],
  ['run from the other appliance, keeps its own copy', 'b', 'here'],
] as const) {
  test.serial(`resolve-split-brain ${label}: the loser's changes are an orphan, data flows from the winner`, async (t) => {
    const p = await splitBrain(t);
    const x = from === 'a' ? p.a : p.b;
    const keeper = winner === 'here' ? x : x === p.a ? p.b : p.a;
    const loser = keeper === p.a ? p.b : p.a;
    const kept = await filesOf(p, keeper);
    const lost = await filesOf(p, loser);

    const r = await x.cli(`setup auto-sync :${p.name} resolve-split-brain --winner ${winner} -y`);
    t.is(r.exitCode, 0, String(r.stderr));
    t.regex(String(r.stdout), /Split brain resolved for auto-sync:tank-docs-000/);
    const ck = p.fresh(keeper).autoSync.config(p.name);
    const cl = p.fresh(loser).autoSync.config(p.name);
    t.like(ck, { role: 'master', epoch: 2, maintenance: null, direction: 'local-to-remote' });
    t.like(cl, { role: 'non-master', epoch: 2, maintenance: null, direction: 'remote-to-local' });

    // the loser's writes are kept, held, on the loser; nothing on the keeper
    const orphans = await orphansOf(p, loser);
    t.is(orphans.length, 1);
    t.deepEqual(await orphansOf(p, keeper), []);
    const fsL = await p.fresh(loser).storage.usable('fs');
    t.true((await fsL.listSnapshots(orphans[0].dataset)).find((s) => s.name === orphans[0].snapshot)!.held);
    t.deepEqual(await filesOf(p, loser, orphans[0].dataset), lost, 'the orphan holds exactly what the loser had');

    // the winner's copy is untouched and replicates into the loser
    t.deepEqual(await filesOf(p, keeper), kept);
    const run = await keeper.cli(`run auto-sync :${p.name}`);
    t.is(run.exitCode, 0, String(run.stderr));
    t.deepEqual(await filesOf(p, loser), kept);
    t.false((await fsL.getDataset('tank/docs'))!.mounted, 'the loser is a destination now');
  });
}

test.serial('resolve-split-brain refuses what it cannot do, and changes nothing', async (t) => {
  const p = await reversePair(t);
  await p.fresh(p.a).autoSync.run(p.name);
  const notSplit = await p.a.cli(`setup auto-sync :${p.name} resolve-split-brain --winner here -y`);
  t.is(notSplit.exitCode, 1);
  t.regex(String(notSplit.stderr), /auto-sync:tank-docs-000 is not in split brain; nothing to resolve/);
  const bad = await p.a.cli(`setup auto-sync :${p.name} resolve-split-brain --winner both -y`);
  t.is(bad.exitCode, 2);
  t.regex(String(bad.stderr), /must be here .* or peer .*, not "both"/);
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'master', epoch: 1, maintenance: null });

  const q = await splitBrain(t);
  const noWinner = await q.a.cli(`setup auto-sync :${q.name} resolve-split-brain -y`);
  t.not(noWinner.exitCode, 0);
  t.regex(String(noWinner.stderr), /--winner here\|peer/);
  const noYes = await q.a.cli(`setup auto-sync :${q.name} resolve-split-brain --winner here`);
  t.not(noYes.exitCode, 0);
  q.down(q.b);
  const down = await q.a.cli(`setup auto-sync :${q.name} resolve-split-brain --winner here -y`);
  t.not(down.exitCode, 0);
  t.regex(String(down.stderr), /beta cannot be reached .*Nothing was changed/);
  q.up(q.b);
  for (const x of [q.a, q.b]) {
    t.like(q.fresh(x).autoSync.config(q.name), { epoch: 1, role: 'master' });
    t.deepEqual(await orphansOf(q, x), []);
  }
  t.is((await filesOf(q, q.a))['a-side.txt'], 'alpha wrote this\n');
  t.is((await filesOf(q, q.b))['b-side.txt'], 'beta wrote this\n');
});

test.serial('the winner picked in the shell: the select dialog, then the confirmation, typed in tmux', async (t) => {
  if (!(await requireSystem(t, ['tmux'], tmuxAvailable))) return;
  const p = await splitBrain(t);
  const screen = await openScreen(t, ['node', BIN], { env: { ...FAST_ENV, SYNCSH_HOME: p.a.home, SYNCSH_APPLIANCE_ID: 'alpha', NO_COLOR: '1' }, columns: 120, rows: 40 });
  await screen.waitFor(/syncsh@alpha:\/\$\s*$/m);
  await screen.type(`show auto-sync :${p.name} property maintenance`);
  await screen.keys('Enter');
  await screen.waitFor(/Split brain: both appliances are master/);
  await screen.keys('C-l');
  await screen.type(`setup auto-sync :${p.name} resolve-split-brain`);
  await screen.keys('Enter');
  await screen.waitFor(/Copy to keep +:\n\[?here \(alpha\)\]? +\[?peer \(beta\)\]?[\s\S]*Both copies of auto-sync:tank-docs-000 changed/, 30_000);
  await screen.keys('l', 'Enter');
  await screen.waitFor(/Keep the copy on beta and roll back the one here \(alpha\)\?/);
  await screen.waitFor(/^yes {2}\[no\]$/m);
  await screen.keys('h', 'Enter');
  await screen.waitFor(/Split brain resolved for auto-sync:tank-docs-000: the copy on beta is the source, master beta \(epoch 2\)/, 30_000);
  t.like(p.fresh(p.b).autoSync.config(p.name), { role: 'master', epoch: 2, maintenance: null });
  t.like(p.fresh(p.a).autoSync.config(p.name), { role: 'non-master', epoch: 2, maintenance: null });
  t.is((await orphansOf(p, p.a)).length, 1);
});

/**
 * Reverse-direction over real SSH on the fs driver (DESIGN.md, "Roles,
 * epochs and reverse-direction"; the NexentaStor "Auto-Sync in reverse"
 * document): two appliances, each with its own sshd in its own network
 * namespace, bound both ways with `setup network ssh-bind`, and a peer that
 * is "down" because its network cable is really cut (_ssh-pair.ts). Every
 * step goes through each appliance's own CLI, run where that appliance
 * lives, as a script would: the four cases of the document, then the
 * failback of the old master after a disaster recovery, with its changes
 * kept as an orphan. Trees are compared in full, byte for byte.
 */
import type { ExecutionContext } from 'ava';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { diffTrees } from '../helpers/fs-tree.js';
import { netnsMissing } from '../helpers/netns.js';
import { sshdMissing } from '../helpers/sshd.js';
import { gatedTest } from '../helpers/system.js';
import { sshReversePair, type CliResult, type SshAppliance, type SshReversePair, type Tree } from './_ssh-pair.js';
import { SEED } from './_seed.js';

const sshTest = await gatedTest(['sshd', 'network namespaces'], async () => (await sshdMissing()) ?? (await netnsMissing()));

const FILES = {
  'a.txt': 'one\n',
  'd/b.txt': `${'bee '.repeat(20_000)}\n`,
  'd/e/empty': { dir: true as const },
  ln: { symlink: 'a.txt' },
};

/** the seed's lines, as the log holds them */

function ok(t: ExecutionContext, r: CliResult, what: string): void {
  t.is(r.exitCode, 0, `${what}: ${r.all}`);
}

/** x's copy of the service, as `show auto-sync :NAME --json` prints it there */
async function shown(t: ExecutionContext, p: SshReversePair, x: SshAppliance) {
  const r = await x.cli(`show auto-sync :${p.name} --json`);
  ok(t, r, `show on ${x.id}`);
  return JSON.parse(r.stdout) as { role: string; epoch: number; direction: string; source: { host: string }; destination: { host: string }; maintenance: string | null };
}

async function logOf(p: SshReversePair, x: SshAppliance): Promise<string> {
  const r = await x.cli(`show auto-sync :${p.name} log`);
  if (r.exitCode !== 0) throw new Error(r.all);
  return r.stdout;
}

function hasLines(t: ExecutionContext, log: string, lines: string[], where: string): void {
  for (const line of lines) t.true(log.includes(line), `${where}'s log lacks ${line}:\n${log}`);
}

/** the two trees are the same: every path, every byte, and type, mode, size, mtime, link target */
function same(t: ExecutionContext, x: Tree, y: Tree, what: string): void {
  t.deepEqual(x.files, y.files, what);
  t.deepEqual(diffTrees(x.meta, y.meta), [], what);
}

const write = (x: SshAppliance, file: string, text: string) => {
  const p = path.join(x.live('tank/docs'), file);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, text);
};

async function mounted(p: SshReversePair, x: SshAppliance): Promise<boolean> {
  return (await (await p.fresh(x).storage.usable('fs')).getDataset('tank/docs'))!.mounted;
}

sshTest.serial('case 1: on the master with the peer up: last delta, roles swap at epoch+1, replication flows back', async (t) => {
  const p = await sshReversePair(t, FILES);
  const { a, b, name } = p;
  ok(t, await a.cli(`run auto-sync :${name}`), 'first run');
  write(a, 'late.txt', 'written on alpha just before the reversal\n');
  write(a, 'a.txt', 'one, changed on alpha\n');

  const r = await a.cli(`setup auto-sync :${name} reverse-direction -y`);
  ok(t, r, 'reverse on alpha');
  t.regex(r.stdout, /Reversed direction for 1 auto-sync instance/);
  t.like(await shown(t, p, a), { role: 'non-master', epoch: 2, direction: 'remote-to-local', source: { host: 'beta' }, destination: { host: 'localhost' } });
  t.like(await shown(t, p, b), { role: 'master', epoch: 2, direction: 'local-to-remote', source: { host: 'localhost' }, destination: { host: 'alpha' } });
  const log = await logOf(p, a);
  hasLines(t, log, [SEED.fmri(name), SEED.alive, SEED.l2rUp, SEED.unmounting, SEED.syncing, SEED.mountingRemote], 'alpha');
  t.regex(log, /Starting incremental fs send\/recv of delta -I tank\/docs@syncsh-/);
  t.regex(log, /\[SUCCESS: localhost\/tank\/docs => beta\/tank\/docs OK \(\d+ sec\) \]/);

  // the last delta arrived, beta's copy is the writable source and alpha's is put away
  t.true(await mounted(p, b));
  t.false(await mounted(p, a), 'the old master copy is unmounted');
  const atBeta = await p.tree(b);
  t.is(atBeta.files['late.txt'], 'written on alpha just before the reversal\n');
  same(t, await p.tree(a), atBeta, 'both copies after the hand-over');

  // beta writes, runs, alpha receives: the flow is reversed
  write(b, 'from-beta.txt', 'beta writes now\n');
  write(b, 'd/b.txt', 'rewritten on beta\n');
  rmSync(path.join(b.live('tank/docs'), 'a.txt'));
  const run = await b.cli(`run auto-sync :${name}`);
  ok(t, run, 'run on beta');
  t.regex(run.stdout, /incremental sync OK/);
  const alpha = await p.tree(a);
  t.is(alpha.files['from-beta.txt'], 'beta writes now\n');
  t.false('a.txt' in alpha.files);
  same(t, alpha, await p.tree(b), "after beta's run");
  // and the old master does not run any more
  const old = await a.cli(`run auto-sync :${name}`);
  t.not(old.exitCode, 0);
  t.regex(old.stderr, /non-master/);
});

sshTest.serial('case 2: on the master with the peer cut off: refused, saying why and what to do; nothing changes', async (t) => {
  const p = await sshReversePair(t, FILES);
  const { a, b, name } = p;
  ok(t, await a.cli(`run auto-sync :${name}`), 'first run');
  const before = { a: await p.tree(a), b: await p.tree(b) };
  await p.down(b);
  const r = await a.cli(`setup auto-sync :${name} reverse-direction -y`);
  t.not(r.exitCode, 0);
  t.regex(r.stderr, /\(beta\) is down: reverse-direction on the master needs it up.*Nothing was changed.*Bring beta up/s);
  t.true(r.ms < 30_000, `a cut link shows within seconds (${r.ms} ms)`);
  t.like(await shown(t, p, a), { role: 'master', epoch: 1, direction: 'local-to-remote', maintenance: null });
  hasLines(t, await logOf(p, a), [SEED.fmri(name), SEED.down], 'alpha');
  // beta is alive, only cut off: its own CLI still answers, and its copy did not move
  t.like(await shown(t, p, b), { role: 'non-master', epoch: 1, direction: 'remote-to-local' });
  same(t, await p.tree(b), before.b, "beta's copy while cut off");

  // the source stays mounted and writable; a run cannot reach beta and changes nothing there
  t.true(await mounted(p, a));
  write(a, 'still.txt', 'still writable\n');
  const cut = await a.cli(`run auto-sync :${name}`);
  t.not(cut.exitCode, 0);
  t.regex(cut.stderr, /Cannot reach the appliance beta at 10\.231\.61\.2:2222/);
  same(t, await p.tree(b), before.b, "beta's copy after a run that could not reach it");

  // the cable back: alpha is still the master, and its next run carries what it wrote meanwhile
  await p.up(b);
  ok(t, await a.cli(`run auto-sync :${name}`), 'run once beta is back');
  const atBeta = await p.tree(b);
  t.is(atBeta.files['still.txt'], 'still writable\n');
  same(t, await p.tree(a), atBeta, 'after the link came back');
  t.like(await shown(t, p, b), { role: 'non-master', epoch: 1 });
});

sshTest.serial('case 3: on the non-master with the master up: the same hand-over, driven from the non-master', async (t) => {
  const p = await sshReversePair(t, FILES);
  const { a, b, name } = p;
  ok(t, await a.cli(`run auto-sync :${name}`), 'first run');
  write(a, 'd/late.txt', 'late on alpha\n');
  const r = await b.cli(`setup auto-sync :${name} reverse-direction -y`);
  ok(t, r, 'reverse on beta');
  t.regex(r.stdout, /Reversed direction for 1 auto-sync instance/);
  t.like(await shown(t, p, b), { role: 'master', epoch: 2, direction: 'local-to-remote', source: { host: 'localhost' }, destination: { host: 'alpha' } });
  t.like(await shown(t, p, a), { role: 'non-master', epoch: 2, direction: 'remote-to-local', source: { host: 'beta' }, destination: { host: 'localhost' } });
  hasLines(t, await logOf(p, b), [SEED.fmri(name), SEED.alive, SEED.unmounting, SEED.syncing], 'beta');

  // alpha's late write came over in the last delta; alpha's copy is put away, beta's is the source
  t.is((await p.tree(b)).files['d/late.txt'], 'late on alpha\n');
  t.false(await mounted(p, a), 'the old master copy is unmounted');
  t.true(await mounted(p, b));
  same(t, await p.tree(a), await p.tree(b), 'both copies after the hand-over');

  write(b, 'b.txt', 'from beta\n');
  ok(t, await b.cli(`run auto-sync :${name}`), 'run on beta');
  const alpha = await p.tree(a);
  t.is(alpha.files['b.txt'], 'from beta\n');
  same(t, alpha, await p.tree(b), "after beta's run");
  const old = await a.cli(`run auto-sync :${name}`);
  t.not(old.exitCode, 0);
  t.regex(old.stderr, /non-master/);
});

sshTest.serial('case 4 then failback: DR on the non-master with the master cut off; the master, back, keeps its changes as an orphan, rolls back and receives', async (t) => {
  const p = await sshReversePair(t, FILES);
  const { a, b, name } = p;
  ok(t, await a.cli(`run auto-sync :${name}`), 'first run');
  const synced = await p.tree(b);
  // alpha writes after the last replication, then its cable is cut; alive and alone, it keeps writing
  write(a, 'lost-on-nexenta.txt', 'alpha wrote this after the last sync\n');
  write(a, 'a.txt', 'alpha changed this too\n');
  await p.down(a);
  write(a, 'd/while-cut.txt', 'alpha wrote this while cut off\n');
  const lonely = await a.cli(`run auto-sync :${name}`);
  t.not(lonely.exitCode, 0, 'alpha cannot reach beta');
  t.regex(lonely.stderr, /Cannot reach the appliance beta/);
  t.like(await shown(t, p, a), { role: 'master', epoch: 1 });
  const atAlpha = await p.tree(a);

  // no terminal and no -y: nothing happens
  const noTty = await b.cli(`setup auto-sync :${name} reverse-direction`);
  t.not(noTty.exitCode, 0, 'no terminal, no -y: refused');
  t.like(await shown(t, p, b), { role: 'non-master', epoch: 1 });

  const r = await b.cli(`setup auto-sync :${name} reverse-direction -y`);
  ok(t, r, 'DR on beta');
  t.regex(r.all, /IMPORTANT! You are about to reverse direction of 'auto-sync:tank-docs-000' from non-master appliance/);
  t.regex(r.all, /WILL BE KEPT on the master.*as an orphan snapshot/s);
  t.notRegex(r.all, /LOOSE/);
  t.regex(r.stdout, /Reversed direction for 1 auto-sync instance/);
  t.true(r.ms < 30_000, `a cut link shows within seconds (${r.ms} ms)`);
  t.like(await shown(t, p, b), { role: 'master', epoch: 2, direction: 'local-to-remote', source: { host: 'localhost' }, destination: { host: 'alpha' } });
  hasLines(t, await logOf(p, b), [SEED.fmri(name), SEED.down, SEED.dr, SEED.rereading], 'beta');

  // beta's copy is mounted, writable, at the last synced state
  t.true(await mounted(p, b));
  same(t, await p.tree(b), synced, 'beta after DR = the last synced state');
  write(b, 'dr.txt', 'written on beta during the disaster\n');
  write(b, 'd/b.txt', 'beta rewrote this during the disaster\n');
  // while alpha is cut off, beta's runs fail and change nothing on alpha
  const cut = await b.cli(`run auto-sync :${name}`);
  t.not(cut.exitCode, 0);
  t.regex(cut.stderr, /Cannot reach the appliance alpha at 10\.231\.61\.1:2222/);
  same(t, await p.tree(a), atAlpha, 'alpha untouched while cut off');

  // the cable back. alpha still believes it is master at epoch 1
  await p.up(a);
  t.like(await shown(t, p, a), { role: 'master', epoch: 1 });
  // beta's run comes first: alpha still holds its copy as the source at epoch 1, so nothing is sent, even with force
  t.is((await b.cli(`setup auto-sync :${name} property force yes`)).exitCode, 0);
  const early = await b.cli(`run auto-sync :${name}`);
  t.not(early.exitCode, 0);
  t.regex(early.stderr, /alpha still holds auto-sync:tank-docs-000 as its source at an older epoch .*nothing was sent/);
  same(t, await p.tree(a), atAlpha, 'alpha untouched by the early run');
  // alpha's own run meets epoch 2 first and demotes it
  const own = await a.cli(`run auto-sync :${name}`);
  t.not(own.exitCode, 0);
  t.regex(own.stderr, /non-master/);
  t.like(await shown(t, p, a), { role: 'non-master', epoch: 2, direction: 'remote-to-local', source: { host: 'beta' }, destination: { host: 'localhost' } });
  const log = await logOf(p, a);
  hasLines(t, log, [SEED.rollingBack], 'alpha');
  t.regex(log, /\[RECOVERED => beta:fs:tank\/docs@syncsh-tank-docs-000-\d+:[0-9a-f]+ OK \(\d+ sec\) \]/);

  // alpha's changes are kept and listed
  const listed = await a.cli(`show auto-sync :${name} orphans --json`);
  ok(t, listed, 'orphans on alpha');
  const orphans = JSON.parse(listed.stdout) as { snapshot: string; dataset: string; held: boolean }[];
  t.is(orphans.length, 1, listed.stdout);
  t.regex(orphans[0].snapshot, /^orphan-tank-docs-000-\d{8}T\d{6}Z$/);
  t.true(orphans[0].held);
  t.regex((await a.cli(`show auto-sync :${name} orphans`)).stdout, new RegExp(orphans[0].snapshot));
  t.deepEqual(JSON.parse((await b.cli(`show auto-sync :${name} orphans --json`)).stdout), [], 'beta has none');

  // alpha was rolled back to the last synced state and put away; data now flows into it
  t.false(await mounted(p, a));
  same(t, await p.tree(a), synced, 'alpha rolled back = the last synced state');
  const run = await b.cli(`run auto-sync :${name}`);
  ok(t, run, "beta's run after the failback");
  t.regex(run.stdout, /incremental sync OK/);
  const now = await p.tree(a);
  t.is(now.files['dr.txt'], 'written on beta during the disaster\n');
  t.is(now.files['d/b.txt'], 'beta rewrote this during the disaster\n');
  t.false('lost-on-nexenta.txt' in now.files);
  t.false('d/while-cut.txt' in now.files);
  same(t, now, await p.tree(b), 'after the failback run');

  // the orphan survived the incoming run and holds exactly what alpha had: received into a scratch dataset to look (its snapshot, not its live files, is the record)
  const again = JSON.parse((await a.cli(`show auto-sync :${name} orphans --json`)).stdout) as { snapshot: string }[];
  t.deepEqual(
    again.map((o) => o.snapshot),
    [orphans[0].snapshot],
  );
  const fsA = await p.fresh(a).storage.usable('fs');
  // kept in a dataset of its own next to the copy, snapshot held
  t.is(orphans[0].dataset, `tank/${orphans[0].snapshot}`);
  t.true((await fsA.listSnapshots(orphans[0].dataset)).find((s) => s.name === orphans[0].snapshot)!.held);
  await fsA.receive('tank/orphan-look', fsA.send(orphans[0].dataset, orphans[0].snapshot, { recursive: false }), { force: false, recursive: false });
  const kept = await p.tree(a, 'tank/orphan-look');
  same(t, kept, atAlpha, "the orphan = alpha's copy as it was when cut off");
  t.is(kept.files['lost-on-nexenta.txt'], 'alpha wrote this after the last sync\n');
  t.is(kept.files['d/while-cut.txt'], 'alpha wrote this while cut off\n');
  t.is(kept.files['a.txt'], 'alpha changed this too\n');
});

sshTest.serial('issue 10 item 2: the master up but refusing beta (its key removed there) is no disaster; with the cable really cut, it is', async (t) => {
  const p = await sshReversePair(t, FILES);
  const { a, b, name } = p;
  ok(t, await a.cli(`run auto-sync :${name}`), 'first run');
  // alpha's sshd no longer accepts beta's key: alpha is up, and refuses it
  writeFileSync(a.sshd.authorizedKeys, '', { mode: 0o600 });
  const refused = await b.cli(`setup auto-sync :${name} reverse-direction -y`);
  t.not(refused.exitCode, 0, refused.all);
  t.regex(refused.stderr, /alpha is up but refused this appliance: .*did not accept this appliance's key.* It does not count as down\. Nothing was changed: reverse-direction takes over from alpha only when it cannot be reached\./s);
  t.notRegex(refused.all, /IMPORTANT!|Reversed direction/);
  t.like(await shown(t, p, b), { role: 'non-master', epoch: 1 });
  t.false((await logOf(p, b)).includes(SEED.down), 'not logged as down');

  await p.down(a);
  const dr = await b.cli(`setup auto-sync :${name} reverse-direction -y`);
  ok(t, dr, 'DR on beta with the cable cut');
  t.regex(dr.stdout, /Reversed direction for 1 auto-sync instance/);
  t.like(await shown(t, p, b), { role: 'master', epoch: 2 });
});

/**
 * Reverse-direction on the zfs driver (zfs-fuse pools on file vdevs), between
 * two appliances over real SSH, beta behind a link that can be cut
 * (_zfs-pair.ts): the four cases of the NexentaStor "Auto-Sync in reverse"
 * document, and disaster recovery followed by the failback of the old master,
 * whose unreplicated changes are kept as a held orphan (a dataset of its own). Writes on
 * both sides; every file is compared byte for byte through the datasets'
 * mountpoints (as `show folder` gives them).
 *
 * The tests are serial; cases 1 to 3 each make (and tear down, pass or fail)
 * their own pair: two 64 MiB pools, two sshds, a namespace. Case 4 and the
 * failback share one.
 */
import { randomBytes } from 'node:crypto';
import { gatedTest } from '../helpers/system.js';
import { netnsMissing, findCommand } from '../helpers/netns.js';
import { sshdMissing } from '../helpers/sshd.js';
import { zfsMissing } from '../helpers/zfs-pool.js';
import { writeFiles, zfsReversePair, type Files, type ZfsPair } from './_zfs-pair.js';
import { Fixture, type Appliance } from '../peer/_fixture.js';
import test, { type ExecutionContext } from 'ava';
import { SEED } from './_seed.js';

const zfsTest = await gatedTest(
  ['sshd', 'network namespaces', 'nsenter', 'ZFS (zfs-fuse)'],
  async () => (await sshdMissing()) ?? (await netnsMissing()) ?? ((await findCommand('nsenter')) ? null : 'nsenter (util-linux) is not installed') ?? (await zfsMissing()),
);

const BLOB = randomBytes(300_000);
const FILES = { 'a.txt': 'one\n', 'd/b.bin': BLOB };

const pairFor = (t: ExecutionContext) => zfsReversePair(t, FILES);
const logOf = async (p: ZfsPair, x: Appliance) => (await p.fresh(x).autoSync.log(p.name).all()).join('\n');
const config = (p: ZfsPair, x: Appliance) => p.fresh(x).autoSync.config(p.name);
const text = (s: string) => Buffer.from(s);

/** `run auto-sync` on x, which must succeed; whether it was a full sync */
async function run(t: ExecutionContext, p: ZfsPair, x: Appliance): Promise<{ full: boolean; marker: string }> {
  const r = await p.json<{ full: boolean; marker: string }>(x, `run auto-sync :${p.name}`);
  t.log(`${x.id}: ${r.full ? 'full' : 'incremental'} run, ${r.marker}`);
  return r;
}

/** both copies hold exactly `expected`, byte for byte */
async function bothHold(t: ExecutionContext, p: ZfsPair, expected: Files, what: string): Promise<void> {
  t.deepEqual(await p.filesOf(p.a), expected, `alpha: ${what}`);
  t.deepEqual(await p.filesOf(p.b), expected, `beta: ${what}`);
}

zfsTest.serial('case 1: master, peer up: last delta, roles swap at epoch+1, replication flows the other way', async (t) => {
  const p = await pairFor(t);
  t.true((await run(t, p, p.a)).full);
  const A = await p.dirOf(p.a);
  writeFiles(A, { 'late.txt': 'written on alpha just before the reversal\n', 'a.txt': 'one, changed on alpha\n' });
  const r = await p.cli(p.a, `setup auto-sync :${p.name} reverse-direction -y`);
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /Reversed direction for 1 auto-sync instance/);
  t.like(config(p, p.a), { role: 'non-master', epoch: 2, direction: 'remote-to-local', source: { host: 'beta', dataset: `zfs:${p.dsB}` }, destination: { host: 'localhost', dataset: `zfs:${p.dsA}` } });
  t.like(config(p, p.b), { role: 'master', epoch: 2, direction: 'local-to-remote', source: { host: 'localhost', dataset: `zfs:${p.dsB}` }, destination: { host: 'alpha', dataset: `zfs:${p.dsA}` } });
  const log = await logOf(p, p.a);
  for (const line of [SEED.fmri(p.name), SEED.alive, SEED.l2rUp, SEED.unmounting, SEED.syncing, SEED.mountingRemote]) t.true(log.includes(line), line);
  t.true(log.includes(`Starting incremental zfs send/recv of delta -I ${p.dsA}@syncsh-`), 'the last delta was an incremental zfs send');
  // the old master copy is unmounted, beta's mounted; both hold the late write
  t.false(await p.mounted(p.a), 'alpha: unmounted');
  t.true(await p.mounted(p.b), 'beta: mounted');
  const afterDelta = { ...FILES, 'a.txt': 'one, changed on alpha\n', 'late.txt': 'written on alpha just before the reversal\n' };
  await bothHold(t, p, mapText(afterDelta), 'after the last delta');

  // beta is the writable source now; the flow is reversed
  writeFiles(await p.dirOf(p.b), { 'from-beta.txt': 'beta writes now\n', 'd/b.bin': Buffer.concat([BLOB, text('appended on beta')]) });
  t.false((await run(t, p, p.b)).full);
  await bothHold(t, p, mapText({ ...afterDelta, 'from-beta.txt': 'beta writes now\n', 'd/b.bin': Buffer.concat([BLOB, text('appended on beta')]) }), 'after beta ran');
  // the old master does not run any more
  const old = await p.cli(p.a, `run auto-sync :${p.name}`);
  t.not(old.exitCode, 0);
  t.regex(old.stderr, /non-master/);
});

zfsTest.serial('case 2: master, peer down (link cut): refused, saying why; nothing changes', async (t) => {
  const p = await pairFor(t);
  await run(t, p, p.a);
  const snapsA = await p.snapshots(p.a);
  const snapsB = await p.snapshots(p.b);
  await p.down(p.b);
  const started = Date.now();
  const r = await p.cli(p.a, `setup auto-sync :${p.name} reverse-direction -y`);
  t.log(`refused in ${((Date.now() - started) / 1000).toFixed(1)} sec`);
  t.not(r.exitCode, 0);
  t.regex(r.stderr, /\(beta\) is down: reverse-direction on the master needs it up.*Nothing was changed.*Bring beta up/s);
  t.like(config(p, p.a), { role: 'master', epoch: 1, direction: 'local-to-remote' });
  t.true((await logOf(p, p.a)).includes('[Reverse-direction: remote appliance: down ]'));
  // the source stays mounted and writable, with no new snapshot
  t.true(await p.mounted(p.a));
  writeFiles(await p.dirOf(p.a), { 'still.txt': 'still writable\n' });
  t.deepEqual(await p.snapshots(p.a), snapsA);
  await p.up(p.b);
  t.like(config(p, p.b), { role: 'non-master', epoch: 1 });
  t.deepEqual(await p.snapshots(p.b), snapsB);
  t.deepEqual(await p.filesOf(p.b), mapText(FILES), 'beta: as synced before the refusal');
  t.true(await p.mounted(p.a), 'alpha still mounted');
  // and the service goes on as before once beta is back
  t.false((await run(t, p, p.a)).full);
  await bothHold(t, p, mapText({ ...FILES, 'still.txt': 'still writable\n' }), 'after the next run');
});

zfsTest.serial('case 3: non-master, peer up: the hand-over driven from the non-master', async (t) => {
  const p = await pairFor(t);
  await run(t, p, p.a);
  writeFiles(await p.dirOf(p.a), { 'd/late.txt': 'late on alpha\n' });
  const r = await p.cli(p.b, `setup auto-sync :${p.name} reverse-direction -y`);
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /Reversed direction for 1 auto-sync instance/);
  t.like(config(p, p.b), { role: 'master', epoch: 2, direction: 'local-to-remote', destination: { host: 'alpha', dataset: `zfs:${p.dsA}` } });
  t.like(config(p, p.a), { role: 'non-master', epoch: 2, direction: 'remote-to-local', source: { host: 'beta', dataset: `zfs:${p.dsB}` } });
  const log = await logOf(p, p.b);
  for (const line of [
    '[Reverse-direction: remote appliance: alive ]',
    '[Reverse-direction: R2L, non-master, remote_up. ]',
    '[Reverse-direction: Unmounting master copy of a folder ]',
    '[Reverse-direction: Syncing last delta before changing direction ]',
    '[Reverse-direction: Mounting folder on this side ]',
  ])
    t.true(log.includes(line), line);
  t.false(await p.mounted(p.a), 'the old master copy is unmounted');
  t.true(await p.mounted(p.b));
  const afterDelta = { ...FILES, 'd/late.txt': 'late on alpha\n' };
  await bothHold(t, p, mapText(afterDelta), 'after the last delta');
  writeFiles(await p.dirOf(p.b), { 'b.txt': 'from beta\n', 'a.txt': 'one, rewritten on beta\n' });
  t.false((await run(t, p, p.b)).full);
  await bothHold(t, p, mapText({ ...afterDelta, 'b.txt': 'from beta\n', 'a.txt': 'one, rewritten on beta\n' }), 'after beta ran');
  const old = await p.cli(p.a, `run auto-sync :${p.name}`);
  t.not(old.exitCode, 0);
  t.regex(old.stderr, /non-master/);
});

// Case 4 and the failback share one pair (torn down after both, pass or fail).
const shared = new Fixture();
test.after.always(() => shared.close());
let dr: { p: ZfsPair; synced: Files; lost: Record<string, string>; written: Record<string, string | Buffer> } | null = null;

zfsTest.serial('case 4: DR on the non-master with the master cut off (-y): master at epoch+1, its copy mounted and writable', async (t) => {
  const p = await zfsReversePair(sharedCleanup(t), FILES);
  await run(t, p, p.a);
  const synced = await p.filesOf(p.b);
  t.deepEqual(synced, mapText(FILES));
  // alpha writes after the last replication, then its link goes
  const lost = { 'lost-on-nexenta.txt': 'alpha wrote this after the last sync\n', 'a.txt': 'alpha changed this too\n' };
  writeFiles(await p.dirOf(p.a), lost);
  await p.down(p.a);

  const noTty = await p.cli(p.b, `setup auto-sync :${p.name} reverse-direction`);
  t.not(noTty.exitCode, 0, 'no terminal, no -y: refused');
  t.like(config(p, p.b), { role: 'non-master', epoch: 1 });
  const r = await p.cli(p.b, `setup auto-sync :${p.name} reverse-direction -y`);
  t.is(r.exitCode, 0, r.stderr);
  const out = r.stdout + r.stderr;
  t.regex(out, new RegExp(`IMPORTANT! You are about to reverse direction of 'auto-sync:${p.name}' from non-master appliance`));
  t.regex(out, /WILL BE KEPT on the master, as an orphan snapshot/);
  t.regex(out, /Reversed direction for 1 auto-sync instance/);
  t.like(config(p, p.b), { role: 'master', epoch: 2, direction: 'local-to-remote', source: { host: 'localhost', dataset: `zfs:${p.dsB}` }, destination: { host: 'alpha', dataset: `zfs:${p.dsA}` } });
  const logB = await logOf(p, p.b);
  for (const line of ['[Reverse-direction: remote appliance: down ]', '[Reverse-direction: DR scenario. We are non-master and remote is down ]', '[Rereading configuration. ]']) t.true(logB.includes(line), line);
  // beta's copy is mounted and writable, at the last synced state
  t.true(await p.mounted(p.b));
  t.deepEqual(await p.filesOf(p.b), synced);
  const written = { 'dr.txt': 'written on beta during the disaster\n', 'd/b.bin': Buffer.concat([text('beta rewrote this '), BLOB]) };
  writeFiles(await p.dirOf(p.b), written);
  // while alpha is cut off, beta's runs fail, and alpha's copy is as alpha left it
  const cut = await p.cli(p.b, `run auto-sync :${p.name}`);
  t.not(cut.exitCode, 0, 'a run to an unreachable alpha fails');
  t.regex(cut.stderr, /Cannot reach the appliance alpha/);
  t.deepEqual(await p.filesOf(p.a), { ...synced, ...mapText(lost) });
  dr = { p, synced, lost, written };
});

zfsTest.serial('failback after case 4: the old master comes back, is demoted on contact, keeps its changes as a held orphan, rolls back, receives', async (t) => {
  if (!dr) {
    t.fail('case 4 did not get as far as the failback');
    return;
  }
  const { p, synced, lost, written } = dr;
  // alpha comes back; it still believes it is master at epoch 1. Its own run meets epoch 2 first.
  await p.up(p.a);
  t.like(config(p, p.a), { role: 'master', epoch: 1 });
  const own = await p.cli(p.a, `run auto-sync :${p.name}`);
  t.not(own.exitCode, 0);
  t.regex(own.stderr, /non-master/);
  t.like(config(p, p.a), { role: 'non-master', epoch: 2, source: { host: 'beta', dataset: `zfs:${p.dsB}` }, destination: { host: 'localhost', dataset: `zfs:${p.dsA}` } });
  const logA = await logOf(p, p.a);
  t.true(logA.includes('[Reverse-direction: sync_configuration_with_remote_side() - DR case, rolling back to last synced state ]'));
  t.regex(logA, new RegExp(`\\[RECOVERED => beta:zfs:${p.dsB}@syncsh-\\S+ OK \\(\\d+ sec\\) \\]`));

  // the changes are kept, listed, held
  const orphans = await p.json<{ snapshot: string; dataset: string; held: boolean }[]>(p.a, `show auto-sync :${p.name} orphans`);
  t.is(orphans.length, 1);
  if (orphans.length !== 1) return;
  const [orphan] = orphans;
  t.regex(orphan.snapshot, new RegExp(`^orphan-${p.name}-\\d{8}T\\d{6}Z$`));
  t.true(orphan.held);
  // in a dataset of its own next to the copy: a zfs rollback destroys every later snapshot of the copy
  t.is(orphan.dataset, `${p.poolA.name}/${orphan.snapshot}`);
  t.false((await p.snapshots(p.a)).includes(orphan.snapshot));

  // alpha was rolled back to the last synced state, unmounted, and data now flows into it
  t.false(await p.mounted(p.a));
  t.deepEqual(await p.filesOf(p.a), synced);
  t.false((await run(t, p, p.b)).full);
  const now = { ...synced, ...mapText(written) };
  await bothHold(t, p, now, 'after beta ran into the old master');
  t.true((await p.snapshots(p.a, orphan.dataset)).includes(orphan.snapshot), 'the orphan survived the incoming run and its pruning');

  // the orphan holds exactly what alpha had: received into a scratch dataset to look
  const zfs = await p.fresh(p.a).storage.usable('zfs');
  const look = `${p.poolA.name}/orphan-look`;
  await zfs.receive(look, zfs.send(orphan.dataset, orphan.snapshot, { recursive: false }), { force: false, recursive: false });
  t.deepEqual(await p.filesOf(p.a, look), { ...synced, ...mapText(lost) });

  // destroying it takes an explicit, confirmed command
  const refused = await p.cli(p.a, `destroy auto-sync :${p.name} orphan ${orphan.snapshot}`);
  t.not(refused.exitCode, 0);
  t.true((await p.snapshots(p.a, orphan.dataset)).includes(orphan.snapshot));
  const gone = await p.cli(p.a, `destroy auto-sync :${p.name} orphan ${orphan.snapshot} -y`);
  t.is(gone.exitCode, 0, gone.stderr);
  t.is(await (await p.fresh(p.a).storage.usable('zfs')).getDataset(orphan.dataset), null);
  t.regex((await p.cli(p.a, `show auto-sync :${p.name} orphans`)).stdout, /No orphans/);
  // and replication goes on
  writeFiles(await p.dirOf(p.b), { 'after.txt': 'after the orphan went\n' });
  t.false((await run(t, p, p.b)).full);
  await bothHold(t, p, { ...now, 'after.txt': text('after the orphan went\n') }, 'at the end');
});

/** what makeZfsPool needs of a context, with the shared fixture's teardown (run after the tests, so no t.log there) */
function sharedCleanup(t: ExecutionContext): ExecutionContext {
  const context = { teardown: (fn: () => unknown) => shared.teardown(fn), log: (...values: unknown[]) => console.error(t.title, ...values) };
  return context as unknown as ExecutionContext;
}

function mapText(files: Record<string, string | Buffer>): Files {
  return Object.fromEntries(Object.entries(files).map(([k, v]) => [k, typeof v === 'string' ? text(v) : v]));
}

/**
 * Crashes and concurrency: a commit stopped after every possible journal
 * step (in-process, and a real SIGKILL of another process) is finished by
 * recover, and until then a reader sees exactly one snapshot; a second operation on a busy dataset, from this process or
 * another one, is refused as busy and corrupts nothing.
 */
import test from 'ava';
import { chmodSync, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, realpathSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Driver } from '../../../src/services/storage/driver.js';
import { createFsDriver } from '../../../src/services/storage/fs/index.js';
import { PHASES } from '../../../src/services/storage/fs/journal.js';
import { cacheMatches, readManifest } from '../../../src/services/storage/fs/manifest.js';
import { Layout } from '../../../src/services/storage/fs/layout.js';
import { cloneTree, spareOf, versionOf } from '../../../src/services/storage/fs/versions.js';
import { diffTrees, readTree, tempDir, writeTree } from '../../helpers/fs-tree.js';
import { driverElsewhere, RECEIVE_OPTS } from '../../helpers/fs-elsewhere.js';

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** A source with s1 and s2, where s2 exercises every kind of commit step; returns both streams. */
async function source(dir: string) {
  const root = path.join(dir, 'src-root');
  const a = createFsDriver(root);
  await a.createDataset('tank/src', { parents: true });
  const live = path.join(root, 'tank', 'src');
  await writeTree(live, { 'keep.txt': 'keep', 'chmod.txt': 'mode', 'touch.txt': 'time', 'del/x': 'x', 'old.bin': randomBytes(3 << 20), 'ro/file': 'r' });
  chmodSync(path.join(live, 'ro'), 0o555);
  await a.createSnapshot('tank/src', 's1', { recursive: false });
  const tree1 = await readTree(live);
  chmodSync(path.join(live, 'chmod.txt'), 0o600);
  utimesSync(path.join(live, 'touch.txt'), 1_234_567_890, 1_234_567_890);
  unlinkSync(path.join(live, 'del/x'));
  writeFileSync(path.join(live, 'old.bin'), randomBytes(2 << 20));
  await writeTree(live, { 'new/dir/file.txt': 'new', 'new/empty': { dir: true }, link: { symlink: 'keep.txt' } });
  chmodSync(path.join(live, 'ro'), 0o755);
  writeFileSync(path.join(live, 'ro/added'), 'added');
  chmodSync(path.join(live, 'ro'), 0o555);
  await a.createSnapshot('tank/src', 's2', { recursive: false });
  return {
    a,
    live,
    full: await collect(a.send('tank/src', 's1', { recursive: false })),
    delta: await collect(a.send('tank/src', 's2', { from: 's1', recursive: false })),
    tree: await readTree(live),
    tree1,
  };
}

async function destination(dir: string, full: Buffer): Promise<{ root: string; b: Driver; layout: Layout; live: string }> {
  const root = path.join(dir, 'dst-root');
  const b = createFsDriver(root);
  await b.createDataset('tank');
  await b.receive('tank/dst', Readable.from([full]), { force: false, recursive: false });
  return { root, b, layout: new Layout(root), live: path.join(root, 'tank', 'dst') };
}

const opts = { force: false, recursive: false };

test('a receive stopped after any journal step is finished by recover', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  let crashes = 0;
  for (let n = 0; ; n++) {
    const run = path.join(dir, `run-${n}`);
    mkdirSync(run);
    const { b, root, layout, live } = await destination(run, src.full);
    const faulty = createFsDriver(root, { faults: { crashAfterJournalSteps: n } });
    let completed = false;
    try {
      await faulty.receive('tank/dst', Readable.from([src.delta]), opts);
      completed = true;
    } catch (error) {
      t.is((error as Error).name, 'SimulatedCrash', (error as Error).message);
      crashes++;
      t.true(existsSync(layout.journalFile('tank/dst')));
    }
    const lines = await b.recover('tank/dst');
    if (!completed) t.regex(lines.join('\n'), /Finished an interrupted commit: Received tank\/dst@s2/);
    t.deepEqual(diffTrees(src.tree, await readTree(live)), [], `crash after step ${n}`);
    t.deepEqual(
      (await b.listSnapshots('tank/dst')).map((s) => s.name),
      ['s1', 's2'],
    );
    t.false(await b.changedSince('tank/dst', 's2'));
    t.deepEqual(readdirSync(layout.stagingRoot('tank/dst')), []);
    t.deepEqual(await b.recover('tank/dst'), []);
    if (completed) break;
  }
  t.true(crashes > 10, `${crashes} crash points`);
});

test('a full receive creating the dataset, and a rollback, are finished by recover too', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  // A full receive into a new dataset stages the whole tree and moves it in at once: few steps, each a crash point.
  let crashes = 0;
  for (let n = 0; ; n++) {
    const root = path.join(dir, `full-${n}`);
    const b = createFsDriver(root);
    await b.createDataset('tank');
    try {
      await createFsDriver(root, { faults: { crashAfterJournalSteps: n } }).receive('tank/dst', Readable.from([src.full]), opts);
      break;
    } catch (error) {
      t.is((error as Error).name, 'SimulatedCrash', (error as Error).message);
      crashes++;
    }
    // Registered only by the commit's last steps, when the tree is in place.
    if (await b.getDataset('tank/dst')) t.deepEqual(diffTrees(src.tree1, await readTree(path.join(root, 'tank', 'dst'))), []);
    await b.recover('tank/dst');
    t.truthy(await b.getDataset('tank/dst'));
    t.false(await b.changedSince('tank/dst', 's1'));
    t.deepEqual(diffTrees(src.tree1, await readTree(path.join(root, 'tank', 'dst'))), [], `crash after step ${n}`);
  }
  t.true(crashes >= 5, `${crashes} crash points`);
  const { b, root, live } = await destination(path.join(dir, 'rb'), src.full);
  await b.receive('tank/dst', Readable.from([src.delta]), opts);
  const s2 = await readTree(live);
  await t.throwsAsync(createFsDriver(root, { faults: { crashAfterJournalSteps: 3 } }).rollback('tank/dst', 's1'), { name: 'SimulatedCrash' });
  t.regex((await b.recover('tank/dst')).join('\n'), /Rolled back to tank\/dst@s1/);
  t.false(await b.changedSince('tank/dst', 's1'));
  await b.rollback('tank/dst', 's2');
  t.deepEqual(diffTrees(s2, await readTree(live)), []);
});

test('a receive killed (SIGKILL) in another process mid-commit is finished by recover here', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  const { b, root, layout, live } = await destination(dir, src.full);
  const deltaFile = path.join(dir, 'delta.stream');
  writeFileSync(deltaFile, src.delta);
  const proc = receiveElsewhere(root, deltaFile, { SYNCSH_FS_CRASH_AFTER_STEPS: '6' });
  const child = await proc;
  t.is(child.signal, 'SIGKILL', child.stderr);
  t.true(existsSync(layout.lockFile('tank/dst')), 'the dead process left its lock');
  const lines = await b.recover('tank/dst');
  t.regex(lines.join('\n'), new RegExp(`Removed the stale lock of tank/dst left by process ${proc.pid}`));
  t.regex(lines.join('\n'), /Finished an interrupted commit/);
  t.deepEqual(diffTrees(src.tree, await readTree(live)), []);
  t.deepEqual(
    (await b.listSnapshots('tank/dst')).map((s) => s.name),
    ['s1', 's2'],
  );
});

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await sleep(20);
  }
  throw new Error(`Timed out waiting for ${what}.`);
}

test('a second operation on a dataset that is receiving is refused as busy', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  const { b, layout, live } = await destination(dir, src.full);
  const slow = new PassThrough();
  slow.write(src.delta.subarray(0, 300));
  const first = b.receive('tank/dst', slow, opts);
  await until(() => existsSync(layout.lockFile('tank/dst')), 'the first receive to lock');
  const busy = { message: new RegExp(`^The fs dataset tank/dst is busy: a receive by process ${process.pid} since`) };
  await t.throwsAsync(b.receive('tank/dst', Readable.from([src.delta]), opts), busy);
  await t.throwsAsync(b.createSnapshot('tank/dst', 'x', { recursive: false }), busy);
  await t.throwsAsync(b.rollback('tank/dst', 's1'), busy);
  await t.throwsAsync(b.destroySnapshot('tank/dst', 's1', { recursive: false }), busy);
  slow.end(src.delta.subarray(300));
  await first;
  t.deepEqual(diffTrees(src.tree, await readTree(live)), []);
  t.deepEqual(
    (await b.listSnapshots('tank/dst')).map((s) => s.name),
    ['s1', 's2'],
  );
});

test('another process receiving into a dataset makes operations here fail fast as busy', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  const { b, root, layout, live } = await destination(dir, src.full);
  const child = driverElsewhere(root, `const r = await driver.receive('tank/dst', process.stdin, ${RECEIVE_OPTS}); process.stdout.write(r.snapshot.name);`);
  child.stdin!.write(src.delta.subarray(0, 300));
  await until(() => existsSync(layout.lockFile('tank/dst')), 'the other process to lock');
  const started = Date.now();
  await t.throwsAsync(b.createSnapshot('tank/dst', 'x', { recursive: false }), { message: new RegExp(`tank/dst is busy: a receive by process ${child.pid}`) });
  await t.throwsAsync(b.receive('tank/dst', Readable.from([src.delta]), opts), { message: /busy/ });
  t.true(Date.now() - started < 2000, 'refused at once, not queued');
  child.stdin!.end(src.delta.subarray(300));
  const done = await child;
  t.is(done.exitCode, 0, done.stderr);
  t.is(done.stdout, 's2');
  t.deepEqual(diffTrees(src.tree, await readTree(live)), []);
  t.false(await b.changedSince('tank/dst', 's2'));
});

test('snapshot and destroy racing on one dataset: one is busy, the store stays consistent', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'r');
  const d = createFsDriver(root);
  await d.createDataset('tank');
  await writeTree(path.join(root, 'tank'), { a: randomBytes(4 << 20), b: 'b' });
  await d.createSnapshot('tank', 's1', { recursive: false });
  writeFileSync(path.join(root, 'tank', 'a'), randomBytes(4 << 20));
  const results = await Promise.allSettled([d.createSnapshot('tank', 's2', { recursive: false }), d.destroySnapshot('tank', 's1', { recursive: false })]);
  const refused = results.filter((r) => r.status === 'rejected');
  t.true(refused.length <= 1);
  for (const r of refused) t.regex(String((r as PromiseRejectedResult).reason.message), /is busy/);
  // Whatever happened, every listed snapshot is whole: roll back to each and compare with a fresh copy.
  const b = createFsDriver(path.join(dir, 'copy'));
  await b.createDataset('tank');
  for (const s of await d.listSnapshots('tank')) {
    await b.receive(`tank/${s.name}`, d.send('tank', s.name, { recursive: false }), opts);
    await d.rollback('tank', s.name);
    t.deepEqual(diffTrees(await readTree(path.join(root, 'tank')), await readTree(path.join(dir, 'copy', 'tank', s.name))), []);
  }
  t.deepEqual(await d.recover('tank'), []);
});

test('files that appear in an empty destination while a full receive commits are merged with it, not lost', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  const root = path.join(dir, 'dst-root');
  const b = createFsDriver(root);
  await b.createDataset('tank/dst', { parents: true });
  const live = path.join(root, 'tank', 'dst');
  // The commit point is passed, nothing is placed yet; then someone writes into the empty directory.
  await t.throwsAsync(createFsDriver(root, { faults: { crashAfterJournalSteps: 0 } }).receive('tank/dst', Readable.from([src.full]), opts), { name: 'SimulatedCrash' });
  writeFileSync(path.join(live, 'stray.txt'), 'written meanwhile');
  mkdirSync(path.join(live, 'ro'));
  writeFileSync(path.join(live, 'ro', 'mine'), 'mine');
  writeFileSync(path.join(live, 'keep.txt'), 'to be replaced');
  t.regex((await b.recover('tank/dst')).join('\n'), /Finished an interrupted commit: Received tank\/dst@s1/);
  const tree = await readTree(live);
  t.truthy(tree.get('stray.txt'));
  t.truthy(tree.get('ro/mine'));
  tree.delete('stray.txt');
  tree.delete('ro/mine');
  t.deepEqual(diffTrees(src.tree1, tree), []);
  t.true(await b.changedSince('tank/dst', 's1'), 'the stray files are a change');
});

test('a receive killed while the blocks arrive leaves only what recover sweeps away', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  const { b, root, layout, live } = await destination(dir, src.full);
  const before = await readTree(live);
  const child = driverElsewhere(root, `await driver.receive('tank/dst', process.stdin, ${RECEIVE_OPTS});`);
  child.stdin!.write(src.delta.subarray(0, src.delta.length - 100_000));
  const packs = () => readdirSync(layout.blocksDir('tank/dst')).filter((f) => f.endsWith('.pack')).length;
  const had = packs();
  await until(() => packs() > had, 'the receive to write blocks');
  child.kill('SIGKILL');
  await child;
  t.true(existsSync(layout.unsweptMarker('tank/dst')));
  const lines = (await b.recover('tank/dst')).join('\n');
  t.regex(lines, /Removed the staging area/);
  t.regex(lines, /Freed 1 half-written pack\(s\) \(\d+ bytes\) of tank\/dst\./);
  t.is(packs(), had);
  t.false(existsSync(layout.unsweptMarker('tank/dst')));
  t.deepEqual(diffTrees(before, await readTree(live)), []);
  await b.receive('tank/dst', Readable.from([src.delta]), opts);
  t.deepEqual(diffTrees(src.tree, await readTree(live)), []);
});

/** Receive `stream` into tank/dst in another process with `env` (a failpoint or a step count that kills it); returns how it ended. */
const receiveElsewhere = (root: string, streamFile: string, env: Record<string, string>) => driverElsewhere(root, `await driver.receive('tank/dst', createReadStream(${JSON.stringify(streamFile)}), ${RECEIVE_OPTS});`, env);

/** The versions of tank's trees on disk (one per filesystem dataset once nothing is pending, and a dataset's spare once it committed). */
const versions = (layout: Layout) => readdirSync(layout.treesDir('tank')).filter((n) => !n.startsWith('.'));

/** Versions on disk that neither a dataset's link nor its spare names (left behind: there should be none). */
const unnamed = (layout: Layout, names: string[]) => {
  const named = new Set(names.flatMap((n) => [versionOf(layout.mountpoint(n)), spareOf(layout, n)]));
  return versions(layout).filter((v) => !named.has(v));
};

// issue 15: a commit is atomic to readers. Killed at any phase (or inside
// one), the live tree is exactly the old snapshot or the new one right
// away, with no syncsh process running: the new version is swapped in
// with one rename (fs/versions.ts).
test('a receive killed (SIGKILL) at each commit phase leaves the live tree exactly the old or the new snapshot, before any recover', async (t) => {
  t.timeout(5 * 60_000);
  const dir = tempDir(t);
  const src = await source(dir);
  const deltaFile = path.join(dir, 'delta.stream');
  writeFileSync(deltaFile, src.delta);
  const kills: [string, Record<string, string>, 'old' | 'new'][] = [
    ...PHASES.map((p): [string, Record<string, string>, 'old' | 'new'] => [`before the ${p} phase`, { SYNCSH_FAILPOINTS: `fs.commit.${p}` }, PHASES.indexOf(p) > PHASES.indexOf('swap') ? 'new' : 'old']),
    ...[2, 4, 7, 10].map((n): [string, Record<string, string>, 'old' | 'new'] => [`after ${n} journal steps`, { SYNCSH_FS_CRASH_AFTER_STEPS: String(n) }, 'old']),
  ];
  for (const [i, [when, env, expect]] of kills.entries()) {
    const run = path.join(dir, `kill-${i}`);
    mkdirSync(run);
    const { b, root, layout, live } = await destination(run, src.full);
    const inode = statSync(path.join(live, 'keep.txt')).ino;
    const child = await receiveElsewhere(root, deltaFile, env);
    t.is(child.signal, 'SIGKILL', `${when}: ${child.stderr}`);
    t.true(existsSync(layout.journalFile('tank/dst')), `${when}: the commit is pending`);
    // What a reader sees now, with no process of ours left to finish anything:
    t.deepEqual(diffTrees(expect === 'new' ? src.tree : src.tree1, await readTree(live)), [], `killed ${when}: the ${expect} snapshot, whole`);
    t.regex((await b.recover('tank/dst')).join('\n'), /Finished an interrupted commit: Received tank\/dst@s2/);
    t.deepEqual(diffTrees(src.tree, await readTree(live)), [], `killed ${when}, then recovered`);
    t.false(await b.changedSince('tank/dst', 's2'));
    t.is(statSync(path.join(live, 'keep.txt')).ino, inode, `${when}: an unchanged file is linked into the new version, not copied`);
    t.deepEqual(unnamed(layout, ['tank', 'tank/dst']), [], `${when}: only the live versions of tank and tank/dst are left, and the spare of tank/dst`);
    t.is(versions(layout).length, 3, `${when}: the version swapped out is kept as the spare`);
    t.deepEqual(await b.recover('tank/dst'), []);
  }
});

test('a rollback killed at each commit phase leaves the live tree exactly one snapshot too', async (t) => {
  t.timeout(5 * 60_000);
  const dir = tempDir(t);
  const src = await source(dir);
  const deltaFile = path.join(dir, 'delta.stream');
  writeFileSync(deltaFile, src.delta);
  for (const p of PHASES) {
    const run = path.join(dir, `rb-${p}`);
    mkdirSync(run);
    const { b, root, layout, live } = await destination(run, src.full);
    await b.receive('tank/dst', Readable.from([src.delta]), opts);
    const child = await driverElsewhere(root, `await driver.rollback('tank/dst', 's1');`, { SYNCSH_FAILPOINTS: `fs.commit.${p}` });
    t.is(child.signal, 'SIGKILL', `${p}: ${child.stderr}`);
    const swapped = PHASES.indexOf(p) > PHASES.indexOf('swap');
    t.deepEqual(diffTrees(swapped ? src.tree1 : src.tree, await readTree(live)), [], `rollback killed before its ${p} phase`);
    await b.recover('tank/dst');
    t.deepEqual(diffTrees(src.tree1, await readTree(live)), []);
    t.deepEqual(unnamed(layout, ['tank', 'tank/dst']), []);
    t.is(versions(layout).length, 3);
  }
});

// issue 13: the stat caches a commit records must still match once it is
// done. Deleting the swapped-out version unlinks each unchanged file's other
// name, which moves its ctime: done after register, every unchanged file was
// re-hashed by the next changedSince and staged anew by the next receive.
test('after an incremental commit, the stat cache of every file matches the live file, so the next run need not re-read it', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  const { b, layout, live } = await destination(dir, src.full);
  await b.receive('tank/dst', Readable.from([src.delta]), opts);
  const id = (await b.listSnapshots('tank/dst')).find((s) => s.name === 's2')!.id;
  const files = readManifest(layout.manifestFile('tank/dst', id), 'tank/dst@s2').entries.filter((e) => e.type === 'file');
  t.true(files.length >= 5);
  const stale = files.filter((e) => !cacheMatches(e, lstatSync(path.join(live, e.path)))).map((e) => e.path);
  t.deepEqual(stale, [], 'stat caches that no longer match the live files');
});

test('a delta that changes nothing commits in place: the live version stays, nothing is cloned or dropped', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  const { b, layout, live } = await destination(dir, src.full);
  await b.receive('tank/dst', Readable.from([src.delta]), opts);
  await src.a.createSnapshot('tank/src', 's3', { recursive: false });
  const quiet = await collect(src.a.send('tank/src', 's3', { from: 's2', recursive: false }));
  const version = realpathSync(live);
  const names = readdirSync(layout.treesDir('tank')).sort();
  await b.receive('tank/dst', Readable.from([quiet]), opts);
  t.is(realpathSync(live), version, 'the same version is live');
  t.deepEqual(readdirSync(layout.treesDir('tank')).sort(), names, 'no version made, none dropped');
  t.deepEqual(
    (await b.listSnapshots('tank/dst')).map((s) => s.name),
    ['s1', 's2', 's3'],
  );
  t.deepEqual(diffTrees(src.tree, await readTree(live)), []);
  t.false(await b.changedSince('tank/dst', 's3'));
  t.deepEqual(await b.recover('tank/dst'), []);
});

test('a dataset made before versioned trees (a real directory) becomes a link at its first commit, its files intact', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  const { b, layout, live } = await destination(dir, src.full);
  // As an older syncsh left it: the files in a directory at the mountpoint.
  const version = realpathSync(live);
  unlinkSync(live);
  renameSync(version, live);
  t.true(lstatSync(live).isDirectory());
  t.deepEqual(diffTrees(src.tree1, await readTree(live)), []);
  await b.receive('tank/dst', Readable.from([src.delta]), opts);
  t.true(lstatSync(live).isSymbolicLink());
  t.deepEqual(diffTrees(src.tree, await readTree(live)), []);
  t.is(versions(layout).length, 2, 'the old directory is gone');
  t.false(await b.changedSince('tank/dst', 's2'));
});

// A child's link is copied into the parent's next version when that is
// cloned; a child destroyed before the swap must not leave it there,
// dangling (a parent snapshot would then take it for a file of its own).
test('a child destroyed while its parent commits leaves no link to its gone version in the parent', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'r');
  const d = createFsDriver(root);
  await d.createDataset('tank/p', { parents: true });
  const live = path.join(root, 'tank', 'p');
  await writeTree(live, { 'a.txt': 'one' });
  await d.createSnapshot('tank/p', 's1', { recursive: false });
  await d.createDataset('tank/p/c');
  await writeTree(path.join(live, 'c'), { 'child.txt': 'child' });
  writeFileSync(path.join(live, 'a.txt'), 'two');
  // The parent's rollback stops after its clone (the child's link is in the next version), then the child goes.
  await t.throwsAsync(createFsDriver(root, { faults: { crashAfterJournalSteps: 1 } }).rollback('tank/p', 's1'), { name: 'SimulatedCrash' });
  await d.destroyDataset('tank/p/c');
  t.regex((await d.recover('tank/p')).join('\n'), /Rolled back to tank\/p@s1/);
  t.is(lstatOrNullSync(path.join(live, 'c')), null, 'no dangling link where the child was');
  t.deepEqual([...(await readTree(live)).keys()], ['a.txt']);
  t.false(await d.changedSince('tank/p', 's1'));
  await d.createSnapshot('tank/p', 's2', { recursive: false });
  t.false(await d.changedSince('tank/p', 's1'), 'the snapshot after it holds no entry for the gone child');
  t.deepEqual(unnamed(new Layout(root), ['tank', 'tank/p']), []);
  t.is(versions(new Layout(root)).length, 3);
});

function lstatOrNullSync(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}

/** The source's third snapshot, s3 (changes of every kind again), and the delta s2 → s3. */
async function third(src: Awaited<ReturnType<typeof source>>) {
  writeFileSync(path.join(src.live, 'old.bin'), 'changed at s3');
  unlinkSync(path.join(src.live, 'link'));
  await writeTree(src.live, { 'link/now-a-dir': 'was a link', 's3/file': 's3' });
  chmodSync(path.join(src.live, 'chmod.txt'), 0o640);
  renameSync(path.join(src.live, 'new'), path.join(src.live, 'moved'));
  await src.a.createSnapshot('tank/src', 's3', { recursive: false });
  return { delta: await collect(src.a.send('tank/src', 's3', { from: 's2', recursive: false })), tree: await readTree(src.live) };
}

// issue 13: the version a commit swaps out is kept as the spare and the
// next commit is built on it, so only what changed is linked, replaced or
// removed (before, each commit linked every file into a new version and
// unlinked every file of the old one).
test('a commit builds on the spare: unchanged files are not touched (their ctime stays), the tree is exactly the snapshot', async (t) => {
  const dir = tempDir(t);
  const src = await source(dir);
  const { b, layout, live } = await destination(dir, src.full);
  await b.receive('tank/dst', Readable.from([src.delta]), opts);
  const spare = spareOf(layout, 'tank/dst');
  t.truthy(spare, 'the version swapped out is kept');
  t.not(spare, versionOf(layout.mountpoint('tank/dst')));
  const s3 = await third(src);
  // Unchanged since s1 (what changed in the commit before is linked into the spare once: touch.txt, ro/added…).
  const unchanged = ['keep.txt', 'ro/file'];
  const before = new Map(unchanged.map((p) => [p, lstatSync(path.join(live, p), { bigint: true })]));
  await b.receive('tank/dst', Readable.from([s3.delta]), opts);
  t.is(versionOf(layout.mountpoint('tank/dst')), spare, 'the spare became the live version');
  t.deepEqual(diffTrees(s3.tree, await readTree(live)), []);
  for (const [p, st] of before) {
    const now = lstatSync(path.join(live, p), { bigint: true });
    t.is(now.ino, st.ino, `${p}: the same file`);
    t.is(now.ctimeNs, st.ctimeNs, `${p}: not linked or unlinked by the commit`);
  }
  t.false(await b.changedSince('tank/dst', 's3'));
  t.deepEqual(unnamed(layout, ['tank', 'tank/dst']), []);
  t.is(versions(layout).length, 3);
  // Destroying the dataset takes its spare too.
  await b.destroyDataset('tank/dst', { recursive: true });
  t.deepEqual(versions(layout), [versionOf(layout.mountpoint('tank'))]);
});

test('a commit built on the spare, killed (SIGKILL) at each phase, leaves the live tree exactly the old or the new snapshot', async (t) => {
  t.timeout(5 * 60_000);
  const dir = tempDir(t);
  const src = await source(dir);
  const s3 = await third(src);
  const deltaFile = path.join(dir, 'delta3.stream');
  writeFileSync(deltaFile, s3.delta);
  const kills: [string, Record<string, string>, 'old' | 'new'][] = [
    ...PHASES.map((p): [string, Record<string, string>, 'old' | 'new'] => [`before the ${p} phase`, { SYNCSH_FAILPOINTS: `fs.commit.${p}` }, PHASES.indexOf(p) > PHASES.indexOf('swap') ? 'new' : 'old']),
    ...[1, 3, 6].map((n): [string, Record<string, string>, 'old' | 'new'] => [`after ${n} journal steps`, { SYNCSH_FS_CRASH_AFTER_STEPS: String(n) }, 'old']),
  ];
  for (const [i, [when, env, expect]] of kills.entries()) {
    const run = path.join(dir, `kill3-${i}`);
    mkdirSync(run);
    const { b, root, layout, live } = await destination(run, src.full);
    await b.receive('tank/dst', Readable.from([src.delta]), opts);
    const spare = spareOf(layout, 'tank/dst');
    const child = await receiveElsewhere(root, deltaFile, env);
    t.is(child.signal, 'SIGKILL', `${when}: ${child.stderr}`);
    t.deepEqual(diffTrees(expect === 'new' ? s3.tree : src.tree, await readTree(live)), [], `killed ${when}: the ${expect} snapshot, whole`);
    t.regex((await b.recover('tank/dst')).join('\n'), /Finished an interrupted commit: Received tank\/dst@s3/);
    t.deepEqual(diffTrees(s3.tree, await readTree(live)), [], `killed ${when}, then recovered`);
    t.is(versionOf(layout.mountpoint('tank/dst')), spare, `${when}: built on the spare`);
    t.false(await b.changedSince('tank/dst', 's3'));
    t.deepEqual(unnamed(layout, ['tank', 'tank/dst']), [], `${when}: nothing left behind`);
    t.deepEqual(await b.recover('tank/dst'), []);
  }
});

test('cloneTree makes a target holding anything an exact clone: same inodes for files, copies where asked, nothing extra', async (t) => {
  const dir = tempDir(t);
  const from = path.join(dir, 'from');
  const to = path.join(dir, 'to');
  await writeTree(from, { 'a.txt': 'a', 'b.txt': 'b', 'd/e.txt': 'e', 'f/g': 'g', 'copy.txt': 'c', l: { symlink: 'a.txt' }, empty: { dir: true, mode: 0o555 } });
  linkSync(path.join(from, 'copy.txt'), path.join(from, 'copy2.txt'));
  // A target that differs in every way: a stale file, a dir where a file is and a file where a dir is, another link target, an extra tree.
  await writeTree(to, { 'a.txt': 'stale', d: 'was a file', f: { dir: true }, 'f/g': 'old g', l: { symlink: 'b.txt' }, 'extra/deep/x': 'x', 'empty/inside': 'y' });
  linkSync(path.join(from, 'b.txt'), path.join(to, 'b.txt')); // already right
  const bIno = lstatSync(path.join(to, 'b.txt')).ino;
  chmodSync(path.join(to, 'f'), 0o500);
  cloneTree(from, to, ['copy.txt']);
  t.deepEqual(diffTrees(await readTree(from), await readTree(to)), []);
  for (const p of ['a.txt', 'b.txt', 'd/e.txt', 'f/g']) t.is(lstatSync(path.join(to, p)).ino, lstatSync(path.join(from, p)).ino, `${p} is linked`);
  t.is(lstatSync(path.join(to, 'b.txt')).ino, bIno);
  t.not(lstatSync(path.join(to, 'copy.txt')).ino, lstatSync(path.join(from, 'copy.txt')).ino, 'a file the commit sets metadata on is copied');
  t.is(lstatSync(path.join(to, 'copy2.txt')).ino, lstatSync(path.join(to, 'copy.txt')).ino, 'its other name links to the copy');
  // Run again (as after a crash): still exact, and the copy is made again rather than trusted.
  cloneTree(from, to, ['copy.txt']);
  t.deepEqual(diffTrees(await readTree(from), await readTree(to)), []);
});

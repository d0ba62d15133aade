/**
 * The fs driver on one appliance: names, datasets, snapshots, holds,
 * garbage collection, rollback, changedSince, nested datasets, mounting,
 * volumes and recover. Real files in a temp dir.
 */
import test from 'ava';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createFsDriver } from '../../../src/services/storage/fs/index.js';
import { Layout } from '../../../src/services/storage/fs/layout.js';
import { diffTrees, readTree, tempDir, writeTree } from '../../helpers/fs-tree.js';

function setup(t: Parameters<typeof tempDir>[0]) {
  const root = path.join(tempDir(t), 'fs');
  return { root, driver: createFsDriver(root), layout: new Layout(root), live: (name: string) => path.join(root, ...name.split('/')) };
}

function countBlocks(layout: Layout, dataset: string): number {
  const dir = layout.blocksDir(dataset);
  if (!existsSync(dir)) return 0;
  return readdirSync(dir).filter((d) => d.length === 2).reduce((n, d) => n + readdirSync(path.join(dir, d)).length, 0);
}

test('names are checked with sentences that name the bad value', async (t) => {
  const { driver } = setup(t);
  await t.throwsAsync(driver.createDataset('tank/../etc'), { message: 'The dataset name must not contain "..": tank/../etc.' });
  await t.throwsAsync(driver.createDataset('/tank'), { message: 'The dataset name must not start with "/": /tank.' });
  await t.throwsAsync(driver.createDataset('tank//x'), { message: 'The dataset name has an empty component: tank//x.' });
  await t.throwsAsync(driver.createDataset('tank/a b'), { message: /must not contain " ": tank\/a b/ });
  await t.throwsAsync(driver.createDataset('.syncsh'), { message: /reserved/ });
  await t.throwsAsync(driver.getDataset(''), { message: /dataset name is required/ });
  await driver.createDataset('tank');
  await t.throwsAsync(driver.createSnapshot('tank', 'a/b', { recursive: false }), { message: /snapshot name must not contain "\/": tank@a\/b/ });
  await t.throwsAsync(driver.createSnapshot('tank', '..', { recursive: false }), { message: /must not be "\.\."/ });
});

test('datasets: pools, children, parents and clear refusals', async (t) => {
  const { driver, root, live } = setup(t);
  t.is(await driver.unavailableReason(), null);
  await t.throwsAsync(driver.createDataset('tank/x'), { message: /The pool tank does not exist/ });
  const pool = await driver.createDataset('tank');
  t.like(pool, { name: 'tank', kind: 'filesystem', mounted: true, mountpoint: path.join(root, 'tank') });
  await t.throwsAsync(driver.createDataset('tank/a/b'), { message: /The parent dataset tank\/a does not exist/ });
  await driver.createDataset('tank/a/b', { parents: true });
  t.deepEqual((await driver.listDatasets()).map((d) => d.name), ['tank', 'tank/a', 'tank/a/b']);
  t.deepEqual((await driver.listDatasets('tank/a')).map((d) => d.name), ['tank/a', 'tank/a/b']);
  t.true(statSync(live('tank/a/b')).isDirectory());
  await t.throwsAsync(driver.createDataset('tank/a'), { message: 'The fs dataset tank/a already exists.' });
  mkdirSync(live('tank/c'));
  writeFileSync(path.join(live('tank/c'), 'f'), 'x');
  await t.throwsAsync(driver.createDataset('tank/c'), { message: /already has files/ });
  t.is(await driver.getDataset('tank/nope'), null);
  await t.throwsAsync(driver.destroyDataset('tank/a'), { message: /has child datasets \(tank\/a\/b\)/ });
  await driver.destroyDataset('tank/a', { recursive: true });
  t.false(existsSync(live('tank/a')));
  t.deepEqual((await driver.listDatasets()).map((d) => d.name), ['tank']);
});

test('snapshots are listed oldest first; holds refuse destruction', async (t) => {
  const { driver, live } = setup(t);
  await driver.createDataset('tank');
  writeFileSync(path.join(live('tank'), 'f'), 'one');
  const a = await driver.createSnapshot('tank', 'a', { recursive: false });
  writeFileSync(path.join(live('tank'), 'f'), 'two');
  const b = await driver.createSnapshot('tank', 'b', { recursive: false });
  t.not(a.id, b.id);
  t.deepEqual((await driver.listSnapshots('tank')).map((s) => s.name), ['a', 'b']);
  await t.throwsAsync(driver.createSnapshot('tank', 'a', { recursive: false }), { message: 'The snapshot tank@a already exists.' });
  await driver.holdSnapshot('tank', 'a', true);
  t.true((await driver.listSnapshots('tank'))[0].held);
  await t.throwsAsync(driver.destroySnapshot('tank', 'a', { recursive: false }), { message: /The snapshot tank@a is held; release the hold/ });
  await t.throwsAsync(driver.destroyDataset('tank', { recursive: true }), { message: /tank@a is held/ });
  await driver.holdSnapshot('tank', 'a', false);
  await driver.destroySnapshot('tank', 'a', { recursive: false });
  t.deepEqual((await driver.listSnapshots('tank')).map((s) => s.name), ['b']);
  await t.throwsAsync(driver.destroySnapshot('tank', 'a', { recursive: false }), { message: 'The snapshot tank@a does not exist.' });
  await t.throwsAsync(driver.holdSnapshot('tank', 'zz', true), { message: 'The snapshot tank@zz does not exist.' });
});

test('a snapshot keeps its content when live files change; unchanged content is stored once', async (t) => {
  const { driver, live, layout } = setup(t);
  await driver.createDataset('tank');
  const big = randomBytes(3 << 20);
  await writeTree(live('tank'), { big, small: 'small', 'copy-of-big': big });
  await driver.createSnapshot('tank', 's1', { recursive: false });
  t.is(countBlocks(layout, 'tank'), 4); // 3 chunks of big (shared by its copy) + small
  const changed = Buffer.from(big);
  changed[5] ^= 1;
  writeFileSync(path.join(live('tank'), 'big'), changed);
  await driver.createSnapshot('tank', 's2', { recursive: false });
  t.is(countBlocks(layout, 'tank'), 5); // only the changed chunk is new
  writeFileSync(path.join(live('tank'), 'small'), 'overwritten');
  await driver.rollback('tank', 's1');
  t.true(readFileSync(path.join(live('tank'), 'big')).equals(big));
  t.is(readFileSync(path.join(live('tank'), 'small'), 'utf8'), 'small');
});

test('destroying a snapshot frees the blocks no other snapshot uses', async (t) => {
  const { driver, live, layout } = setup(t);
  await driver.createDataset('tank');
  await writeTree(live('tank'), { keep: randomBytes(1000), gone: randomBytes(2 << 20) });
  await driver.createSnapshot('tank', 's1', { recursive: false });
  unlinkSync(path.join(live('tank'), 'gone'));
  writeFileSync(path.join(live('tank'), 'new'), randomBytes(500));
  await driver.createSnapshot('tank', 's2', { recursive: false });
  t.is(countBlocks(layout, 'tank'), 4);
  await driver.destroySnapshot('tank', 's1', { recursive: false });
  t.is(countBlocks(layout, 'tank'), 2); // keep + new
  t.is(readdirSync(layout.manifestsDir('tank')).length, 1);
  await driver.destroySnapshot('tank', 's2', { recursive: false });
  t.is(countBlocks(layout, 'tank'), 0);
  t.deepEqual(await driver.recover('tank'), []);
});

test('rollback restores the tree exactly, deleting newer files and keeping later snapshots', async (t) => {
  const { driver, live } = setup(t);
  await driver.createDataset('tank');
  const root = live('tank');
  await writeTree(root, {
    'a.txt': { content: 'alpha', mode: 0o640, mtime: 1_600_000_000.5 },
    'dir/b.txt': 'beta',
    'dir/sub': { dir: true, mode: 0o750, mtime: 1_500_000_000 },
    'link': { symlink: 'a.txt' },
    'was-file': 'file',
    'was-dir/x': 'x',
    empty: '',
  });
  const before = await readTree(root);
  await driver.createSnapshot('tank', 's1', { recursive: false });
  writeFileSync(path.join(root, 'a.txt'), 'changed');
  chmodSync(path.join(root, 'dir/b.txt'), 0o600);
  unlinkSync(path.join(root, 'link'));
  symlinkSync('elsewhere', path.join(root, 'link'));
  unlinkSync(path.join(root, 'was-file'));
  mkdirSync(path.join(root, 'was-file'));
  rmSync(path.join(root, 'was-dir'), { recursive: true });
  writeFileSync(path.join(root, 'was-dir'), 'now a file');
  writeFileSync(path.join(root, 'newer.txt'), 'newer');
  mkdirSync(path.join(root, 'newdir/deep'), { recursive: true });
  await driver.createSnapshot('tank', 's2', { recursive: false });
  t.true(await driver.changedSince('tank', 's1'));
  await driver.rollback('tank', 's1');
  t.deepEqual(diffTrees(before, await readTree(root)), []);
  t.false(await driver.changedSince('tank', 's1'));
  t.deepEqual((await driver.listSnapshots('tank')).map((s) => s.name), ['s1', 's2']);
  await driver.rollback('tank', 's2');
  t.is(readFileSync(path.join(root, 'newer.txt'), 'utf8'), 'newer');
  t.false(await driver.changedSince('tank', 's2'));
});

test('changedSince: stat first, content only when the stat cannot tell', async (t) => {
  const { driver, live } = setup(t);
  await driver.createDataset('tank');
  const root = live('tank');
  await writeTree(root, { 'f.txt': { content: 'same size!', mtime: 1_600_000_000 }, 'g.txt': 'g' });
  await driver.createSnapshot('tank', 's', { recursive: false });
  t.false(await driver.changedSince('tank', 's'));
  // A new inode with the same bytes and mtime: the stat differs, the content does not.
  copyFileSync(path.join(root, 'f.txt'), path.join(root, 'f.tmp'));
  utimesSync(path.join(root, 'f.tmp'), 1_600_000_000, 1_600_000_000);
  renameSync(path.join(root, 'f.tmp'), path.join(root, 'f.txt'));
  t.false(await driver.changedSince('tank', 's'));
  // Same size and mtime, different bytes: only the content check can see it.
  writeFileSync(path.join(root, 'f.txt'), 'SAME SIZE!');
  utimesSync(path.join(root, 'f.txt'), 1_600_000_000, 1_600_000_000);
  t.true(await driver.changedSince('tank', 's'));
  await driver.rollback('tank', 's');
  t.false(await driver.changedSince('tank', 's'));
  chmodSync(path.join(root, 'g.txt'), 0o600);
  t.true(await driver.changedSince('tank', 's'));
  await driver.rollback('tank', 's');
  writeFileSync(path.join(root, 'h.txt'), '');
  t.true(await driver.changedSince('tank', 's'));
  await driver.rollback('tank', 's');
  t.false(existsSync(path.join(root, 'h.txt')));
  unlinkSync(path.join(root, 'g.txt'));
  t.true(await driver.changedSince('tank', 's'));
});

test('nested datasets are excluded from their parent and left alone by its rollback', async (t) => {
  const { driver, live } = setup(t);
  await driver.createDataset('tank/data/child', { parents: true });
  await writeTree(live('tank/data'), { 'p.txt': 'parent' });
  await writeTree(live('tank/data/child'), { 'c.txt': 'child' });
  await driver.createSnapshot('tank/data', 'r', { recursive: true });
  t.deepEqual((await driver.listSnapshots('tank/data/child')).map((s) => s.name), ['r']);
  writeFileSync(path.join(live('tank/data/child'), 'c2.txt'), 'more child');
  t.false(await driver.changedSince('tank/data', 'r'), 'child changes are not parent changes');
  t.true(await driver.changedSince('tank/data/child', 'r'));
  writeFileSync(path.join(live('tank/data'), 'p2.txt'), 'more parent');
  await driver.rollback('tank/data', 'r');
  t.false(existsSync(path.join(live('tank/data'), 'p2.txt')));
  t.true(existsSync(path.join(live('tank/data/child'), 'c2.txt')));
  await driver.destroySnapshot('tank/data', 'r', { recursive: true });
  t.deepEqual(await driver.listSnapshots('tank/data/child'), []);
});

test('unmount keeps the files out of the mountpoint, across restarts', async (t) => {
  const { driver, live, root } = setup(t);
  await driver.createDataset('tank/data/child', { parents: true });
  await writeTree(live('tank/data'), { 'f.txt': 'data' });
  await t.throwsAsync(driver.unmount('tank/data'), { message: /has mounted child datasets \(tank\/data\/child\)/ });
  await driver.unmount('tank/data/child');
  await driver.unmount('tank/data');
  t.deepEqual(readdirSync(live('tank/data')), []);
  t.is(lstatSync(live('tank/data')).mode & 0o777, 0o555);
  const restarted = createFsDriver(root);
  t.like(await restarted.getDataset('tank/data'), { mounted: false, mountpoint: null });
  // Snapshots and comparisons work on an unmounted dataset's files too.
  await restarted.createSnapshot('tank/data', 's', { recursive: false });
  t.false(await restarted.changedSince('tank/data', 's'));
  await t.throwsAsync(restarted.mount('tank/data/child'), { message: /parent dataset tank\/data is unmounted/ });
  await restarted.mount('tank/data');
  await restarted.mount('tank/data/child');
  t.is(readFileSync(path.join(live('tank/data'), 'f.txt'), 'utf8'), 'data');
  t.like(await restarted.getDataset('tank/data'), { mounted: true, mountpoint: live('tank/data') });
  t.false(await restarted.changedSince('tank/data', 's'));
});

test('a volume is an image file that snapshots like a tree and stays sparse', async (t) => {
  const { driver, live, layout } = setup(t);
  await driver.createDataset('tank');
  await t.throwsAsync(driver.createDataset('tank/vol', { volumeSize: -1 }), { message: /positive whole number of bytes: -1/ });
  const vol = await driver.createDataset('tank/vol', { volumeSize: 256 << 20 });
  t.like(vol, { kind: 'volume', volsize: 256 << 20, mountpoint: null, mounted: true });
  const img = path.join(live('tank/vol'), 'volume.img');
  t.is(statSync(img).size, 256 << 20);
  await driver.createSnapshot('tank/vol', 'empty', { recursive: false });
  t.is(countBlocks(layout, 'tank/vol'), 0, 'zero chunks are not stored');
  await t.throwsAsync(driver.createDataset('tank/vol/x'), { message: /tank\/vol is a volume/ });
});

test('recover cleans what a crash leaves behind', async (t) => {
  const { driver, layout, live } = setup(t);
  await driver.createDataset('tank');
  writeFileSync(path.join(live('tank'), 'f'), 'x');
  await driver.createSnapshot('tank', 's', { recursive: false });
  t.deepEqual(await driver.recover('tank'), []);
  mkdirSync(path.join(layout.stagingRoot('tank'), 'abc', 'blocks'), { recursive: true });
  const orphan = path.join(layout.blocksDir('tank'), 'ff', 'f'.repeat(64));
  mkdirSync(path.dirname(orphan), { recursive: true });
  writeFileSync(orphan, 'orphan');
  mkdirSync(layout.datasetMeta('tank/half'), { recursive: true });
  const lines = await driver.recover('tank');
  t.true(lines.some((l) => /Removed the staging area abc/.test(l)), lines.join('\n'));
  t.true(lines.some((l) => /Freed 1 unreferenced block/.test(l)), lines.join('\n'));
  t.true(lines.some((l) => /leftovers of tank\/half/.test(l)), lines.join('\n'));
  t.false(existsSync(orphan));
  t.deepEqual(await driver.recover('tank'), []);
  t.false(await driver.changedSince('tank', 's'));
});

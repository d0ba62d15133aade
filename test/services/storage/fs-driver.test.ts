/**
 * The fs driver on one appliance: names, datasets, snapshots, holds,
 * garbage collection, rollback, changedSince, nested datasets, mounting,
 * volumes and recover. Real files in a temp dir.
 */
import test from 'ava';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { createHash, randomBytes } from 'node:crypto';
import { createFsDriver } from '../../../src/services/storage/fs/index.js';
import { BlockStore } from '../../../src/services/storage/fs/block-store.js';
import { Layout } from '../../../src/services/storage/fs/layout.js';
import { diffTrees, readTree, tempDir, writeTree } from '../../helpers/fs-tree.js';

function setup(t: Parameters<typeof tempDir>[0]) {
  const root = path.join(tempDir(t), 'fs');
  return { root, driver: createFsDriver(root), layout: new Layout(root), live: (name: string) => path.join(root, ...name.split('/')) };
}

/** Distinct blocks in a dataset's store (in its sealed packs). */
function countBlocks(layout: Layout, dataset: string): number {
  const store = new BlockStore(layout.blocksDir(dataset));
  try {
    return store.packInfo().reduce((n, p) => n + p.blocks.length, 0);
  } finally {
    store.close();
  }
}

/** Bytes of pack files in a dataset's store. */
function packBytes(layout: Layout, dataset: string): number {
  const dir = layout.blocksDir(dataset);
  if (!existsSync(dir)) return 0;
  return readdirSync(dir)
    .filter((n) => n.endsWith('.pack'))
    .reduce((n, f) => n + statSync(path.join(dir, f)).size, 0);
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
  t.deepEqual(
    (await driver.listDatasets()).map((d) => d.name),
    ['tank', 'tank/a', 'tank/a/b'],
  );
  t.deepEqual(
    (await driver.listDatasets('tank/a')).map((d) => d.name),
    ['tank/a', 'tank/a/b'],
  );
  t.true(statSync(live('tank/a/b')).isDirectory());
  await t.throwsAsync(driver.createDataset('tank/a'), { message: 'The fs dataset tank/a already exists.' });
  mkdirSync(live('tank/c'));
  writeFileSync(path.join(live('tank/c'), 'f'), 'x');
  await t.throwsAsync(driver.createDataset('tank/c'), { message: /already has files/ });
  t.is(await driver.getDataset('tank/nope'), null);
  await t.throwsAsync(driver.destroyDataset('tank/a'), { message: /has child datasets \(tank\/a\/b\)/ });
  await driver.destroyDataset('tank/a', { recursive: true });
  t.false(existsSync(live('tank/a')));
  t.deepEqual(
    (await driver.listDatasets()).map((d) => d.name),
    ['tank'],
  );
});

test('snapshots are listed oldest first; holds refuse destruction', async (t) => {
  const { driver, live } = setup(t);
  await driver.createDataset('tank');
  writeFileSync(path.join(live('tank'), 'f'), 'one');
  const a = await driver.createSnapshot('tank', 'a', { recursive: false });
  writeFileSync(path.join(live('tank'), 'f'), 'two');
  const b = await driver.createSnapshot('tank', 'b', { recursive: false });
  t.not(a.id, b.id);
  t.deepEqual(
    (await driver.listSnapshots('tank')).map((s) => s.name),
    ['a', 'b'],
  );
  await t.throwsAsync(driver.createSnapshot('tank', 'a', { recursive: false }), { message: 'The snapshot tank@a already exists.' });
  await driver.holdSnapshot('tank', 'a', true);
  t.true((await driver.listSnapshots('tank'))[0].held);
  await t.throwsAsync(driver.destroySnapshot('tank', 'a', { recursive: false }), { message: /The snapshot tank@a is held; release the hold/ });
  await t.throwsAsync(driver.destroyDataset('tank', { recursive: true }), { message: /tank@a is held/ });
  await driver.holdSnapshot('tank', 'a', false);
  await driver.destroySnapshot('tank', 'a', { recursive: false });
  t.deepEqual(
    (await driver.listSnapshots('tank')).map((s) => s.name),
    ['b'],
  );
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
  t.true(packBytes(layout, 'tank') < 4000, 'the pack that was mostly garbage was rewritten');
  t.is(readdirSync(layout.manifestsDir('tank')).length, 1);
  await driver.destroySnapshot('tank', 's2', { recursive: false });
  t.is(countBlocks(layout, 'tank'), 0);
  t.is(packBytes(layout, 'tank'), 0);
  t.deepEqual(await driver.recover('tank'), []);
});

test('destroying a snapshot frees nothing another uses: one like the next, or a file only a later snapshot has again', async (t) => {
  const { driver, live, layout } = setup(t);
  await driver.createDataset('tank');
  const back = randomBytes(2 << 20);
  await writeTree(live('tank'), { back, moved: randomBytes(1000) });
  await driver.createSnapshot('tank', 's1', { recursive: false });
  await driver.createSnapshot('tank', 's2', { recursive: false }); // the same blocks at every path
  await driver.destroySnapshot('tank', 's1', { recursive: false });
  t.is(countBlocks(layout, 'tank'), 3);
  renameSync(path.join(live('tank'), 'moved'), path.join(live('tank'), 'moved-here'));
  unlinkSync(path.join(live('tank'), 'back'));
  await driver.createSnapshot('tank', 's3', { recursive: false }); // back is gone, moved is under another name
  writeFileSync(path.join(live('tank'), 'back'), back);
  await driver.createSnapshot('tank', 's4', { recursive: false }); // back is there again
  await driver.destroySnapshot('tank', 's2', { recursive: false });
  t.is(countBlocks(layout, 'tank'), 3, 'the blocks of back (s4) and of moved (s3, s4) stay');
  rmSync(path.join(live('tank'), 'back')); // so the rollback must read it from the store
  await driver.rollback('tank', 's4');
  t.true(readFileSync(path.join(live('tank'), 'back')).equals(back));
  t.is(await driver.changedSince('tank', 's4'), false);
});

test('rollback restores the tree exactly, deleting newer files and keeping later snapshots', async (t) => {
  const { driver, live } = setup(t);
  await driver.createDataset('tank');
  const root = live('tank');
  await writeTree(root, {
    'a.txt': { content: 'alpha', mode: 0o640, mtime: 1_600_000_000.5 },
    'dir/b.txt': 'beta',
    'dir/sub': { dir: true, mode: 0o750, mtime: 1_500_000_000 },
    link: { symlink: 'a.txt' },
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
  t.deepEqual(
    (await driver.listSnapshots('tank')).map((s) => s.name),
    ['s1', 's2'],
  );
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
  t.deepEqual(
    (await driver.listSnapshots('tank/data/child')).map((s) => s.name),
    ['r'],
  );
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
  // A writer that stored a block and sealed its pack, then died before listing anything; and one that died mid-pack.
  const crashed = new BlockStore(layout.blocksDir('tank'));
  crashed.put('f'.repeat(64), Buffer.from('orphan'));
  crashed.seal();
  crashed.put('e'.repeat(64), Buffer.from('half-written'));
  crashed.close();
  // A block file of the store's first format that nothing uses.
  const legacy = path.join(layout.blocksDir('tank'), 'dd', 'd'.repeat(64));
  mkdirSync(path.dirname(legacy), { recursive: true });
  writeFileSync(legacy, 'legacy');
  mkdirSync(layout.datasetMeta('tank/half'), { recursive: true });
  const lines = await driver.recover('tank');
  t.true(
    lines.some((l) => /Removed the staging area abc/.test(l)),
    lines.join('\n'),
  );
  t.true(
    lines.some((l) => /Freed 2 unreferenced block\(s\) \(12 bytes\), 1 half-written pack\(s\) \(12 bytes\) of tank\./.test(l)),
    lines.join('\n'),
  );
  t.true(
    lines.some((l) => /leftovers of tank\/half/.test(l)),
    lines.join('\n'),
  );
  t.false(existsSync(legacy));
  t.is(countBlocks(layout, 'tank'), 1);
  t.deepEqual(readdirSync(layout.blocksDir('tank')).filter((n) => n.endsWith('.pack')).length, 1);
  t.deepEqual(await driver.recover('tank'), []);
  t.false(await driver.changedSince('tank', 's'));
});

test('a store of the first format (a file per block, manifests with an object per entry) is still read and collected', async (t) => {
  const { driver, layout, live, root } = setup(t);
  await driver.createDataset('tank');
  const big = randomBytes((1 << 20) + 5000);
  await writeTree(live('tank'), { big, 'd/small': 'small' });
  const s1 = await driver.createSnapshot('tank', 's1', { recursive: false });
  const before = await readTree(live('tank'));
  // Turn the store and the manifest back into the first format, as an older syncsh left them.
  const dir = layout.blocksDir('tank');
  const store = new BlockStore(dir);
  for (const pack of store.packInfo()) {
    for (const b of pack.blocks) {
      mkdirSync(path.join(dir, b.hash.slice(0, 2)), { recursive: true });
      writeFileSync(path.join(dir, b.hash.slice(0, 2), b.hash), store.read(b.hash, 'test'));
    }
  }
  store.close();
  for (const f of readdirSync(dir)) if (f.endsWith('.pack') || f.endsWith('.idx')) rmSync(path.join(dir, f));
  const file = layout.manifestFile('tank', s1.id);
  const stored = JSON.parse(readFileSync(file, 'utf8')) as { rows: [string, string, number, string, number, string[] | string | 0][] };
  const types: Record<string, string> = { f: 'file', d: 'dir', l: 'symlink' };
  const entries = stored.rows.map(([p, type, mode, mtimeNs, size, data]) => ({ path: p, type: types[type], mode, mtimeNs, size, ...(type === 'f' ? { blocks: data } : {}) }));
  writeFileSync(file, JSON.stringify({ ...stored, rows: undefined, entries }));

  const restarted = createFsDriver(root);
  writeFileSync(path.join(live('tank'), 'big'), 'overwritten');
  await restarted.rollback('tank', 's1');
  t.deepEqual(diffTrees(before, await readTree(live('tank'))), []);
  const copy = createFsDriver(path.join(root, '..', 'copy'));
  await copy.createDataset('tank');
  await copy.receive('tank/c', restarted.send('tank', 's1', { recursive: false }), { force: false, recursive: false });
  t.deepEqual(diffTrees(before, await readTree(path.join(root, '..', 'copy', 'tank', 'c'))), []);
  // New blocks go to packs; the old files are freed with the snapshot that used them.
  writeFileSync(path.join(live('tank'), 'new'), 'new content');
  await restarted.createSnapshot('tank', 's2', { recursive: false });
  t.is(countBlocks(layout, 'tank'), 1);
  await restarted.destroySnapshot('tank', 's1', { recursive: false });
  await restarted.destroySnapshot('tank', 's2', { recursive: false });
  t.deepEqual(
    readdirSync(dir)
      .filter((n) => n !== 'tmp' && !n.endsWith('.pack') && !n.endsWith('.idx'))
      .flatMap((fan) => readdirSync(path.join(dir, fan))),
    [],
  );
});

test('copies of a block left in two packs by an interrupted collection are merged by the next sweep', async (t) => {
  const { driver, layout, live, root } = setup(t);
  await driver.createDataset('tank');
  const [a, b] = [randomBytes(300_000), randomBytes(100_000)];
  await writeTree(live('tank'), { a, b });
  await driver.createSnapshot('tank', 's1', { recursive: false });
  const before = await readTree(live('tank'));
  // A collection that wrote a new pack with a copy of `a`, then died before dropping the old pack.
  const elsewhere = path.join(root, '..', 'elsewhere');
  const copy = new BlockStore(elsewhere);
  copy.put(createHash('sha256').update(a).digest('hex'), a);
  copy.seal();
  copy.close();
  for (const f of readdirSync(elsewhere)) copyFileSync(path.join(elsewhere, f), path.join(layout.blocksDir('tank'), f));
  writeFileSync(layout.unsweptMarker('tank'), '');
  t.is(packBytes(layout, 'tank'), 700_000);
  const lines = await driver.recover('tank');
  t.regex(lines.join('\n'), /Freed 1 unreferenced block\(s\) \(300000 bytes\)/);
  t.is(packBytes(layout, 'tank'), 400_000, 'each block once');
  t.is(countBlocks(layout, 'tank'), 2);
  t.false(existsSync(layout.unsweptMarker('tank')));
  writeFileSync(path.join(live('tank'), 'a'), 'changed');
  await driver.rollback('tank', 's1');
  t.deepEqual(diffTrees(before, await readTree(live('tank'))), []);
});

test('a snapshot or receive that ends well leaves nothing for recover to sweep', async (t) => {
  const { driver, layout, live } = setup(t);
  await driver.createDataset('tank');
  await writeTree(live('tank'), { f: randomBytes(2 << 20) });
  await driver.createSnapshot('tank', 's1', { recursive: false });
  await driver.receive('tank/copy', driver.send('tank', 's1', { recursive: false }), { force: false, recursive: false });
  for (const ds of ['tank', 'tank/copy']) t.false(existsSync(layout.unsweptMarker(ds)), ds);
  t.deepEqual(await driver.recover('tank'), []);
});

test('a reader whose pack was rewritten meanwhile (a sender during a collection) finds its blocks in the new pack', (t) => {
  const dir = path.join(tempDir(t), 'blocks');
  const [a, b] = [randomBytes(10_000), randomBytes(500_000)];
  const [ha, hb] = [a, b].map((x) => createHash('sha256').update(x).digest('hex'));
  const writer = new BlockStore(dir);
  writer.put(ha, a);
  writer.put(hb, b);
  writer.seal();
  writer.close();
  const reader = new BlockStore(dir);
  t.true(reader.has(ha)); // the reader has read the indexes, not opened the pack
  const collector = new BlockStore(dir);
  const [pack] = collector.packInfo();
  collector.rewrite(pack.id, [ha]);
  collector.close();
  t.false(existsSync(path.join(dir, `${pack.id}.pack`)));
  t.true(reader.read(ha, 'test').equals(a));
  t.throws(() => reader.read(hb, 'test'), { message: new RegExp(`The block ${hb} of test is missing from the block store`) });
  reader.close();
});

test('a tree that changes under the scan is noticed: taken again, and reported as not point-in-time when it keeps changing', async (t) => {
  const { driver, live } = setup(t);
  await driver.createDataset('tank');
  await driver.createDataset('tank/data');
  const dir = live('tank/data');
  mkdirSync(path.join(dir, 'busy'));
  for (let i = 0; i < 2000; i++) writeFileSync(path.join(dir, `f${String(i).padStart(4, '0')}.txt`), `file ${i}`);
  const still = await driver.createSnapshot('tank/data', 'still', { recursive: false });
  t.is(still.notPointInTime, undefined, 'a tree nothing changes is captured as one instant');
  // Another process keeps adding and removing entries, as a tree being deleted or filled does.
  const churn = execa('node', [
    '-e',
    `const fs = require('node:fs'); const d = ${JSON.stringify(path.join(dir, 'busy'))}; process.stdout.write('go\\n'); for (let i = 0;; i++) { fs.writeFileSync(d + '/t' + i, 'x'); fs.rmSync(d + '/t' + i); }`,
  ]);
  t.teardown(() => {
    churn.kill('SIGKILL');
  });
  await new Promise<void>((resolve) => churn.stdout!.once('data', () => resolve()));
  const moving = await driver.createSnapshot('tank/data', 'moving', { recursive: false });
  churn.kill('SIGKILL');
  await churn.catch(() => undefined);
  t.regex(moving.notPointInTime ?? '', /^the tree changed while the snapshot was taken, 3 times in a row: tank\/data \(busy/);
  t.is((await driver.listSnapshots('tank/data')).length, 2, 'the snapshot is still taken');
});

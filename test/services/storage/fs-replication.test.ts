/**
 * fs send/receive between two appliances (two pool roots): full and
 * incremental streams, every kind of tree change, nested datasets, volumes,
 * and every way a receive must refuse or fail while leaving the destination
 * exactly as it was.
 */
import test from 'ava';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import type { Driver } from '../../../src/services/storage/driver.js';
import { createFsDriver } from '../../../src/services/storage/fs/index.js';
import { Layout } from '../../../src/services/storage/fs/layout.js';
import { diffTrees, readTree, sha256File, sparseFile, tempDir, writeTree } from '../../helpers/fs-tree.js';

interface Appliance {
  root: string;
  driver: Driver;
  layout: Layout;
  live(name: string): string;
}

function appliance(dir: string, name: string): Appliance {
  const root = path.join(dir, name);
  return { root, driver: createFsDriver(root), layout: new Layout(root), live: (n) => path.join(root, ...n.split('/')) };
}

async function twoAppliances(t: Parameters<typeof tempDir>[0]): Promise<{ a: Appliance; b: Appliance }> {
  const dir = tempDir(t);
  const a = appliance(dir, 'a');
  const b = appliance(dir, 'b');
  await a.driver.createDataset('tank');
  await b.driver.createDataset('tank');
  return { a, b };
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** Everything an operator could observe of a destination dataset. */
async function state(x: Appliance, dataset: string) {
  return {
    tree: await readTree(x.live(dataset)),
    snapshots: (await x.driver.listSnapshots(dataset)).map((s) => `${s.name}=${s.id}`),
    staging: existsSync(x.layout.stagingRoot(dataset)) ? readdirSync(x.layout.stagingRoot(dataset)) : [],
    journal: existsSync(x.layout.journalFile(dataset)),
  };
}

async function assertUnchanged(t: import('ava').ExecutionContext, x: Appliance, dataset: string, before: Awaited<ReturnType<typeof state>>) {
  const after = await state(x, dataset);
  t.deepEqual(diffTrees(before.tree, after.tree), []);
  t.deepEqual(after.snapshots, before.snapshots);
  t.deepEqual(after.staging, []);
  t.false(after.journal);
}

const varied = {
  'docs/readme.txt': { content: 'hello world\n', mode: 0o644, mtime: 1_600_000_000.123456 },
  'docs/secret': { content: 'shh', mode: 0o600, mtime: 1_500_000_000 },
  'bin/tool': { content: '#!/bin/sh\necho hi\n', mode: 0o755 },
  'ro.txt': { content: 'read only', mode: 0o444 },
  'empty-file': '',
  'empty-dir': { dir: true as const, mode: 0o700, mtime: 1_400_000_000 },
  'nested/a/b/c/deep.bin': randomBytes(70_000),
  'multi-chunk.bin': randomBytes((2 << 20) + 12345),
  'link-rel': { symlink: 'docs/readme.txt' },
  'link-abs': { symlink: '/etc/hostname' },
  'link-dangling': { symlink: 'nowhere/at/all' },
};

test('a full stream reproduces the tree exactly: contents, modes, mtimes, symlinks, empty files and dirs', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), varied);
  const snap = await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  const result = await b.driver.receive('tank/dst', a.driver.send('tank/src', 's1', { recursive: false }), { force: false, recursive: false });
  t.is(result.snapshot.id, snap.id);
  t.is(result.snapshot.name, 's1');
  t.true(result.bytes > 2 << 20);
  t.deepEqual(diffTrees(await readTree(a.live('tank/src')), await readTree(b.live('tank/dst'))), []);
  t.like(await b.driver.getDataset('tank/dst'), { kind: 'filesystem', mounted: true });
  t.deepEqual(
    (await b.driver.listSnapshots('tank/dst')).map((s) => s.id),
    [snap.id],
  );
  t.false(await b.driver.changedSince('tank/dst', 's1'));
});

test('an incremental stream carries only changed blocks and applies deletes, renames, modes and type changes', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  const src = a.live('tank/src');
  const large = randomBytes(5 << 20);
  await writeTree(src, { ...varied, 'large.bin': large, 'to-rename.bin': randomBytes(1 << 20), 'olddir/x': 'x', 'gone/deep/y': 'y', 'becomes-dir': 'f' });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  const full = await collect(a.driver.send('tank/src', 's1', { recursive: false }));
  await b.driver.receive('tank/dst', Readable.from([full]), { force: false, recursive: false });

  const changed = Buffer.from(large);
  changed[(3 << 20) + 7] ^= 0xff; // one chunk of five
  writeFileSync(path.join(src, 'large.bin'), changed);
  renameSync(path.join(src, 'to-rename.bin'), path.join(src, 'renamed.bin'));
  renameSync(path.join(src, 'olddir'), path.join(src, 'newdir'));
  rmSync(path.join(src, 'gone'), { recursive: true });
  unlinkSync(path.join(src, 'docs/secret'));
  chmodSync(path.join(src, 'bin/tool'), 0o700);
  unlinkSync(path.join(src, 'link-rel'));
  symlinkSync('bin/tool', path.join(src, 'link-rel'));
  unlinkSync(path.join(src, 'becomes-dir'));
  mkdirSync(path.join(src, 'becomes-dir/inside'), { recursive: true });
  writeFileSync(path.join(src, 'empty-dir/now-full'), 'n');
  await a.driver.createSnapshot('tank/src', 's2', { recursive: false });

  const delta = await collect(a.driver.send('tank/src', 's2', { from: 's1', recursive: false }));
  t.true(delta.length < (1 << 20) + 64 * 1024, `incremental stream is ${delta.length} bytes`);
  t.true(delta.length < full.length / 8);
  const result = await b.driver.receive('tank/dst', Readable.from([delta]), { force: false, recursive: false });
  t.is(result.bytes, delta.length);
  t.deepEqual(diffTrees(await readTree(src), await readTree(b.live('tank/dst'))), []);
  t.deepEqual(
    (await b.driver.listSnapshots('tank/dst')).map((s) => s.name),
    ['s1', 's2'],
  );
  t.false(await b.driver.changedSince('tank/dst', 's2'));
});

test('a changed destination is refused without force and rolled back with it', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), { f: 'one', g: 'g' });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's1', { recursive: false }), { force: false, recursive: false });
  writeFileSync(path.join(a.live('tank/src'), 'f'), 'two');
  await a.driver.createSnapshot('tank/src', 's2', { recursive: false });

  writeFileSync(path.join(b.live('tank/dst'), 'local-change'), 'written on the destination');
  const before = await state(b, 'tank/dst');
  await t.throwsAsync(b.driver.receive('tank/dst', a.driver.send('tank/src', 's2', { from: 's1', recursive: false }), { force: false, recursive: false }), {
    message: /The destination tank\/dst was changed since its snapshot @s1, the base of this stream \(local-change was added or deleted\); nothing was changed\. Receive with force/,
  });
  await assertUnchanged(t, b, 'tank/dst', before);

  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's2', { from: 's1', recursive: false }), { force: true, recursive: false });
  t.deepEqual(diffTrees(await readTree(a.live('tank/src')), await readTree(b.live('tank/dst'))), []);
});

test('the base must be the same snapshot (by id) on the destination', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), { f: 'one' });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  await a.driver.createSnapshot('tank/src', 's2', { recursive: false });
  const s1 = (await a.driver.listSnapshots('tank/src'))[0];
  // Same name, different snapshot.
  await b.driver.createDataset('tank/dst');
  writeFileSync(path.join(b.live('tank/dst'), 'f'), 'one');
  const other = await b.driver.createSnapshot('tank/dst', 's1', { recursive: false });
  const before = await state(b, 'tank/dst');
  await t.throwsAsync(b.driver.receive('tank/dst', a.driver.send('tank/src', 's2', { from: 's1', recursive: false }), { force: true, recursive: false }), {
    message: `The destination tank/dst has @s1 with id ${other.id}, but the stream's base @s1 has id ${s1.id}: they are different snapshots, so this incremental stream cannot be applied.`,
  });
  await assertUnchanged(t, b, 'tank/dst', before);
  await b.driver.createDataset('tank/other');
  await t.throwsAsync(b.driver.receive('tank/other', a.driver.send('tank/src', 's2', { from: 's1', recursive: false }), { force: false, recursive: false }), {
    message: `The destination tank/other does not have the base snapshot @s1 (id ${s1.id}) of this incremental stream; it has no snapshots.`,
  });
  await t.throwsAsync(b.driver.receive('tank/none', a.driver.send('tank/src', 's2', { from: 's1', recursive: false }), { force: false, recursive: false }), {
    message: /The destination tank\/none does not exist, but the stream is incremental from @s1/,
  });
  t.is(await b.driver.getDataset('tank/none'), null);
});

test('a full stream never overwrites existing data', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), { f: 'one' });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  const send = () => a.driver.send('tank/src', 's1', { recursive: false });
  const opts = { force: true, recursive: false };

  await b.driver.createDataset('tank/has-files');
  writeFileSync(path.join(b.live('tank/has-files'), 'precious'), 'keep me');
  await t.throwsAsync(b.driver.receive('tank/has-files', send(), opts), { message: /The destination tank\/has-files already has files in .*; a full stream is never received over existing data/ });
  await b.driver.createDataset('tank/has-snaps');
  await b.driver.createSnapshot('tank/has-snaps', 'x', { recursive: false });
  await t.throwsAsync(b.driver.receive('tank/has-snaps', send(), opts), { message: /already has 1 snapshot\(s\) \(newest @x\); a full stream is only received into a new or empty dataset/ });
  await t.throwsAsync(b.driver.receive('tank/no/parent', send(), opts), { message: 'The parent dataset tank/no of tank/no/parent does not exist on this appliance; create it first.' });
  await t.throwsAsync(b.driver.receive('pool2/x', send(), opts), { message: /The pool pool2 does not exist on this appliance/ });
  t.false(existsSync(path.join(b.root, '.syncsh', 'pool2')));

  await b.driver.createDataset('tank/empty');
  await b.driver.receive('tank/empty', send(), opts);
  t.deepEqual(
    (await b.driver.listSnapshots('tank/empty')).map((s) => s.name),
    ['s1'],
  );
  // Into a pool that does not exist yet: it becomes the pool.
  await b.driver.receive('newpool', send(), opts);
  t.like(await b.driver.getDataset('newpool'), { kind: 'filesystem' });
});

test('a truncated stream is refused wherever it is cut, leaving the destination untouched', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), { f: randomBytes(3 << 20), g: 'g', 'd/h': 'h' });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's1', { recursive: false }), { force: false, recursive: false });
  writeFileSync(path.join(a.live('tank/src'), 'f'), randomBytes(2 << 20));
  unlinkSync(path.join(a.live('tank/src'), 'g'));
  await a.driver.createSnapshot('tank/src', 's2', { recursive: false });
  const delta = await collect(a.driver.send('tank/src', 's2', { from: 's1', recursive: false }));
  const before = await state(b, 'tank/dst');
  for (const cut of [0, 5, 13, 100, 1 << 20, delta.length - 200, delta.length - 33, delta.length - 1]) {
    const error = await t.throwsAsync(b.driver.receive('tank/dst', Readable.from([delta.subarray(0, cut)]), { force: false, recursive: false }));
    t.regex(error!.message, /ended early \(truncated\).*Nothing was changed on fs dataset tank\/dst\./, `cut at ${cut}`);
    await assertUnchanged(t, b, 'tank/dst', before);
  }
  // Extra bytes after the end are refused too.
  await t.throwsAsync(b.driver.receive('tank/dst', Readable.from([delta, Buffer.from('x')]), { force: false, recursive: false }), { message: /unexpected bytes after its checksum/ });
  await assertUnchanged(t, b, 'tank/dst', before);
  // A truncated full stream leaves no half-created dataset behind: only the chunks it verified, kept for the next attempt.
  const full = await collect(a.driver.send('tank/src', 's2', { recursive: false }));
  await t.throwsAsync(b.driver.receive('tank/fresh', Readable.from([full.subarray(0, full.length >> 1)]), { force: false, recursive: false }), { message: /truncated/ });
  t.is(await b.driver.getDataset('tank/fresh'), null);
  t.deepEqual(
    readdirSync(b.layout.datasetMeta('tank/fresh')).filter((n) => !['blocks', 'partial.json', 'unswept'].includes(n)),
    [],
  );
  t.false(existsSync(b.live('tank/fresh')));
  // and the intact stream still applies
  await b.driver.receive('tank/dst', Readable.from([delta]), { force: false, recursive: false });
  t.deepEqual(diffTrees(await readTree(a.live('tank/src')), await readTree(b.live('tank/dst'))), []);
});

test('a flipped bit anywhere in the stream is refused, leaving the destination untouched', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), { f: randomBytes(1 << 20), g: 'g' });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's1', { recursive: false }), { force: false, recursive: false });
  writeFileSync(path.join(a.live('tank/src'), 'f'), randomBytes(100_000));
  writeFileSync(path.join(a.live('tank/src'), 'new'), 'new file');
  await a.driver.createSnapshot('tank/src', 's2', { recursive: false });
  const delta = await collect(a.driver.send('tank/src', 's2', { from: 's1', recursive: false }));
  const before = await state(b, 'tank/dst');

  const blockAt = delta.indexOf(Buffer.from('new file')); // inside a block record
  const flips = [blockAt, 3, 12, 20, 200, 600, delta.length - 300, delta.length - 40, delta.length - 1];
  for (let i = 0; i < 12; i++) flips.push(Math.floor(Math.random() * delta.length));
  for (const at of flips) {
    const bad = Buffer.from(delta);
    bad[at] ^= 1 << (at % 8);
    const error = await t.throwsAsync(b.driver.receive('tank/dst', Readable.from([bad]), { force: false, recursive: false }), undefined, `bit flipped at ${at}`);
    t.truthy(error?.message);
    await assertUnchanged(t, b, 'tank/dst', before);
  }
  const flipped = Buffer.from(delta);
  flipped[blockAt] ^= 1;
  await t.throwsAsync(b.driver.receive('tank/dst', Readable.from([flipped]), { force: false, recursive: false }), { message: /block \d+ for tank\/dst does not match its sha256 .*Nothing was changed/ });
  await b.driver.receive('tank/dst', Readable.from([delta]), { force: false, recursive: false });
  t.false(await b.driver.changedSince('tank/dst', 's2'));
});

test('a recursive stream carries child datasets; new children arrive in full', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src/c1/g1', { parents: true });
  await a.driver.createDataset('tank/src/c2');
  await writeTree(a.live('tank/src'), { 'top.txt': 'top' });
  await writeTree(a.live('tank/src/c1'), { 'c1.txt': 'c1' });
  await writeTree(a.live('tank/src/c1/g1'), { 'g1.txt': 'g1' });
  await writeTree(a.live('tank/src/c2'), { 'c2.txt': randomBytes(10_000) });
  await a.driver.createSnapshot('tank/src', 'r1', { recursive: true });
  await t.throwsAsync(b.driver.receive('tank/dst', a.driver.send('tank/src', 'r1', { recursive: true }), { force: false, recursive: false }), { message: /carries 3 child dataset\(s\) of tank\/dst .* receive it recursively/ });
  t.is(await b.driver.getDataset('tank/dst'), null);
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 'r1', { recursive: true }), { force: false, recursive: true });
  t.deepEqual(
    (await b.driver.listDatasets('tank/dst')).map((d) => d.name),
    ['tank/dst', 'tank/dst/c1', 'tank/dst/c1/g1', 'tank/dst/c2'],
  );
  for (const [from, to] of [
    ['tank/src', 'tank/dst'],
    ['tank/src/c1', 'tank/dst/c1'],
    ['tank/src/c1/g1', 'tank/dst/c1/g1'],
    ['tank/src/c2', 'tank/dst/c2'],
  ]) {
    t.deepEqual(diffTrees(await readTree(a.live(from)), await readTree(b.live(to))), [], `${from} -> ${to}`);
    t.is((await b.driver.listSnapshots(to))[0].id, (await a.driver.listSnapshots(from))[0].id);
  }

  writeFileSync(path.join(a.live('tank/src/c1'), 'c1.txt'), 'c1 changed');
  await a.driver.createDataset('tank/src/c3');
  writeFileSync(path.join(a.live('tank/src/c3'), 'c3.txt'), 'c3');
  await a.driver.createSnapshot('tank/src', 'r2', { recursive: true });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 'r2', { from: 'r1', recursive: true }), { force: false, recursive: true });
  t.deepEqual(diffTrees(await readTree(a.live('tank/src')), await readTree(b.live('tank/dst'))), []);
  t.deepEqual(
    (await b.driver.listSnapshots('tank/dst/c3')).map((s) => s.name),
    ['r2'],
  );
  t.false(await b.driver.changedSince('tank/dst', 'r2'));
});

test('a volume replicates like a tree and stays sparse on the destination', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/vol', { volumeSize: 64 << 20 });
  const img = path.join(a.live('tank/vol'), 'volume.img');
  await sparseFile(img, 64 << 20, [
    { offset: 10 << 20, length: 1 << 20 },
    { offset: 40 << 20, length: 300_000 },
  ]);
  await a.driver.createSnapshot('tank/vol', 'v1', { recursive: false });
  await b.driver.receive('tank/vol', a.driver.send('tank/vol', 'v1', { recursive: false }), { force: false, recursive: false });
  const dst = path.join(b.live('tank/vol'), 'volume.img');
  t.like(await b.driver.getDataset('tank/vol'), { kind: 'volume', volsize: 64 << 20 });
  t.is(await sha256File(dst), await sha256File(img));
  t.true(statSync(dst).blocks * 512 < 8 << 20, 'holes stay holes');

  const fh = await import('node:fs/promises').then((m) => m.open(img, 'r+'));
  await fh.write(Buffer.from('changed'), 0, 7, 50 << 20);
  await fh.close();
  await a.driver.createSnapshot('tank/vol', 'v2', { recursive: false });
  const delta = await collect(a.driver.send('tank/vol', 'v2', { from: 'v1', recursive: false }));
  t.true(delta.length < (1 << 20) + 4096, `one changed chunk of 64: ${delta.length} bytes`);
  await b.driver.receive('tank/vol', Readable.from([delta]), { force: false, recursive: false });
  t.is(await sha256File(dst), await sha256File(img));
});

test('send errors and aborts reach the receiver, which changes nothing', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), { f: randomBytes(4 << 20) });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  await t.throwsAsync(b.driver.receive('tank/dst', a.driver.send('tank/src', 'nope', { recursive: false }), { force: false, recursive: false }), { message: 'The snapshot tank/src@nope does not exist.' });
  await t.throwsAsync(collect(a.driver.send('tank/src', 's1', { from: 'zz', recursive: false })), { message: 'The incremental base tank/src@zz does not exist.' });
  const abort = new AbortController();
  const source = a.driver.send('tank/src', 's1', { recursive: false, signal: abort.signal });
  let seen = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > 1 << 20) abort.abort();
      done(null, chunk);
    },
  });
  source.on('error', (error) => counter.destroy(error));
  source.pipe(counter);
  await t.throwsAsync(b.driver.receive('tank/dst', counter, { force: false, recursive: false, signal: abort.signal }), { message: /abort/i });
  t.is(await b.driver.getDataset('tank/dst'), null);
  t.false(existsSync(b.live('tank/dst')));
});

test('a snapshot destroyed while it is being sent still arrives whole; its blocks are freed afterwards', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), { f: randomBytes(3 << 20), g: randomBytes(2 << 20) });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  const chunks = a.driver.send('tank/src', 's1', { recursive: false })[Symbol.asyncIterator]();
  const parts: Buffer[] = [(await chunks.next()).value as Buffer];
  await a.driver.destroySnapshot('tank/src', 's1', { recursive: false });
  t.deepEqual(await a.driver.listSnapshots('tank/src'), []);
  for (let r = await chunks.next(); !r.done; r = await chunks.next()) parts.push(r.value as Buffer);
  await b.driver.receive('tank/dst', Readable.from([Buffer.concat(parts)]), { force: false, recursive: false });
  t.deepEqual(diffTrees(await readTree(a.live('tank/src')), await readTree(b.live('tank/dst'))), []);
  t.regex((await a.driver.recover('tank/src')).join('\n'), /Freed 5 unreferenced block\(s\)/);
});

test('an unmounted destination receives into its hidden tree and stays unmounted', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), { f: 'one' });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's1', { recursive: false }), { force: false, recursive: false });
  await b.driver.unmount('tank/dst');
  writeFileSync(path.join(a.live('tank/src'), 'f'), 'two');
  await a.driver.createSnapshot('tank/src', 's2', { recursive: false });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's2', { from: 's1', recursive: false }), { force: false, recursive: false });
  t.like(await b.driver.getDataset('tank/dst'), { mounted: false });
  t.deepEqual(readdirSync(b.live('tank/dst')), []);
  await b.driver.mount('tank/dst');
  t.deepEqual(diffTrees(await readTree(a.live('tank/src')), await readTree(b.live('tank/dst'))), []);
});

test("an incremental stream is refused when the destination's copy of the base differs from the sender's", async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), { f: 'one', g: 'g' });
  const s1 = await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's1', { recursive: false }), { force: false, recursive: false });
  writeFileSync(path.join(a.live('tank/src'), 'f'), 'two');
  await a.driver.createSnapshot('tank/src', 's2', { recursive: false });
  // Damage the destination's copy of s1's manifest (an entry's mode), as a disk error might.
  const file = b.layout.manifestFile('tank/dst', s1.id);
  const manifest = JSON.parse(readFileSync(file, 'utf8')) as { rows: [string, string, number][] };
  manifest.rows.find((row) => row[0] === 'g')![2] = 0o777;
  writeFileSync(file, JSON.stringify(manifest));
  const before = await state(b, 'tank/dst');
  await t.throwsAsync(b.driver.receive('tank/dst', a.driver.send('tank/src', 's2', { from: 's1', recursive: false }), { force: true, recursive: false }), {
    message: /rebuilt from this appliance's copy of @s1 does not match the sender's/,
  });
  await assertUnchanged(t, b, 'tank/dst', before);
});

test('a stream of another format version, or not a stream at all, is refused before anything happens', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/src');
  await writeTree(a.live('tank/src'), { f: 'one' });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  const full = await collect(a.driver.send('tank/src', 's1', { recursive: false }));
  const newer = Buffer.from(full);
  newer.writeUInt32BE(6, 8);
  await t.throwsAsync(b.driver.receive('tank/dst', Readable.from([newer]), { force: false, recursive: false }), {
    message: 'The stream has format version 6, but this syncsh reads versions 2 to 5 only; run the same syncsh version on both appliances. Nothing was changed on fs dataset tank/dst.',
  });
  await t.throwsAsync(b.driver.receive('tank/dst', Readable.from([Buffer.from('#!/bin/sh\necho not a stream\n')]), { force: false, recursive: false }), {
    message: /This is not a syncsh fs send stream/,
  });
  t.is(await b.driver.getDataset('tank/dst'), null);
  t.false(existsSync(b.live('tank/dst')));
});

test('replication reverses: the destination can send its changes back from the common snapshot', async (t) => {
  const { a, b } = await twoAppliances(t);
  await a.driver.createDataset('tank/data');
  await writeTree(a.live('tank/data'), { f: randomBytes(2 << 20), 'd/g': 'g' });
  await a.driver.createSnapshot('tank/data', 's1', { recursive: false });
  await b.driver.receive('tank/data', a.driver.send('tank/data', 's1', { recursive: false }), { force: false, recursive: false });
  // Failover: b becomes the source and is written to.
  writeFileSync(path.join(b.live('tank/data'), 'd/g'), 'changed on b');
  writeFileSync(path.join(b.live('tank/data'), 'new-on-b'), randomBytes(1000));
  const s2 = await b.driver.createSnapshot('tank/data', 's2', { recursive: false });
  const back = await collect(b.driver.send('tank/data', 's2', { from: 's1', recursive: false }));
  t.true(back.length < 64 * 1024, `only the changes travel back: ${back.length} bytes`);
  await a.driver.receive('tank/data', Readable.from([back]), { force: false, recursive: false });
  t.deepEqual(diffTrees(await readTree(b.live('tank/data')), await readTree(a.live('tank/data'))), []);
  t.deepEqual(
    (await a.driver.listSnapshots('tank/data')).map((s) => s.id),
    [(await a.driver.listSnapshots('tank/data'))[0].id, s2.id],
  );
});

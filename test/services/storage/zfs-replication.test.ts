/** ZFS send/receive against real ZFS: full, incremental, recursive, cut streams, force, space. */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createZfsDriver, ZfsError } from '../../../src/services/storage/zfs/index.js';
import { abortAfterFirstChunk, cutAfter, replicationWith } from '../../helpers/replication.js';
import { gatedTest } from '../../helpers/system.js';
import { makeZfsPool, zfsMissing } from '../../helpers/zfs-pool.js';

const zfsTest = await gatedTest(['ZFS (zfs-fuse)'], zfsMissing);
const driver = createZfsDriver();
const once = { recursive: false, force: false } as const;
const { replicate, ids } = replicationWith(driver);

async function dirOf(name: string): Promise<string> {
  const info = await driver.getDataset(name);
  if (!info?.mountpoint) throw new Error(`${name} is not mounted`);
  return info.mountpoint;
}

const userProp = async (property: string, name: string) => (await execa('zfs', ['get', '-H', '-o', 'value', property, name])).stdout.trim();

zfsTest('full then incremental: the delta arrives with writes, deletes and renames, guids match', async (t) => {
  const [a, b] = await Promise.all([makeZfsPool(t), makeZfsPool(t)]);
  const src = `${a.name}/src`;
  const dst = `${b.name}/dst`;
  await driver.createDataset(src);
  const srcDir = await dirOf(src);
  writeFileSync(path.join(srcDir, 'keep.txt'), 'kept');
  writeFileSync(path.join(srcDir, 'gone.txt'), 'to be deleted');
  writeFileSync(path.join(srcDir, 'old-name.txt'), 'to be renamed');
  mkdirSync(path.join(srcDir, 'dir'));
  writeFileSync(path.join(srcDir, 'dir', 'inner.bin'), randomBytes(300_000));
  await execa('zfs', ['set', 'syncsh:owner=ops', src]);
  await driver.createSnapshot(src, 's1', { recursive: false });

  const full = await replicate(src, 's1', dst);
  t.is(full.snapshot.name, 's1');
  t.is(full.snapshot.dataset, dst);
  t.true(full.bytes > 300_000);
  t.deepEqual(await ids(dst), await ids(src));
  const dstDir = await dirOf(dst);
  t.is(readFileSync(path.join(dstDir, 'old-name.txt'), 'utf8'), 'to be renamed');
  t.deepEqual(readFileSync(path.join(dstDir, 'dir', 'inner.bin')), readFileSync(path.join(srcDir, 'dir', 'inner.bin')));
  t.is(await userProp('syncsh:owner', dst), 'ops', 'a user property travels with send -p');

  unlinkSync(path.join(srcDir, 'gone.txt'));
  renameSync(path.join(srcDir, 'old-name.txt'), path.join(srcDir, 'new-name.txt'));
  writeFileSync(path.join(srcDir, 'keep.txt'), 'kept, then changed');
  await driver.createSnapshot(src, 's2', { recursive: false });
  await driver.createSnapshot(src, 's3', { recursive: false });

  const incremental = await replicate(src, 's3', dst, { from: 's1' });
  t.is(incremental.snapshot.name, 's3');
  t.true(incremental.bytes < full.bytes, 'only the delta travels');
  t.deepEqual(await ids(dst), await ids(src), 'the snapshots in between travel too, with their guids');
  t.false(existsSync(path.join(dstDir, 'gone.txt')));
  t.false(existsSync(path.join(dstDir, 'old-name.txt')));
  t.is(readFileSync(path.join(dstDir, 'new-name.txt'), 'utf8'), 'to be renamed');
  t.is(readFileSync(path.join(dstDir, 'keep.txt'), 'utf8'), 'kept, then changed');
  t.false(await driver.changedSince(dst, 's3'));
});

zfsTest('without send -p, plain streams: an -I incremental still lands on its last snapshot', async (t) => {
  const pool = await makeZfsPool(t);
  const plain = createZfsDriver({ features: { sendProperties: false } });
  const src = `${pool.name}/src`;
  const dst = `${pool.name}/dst`;
  await plain.createDataset(src);
  await plain.createSnapshot(src, 's1', { recursive: false });
  await plain.receive(dst, plain.send(src, 's1', once), once);
  writeFileSync(path.join(await dirOf(src), 'a.txt'), 'a');
  await plain.createSnapshot(src, 's2', { recursive: false });
  writeFileSync(path.join(await dirOf(src), 'b.txt'), 'b');
  await plain.createSnapshot(src, 's3', { recursive: false });
  const received = await plain.receive(dst, plain.send(src, 's3', { ...once, from: 's1' }), once);
  t.is(received.snapshot.name, 's3');
  t.deepEqual(await ids(dst), await ids(src));
  t.is(readFileSync(path.join(await dirOf(dst), 'b.txt'), 'utf8'), 'b');
});

zfsTest('recursive: tank/src -> backup/dst maps the children, their properties and new children', async (t) => {
  const [a, b] = await Promise.all([makeZfsPool(t), makeZfsPool(t)]);
  const src = `${a.name}/src`;
  const dst = `${b.name}/backup/dst`;
  await driver.createDataset(`${src}/a/deeper`, { parents: true });
  await driver.createDataset(`${b.name}/backup`);
  writeFileSync(path.join(await dirOf(`${src}/a/deeper`), 'f.txt'), 'deep');
  await execa('zfs', ['set', 'syncsh:role=child', `${src}/a`]);
  await driver.createSnapshot(src, 'r1', { recursive: true });

  const full = await replicate(src, 'r1', dst, { recursive: true });
  t.is(full.snapshot.name, 'r1');
  t.deepEqual(
    (await driver.listDatasets(dst)).map((d) => d.name),
    [dst, `${dst}/a`, `${dst}/a/deeper`],
  );
  t.is(readFileSync(path.join(await dirOf(`${dst}/a/deeper`), 'f.txt'), 'utf8'), 'deep');
  t.is(await userProp('syncsh:role', `${dst}/a`), 'child');
  t.deepEqual(await ids(`${dst}/a/deeper`), await ids(`${src}/a/deeper`));

  await driver.createDataset(`${src}/b`);
  writeFileSync(path.join(await dirOf(`${src}/b`), 'new.txt'), 'new child');
  writeFileSync(path.join(await dirOf(`${src}/a/deeper`), 'f.txt'), 'deeper still');
  await driver.createSnapshot(src, 'r2', { recursive: true });
  const incremental = await replicate(src, 'r2', dst, { recursive: true, from: 'r1' });
  t.is(incremental.snapshot.name, 'r2');
  t.is(readFileSync(path.join(await dirOf(`${dst}/b`), 'new.txt'), 'utf8'), 'new child');
  t.is(readFileSync(path.join(await dirOf(`${dst}/a/deeper`), 'f.txt'), 'utf8'), 'deeper still');
  t.deepEqual(await ids(`${dst}/b`), await ids(`${src}/b`));
});

zfsTest('a cut stream leaves the destination at its previous snapshot; recover, then the next sends work', async (t) => {
  const [a, b] = await Promise.all([makeZfsPool(t), makeZfsPool(t)]);
  const src = `${a.name}/src`;
  const dst = `${b.name}/dst`;
  await driver.createDataset(src);
  const srcDir = await dirOf(src);
  writeFileSync(path.join(srcDir, 'first.bin'), randomBytes(1_000_000));
  await driver.createSnapshot(src, 's1', { recursive: false });

  // a cut full stream leaves nothing behind
  const cutFull = driver.receive(dst, cutAfter(driver.send(src, 's1', once), 400_000), once);
  await t.throwsAsync(cutFull, { instanceOf: ZfsError, message: `Receiving into '${dst}' failed: The stream was cut short or is corrupt. Nothing was left behind.` });
  t.is(await driver.getDataset(dst), null);
  t.deepEqual(await driver.recover(dst), []);
  await replicate(src, 's1', dst);

  writeFileSync(path.join(srcDir, 'second.bin'), randomBytes(2_000_000));
  await driver.createSnapshot(src, 's2', { recursive: false });
  const cutIncremental = driver.receive(dst, cutAfter(driver.send(src, 's2', { ...once, from: 's1' }), 1_000_000), once);
  await t.throwsAsync(cutIncremental, { message: new RegExp(`'${dst}' was left at its previous snapshot 's1'`) });
  t.deepEqual(
    (await driver.listSnapshots(dst)).map((s) => s.name),
    ['s1'],
  );
  t.false(existsSync(path.join(await dirOf(dst), 'second.bin')));
  t.false(await driver.changedSince(dst, 's1'));
  t.log('recover:', await driver.recover(dst));

  const next = await replicate(src, 's2', dst, { from: 's1' });
  t.is(next.snapshot.id, (await driver.listSnapshots(src)).at(-1)!.id);
  t.deepEqual(readFileSync(path.join(await dirOf(dst), 'second.bin')), readFileSync(path.join(srcDir, 'second.bin')));
});

zfsTest('a cut recursive stream is undone in every child', async (t) => {
  const [a, b] = await Promise.all([makeZfsPool(t), makeZfsPool(t)]);
  const src = `${a.name}/src`;
  const dst = `${b.name}/dst`;
  await driver.createDataset(`${src}/a`, { parents: true });
  await driver.createDataset(`${src}/b`);
  await driver.createSnapshot(src, 'r1', { recursive: true });
  await replicate(src, 'r1', dst, { recursive: true });
  // `a` and `b` both change; the cut falls inside `b`, after `src` and `a` were received whole
  writeFileSync(path.join(await dirOf(`${src}/a`), 'small.txt'), 'small');
  await driver.createDataset(`${src}/c`);
  writeFileSync(path.join(await dirOf(`${src}/b`), 'big.bin'), randomBytes(3_000_000));
  await driver.createSnapshot(src, 'r2', { recursive: true });

  const stream = cutAfter(driver.send(src, 'r2', { recursive: true, from: 'r1' }), 1_500_000);
  await t.throwsAsync(driver.receive(dst, stream, { recursive: true, force: false }), { message: /was left at its previous snapshot 'r1'/ });
  for (const child of [dst, `${dst}/a`, `${dst}/b`]) {
    t.deepEqual(
      (await driver.listSnapshots(child)).map((s) => s.name),
      ['r1'],
      child,
    );
  }
  t.is(await driver.getDataset(`${dst}/c`), null);
  t.false(existsSync(path.join(await dirOf(`${dst}/a`), 'small.txt')));

  await replicate(src, 'r2', dst, { recursive: true, from: 'r1' });
  t.is(readFileSync(path.join(await dirOf(`${dst}/a`), 'small.txt'), 'utf8'), 'small');
});

zfsTest('a destination changed since its newest snapshot is refused without force, overwritten with it', async (t) => {
  const [a, b] = await Promise.all([makeZfsPool(t), makeZfsPool(t)]);
  const src = `${a.name}/src`;
  const dst = `${b.name}/dst`;
  await driver.createDataset(src);
  writeFileSync(path.join(await dirOf(src), 'a.txt'), 'from the source');
  await driver.createSnapshot(src, 's1', { recursive: false });
  await replicate(src, 's1', dst);
  writeFileSync(path.join(await dirOf(dst), 'local.txt'), 'written on the destination');
  writeFileSync(path.join(await dirOf(src), 'a.txt'), 'changed at the source');
  await driver.createSnapshot(src, 's2', { recursive: false });

  await t.throwsAsync(replicate(src, 's2', dst, { from: 's1' }), {
    message: `The destination '${dst}' has been changed since its newest snapshot 's1'; receiving would discard those changes, so it is refused without force.`,
  });
  t.true(existsSync(path.join(await dirOf(dst), 'local.txt')), 'refused before touching anything');
  await t.throwsAsync(replicate(src, 's1', dst), { message: `The destination '${dst}' already exists; receiving a full stream would replace it, which needs force.` });

  const forced = await replicate(src, 's2', dst, { from: 's1', force: true });
  t.is(forced.snapshot.name, 's2');
  t.false(existsSync(path.join(await dirOf(dst), 'local.txt')));
  t.is(readFileSync(path.join(await dirOf(dst), 'a.txt'), 'utf8'), 'changed at the source');
});

zfsTest('running out of space mid-receive says so and leaves the destination at its previous snapshot', async (t) => {
  const [a, small] = await Promise.all([makeZfsPool(t), makeZfsPool(t, { size: 64 * 1024 * 1024 })]);
  const src = `${a.name}/src`;
  const dst = `${small.name}/dst`;
  await driver.createDataset(src);
  writeFileSync(path.join(await dirOf(src), 'small.txt'), 'fits');
  await driver.createSnapshot(src, 's1', { recursive: false });
  await replicate(src, 's1', dst);
  writeFileSync(path.join(await dirOf(src), 'big.bin'), randomBytes(40 * 1024 * 1024)); // the small pool has ~27 MiB free
  await driver.createSnapshot(src, 's2', { recursive: false });

  const error = await t.throwsAsync(replicate(src, 's2', dst, { from: 's1' }), { instanceOf: ZfsError });
  t.is(error!.message, `Receiving into '${dst}' failed: The pool '${small.name}' ran out of space. '${dst}' was left at its previous snapshot 's1'.`);
  t.is((error as ZfsError).code, 'no-space');
  t.deepEqual(
    (await driver.listSnapshots(dst)).map((s) => s.name),
    ['s1'],
  );
  t.false(existsSync(path.join(await dirOf(dst), 'big.bin')));
  t.false(await driver.changedSince(dst, 's1'));
});

zfsTest('send failures and aborts surface as stream errors; garbage is refused before receiving', async (t) => {
  const pool = await makeZfsPool(t);
  const src = `${pool.name}/src`;
  await driver.createDataset(src);
  await driver.createSnapshot(src, 's1', { recursive: false });

  const missing = driver.send(src, 'nope', once);
  await t.throwsAsync(
    async () => {
      for await (const _ of missing) void _;
    },
    { message: new RegExp(`Sending '${src}@nope' failed: The snapshot '${src}@nope' does not exist`) },
  );

  const controller = new AbortController();
  writeFileSync(path.join(await dirOf(src), 'big.bin'), randomBytes(4_000_000));
  await driver.createSnapshot(src, 's2', { recursive: false });
  const aborted = driver.send(src, 's2', { recursive: false, signal: controller.signal });
  const reading = (async () => {
    for await (const _ of aborted) controller.abort();
  })();
  await t.throwsAsync(reading, { name: 'AbortError' });
  // the sender was killed, not left running
  const senders = await execa('pgrep', ['-f', `zfs send.*${src}@s2`], { reject: false });
  t.is(senders.stdout.trim(), '');

  await t.throwsAsync(driver.receive(`${pool.name}/junk`, Readable.from([Buffer.alloc(1000, 7)]), once), {
    message: 'The stream is not a ZFS send stream.',
  });
  await t.throwsAsync(driver.receive(`${pool.name}/junk`, Readable.from([Buffer.from('short')]), once), {
    message: /The stream ended after 5 bytes/,
  });
  await t.throwsAsync(driver.receive(`${pool.name}/no/parent`, driver.send(src, 's1', once), once), {
    message: `The parent dataset '${pool.name}/no' of the destination '${pool.name}/no/parent' does not exist.`,
  });
  await t.throwsAsync(driver.receive(`${pool.name}/fresh`, driver.send(src, 's2', { ...once, from: 's1' }), once), {
    message: `The destination '${pool.name}/fresh' does not exist; an incremental stream needs its base snapshot there.`,
  });
  // an aborted receive leaves nothing
  const abortReceive = new AbortController();
  const slow = abortAfterFirstChunk(driver.send(src, 's2', once), abortReceive);
  const receiveError = await t.throwsAsync(driver.receive(`${pool.name}/copy`, slow, { ...once, signal: abortReceive.signal }));
  t.is((receiveError as ZfsError).code, 'aborted');
  t.deepEqual(
    (await driver.listDatasets(pool.name)).map((d) => d.name),
    [pool.name, src],
  );
});

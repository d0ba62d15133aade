/** btrfs send/receive against real btrfs: full, incremental, identity, cut streams, force, space. */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { BtrfsError, createBtrfsDriver } from '../../../src/services/storage/btrfs/index.js';
import { btrfsMissing, makeBtrfsVolume } from '../../helpers/btrfs-volume.js';
import { abortAfterFirstChunk, cutAfter, replicationWith } from '../../helpers/replication.js';
import { gatedTest } from '../../helpers/system.js';

const btrfsTest = await gatedTest(['btrfs (btrfs-progs, loop devices)'], btrfsMissing);
const driver = createBtrfsDriver();
const once = { recursive: false, force: false } as const;
const { replicate, ids } = replicationWith(driver);

const uuidOf = async (subvolume: string) => (await execa('btrfs', ['subvolume', 'show', subvolume])).stdout.match(/\tUUID:\s*(\S+)/)?.[1] ?? '';

btrfsTest('full then incremental across filesystems: the delta arrives, ids match, received snapshots stay as markers', async (t) => {
  const [a, b] = await Promise.all([makeBtrfsVolume(t), makeBtrfsVolume(t)]);
  const src = path.join(a.mountpoint, 'src');
  const dst = path.join(b.mountpoint, 'dst');
  await driver.createDataset(src);
  writeFileSync(path.join(src, 'keep.txt'), 'kept');
  writeFileSync(path.join(src, 'gone.txt'), 'to be deleted');
  writeFileSync(path.join(src, 'old-name.txt'), 'to be renamed');
  mkdirSync(path.join(src, 'dir'));
  writeFileSync(path.join(src, 'dir', 'inner.bin'), randomBytes(300_000));
  await driver.createSnapshot(src, 's1', { recursive: false });

  const full = await replicate(src, 's1', dst);
  t.like(full.snapshot, { dataset: dst, name: 's1', held: false });
  t.true(full.bytes > 300_000);
  t.is(full.snapshot.id, await uuidOf(path.join(a.mountpoint, '.syncsh-snapshots', 'src', 's1')), "the receiver's id is the sender's uuid");
  t.deepEqual(await ids(dst), await ids(src));
  t.like(await driver.getDataset(dst), { kind: 'filesystem', mounted: true, readonly: false });
  t.deepEqual(readFileSync(path.join(dst, 'dir', 'inner.bin')), readFileSync(path.join(src, 'dir', 'inner.bin')));
  t.false(await driver.changedSince(dst, 's1'));

  unlinkSync(path.join(src, 'gone.txt'));
  renameSync(path.join(src, 'old-name.txt'), path.join(src, 'new-name.txt'));
  writeFileSync(path.join(src, 'keep.txt'), 'kept, then changed');
  await driver.createSnapshot(src, 's2', { recursive: false });
  const incremental = await replicate(src, 's2', dst, { from: 's1' });
  t.is(incremental.snapshot.name, 's2');
  t.true(incremental.bytes < full.bytes / 2, 'only the delta travels');
  t.deepEqual(await ids(dst), await ids(src));
  t.false(existsSync(path.join(dst, 'gone.txt')));
  t.false(existsSync(path.join(dst, 'old-name.txt')));
  t.is(readFileSync(path.join(dst, 'new-name.txt'), 'utf8'), 'to be renamed');
  t.is(readFileSync(path.join(dst, 'keep.txt'), 'utf8'), 'kept, then changed');
  t.false(await driver.changedSince(dst, 's2'));
  t.deepEqual(readdirSync(b.mountpoint).sort(), ['.syncsh-snapshots', 'dst'], 'no swap leftovers');

  // and back again (reverse direction): the destination's received snapshot is a valid base
  writeFileSync(path.join(dst, 'from-the-other-side.txt'), 'hello');
  await driver.createSnapshot(dst, 'back1', { recursive: false });
  await replicate(dst, 'back1', src, { from: 's2' });
  t.is(readFileSync(path.join(src, 'from-the-other-side.txt'), 'utf8'), 'hello');
  t.deepEqual((await ids(src)).at(-1), (await ids(dst)).at(-1));
});

btrfsTest('a cut stream leaves the destination untouched; recover, then the next sends work', async (t) => {
  const [a, b] = await Promise.all([makeBtrfsVolume(t), makeBtrfsVolume(t)]);
  const src = path.join(a.mountpoint, 'src');
  const dst = path.join(b.mountpoint, 'dst');
  await driver.createDataset(src);
  writeFileSync(path.join(src, 'first.bin'), randomBytes(1_000_000));
  await driver.createSnapshot(src, 's1', { recursive: false });

  await t.throwsAsync(driver.receive(dst, cutAfter(driver.send(src, 's1', once), 400_000), once), {
    instanceOf: BtrfsError,
    message: `Receiving into '${dst}' failed: The stream was cut short or is corrupt. Nothing was left behind.`,
  });
  t.is(await driver.getDataset(dst), null);
  t.deepEqual(readdirSync(path.join(b.mountpoint, '.syncsh-snapshots', 'dst')), [], 'the partial subvolume is gone');
  await replicate(src, 's1', dst);
  const liveBefore = await uuidOf(dst);

  writeFileSync(path.join(src, 'second.bin'), randomBytes(2_000_000));
  await driver.createSnapshot(src, 's2', { recursive: false });
  await t.throwsAsync(driver.receive(dst, cutAfter(driver.send(src, 's2', { ...once, from: 's1' }), 1_000_000), once), {
    message: `Receiving into '${dst}' failed: The stream was cut short or is corrupt. '${dst}' was left at its previous snapshot 's1'.`,
  });
  t.is(await uuidOf(dst), liveBefore, 'the live subvolume was not touched');
  t.false(existsSync(path.join(dst, 'second.bin')));
  t.deepEqual(
    (await driver.listSnapshots(dst)).map((s) => s.name),
    ['s1'],
  );

  // what recover cleans: a partial receive and a probe left by a crash
  const snapshots = path.join(b.mountpoint, '.syncsh-snapshots', 'dst');
  await execa('btrfs', ['subvolume', 'create', path.join(snapshots, 's2')]);
  await execa('btrfs', ['subvolume', 'snapshot', '-r', dst, path.join(snapshots, '.probe-deadbeef')]);
  t.deepEqual(await driver.recover(dst), [`deleted the leftover change probe '${snapshots}/.probe-deadbeef'`, `deleted the partial receive '${snapshots}/s2'`]);
  t.deepEqual(await driver.recover(dst), []);

  const next = await replicate(src, 's2', dst, { from: 's1' });
  t.is(next.snapshot.id, (await driver.listSnapshots(src)).at(-1)!.id);
  t.deepEqual(readFileSync(path.join(dst, 'second.bin')), readFileSync(path.join(src, 'second.bin')));
});

btrfsTest('a destination changed since its newest snapshot is refused without force, replaced with it', async (t) => {
  const vol = await makeBtrfsVolume(t);
  const src = path.join(vol.mountpoint, 'src');
  const dst = path.join(vol.mountpoint, 'dst');
  await driver.createDataset(src);
  writeFileSync(path.join(src, 'a.txt'), 'from the source');
  await driver.createSnapshot(src, 's1', { recursive: false });
  await replicate(src, 's1', dst);
  writeFileSync(path.join(dst, 'local.txt'), 'written on the destination');
  writeFileSync(path.join(src, 'a.txt'), 'changed at the source');
  await driver.createSnapshot(src, 's2', { recursive: false });

  await t.throwsAsync(replicate(src, 's2', dst, { from: 's1' }), {
    message: `The destination '${dst}' has been changed since its newest snapshot 's1'; receiving would discard those changes, so it is refused without force.`,
  });
  t.true(existsSync(path.join(dst, 'local.txt')));
  await t.throwsAsync(replicate(src, 's2', dst), { message: `The destination '${dst}' already exists; receiving a full stream would replace it, which needs force.` });

  const forced = await replicate(src, 's2', dst, { from: 's1', force: true });
  t.is(forced.snapshot.name, 's2');
  t.false(existsSync(path.join(dst, 'local.txt')));
  t.is(readFileSync(path.join(dst, 'a.txt'), 'utf8'), 'changed at the source');

  // an incremental whose base the destination lacks, and a snapshot it already has
  await driver.createSnapshot(src, 's3', { recursive: false });
  await driver.destroySnapshot(dst, 's2', { recursive: false });
  await t.throwsAsync(replicate(src, 's3', dst, { from: 's2' }), { message: /does not hold the base snapshot of this incremental stream/ });
  await t.throwsAsync(replicate(src, 's1', dst, { force: true }), { message: `The destination '${dst}' already has a snapshot named 's1'.` });
});

btrfsTest('running out of space mid-receive says so and leaves the destination at its previous snapshot', async (t) => {
  const [a, small] = await Promise.all([makeBtrfsVolume(t), makeBtrfsVolume(t, { size: 128 * 1024 * 1024 })]);
  const src = path.join(a.mountpoint, 'src');
  const dst = path.join(small.mountpoint, 'dst');
  await driver.createDataset(src);
  writeFileSync(path.join(src, 'small.txt'), 'fits');
  await driver.createSnapshot(src, 's1', { recursive: false });
  await replicate(src, 's1', dst);
  writeFileSync(path.join(src, 'big.bin'), randomBytes(150 * 1024 * 1024));
  await driver.createSnapshot(src, 's2', { recursive: false });

  const error = await t.throwsAsync(replicate(src, 's2', dst, { from: 's1' }), { instanceOf: BtrfsError });
  t.is(error!.message, `Receiving into '${dst}' failed: The filesystem holding '${dst}' ran out of space. '${dst}' was left at its previous snapshot 's1'.`);
  t.is((error as BtrfsError).code, 'no-space');
  t.deepEqual(
    (await driver.listSnapshots(dst)).map((s) => s.name),
    ['s1'],
  );
  t.false(existsSync(path.join(dst, 'big.bin')));
  t.false(await driver.changedSince(dst, 's1'));
});

btrfsTest('send failures and aborts surface as stream errors; garbage is refused before receiving', async (t) => {
  const vol = await makeBtrfsVolume(t);
  const src = path.join(vol.mountpoint, 'src');
  await driver.createDataset(src);
  writeFileSync(path.join(src, 'big.bin'), randomBytes(4_000_000));
  await driver.createSnapshot(src, 's1', { recursive: false });

  await t.throwsAsync(
    async () => {
      for await (const _ of driver.send(src, 'nope', once)) void _;
    },
    { message: new RegExp(`Sending snapshot 'nope' of '${src}' failed`) },
  );
  const controller = new AbortController();
  const reading = (async () => {
    for await (const _ of driver.send(src, 's1', { recursive: false, signal: controller.signal })) controller.abort();
  })();
  await t.throwsAsync(reading, { name: 'AbortError' });

  const dst = path.join(vol.mountpoint, 'dst');
  await t.throwsAsync(driver.receive(dst, Readable.from([Buffer.alloc(1000, 7)]), once), { message: 'The stream is not a btrfs send stream.' });
  await t.throwsAsync(driver.receive(dst, Readable.from([Buffer.from('btrfs')]), once), { message: /The stream ended after 5 bytes/ });
  await t.throwsAsync(driver.receive(path.join(vol.mountpoint, 'no', 'dst'), driver.send(src, 's1', once), once), {
    message: `The directory '${vol.mountpoint}/no' does not exist.`,
  });

  // an aborted receive leaves nothing
  const abortReceive = new AbortController();
  const slow = abortAfterFirstChunk(driver.send(src, 's1', once), abortReceive);
  const aborted = await t.throwsAsync(driver.receive(dst, slow, { ...once, signal: abortReceive.signal }));
  t.is((aborted as BtrfsError).code, 'aborted');
  t.is(await driver.getDataset(dst), null);
  t.deepEqual(readdirSync(path.join(vol.mountpoint, '.syncsh-snapshots', 'dst')), []);
});

btrfsTest('a receive killed after its snapshot arrived but before the swap: recover makes the live subvolume that snapshot; one written to since is left for the run to refuse', async (t) => {
  const [a, b] = await Promise.all([makeBtrfsVolume(t), makeBtrfsVolume(t)]);
  const src = path.join(a.mountpoint, 'src');
  const dst = path.join(b.mountpoint, 'dst');
  const snaps = (dataset: string) => path.join(path.dirname(dataset), '.syncsh-snapshots', path.basename(dataset));
  await driver.createDataset(src);
  writeFileSync(path.join(src, 'a.txt'), 'first');
  await driver.createSnapshot(src, 's1', { recursive: false });
  await replicate(src, 's1', dst);
  // as kill -9 leaves it (kill-9/btrfs/local, seed 204, trial 66): s2 received, the live dst still s1's copy
  const deltaTo = async (name: string, from: string) => {
    await driver.createSnapshot(src, name, { recursive: false });
    await execa('btrfs', ['send', '-q', '-p', path.join(snaps(src), from), path.join(snaps(src), name)]).pipe('btrfs', ['receive', '-e', snaps(dst)]);
  };
  writeFileSync(path.join(src, 'a.txt'), 'second');
  await deltaTo('s2', 's1');
  t.true(await driver.changedSince(dst, 's2'), 'before recover the live dst is behind its newest snapshot');
  t.deepEqual(await driver.recover(dst), [`finished an interrupted receive: the live '${dst}' is 's2' now (it was still its untouched older snapshot)`]);
  t.is(readFileSync(path.join(dst, 'a.txt'), 'utf8'), 'second');
  t.false(await driver.changedSince(dst, 's2'));
  t.deepEqual(await driver.recover(dst), [], 'nothing more to do');
  writeFileSync(path.join(src, 'a.txt'), 'third');
  await driver.createSnapshot(src, 's3', { recursive: false });
  await replicate(src, 's3', dst, { from: 's2' });
  t.is(readFileSync(path.join(dst, 'a.txt'), 'utf8'), 'third', 'the next incremental goes through');

  // the same state, but someone wrote to the live dst meanwhile: not recover's to discard
  writeFileSync(path.join(src, 'a.txt'), 'fourth');
  await deltaTo('s4', 's3');
  writeFileSync(path.join(dst, 'local.txt'), 'written on the destination');
  t.deepEqual(await driver.recover(dst), []);
  t.is(readFileSync(path.join(dst, 'local.txt'), 'utf8'), 'written on the destination');
  t.true(await driver.changedSince(dst, 's4'));
});

/** btrfs driver against a real loop-mounted btrfs: subvolumes, snapshots, holds, rollback, names. */
import { execa } from 'execa';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createBtrfsDriver } from '../../../src/services/storage/btrfs/index.js';
import { btrfsMissing, makeBtrfsVolume } from '../../helpers/btrfs-volume.js';
import { gatedTest } from '../../helpers/system.js';

const btrfsTest = await gatedTest(['btrfs (btrfs-progs, loop devices)'], btrfsMissing);
const driver = createBtrfsDriver();

const show = async (subvolume: string, field: string): Promise<string> => (await execa('btrfs', ['subvolume', 'show', subvolume])).stdout.match(new RegExp(`${field}:\\s*(\\S+)`))?.[1] ?? '';

btrfsTest('creates, lists, finds and destroys subvolumes', async (t) => {
  const { mountpoint: mnt } = await makeBtrfsVolume(t);
  t.is(await driver.unavailableReason(), null);
  const data = path.join(mnt, 'data');
  t.like(await driver.createDataset(data), { name: data, kind: 'filesystem', mountpoint: data, mounted: true, readonly: false });
  await driver.createDataset(path.join(mnt, 'group', 'inner'), { parents: true });
  await driver.createSnapshot(data, 's1', { recursive: false });
  t.deepEqual(
    (await driver.listDatasets(mnt)).map((d) => d.name),
    [data, path.join(mnt, 'group', 'inner')],
    'snapshots are not datasets',
  );
  t.true(
    (await driver.listDatasets()).some((d) => d.name === data),
    'without a root: every btrfs mount',
  );

  await t.throwsAsync(driver.createDataset(data), { message: `The subvolume '${data}' already exists.` });
  await t.throwsAsync(driver.createDataset(path.join(mnt, 'nope', 'x')), { message: `The directory '${mnt}/nope' does not exist.` });
  await t.throwsAsync(driver.getDataset('/proc/x'), { message: "The directory '/proc' is not on a btrfs filesystem." });
  t.is(await driver.getDataset(path.join(mnt, 'missing')), null);
  writeFileSync(path.join(mnt, 'plain'), '');
  await t.throwsAsync(driver.getDataset(path.join(mnt, 'plain')), { message: `'${mnt}/plain' is not a btrfs subvolume.` });

  await t.throwsAsync(driver.destroyDataset(data), { message: /has snapshots or nested subvolumes; destroy it recursively/ });
  await driver.createDataset(path.join(data, 'nested'));
  await driver.destroyDataset(data, { recursive: true });
  t.is(await driver.getDataset(data), null);
  t.false(existsSync(path.join(mnt, '.syncsh-snapshots', 'data')));
  await driver.destroyDataset(path.join(mnt, 'group', 'inner'));
  t.deepEqual(await driver.listDatasets(mnt), []);
});

btrfsTest('a volume is a subvolume holding one image file', async (t) => {
  const { mountpoint: mnt } = await makeBtrfsVolume(t);
  const volume = path.join(mnt, 'vol');
  t.like(await driver.createDataset(volume, { volumeSize: 32 * 1024 * 1024 }), { kind: 'volume', volsize: 32 * 1024 * 1024, mountpoint: null });
  writeFileSync(path.join(volume, '.syncsh-volume.img'), Buffer.alloc(4096, 1), { flag: 'r+' });
  await driver.createSnapshot(volume, 'v1', { recursive: false });
  const copy = path.join(mnt, 'copy');
  const received = await driver.receive(copy, driver.send(volume, 'v1', { recursive: false }), { force: false, recursive: false });
  t.is(received.snapshot.id, (await driver.listSnapshots(volume))[0]!.id);
  t.like(await driver.getDataset(copy), { kind: 'volume', volsize: 32 * 1024 * 1024 });
  t.deepEqual(readFileSync(path.join(copy, '.syncsh-volume.img')).subarray(0, 4096), Buffer.alloc(4096, 1));
});

btrfsTest('snapshots: uuid identity, order, the layout, recursive refused', async (t) => {
  const { mountpoint: mnt } = await makeBtrfsVolume(t);
  const data = path.join(mnt, 'data');
  await driver.createDataset(data);
  const first = await driver.createSnapshot(data, 'first', { recursive: false });
  const snapshotDir = path.join(mnt, '.syncsh-snapshots', 'data');
  t.like(first, { dataset: data, name: 'first', held: false });
  t.is(first.id, await show(path.join(snapshotDir, 'first'), 'UUID'));
  await driver.createSnapshot(data, 'b-second', { recursive: false });
  await driver.createSnapshot(data, 'a-third', { recursive: false });
  t.deepEqual(
    (await driver.listSnapshots(data)).map((s) => s.name),
    ['first', 'b-second', 'a-third'],
  );
  t.deepEqual(readdirSync(snapshotDir).sort(), ['a-third', 'b-second', 'first']);
  await t.throwsAsync(driver.createSnapshot(data, 'first', { recursive: false }), { message: `The snapshot 'first' of '${data}' already exists.` });
  await t.throwsAsync(driver.createSnapshot(data, 'r', { recursive: true }), { message: /does not do recursive snapshots or sends/ });
  t.throws(() => driver.send(data, 'first', { recursive: true }), { message: /does not do recursive snapshots or sends/ });
  await driver.destroySnapshot(data, 'b-second', { recursive: false });
  t.deepEqual(
    (await driver.listSnapshots(data)).map((s) => s.name),
    ['first', 'a-third'],
  );
  await t.throwsAsync(driver.destroySnapshot(data, 'gone', { recursive: false }), { message: `The snapshot 'gone' of '${data}' does not exist.` });
});

btrfsTest('a held snapshot cannot be destroyed, rolled past or destroyed with its subvolume', async (t) => {
  const { mountpoint: mnt } = await makeBtrfsVolume(t);
  const data = path.join(mnt, 'data');
  await driver.createDataset(data);
  await driver.createSnapshot(data, 'keep', { recursive: false });
  await driver.createSnapshot(data, 'later', { recursive: false });
  await driver.holdSnapshot(data, 'keep', true);
  await driver.holdSnapshot(data, 'later', true);
  t.deepEqual(
    (await driver.listSnapshots(data)).map((s) => s.held),
    [true, true],
  );
  await t.throwsAsync(driver.destroySnapshot(data, 'keep', { recursive: false }), {
    message: `The snapshot 'keep' of '${data}' is held; release it before destroying it.`,
  });
  await t.throwsAsync(driver.destroyDataset(data, { recursive: true }), { message: /is held, so '.*' cannot be destroyed/ });
  await t.throwsAsync(driver.rollback(data, 'keep'), { message: /would destroy the later snapshot 'later', which is held/ });
  await driver.holdSnapshot(data, 'later', false);
  await driver.holdSnapshot(data, 'later', false);
  await driver.destroySnapshot(data, 'later', { recursive: false });
  await driver.holdSnapshot(data, 'keep', false);
  await driver.destroyDataset(data, { recursive: true });
  t.is(await driver.getDataset(data), null);
});

btrfsTest('rollback brings the files back and drops later snapshots; changedSince sees writes, deletes, renames', async (t) => {
  const { mountpoint: mnt } = await makeBtrfsVolume(t);
  const data = path.join(mnt, 'data');
  await driver.createDataset(data);
  writeFileSync(path.join(data, 'a.txt'), 'one');
  writeFileSync(path.join(data, 'b.txt'), 'bee');
  await driver.createSnapshot(data, 's1', { recursive: false });
  t.false(await driver.changedSince(data, 's1'));
  writeFileSync(path.join(data, 'a.txt'), 'two');
  t.true(await driver.changedSince(data, 's1'));
  await driver.createSnapshot(data, 's2', { recursive: false });
  t.false(await driver.changedSince(data, 's2'));
  t.true(await driver.changedSince(data, 's1'), 'an older snapshot still differs');
  unlinkSync(path.join(data, 'b.txt'));
  t.true(await driver.changedSince(data, 's2'));
  await driver.createSnapshot(data, 's3', { recursive: false });
  renameSync(path.join(data, 'a.txt'), path.join(data, 'c.txt'));
  t.true(await driver.changedSince(data, 's3'));

  const before = await show(data, 'UUID');
  await driver.rollback(data, 's1');
  t.not(await show(data, 'UUID'), before, 'the live subvolume was replaced');
  t.is(readFileSync(path.join(data, 'a.txt'), 'utf8'), 'one');
  t.is(readFileSync(path.join(data, 'b.txt'), 'utf8'), 'bee');
  t.false(existsSync(path.join(data, 'c.txt')));
  t.deepEqual(
    (await driver.listSnapshots(data)).map((s) => s.name),
    ['s1'],
  );
  t.false(await driver.changedSince(data, 's1'));
  writeFileSync(path.join(data, 'a.txt'), 'after the rollback');
  t.true(await driver.changedSince(data, 's1'));
  t.deepEqual(readdirSync(mnt).sort(), ['.syncsh-snapshots', 'data'], 'no swap or probe leftovers');
  t.deepEqual(readdirSync(path.join(mnt, '.syncsh-snapshots', 'data')), ['s1']);
});

btrfsTest('unmount fences writes (read-only), mount lifts it', async (t) => {
  const { mountpoint: mnt } = await makeBtrfsVolume(t);
  const data = path.join(mnt, 'data');
  await driver.createDataset(data);
  await driver.unmount(data);
  t.like(await driver.getDataset(data), { mounted: false, readonly: true, mountpoint: null });
  t.throws(() => writeFileSync(path.join(data, 'x'), 'no'), { code: 'EROFS' });
  await driver.mount(data);
  t.like(await driver.getDataset(data), { mounted: true, readonly: false, mountpoint: data });
  writeFileSync(path.join(data, 'x'), 'yes');
});

btrfsTest('recover finishes a swap of the live subvolume cut between its two renames', async (t) => {
  const { mountpoint: mnt } = await makeBtrfsVolume(t);
  const data = path.join(mnt, 'data');
  await driver.createDataset(data);
  writeFileSync(path.join(data, 'a.txt'), 'old live');
  await driver.createSnapshot(data, 's1', { recursive: false });
  // as a crash would leave it: the old live renamed away, the new one not yet in place
  await execa('btrfs', ['subvolume', 'snapshot', path.join(mnt, '.syncsh-snapshots', 'data', 's1'), path.join(mnt, '.syncsh-new-data-0123abcd')]);
  renameSync(data, path.join(mnt, '.syncsh-old-data-89abcdef'));
  t.is(await driver.getDataset(data), null);
  t.deepEqual(await driver.recover(data), [`finished an interrupted swap: '.syncsh-new-data-0123abcd' is the live '${data}' again`, `deleted the swap leftover '${mnt}/.syncsh-old-data-89abcdef'`]);
  t.is(readFileSync(path.join(data, 'a.txt'), 'utf8'), 'old live');
  t.deepEqual(readdirSync(mnt).sort(), ['.syncsh-snapshots', 'data']);
});

btrfsTest('bad names are refused with a sentence before any command runs', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-fakebtrfs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = path.join(dir, 'ran');
  const fake = path.join(dir, 'fake');
  writeFileSync(fake, `#!/bin/sh\necho "$*" >> '${log}'\nexit 1\n`);
  chmodSync(fake, 0o755);
  const spied = createBtrfsDriver({ btrfs: fake });
  const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
    ['relative', () => spied.createDataset('mnt/data'), /"mnt\/data" must be absolute/],
    ['dot-dot', () => spied.getDataset('/mnt/../etc'), /"\/mnt\/..\/etc" contains '..'/],
    ['empty component', () => spied.listSnapshots('/mnt//data'), /"\/mnt\/\/data" has an empty component/],
    ['trailing slash', () => spied.destroyDataset('/mnt/data/'), /has an empty component/],
    ['shell metacharacters', () => spied.createDataset('/mnt/a;reboot'), /has the component "a;reboot"/],
    ['a space', () => spied.mount('/mnt/a b'), /has the component "a b"/],
    ['a leading dash', () => spied.unmount('/mnt/-rf'), /has the component "-rf"/],
    ['reserved', () => spied.getDataset('/mnt/.syncsh-snapshots/x'), /names starting with '.syncsh-' are reserved/],
    ['bad snapshot', () => spied.createSnapshot('/mnt/data', '../x', { recursive: false }), /The snapshot name "..\/x" must not contain '\/'/],
    ['snapshot $()', () => spied.rollback('/mnt/data', '$(id)'), /The snapshot name "\$\(id\)" is not allowed/],
    ['receive target', () => spied.receive('/mnt/`id`', Readable.from([]), { force: false, recursive: false }), /has the component "`id`"/],
    ['recover', () => spied.recover('relative'), /must be absolute/],
  ];
  for (const [what, call, message] of cases) await t.throwsAsync(call(), { message }, what);
  t.throws(() => spied.send('/mnt/data', 'a b', { recursive: false }), { message: /The snapshot name "a b" is not allowed/ });
  t.false(existsSync(log), existsSync(log) ? readFileSync(log, 'utf8') : '');
});

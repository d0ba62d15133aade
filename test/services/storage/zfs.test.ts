/** ZFS driver against real ZFS (zfs-fuse here): datasets, snapshots, holds, rollback, names. */
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import os from 'node:os';
import { Readable } from 'node:stream';
import path from 'node:path';
import { createZfsDriver } from '../../../src/services/storage/zfs/index.js';
import { describeFeatures } from '../../../src/services/storage/zfs/features.js';
import { gatedTest } from '../../helpers/system.js';
import { makeZfsPool, zfsMissing } from '../../helpers/zfs-pool.js';

const zfsTest = await gatedTest(['ZFS (zfs-fuse)'], zfsMissing);
const driver = createZfsDriver();

const zfsGet = async (property: string, name: string) => (await execa('zfs', ['get', '-H', '-p', '-o', 'value', property, name])).stdout.trim();

async function mountpointOf(name: string): Promise<string> {
  const info = await driver.getDataset(name);
  if (!info?.mountpoint) throw new Error(`${name} is not mounted`);
  return info.mountpoint;
}

zfsTest('is usable and reports what this zfs supports', async (t) => {
  const pool = await makeZfsPool(t);
  t.is(await driver.unavailableReason(), null);
  const features = await driver.features();
  t.log(`zfs features: ${describeFeatures(features)} (pool version ${(await execa('zpool', ['get', 'version', pool.name])).stdout.split('\n')[1]?.split(/\s+/)[2]})`);
  t.is(typeof features.hold, 'boolean');
});

zfsTest('creates, lists, finds and destroys datasets', async (t) => {
  const pool = await makeZfsPool(t);
  const created = await driver.createDataset(`${pool.name}/data`);
  t.like(created, { name: `${pool.name}/data`, kind: 'filesystem', mounted: true, readonly: false });
  t.is(created.mountpoint, path.join(pool.mountpoint, 'data'));
  t.true(typeof created.used === 'number');

  await driver.createDataset(`${pool.name}/deep/er/child`, { parents: true });
  const names = (await driver.listDatasets(pool.name)).map((d) => d.name);
  t.deepEqual(names, [pool.name, `${pool.name}/data`, `${pool.name}/deep`, `${pool.name}/deep/er`, `${pool.name}/deep/er/child`]);
  t.deepEqual(
    (await driver.listDatasets(`${pool.name}/deep/er`)).map((d) => d.name),
    [`${pool.name}/deep/er`, `${pool.name}/deep/er/child`],
  );

  await t.throwsAsync(driver.createDataset(`${pool.name}/data`), { message: `The dataset '${pool.name}/data' already exists.` });
  await t.throwsAsync(driver.createDataset(`${pool.name}/nope/child`), {
    message: `The parent dataset '${pool.name}/nope' does not exist.`,
  });
  t.is(await driver.getDataset(`${pool.name}/missing`), null);

  await driver.createSnapshot(`${pool.name}/data`, 's1', { recursive: false });
  await t.throwsAsync(driver.destroyDataset(`${pool.name}/data`), { message: /has snapshots or child datasets; destroy it recursively/ });
  await driver.destroyDataset(`${pool.name}/data`, { recursive: true });
  t.is(await driver.getDataset(`${pool.name}/data`), null);
  await driver.destroyDataset(`${pool.name}/deep`, { recursive: true });
  t.deepEqual(
    (await driver.listDatasets(pool.name)).map((d) => d.name),
    [pool.name],
  );
});

zfsTest('an unknown pool is named as such', async (t) => {
  await makeZfsPool(t); // the daemon must be up for the question to mean anything
  await t.throwsAsync(driver.getDataset('nosuchpool/data'), { message: "The pool 'nosuchpool' does not exist." });
  await t.throwsAsync(driver.createDataset('nosuchpool/data'), { message: "The pool 'nosuchpool' does not exist." });
  await t.throwsAsync(driver.listSnapshots('nosuchpool'), { message: "The pool 'nosuchpool' does not exist." });
});

zfsTest('a volume is a zvol where this ZFS has them, else a clear refusal', async (t) => {
  const pool = await makeZfsPool(t);
  const volume = `${pool.name}/vol`;
  try {
    const created = await driver.createDataset(volume, { volumeSize: 16 * 1024 * 1024 });
    t.like(created, { kind: 'volume', volsize: 16 * 1024 * 1024, mountpoint: null, mounted: false });
    await driver.createSnapshot(volume, 'v1', { recursive: false });
    const received = await driver.receive(`${pool.name}/copy`, driver.send(volume, 'v1', { recursive: false }), { force: false, recursive: false });
    t.is(received.snapshot.id, (await driver.listSnapshots(volume))[0]!.id);
    t.like(await driver.getDataset(`${pool.name}/copy`), { kind: 'volume', volsize: 16 * 1024 * 1024 });
  } catch (error) {
    t.regex((error as Error).message, /does not implement volumes \(zvols\), so '.*\/vol' cannot be created/);
    t.is(await driver.getDataset(volume), null);
    t.log('this ZFS has no zvols: the refusal was checked instead');
  }
});

zfsTest('snapshots: guid identity, creation order, recursive, destroy', async (t) => {
  const pool = await makeZfsPool(t);
  const data = `${pool.name}/data`;
  await driver.createDataset(data);
  await driver.createDataset(`${data}/child`);
  const first = await driver.createSnapshot(data, 'first', { recursive: true });
  t.like(first, { dataset: data, name: 'first', held: false });
  t.is(first.id, await zfsGet('guid', `${data}@first`));
  t.true(first.createdAt instanceof Date && Math.abs(first.createdAt.getTime() - Date.now()) < 120_000);
  await driver.createSnapshot(data, 'second', { recursive: false });
  await driver.createSnapshot(data, 'third', { recursive: false }); // same second: order by txg
  t.deepEqual(
    (await driver.listSnapshots(data)).map((s) => s.name),
    ['first', 'second', 'third'],
  );
  t.deepEqual(
    (await driver.listSnapshots(`${data}/child`)).map((s) => s.name),
    ['first'],
  );
  await t.throwsAsync(driver.createSnapshot(data, 'second', { recursive: false }), { message: `The snapshot '${data}@second' already exists.` });

  await driver.destroySnapshot(data, 'first', { recursive: true });
  t.deepEqual(
    (await driver.listSnapshots(`${data}/child`)).map((s) => s.name),
    [],
  );
  await driver.destroySnapshot(data, 'second', { recursive: false });
  t.deepEqual(
    (await driver.listSnapshots(data)).map((s) => s.name),
    ['third'],
  );
  await t.throwsAsync(driver.destroySnapshot(data, 'gone', { recursive: false }), { message: `The snapshot '${data}@gone' does not exist.` });
});

zfsTest('a held snapshot cannot be destroyed, rolled past or destroyed with its dataset', async (t) => {
  const pool = await makeZfsPool(t);
  const data = `${pool.name}/data`;
  await driver.createDataset(data);
  await driver.createSnapshot(data, 'keep', { recursive: false });
  await driver.createSnapshot(data, 'later', { recursive: false });
  await driver.holdSnapshot(data, 'keep', true);
  await driver.holdSnapshot(data, 'keep', true); // twice is fine
  await driver.holdSnapshot(data, 'later', true);
  t.deepEqual(
    (await driver.listSnapshots(data)).map((s) => s.held),
    [true, true],
  );

  await t.throwsAsync(driver.destroySnapshot(data, 'keep', { recursive: false }), {
    message: `The snapshot '${data}@keep' is held; release it before destroying it.`,
  });
  await t.throwsAsync(driver.destroyDataset(data, { recursive: true }), { message: /'.*@keep' is held, so '.*\/data' cannot be destroyed/ });
  await t.throwsAsync(driver.rollback(data, 'keep'), { message: /would destroy the later snapshot 'later', which is held/ });
  t.is((await driver.listSnapshots(data)).length, 2);

  await driver.holdSnapshot(data, 'later', false);
  await driver.holdSnapshot(data, 'later', false); // releasing twice is fine
  await driver.destroySnapshot(data, 'later', { recursive: false });
  await driver.holdSnapshot(data, 'keep', false);
  await driver.destroySnapshot(data, 'keep', { recursive: false });
  t.deepEqual(await driver.listSnapshots(data), []);
});

zfsTest('without zfs hold, a hold is the syncsh:hold property, enforced all the same', async (t) => {
  const pool = await makeZfsPool(t);
  const noHolds = createZfsDriver({ features: { hold: false } });
  const data = `${pool.name}/data`;
  await noHolds.createDataset(data);
  await noHolds.createSnapshot(data, 'keep', { recursive: false });
  await noHolds.holdSnapshot(data, 'keep', true);
  t.is(await zfsGet('syncsh:hold', `${data}@keep`), 'on');
  t.is(await zfsGet('userrefs', `${data}@keep`), '0', 'no zfs hold was used');
  t.true((await driver.listSnapshots(data))[0]!.held, 'any instance of the driver sees it');
  await t.throwsAsync(noHolds.destroySnapshot(data, 'keep', { recursive: false }), { message: /is held; release it before destroying it/ });
  await t.throwsAsync(driver.destroyDataset(data, { recursive: true }), { message: /is held, so .* cannot be destroyed/ });
  await noHolds.holdSnapshot(data, 'keep', false);
  t.is(await zfsGet('syncsh:hold', `${data}@keep`), '-');
  await noHolds.destroySnapshot(data, 'keep', { recursive: false });
  t.deepEqual(await noHolds.listSnapshots(data), []);
});

zfsTest('rollback returns the files and drops later snapshots; changedSince sees writes, deletes and renames', async (t) => {
  const pool = await makeZfsPool(t);
  const data = `${pool.name}/data`;
  await driver.createDataset(data);
  const dir = await mountpointOf(data);
  writeFileSync(path.join(dir, 'a.txt'), 'one');
  writeFileSync(path.join(dir, 'b.txt'), 'bee');
  await driver.createSnapshot(data, 's1', { recursive: false });
  t.false(await driver.changedSince(data, 's1'));

  writeFileSync(path.join(dir, 'a.txt'), 'two');
  t.true(await driver.changedSince(data, 's1'));
  await driver.createSnapshot(data, 's2', { recursive: false });
  t.false(await driver.changedSince(data, 's2'));
  unlinkSync(path.join(dir, 'b.txt'));
  t.true(await driver.changedSince(data, 's2'));
  await driver.createSnapshot(data, 's3', { recursive: false });
  await execa('mv', [path.join(dir, 'a.txt'), path.join(dir, 'c.txt')]);
  t.true(await driver.changedSince(data, 's3'));

  await driver.rollback(data, 's1');
  t.is(readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'one');
  t.is(readFileSync(path.join(dir, 'b.txt'), 'utf8'), 'bee');
  t.false(existsSync(path.join(dir, 'c.txt')));
  t.deepEqual(
    (await driver.listSnapshots(data)).map((s) => s.name),
    ['s1'],
  );
  t.false(await driver.changedSince(data, 's1'));
  // the probe snapshots used on ZFS without `written` leave nothing behind
  t.deepEqual((await execa('zfs', ['list', '-H', '-o', 'name', '-t', 'snapshot', '-r', data])).stdout.split('\n'), [`${data}@s1`]);
});

zfsTest('mount and unmount', async (t) => {
  const pool = await makeZfsPool(t);
  const data = `${pool.name}/data`;
  await driver.createDataset(data);
  await driver.unmount(data);
  t.like(await driver.getDataset(data), { mounted: false, mountpoint: null });
  await driver.unmount(data); // already: nothing to do
  await driver.mount(data);
  t.like(await driver.getDataset(data), { mounted: true, mountpoint: path.join(pool.mountpoint, 'data') });
});

zfsTest('a dataset destroyed by someone else between the listing and its properties is not an error of the listing', async (t) => {
  const pool = await makeZfsPool(t);
  await driver.createDataset(`${pool.name}/stays`);
  await execa('zfs', ['create', '-o', 'mountpoint=none', `${pool.name}/goes`]); // unmounted: zfs-fuse calls a fresh mount busy
  // the real zfs, except that the first `zfs get` is preceded by another operator's destroy
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-racezfs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const racing = path.join(dir, 'zfs');
  const once = path.join(dir, 'destroyed');
  writeFileSync(racing, `#!/bin/sh\nif [ "$1" = get ] && [ ! -e '${once}' ]; then touch '${once}'; zfs destroy '${pool.name}/goes'; fi\nexec zfs "$@"\n`);
  chmodSync(racing, 0o755);
  const names = (await createZfsDriver({ zfs: racing }).listDatasets(pool.name)).map((d) => d.name);
  t.true(existsSync(once), 'the destroy ran between the listing and its zfs get');
  t.deepEqual(names, [pool.name, `${pool.name}/stays`]);
});

zfsTest('bad names are refused with a sentence before any command runs', async (t) => {
  // a zfs and zpool that record being run: they must never be
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-fakezfs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = path.join(dir, 'ran');
  const fake = path.join(dir, 'fake');
  writeFileSync(fake, `#!/bin/sh\necho "$0 $*" >> '${log}'\nexit 1\n`);
  chmodSync(fake, 0o755);
  const spied = createZfsDriver({ zfs: fake, zpool: fake });

  const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
    ['shell metacharacters', () => spied.createDataset('tank/a;rm -rf x'), /"tank\/a;rm -rf x" has the component "a;rm -rf x"/],
    ['a dot-dot', () => spied.getDataset('tank/../etc'), /"tank\/..\/etc" contains '\.\.'/],
    ['an empty component', () => spied.listSnapshots('tank//data'), /"tank\/\/data" has an empty component/],
    ['a leading slash', () => spied.destroyDataset('/tank/data'), /"\/tank\/data" starts with '\/'/],
    ['an @ in a dataset', () => spied.createSnapshot('tank/data@x', 's', { recursive: false }), /"tank\/data@x" contains '@'/],
    ['a bad snapshot name', () => spied.createSnapshot('tank/data', '$(reboot)', { recursive: false }), /The snapshot name "\$\(reboot\)" is not allowed/],
    ['a snapshot name with @', () => spied.rollback('tank/data', 'a@b'), /The snapshot name "a@b" must not contain '@'/],
    ['a backquote', () => spied.changedSince('tank/`id`', 's'), /has the component "`id`"/],
    ['an empty name', () => spied.mount(''), /A ZFS dataset name is required/],
    ['a receive target', () => spied.receive('tank/x y', Readable.from([]), { force: false, recursive: false }), /"tank\/x y" has the component "x y"/],
    ['a leading dash', () => spied.recover('-o'), /the component "-o"/],
  ];
  for (const [what, call, message] of cases) {
    await t.throwsAsync(call(), { message }, what);
  }
  t.throws(() => spied.send('tank/data', 's1', { recursive: false, from: 'x|y' }), { message: /The snapshot name "x\|y" is not allowed/ });
  t.false(existsSync(log), existsSync(log) ? readFileSync(log, 'utf8') : '');
});

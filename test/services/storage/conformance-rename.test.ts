/**
 * renameDataset (to move a destination aside on resync and to keep orphaned
 * changes, never destroying data), on real zfs-fuse pools and btrfs loop
 * volumes: the cases every driver must pass (a table run on each), then
 * what is particular to each (zfs: children, mounts, busy; btrfs: the
 * snapshot directory, read-only subvolumes, an interrupted rename).
 * The fs driver joins the shared cases once it has renameDataset.
 */
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { once as onceEvent } from 'node:events';
import path from 'node:path';
import type { Driver, DriverName } from '../../../src/services/storage/driver.js';
import { createBtrfsDriver } from '../../../src/services/storage/btrfs/index.js';
import { renameIntent } from '../../../src/services/storage/btrfs/rename.js';
import { createFsDriver } from '../../../src/services/storage/fs/index.js';
import { createZfsDriver } from '../../../src/services/storage/zfs/index.js';
import { btrfsMissing, makeBtrfsVolume } from '../../helpers/btrfs-volume.js';
import { tempDir } from '../../helpers/fs-tree.js';
import { gatedTest, type GatedTest } from '../../helpers/system.js';
import { makeZfsPool, zfsMissing } from '../../helpers/zfs-pool.js';

type Rename = (from: string, to: string) => Promise<void>;
type Renaming = Driver & { renameDataset: Rename };

/** one driver on fresh storage: names by leaf, and a second, separate pool or filesystem */
interface Bed {
  driver: Renaming;
  /** driver-local name of a leaf */
  at(leaf: string): string;
  /** a name in another pool / filesystem */
  elsewhere(leaf: string): string;
  /** where a dataset's files are */
  dir(name: string): Promise<string>;
}

interface Fixture {
  kind: DriverName;
  gate: GatedTest;
  setup(t: ExecutionContext): Promise<Bed>;
}

const once = { recursive: false, force: false } as const;

async function dirOf(driver: Driver, name: string): Promise<string> {
  const info = await driver.getDataset(name);
  if (!info?.mountpoint) throw new Error(`${name} has no directory`);
  return info.mountpoint;
}

const zfs = createZfsDriver();
const btrfs = createBtrfsDriver();

const FIXTURES: Fixture[] = [
  {
    kind: 'zfs',
    gate: await gatedTest(['ZFS (zfs-fuse)'], zfsMissing),
    async setup(t) {
      const [a, b] = await Promise.all([makeZfsPool(t), makeZfsPool(t, { size: 64 * 1024 * 1024 })]);
      return { driver: zfs, at: (leaf) => `${a.name}/${leaf}`, elsewhere: (leaf) => `${b.name}/${leaf}`, dir: (name) => dirOf(zfs, name) };
    },
  },
  {
    kind: 'btrfs',
    gate: await gatedTest(['btrfs (btrfs-progs, loop devices)'], btrfsMissing),
    async setup(t) {
      const [a, b] = await Promise.all([makeBtrfsVolume(t), makeBtrfsVolume(t)]);
      return { driver: btrfs, at: (leaf) => path.join(a.mountpoint, leaf), elsewhere: (leaf) => path.join(b.mountpoint, leaf), dir: async (name) => name };
    },
  },
];
FIXTURES.push({
  kind: 'fs',
  gate: await gatedTest(['the fs driver'], async () => null),
  async setup(t) {
    const driver = createFsDriver(tempDir(t)) as Renaming;
    await driver.createDataset('tank');
    await driver.createDataset('other');
    return { driver, at: (leaf) => `tank/${leaf}`, elsewhere: (leaf) => `other/${leaf}`, dir: (name) => dirOf(driver, name) };
  },
});

/** a source with files and three snapshots, replicated to `dst` (full s1, incremental s2), s2 held on both */
async function replicated(bed: Bed) {
  const { driver } = bed;
  const [src, dst] = [bed.at('src'), bed.at('dst')];
  await driver.createDataset(src);
  writeFileSync(path.join(await bed.dir(src), 'a.txt'), 'alpha');
  await driver.createSnapshot(src, 's1', once);
  writeFileSync(path.join(await bed.dir(src), 'b.txt'), 'bravo');
  await driver.createSnapshot(src, 's2', once);
  await driver.receive(dst, driver.send(src, 's1', once), once);
  await driver.receive(dst, driver.send(src, 's2', { ...once, from: 's1' }), once);
  for (const name of [src, dst]) await driver.holdSnapshot(name, 's2', true);
  return { src, dst };
}

const chain = async (driver: Driver, name: string) => (await driver.listSnapshots(name)).map((s) => `${s.name}=${s.id}${s.held ? ' held' : ''}`);

interface Case {
  title: string;
  run(t: ExecutionContext, bed: Bed): Promise<void>;
}

const SHARED: Case[] = [
  {
    title: 'moves a dataset with its files, snapshots, ids and holds; replication goes on from the new name; the old name is free',
    async run(t, bed) {
      const { driver } = bed;
      const { src, dst } = await replicated(bed);
      const before = await chain(driver, dst);
      const aside = bed.at('dst-aside');
      await driver.renameDataset(dst, aside);
      t.is(await driver.getDataset(dst), null, 'the old name is gone');
      t.like(await driver.getDataset(aside), { name: aside, kind: 'filesystem', mounted: true, readonly: false });
      t.deepEqual(await chain(driver, aside), before, 'the snapshots moved with their ids and holds');
      t.is(readFileSync(path.join(await bed.dir(aside), 'b.txt'), 'utf8'), 'bravo');
      t.false(await driver.changedSince(aside, 's2'), 'a rename is not a change');

      writeFileSync(path.join(await bed.dir(src), 'c.txt'), 'charlie');
      await driver.createSnapshot(src, 's3', once);
      await driver.receive(aside, driver.send(src, 's3', { ...once, from: 's2' }), once);
      t.is(readFileSync(path.join(await bed.dir(aside), 'c.txt'), 'utf8'), 'charlie', 'an incremental lands on the renamed dataset');

      await driver.receive(dst, driver.send(src, 's3', once), once);
      t.is(readFileSync(path.join(await bed.dir(dst), 'c.txt'), 'utf8'), 'charlie', 'the old name takes a fresh full receive');
      t.deepEqual(
        (await driver.listSnapshots(dst)).map((s) => s.name),
        ['s3'],
      );
      t.deepEqual(
        (await driver.listSnapshots(aside)).map((s) => s.name),
        ['s1', 's2', 's3'],
        'and what was moved aside is untouched',
      );
    },
  },
  {
    title: 'refuses, with a sentence and without changing anything: an existing target, another pool or filesystem, a target inside, bad names, a missing source',
    async run(t, bed) {
      const { driver } = bed;
      const { src, dst } = await replicated(bed);
      const before = { src: await chain(driver, src), dst: await chain(driver, dst) };
      const refused: Array<[string, string, RegExp]> = [
        [dst, src, /already exists; nothing was renamed/],
        [dst, bed.elsewhere('dst'), /another (pool|filesystem)|in the pool '[^']+', not in/],
        [dst, `${dst}/inner`, /cannot be moved inside itself/],
        [dst, dst, /to its own (name|path)/],
        [bed.at('missing'), bed.at('x'), /does not exist/],
        [dst, bed.at('bad;name'), /bad;name/],
        [dst, `${bed.at('x')}/../escape`, /\.\./],
        [bed.at('bad name'), bed.at('x'), /bad name/],
      ];
      for (const [from, to, message] of refused) {
        await t.throwsAsync(driver.renameDataset(from, to), { message }, `${from} -> ${to}`);
      }
      t.deepEqual(await chain(driver, src), before.src);
      t.deepEqual(await chain(driver, dst), before.dst);
      t.is(readFileSync(path.join(await bed.dir(dst), 'a.txt'), 'utf8'), 'alpha');
    },
  },
];

for (const fixture of FIXTURES) {
  for (const c of SHARED) fixture.gate(`${fixture.kind} › ${c.title}`, async (t) => c.run(t, await fixture.setup(t)));
}

// ---- zfs ----------------------------------------------------------------------

const zfsGate = FIXTURES[0]!.gate;

zfsGate('zfs › children move along and are mounted again under their new names; pool roots and missing parents are refused', async (t) => {
  const pool = await makeZfsPool(t);
  const src = `${pool.name}/src`;
  await zfs.createDataset(`${src}/a/b`, { parents: true });
  writeFileSync(path.join(await dirOf(zfs, `${src}/a/b`), 'deep.txt'), 'deep');
  await zfs.createSnapshot(src, 'r1', { recursive: true });
  await zfs.createDataset(`${pool.name}/parent`);
  const moved = `${pool.name}/parent/moved`;
  await zfs.renameDataset(src, moved);
  t.deepEqual(
    (await zfs.listDatasets(moved)).map((d) => [d.name, d.mounted]),
    [
      [moved, true],
      [`${moved}/a`, true],
      [`${moved}/a/b`, true],
    ],
  );
  t.is(readFileSync(path.join(await dirOf(zfs, `${moved}/a/b`), 'deep.txt'), 'utf8'), 'deep');
  t.deepEqual(
    (await zfs.listSnapshots(`${moved}/a/b`)).map((s) => s.name),
    ['r1'],
  );
  t.false(existsSync(path.join(pool.mountpoint, 'src')), 'no empty mountpoint is left at the old place');

  await t.throwsAsync(zfs.renameDataset(pool.name, `${pool.name}x`), { message: `'${pool.name}' is the root dataset of its pool; a pool cannot be renamed, only the datasets in it.` });
  await t.throwsAsync(zfs.renameDataset(moved, `${pool.name}/no/such/parent`), {
    message: `The parent dataset '${pool.name}/no/such' of the target '${pool.name}/no/such/parent' does not exist.`,
  });
  await t.throwsAsync(zfs.renameDataset(moved, `${pool.name}`), { message: /already exists|names a pool/ });
});

zfsGate('zfs › a dataset in use is refused as busy and left mounted where it was', async (t) => {
  const pool = await makeZfsPool(t);
  const src = `${pool.name}/src`;
  await zfs.createDataset(src);
  const dir = await dirOf(zfs, src);
  const sleeper = execa('sleep', ['30'], { cwd: dir, reject: false });
  t.teardown(() => void sleeper.kill());
  await onceEvent(sleeper, 'spawn'); // its working directory is set before it runs: from now on it holds the dataset
  await t.throwsAsync(zfs.renameDataset(src, `${pool.name}/moved`), { message: `'${src}' is in use (a process has files open or its working directory in it), so '${src}' was not renamed.` });
  t.like(await zfs.getDataset(src), { mounted: true, mountpoint: dir });
  t.is(await zfs.getDataset(`${pool.name}/moved`), null);
});

zfsGate('zfs › holds kept by property (no zfs hold) move with the snapshot', async (t) => {
  const pool = await makeZfsPool(t);
  const noHold = createZfsDriver({ features: { hold: false } });
  const src = `${pool.name}/src`;
  await noHold.createDataset(src);
  await noHold.createSnapshot(src, 's1', once);
  await noHold.holdSnapshot(src, 's1', true);
  await noHold.renameDataset(src, `${pool.name}/moved`);
  t.deepEqual(
    (await noHold.listSnapshots(`${pool.name}/moved`)).map((s) => [s.name, s.held]),
    [['s1', true]],
  );
  await t.throwsAsync(noHold.destroySnapshot(`${pool.name}/moved`, 's1', once), { message: /is held/ });
});

// ---- btrfs --------------------------------------------------------------------

const btrfsGate = FIXTURES[1]!.gate;
const snapshotsOf = (mount: string, name: string) => readdirSync(path.join(mount, '.syncsh-snapshots', name)).sort();

btrfsGate('btrfs › the snapshot directory moves with the subvolume, also into another directory', async (t) => {
  const vol = await makeBtrfsVolume(t);
  const { src } = await replicated({ driver: btrfs, at: (l) => path.join(vol.mountpoint, l), elsewhere: (l) => l, dir: async (n) => n });
  mkdirSync(path.join(vol.mountpoint, 'archive'));
  const moved = path.join(vol.mountpoint, 'archive', 'src-2026');
  const before = await chain(btrfs, src);
  await btrfs.renameDataset(src, moved);
  t.deepEqual(await chain(btrfs, moved), before);
  t.deepEqual(readdirSync(path.join(vol.mountpoint, 'archive', '.syncsh-snapshots', 'src-2026')).sort(), ['.holds', 's1', 's2']);
  t.false(existsSync(path.join(vol.mountpoint, '.syncsh-snapshots', 'src')), 'nothing is left under the old name');
  t.deepEqual(readdirSync(path.join(vol.mountpoint, '.syncsh-snapshots')), ['dst'], 'only the other dataset is left there: no intent file');
  t.is(readFileSync(path.join(moved, 'b.txt'), 'utf8'), 'bravo');
  t.deepEqual(await btrfs.recover(moved), []);
});

btrfsGate('btrfs › an unmounted (read-only) subvolume is renamed in its directory and stays read-only; moving it elsewhere is refused', async (t) => {
  const vol = await makeBtrfsVolume(t);
  const dst = path.join(vol.mountpoint, 'dst');
  const { src } = await replicated({ driver: btrfs, at: (l) => path.join(vol.mountpoint, l), elsewhere: (l) => l, dir: async (n) => n });
  void src;
  await btrfs.unmount(dst);
  const aside = path.join(vol.mountpoint, 'dst-aside');
  await btrfs.renameDataset(dst, aside);
  t.like(await btrfs.getDataset(aside), { readonly: true, mounted: false });
  t.deepEqual(snapshotsOf(vol.mountpoint, 'dst-aside'), ['.holds', 's1', 's2']);
  mkdirSync(path.join(vol.mountpoint, 'elsewhere'));
  await t.throwsAsync(btrfs.renameDataset(aside, path.join(vol.mountpoint, 'elsewhere', 'dst')), {
    message: `'${aside}' is unmounted (read-only), and btrfs cannot move a read-only subvolume to another directory; mount it first, or rename it within '${vol.mountpoint}'.`,
  });
  t.like(await btrfs.getDataset(aside), { readonly: true });
});

btrfsGate('btrfs › refused: a target directory in another subvolume, leftover snapshots under the target name, a mount point, a pending swap', async (t) => {
  const vol = await makeBtrfsVolume(t);
  const at = (l: string) => path.join(vol.mountpoint, l);
  const { dst } = await replicated({ driver: btrfs, at, elsewhere: (l) => l, dir: async (n) => n });
  await btrfs.createDataset(at('outer'));
  await t.throwsAsync(btrfs.renameDataset(dst, at('outer/dst')), {
    message: `The target directory '${at('outer')}' is in another subvolume than '${vol.mountpoint}'; btrfs cannot move the snapshot directory of '${dst}' across subvolumes, so rename it within the subvolume it is in.`,
  });
  mkdirSync(at('.syncsh-snapshots/old/s9'), { recursive: true });
  await t.throwsAsync(btrfs.renameDataset(dst, at('old')), {
    message: `Snapshots of an earlier '${at('old')}' are still in '${at('.syncsh-snapshots/old')}'; move or destroy them before renaming '${dst}' to that name.`,
  });
  await t.throwsAsync(btrfs.renameDataset(vol.mountpoint, `${vol.mountpoint}-x`), { message: `'${vol.mountpoint}' is a mount point; unmount it and rename it from its parent subvolume.` });
  await execa('btrfs', ['subvolume', 'snapshot', dst, at('.syncsh-new-dst-0badf00d')]);
  await t.throwsAsync(btrfs.renameDataset(dst, at('dst2')), { message: `An interrupted swap of '${dst}' left '${at('.syncsh-new-dst-0badf00d')}'; run recover on '${dst}' first.` });
  t.deepEqual(
    (await btrfs.listSnapshots(dst)).map((s) => s.name),
    ['s1', 's2'],
    'nothing moved',
  );
});

btrfsGate('btrfs › a rename cut between its two steps is finished by recover, from either name', async (t) => {
  const vol = await makeBtrfsVolume(t);
  const at = (l: string) => path.join(vol.mountpoint, l);
  const { src, dst } = await replicated({ driver: btrfs, at, elsewhere: (l) => l, dir: async (n) => n });
  const before = { src: await chain(btrfs, src), dst: await chain(btrfs, dst) };
  // what renameDataset does before its second step, then a crash
  const intent = (from: string, to: string) => {
    for (const end of [from, to]) writeFileSync(renameIntent(end), JSON.stringify({ from, to }));
  };
  intent(dst, at('aside'));
  renameSync(at('.syncsh-snapshots/dst'), at('.syncsh-snapshots/aside'));
  t.deepEqual(await btrfs.recover(at('aside')), [`finished the interrupted rename of '${dst}' to '${at('aside')}'`]);
  t.deepEqual(await chain(btrfs, at('aside')), before.dst);
  t.is(await btrfs.getDataset(dst), null);
  t.deepEqual(await btrfs.recover(at('aside')), [], 'nothing is left to finish');

  // cut before anything moved: recover on the old name finishes it all the same
  intent(src, at('src-moved'));
  t.deepEqual(await btrfs.recover(src), [`finished the interrupted rename of '${src}' to '${at('src-moved')}'`]);
  t.deepEqual(await chain(btrfs, at('src-moved')), before.src);
  t.deepEqual(readdirSync(at('.syncsh-snapshots')).sort(), ['aside', 'src-moved']);
});

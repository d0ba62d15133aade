/**
 * renameDataset on the fs driver: the live tree, the snapshots and the
 * child datasets move to the new name; every refusal is a sentence and
 * moves nothing; a rename cut short after any step is finished by recover,
 * called on either name.
 */
import test from 'ava';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Driver } from '../../../src/services/storage/driver.js';
import { createFsDriver } from '../../../src/services/storage/fs/index.js';
import { Layout } from '../../../src/services/storage/fs/layout.js';
import { diffTrees, readTree, tempDir, writeTree } from '../../helpers/fs-tree.js';

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** tank/data with a child, a grandchild, snapshots (one held) and files at every level. */
async function setup(root: string) {
  const driver = createFsDriver(root);
  const live = (name: string) => path.join(root, ...name.split('/'));
  await driver.createDataset('tank/data/child/grand', { parents: true });
  await driver.createDataset('tank/other');
  await writeTree(live('tank/data'), { 'top.txt': 'top', 'dir/sub.txt': 'sub', 'big.bin': randomBytes(3 << 20) });
  await writeTree(live('tank/data/child'), { 'c.txt': 'child' });
  await writeTree(live('tank/data/child/grand'), { 'g.bin': Buffer.alloc(300_000, 7) });
  await driver.createSnapshot('tank/data', 's1', { recursive: true });
  await driver.holdSnapshot('tank/data', 's1', true);
  writeFileSync(path.join(live('tank/data'), 'later.txt'), 'after s1');
  await driver.createSnapshot('tank/data', 's2', { recursive: true });
  return { driver, live, layout: new Layout(root) };
}

/** What an operator sees of a dataset and its children under `name`. */
async function view(driver: Driver, live: (n: string) => string, name: string) {
  const out: Record<string, unknown> = {};
  for (const d of await driver.listDatasets(name)) {
    const rel = d.name.slice(name.length) || '.';
    out[rel] = {
      mounted: d.mounted,
      snapshots: (await driver.listSnapshots(d.name)).map((s) => `${s.name}=${s.id}${s.held ? ' held' : ''}`),
      tree: d.mounted ? await readTree(live(d.name)) : null,
    };
  }
  return out;
}

test('a dataset moves with its children, snapshots and holds; replication goes on from the same snapshots', async (t) => {
  const dir = tempDir(t);
  const { driver, live } = await setup(path.join(dir, 'a'));
  const before = await view(driver, live, 'tank/data');
  await driver.renameDataset('tank/data', 'tank/other/moved');
  t.is(await driver.getDataset('tank/data'), null);
  t.is(await driver.getDataset('tank/data/child'), null);
  t.false(existsSync(live('tank/data')));
  t.deepEqual(await view(driver, live, 'tank/other/moved'), before);
  t.like(await driver.getDataset('tank/other/moved/child/grand'), { name: 'tank/other/moved/child/grand', mountpoint: live('tank/other/moved/child/grand') });
  t.false(await driver.changedSince('tank/other/moved', 's2'));
  t.false(await driver.changedSince('tank/other', 's1').catch(() => false), 'the new parent does not see its child as a change');

  // The snapshots are the same ones: an incremental send from the new name still applies to an old replica.
  const b = createFsDriver(path.join(dir, 'b'));
  await b.createDataset('tank');
  await b.receive('tank/copy', driver.send('tank/other/moved', 's1', { recursive: true }), { force: false, recursive: true });
  await b.receive('tank/copy', driver.send('tank/other/moved', 's2', { from: 's1', recursive: true }), { force: false, recursive: true });
  t.deepEqual(diffTrees(await readTree(live('tank/other/moved')), await readTree(path.join(dir, 'b', 'tank', 'copy'))), []);

  // And back, next to where it was; new snapshots work under the new name.
  await driver.renameDataset('tank/other/moved', 'tank/data2');
  await driver.createSnapshot('tank/data2', 's3', { recursive: true });
  t.deepEqual(
    (await driver.listSnapshots('tank/data2/child')).map((s) => s.name),
    ['s1', 's2', 's3'],
  );
  t.deepEqual(await driver.recover('tank/data2'), []);
});

test('an unmounted dataset is renamed with its hidden files and mounts under the new name', async (t) => {
  const { driver, live } = await setup(path.join(tempDir(t), 'a'));
  const tree = await readTree(live('tank/data/child/grand'));
  await driver.unmount('tank/data/child/grand');
  await driver.renameDataset('tank/data/child/grand', 'tank/grand');
  t.like(await driver.getDataset('tank/grand'), { mounted: false, mountpoint: null });
  t.deepEqual(readdirSync(live('tank/grand')), []);
  t.false(existsSync(live('tank/data/child/grand')));
  await driver.mount('tank/grand');
  t.deepEqual(diffTrees(tree, await readTree(live('tank/grand'))), []);
  t.false(await driver.changedSince('tank/data/child', 's1'));
});

test('refusals name the problem and move nothing', async (t) => {
  const { driver, live, layout } = await setup(path.join(tempDir(t), 'a'));
  await driver.createDataset('tank/vol', { volumeSize: 1 << 20 });
  await driver.createDataset('pool2');
  mkdirSync(live('tank/taken'));
  writeFileSync(path.join(live('tank/taken'), 'f'), 'in the way');
  writeFileSync(live('tank/file'), 'a file');
  const before = await view(driver, live, 'tank/data');
  const refusals: [string, string, RegExp | string][] = [
    ['tank/data', 'tank/da ta', /The dataset name must not contain " ": tank\/da ta/],
    ['tank/../x', 'tank/x', /must not contain "\.\."/],
    ['tank/data', 'tank/data', 'The fs dataset tank/data cannot be renamed to its own name.'],
    ['tank', 'tank2', 'tank is a pool; a pool cannot be renamed, only the datasets in it.'],
    ['tank/data', 'pool2/data', /The target pool2\/data is in the pool pool2, not in tank where tank\/data is; a dataset can only be renamed within its pool/],
    ['tank/data', 'tank/data/child/x', 'The fs dataset tank/data cannot be moved inside itself (tank/data/child/x).'],
    ['tank/nope', 'tank/x', 'The fs dataset tank/nope does not exist.'],
    ['tank/data', 'tank/other', 'The target tank/other already exists; nothing was renamed.'],
    ['tank/data/child', 'tank/data', 'The target tank/data already exists; nothing was renamed.'],
    ['tank/data', 'tank/missing/x', 'The parent dataset tank/missing of the target tank/missing/x does not exist; create it first.'],
    ['tank/data', 'tank/vol/x', 'The parent dataset tank/vol of the target tank/vol/x is a volume, which cannot hold datasets.'],
    ['tank/data', 'tank/taken', /The directory .*tank\/taken already has files; move them away or choose another name than tank\/taken\./],
    ['tank/data', 'tank/file', /The mountpoint .*tank\/file of tank\/file is taken by a file/],
  ];
  for (const [from, to, message] of refusals) {
    await t.throwsAsync(driver.renameDataset(from, to), typeof message === 'string' ? { message } : { message }, `${from} -> ${to}`);
  }
  await driver.unmount('tank/other');
  await t.throwsAsync(driver.renameDataset('tank/data', 'tank/other/x'), { message: /The parent dataset tank\/other of the target tank\/other\/x is unmounted/ });
  t.deepEqual(await view(driver, live, 'tank/data'), before);
  t.false(existsSync(layout.renamesDir('tank')) && readdirSync(layout.renamesDir('tank')).length > 0);
});

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await sleep(20);
  }
  throw new Error(`Timed out waiting for ${what}.`);
}

test('a busy dataset is not renamed: an operation holding it, or a send reading it', async (t) => {
  const dir = tempDir(t);
  const { driver, live, layout } = await setup(path.join(dir, 'a'));
  const before = await view(driver, live, 'tank/data');

  const full = await collect(driver.send('tank/data', 's1', { recursive: false }));

  // A receive in progress into the grandchild holds its lock: the rename says so.
  const lockOwner = new PassThrough();
  lockOwner.write(full.subarray(0, 200));
  const busyReceive = driver.receive('tank/data/child/grand', lockOwner, { force: false, recursive: false });
  await until(() => existsSync(layout.lockFile('tank/data/child/grand')), 'the receive to lock');
  await t.throwsAsync(driver.renameDataset('tank/data', 'tank/moved'), {
    message: new RegExp(`^The fs dataset tank/data/child/grand is busy: a receive by process ${process.pid} since .*\\. Nothing was renamed\\.$`),
  });
  lockOwner.end(Buffer.from('garbage'));
  await t.throwsAsync(busyReceive);

  // A send reading the dataset (it takes no lock: its pin says it is there).
  const sending = driver.send('tank/data', 's1', { recursive: false })[Symbol.asyncIterator]();
  await sending.next();
  await t.throwsAsync(driver.renameDataset('tank/data', 'tank/moved'), {
    message: `The fs dataset tank/data is being sent (process ${process.pid}); nothing was renamed. Try again when the send is done.`,
  });
  while (!(await sending.next()).done);
  t.deepEqual(await view(driver, live, 'tank/data'), before);
  await driver.renameDataset('tank/data', 'tank/moved');
  t.truthy(await driver.getDataset('tank/moved/child/grand'));
});

test('a rename cut short after any step is finished by recover, on either name', async (t) => {
  const dir = tempDir(t);
  let crashes = 0;
  for (let n = 0; ; n++) {
    const root = path.join(dir, `run-${n}`);
    const { driver, live } = await setup(root);
    const before = await view(driver, live, 'tank/data');
    const faulty = createFsDriver(root, { faults: { crashAfterJournalSteps: n } });
    try {
      await faulty.renameDataset('tank/data', 'tank/other/moved');
      t.deepEqual(await view(driver, live, 'tank/other/moved'), before);
      break;
    } catch (error) {
      t.is((error as Error).name, 'SimulatedCrash', (error as Error).message);
      crashes++;
    }
    // Until recovered, the datasets involved are refused with a pointer to recover.
    for (const name of ['tank/data/child', 'tank/other/moved/child']) {
      await t.throwsAsync(driver.createSnapshot(name, 'y', { recursive: false }), {
        message: new RegExp(`An interrupted rename of tank/data to tank/other/moved is not finished; run recover on tank/data before using ${name}\\.|The fs dataset ${name} does not exist\\.`),
      });
    }
    const lines = await driver.recover(n % 2 ? 'tank/data' : 'tank/other/moved');
    t.regex(lines.join('\n'), /Finished an interrupted rename: Renamed tank\/data to tank\/other\/moved with 2 child dataset\(s\)\./, `crash after step ${n}`);
    t.deepEqual(await view(driver, live, 'tank/other/moved'), before, `crash after step ${n}`);
    t.is(await driver.getDataset('tank/data'), null);
    t.deepEqual(await driver.recover('tank/data'), []);
  }
  t.true(crashes >= 7, `${crashes} crash points`);
});

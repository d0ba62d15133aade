/**
 * What a btrfs run asks without spawning btrfs again (issue 13's fixed
 * cost): a read-only snapshot's `subvolume show` once per run, whatever
 * ran since, forgotten when this process deletes, renames or unfreezes it;
 * a writable subvolume's read-only flag from access(2), no command.
 * Counted with SYNCSH_COMMAND_LOG on a real loop-mounted btrfs.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createBtrfsDriver } from '../../../src/services/storage/btrfs/index.js';
import { BtrfsCli, renamePath } from '../../../src/services/storage/btrfs/cli.js';
import { snapshotPath } from '../../../src/services/storage/btrfs/layout.js';
import { withQueryCache } from '../../../src/services/storage/query-cache.js';
import { btrfsMissing, makeBtrfsVolume } from '../../helpers/btrfs-volume.js';
import { gatedTest } from '../../helpers/system.js';
import test from 'ava';

const btrfsTest = await gatedTest(['btrfs (btrfs-progs, loop devices)'], btrfsMissing);
const driver = createBtrfsDriver();
const cli = new BtrfsCli();

const logDir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-btrfs-queries-'));
const log = path.join(logDir, 'commands.log');
process.env.SYNCSH_COMMAND_LOG = log;
test.after.always(() => rmSync(logDir, { recursive: true, force: true }));

/** the btrfs commands spawned by `fn`, as `subvolume show`, `property get`, … */
async function spawned(fn: () => Promise<unknown>): Promise<string[]> {
  writeFileSync(log, '');
  await fn();
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('['))
    .map((l) => (JSON.parse(l) as string[]).slice(1, 3).join(' '));
}

btrfsTest.serial('in a run a read-only snapshot is shown once, a new one once more, and a writable subvolume needs no command to be called writable', async (t) => {
  const { mountpoint: mnt } = await makeBtrfsVolume(t);
  const data = path.join(mnt, 'data');
  await driver.createDataset(data);
  await driver.createSnapshot(data, 's1', { recursive: false });
  await driver.createSnapshot(data, 's2', { recursive: false });
  await withQueryCache(async () => {
    const listed: string[][] = [];
    const commands = await spawned(async () => {
      listed.push((await driver.listSnapshots(data)).map((s) => s.name));
      await driver.createSnapshot(data, 's3', { recursive: false }); // a command that changes things ran
      listed.push((await driver.listSnapshots(data)).map((s) => s.name));
      listed.push((await driver.listSnapshots(data)).map((s) => s.name));
    });
    t.deepEqual(listed, [
      ['s1', 's2'],
      ['s1', 's2', 's3'],
      ['s1', 's2', 's3'],
    ]);
    t.is(commands.filter((c) => c === 'subvolume show').length, 3, commands.join('\n'));
    t.is(commands.filter((c) => c === 'property get').length, 0, `a writable subvolume is writable by access(2): ${commands.join('\n')}`);

    // forgotten when this process changes it
    await driver.destroySnapshot(data, 's3', { recursive: false });
    t.deepEqual(
      (await driver.listSnapshots(data)).map((s) => s.name),
      ['s1', 's2'],
    );
    const s2 = snapshotPath(data, 's2');
    t.true((await cli.show(s2)).readonly);
    t.true(await cli.isReadonly(s2), 'a read-only snapshot is asked, and is read-only');
    await cli.setReadonly(s2, false);
    t.false((await cli.show(s2)).readonly, 'unfrozen: shown again');
    t.false(await cli.isReadonly(s2));
    await cli.setReadonly(s2, true);
    const before = (await cli.show(s2)).uuid;
    await renamePath(s2, `${s2}-moved`);
    await cli.snapshot(data, s2, true);
    t.not((await cli.show(s2)).uuid, before, 'another snapshot in the renamed one’s place is shown anew');
    t.is((await cli.show(`${s2}-moved`)).uuid, before);
  });
});

/**
 * issue 15: a process running a recursive `zfs send` killed -9 mid-stream.
 * zfs-fuse keeps the send's temporary holds (`.send-<pid>-<n>`) for good and
 * cannot list them, so the snapshots could never be destroyed; the send
 * journal (send-journal.ts) lets the next recover release them. And the
 * journal's own rules: an entry of a live owner is left alone, a pid reused
 * by another process is not taken for the owner.
 */
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ZfsCli } from '../../../src/services/storage/zfs/cli.js';
import { createZfsDriver } from '../../../src/services/storage/zfs/index.js';
import { releaseOrphanedSends } from '../../../src/services/storage/zfs/send.js';
import { processIdentity, SendJournal, stillRunning, type SendRecord } from '../../../src/services/storage/zfs/send-journal.js';
import { tempDir } from '../../helpers/fs-tree.js';
import { gatedTest } from '../../helpers/system.js';
import { makeZfsPool, zfsMissing } from '../../helpers/zfs-pool.js';

const zfsTest = await gatedTest(['ZFS (zfs-fuse)'], zfsMissing);
const DRIVER_MODULE = new URL('../../../src/services/storage/zfs/index.ts', import.meta.url).href;
const MiB = 1024 * 1024;

/** poll for a condition that a process's exit makes true (no fixed sleep: bounded, and fails the test past it) */
async function until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  for (const deadline = Date.now() + ms; !ok(); ) {
    if (Date.now() > deadline) throw new Error(`still waiting after ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const userrefs = async (name: string) => Number((await execa('zfs', ['get', '-H', '-p', '-o', 'value', 'userrefs', name])).stdout.trim());

zfsTest('a recursive send killed -9 mid-stream leaves its holds; the next recover releases them and the snapshots can be destroyed', async (t) => {
  t.timeout(3 * 60_000);
  const pool = await makeZfsPool(t, { size: 128 * MiB, prefix: 'zs' });
  const journal = path.join(tempDir(t, 'syncsh-zfs-journal-'), 'run', 'zfs-sends');
  const driver = createZfsDriver({ sendJournal: journal });
  const ds = `${pool.name}/data`;
  await driver.createDataset(ds);
  await driver.createDataset(`${ds}/child`);
  const dir = (await driver.getDataset(ds))!.mountpoint!;
  // far more than a pipe holds, so the send is still streaming when its reader stops
  writeFileSync(path.join(dir, 'big.bin'), randomBytes(8 * MiB));
  writeFileSync(path.join((await driver.getDataset(`${ds}/child`))!.mountpoint!, 'small.bin'), randomBytes(64 * 1024));
  await driver.createSnapshot(ds, 'a', { recursive: true });

  // another process sends recursively, says so at the first bytes, then stops reading (the stream stalls, holds taken)
  const sender = execa(
    'node',
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `const { createZfsDriver } = await import(${JSON.stringify(DRIVER_MODULE)});
       const stream = createZfsDriver({ sendJournal: ${JSON.stringify(journal)} }).send(${JSON.stringify(ds)}, 'a', { recursive: true });
       stream.once('data', () => { stream.pause(); process.stdout.write('streaming\\n'); });`,
    ],
    { reject: false },
  );
  t.teardown(() => void sender.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    sender.stdout.on('data', (chunk: Buffer) => String(chunk).includes('streaming') && resolve());
    void sender.then((r) => reject(new Error(`the sender ended before streaming: ${r.stderr}`)));
  });
  const entries = readdirSync(journal).filter((n) => n.endsWith('.json'));
  t.is(entries.length, 1, 'the running send is journaled');
  const record = JSON.parse(readFileSync(path.join(journal, entries[0]!), 'utf8')) as SendRecord;
  t.truthy(record.child, 'with the pid of its zfs send');
  t.true(stillRunning(record.child!));

  sender.kill('SIGKILL');
  await sender;
  // its zfs send ends too (nobody reads the stream); what it leaves is the point
  await until("the killed send's zfs process exits", () => !stillRunning(record.child!));
  t.true((await userrefs(`${ds}@a`)) > 0, 'zfs-fuse keeps the hold of a send whose process is gone');
  t.true((await userrefs(`${ds}/child@a`)) > 0, 'on the children too');
  const refused = await execa('zfs', ['destroy', '-r', `${ds}@a`], { reject: false });
  t.true(refused.failed, 'so the snapshot cannot be destroyed');

  const done = await createZfsDriver({ sendJournal: journal }).recover(ds);
  t.true(
    done.some((line) => line.includes(`released the temporary holds of a killed zfs send (process ${record.child!.pid}) on '${ds}@a'`)),
    done.join('\n'),
  );
  t.is(await userrefs(`${ds}@a`), 0);
  t.is(await userrefs(`${ds}/child@a`), 0);
  t.deepEqual(readdirSync(journal), [], 'the entry is gone once its holds are released');
  await driver.destroySnapshot(ds, 'a', { recursive: true });
  t.deepEqual(
    (await driver.listSnapshots(ds)).map((s) => s.name),
    [],
  );
  t.deepEqual(await createZfsDriver({ sendJournal: journal }).recover(ds), [], 'a second recover has nothing to do');
});

/** a 64 MiB pool, a journaled driver, and DATASET@a holding `bytes` of random data */
async function snapshotToSend(t: ExecutionContext, bytes: number) {
  t.timeout(3 * 60_000);
  const pool = await makeZfsPool(t, { size: 64 * MiB, prefix: 'zs' });
  const journal = path.join(tempDir(t, 'syncsh-zfs-journal-'), 'run', 'zfs-sends');
  const driver = createZfsDriver({ sendJournal: journal });
  const ds = `${pool.name}/data`;
  await driver.createDataset(ds);
  writeFileSync(path.join((await driver.getDataset(ds))!.mountpoint!, 'big.bin'), randomBytes(bytes));
  await driver.createSnapshot(ds, 'a', { recursive: true });
  return { journal, driver, ds };
}

zfsTest('a process killed between spawning its zfs send and recording the pid leaves nothing held: the send never ran', async (t) => {
  const { journal, driver, ds } = await snapshotToSend(t, 4 * MiB);
  // SIGKILL of itself at the failpoint, right after the spawn and before the journal names the child
  const sender = await execa(
    'node',
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `const { createZfsDriver } = await import(${JSON.stringify(DRIVER_MODULE)}); createZfsDriver({ sendJournal: ${JSON.stringify(journal)} }).send(${JSON.stringify(ds)}, 'a', { recursive: true }).resume();`,
    ],
    { reject: false, env: { SYNCSH_FAILPOINTS: 'zfs.send.spawned' } },
  );
  t.is(sender.signal, 'SIGKILL', sender.stderr);
  const entries = readdirSync(journal).filter((n) => n.endsWith('.json'));
  t.is(entries.length, 1);
  t.is((JSON.parse(readFileSync(path.join(journal, entries[0]!), 'utf8')) as SendRecord).child, null, 'the pid was not recorded');
  // the gate's shell ends on its closed pipe; a zfs send it let through would hold the snapshot now
  await until('no zfs send of the snapshot runs', () => !readdirSync('/proc').some((p) => /^\d+$/.test(p) && readCmdline(p).includes(`${ds}@a`)));
  t.is(await userrefs(`${ds}@a`), 0, 'nothing holds the snapshot');
  await createZfsDriver({ sendJournal: journal }).recover(ds);
  t.deepEqual(readdirSync(journal), [], 'recover forgets the entry');
  await driver.destroySnapshot(ds, 'a', { recursive: true });
  t.deepEqual(
    (await driver.listSnapshots(ds)).map((x) => x.name),
    [],
  );
});

const readCmdline = (pid: string) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
};

zfsTest('a send given up mid-stream is released by its owner and kept, marked, for the next recover to release once more', async (t) => {
  const { journal, driver, ds } = await snapshotToSend(t, 8 * MiB);
  const stream = driver.send(ds, 'a', { recursive: true });
  await new Promise((resolve) => stream.once('data', resolve));
  stream.destroy(); // as a run does when its receive died
  const settled = () => readdirSync(journal).some((n) => n.endsWith('.json') && (JSON.parse(readFileSync(path.join(journal, n), 'utf8')) as SendRecord).ended);
  await until('the given-up send is marked settled', settled);
  t.is(await userrefs(`${ds}@a`), 0, 'its owner released the hold');
  const done = await createZfsDriver({ sendJournal: journal }).recover(ds);
  t.true(
    done.some((line) => line.startsWith('released the temporary holds of an unfinished zfs send')),
    done.join('\n'),
  );
  t.deepEqual(readdirSync(journal), [], 'the entry is gone once the next recover released again, though its owner (this process) lives');
  await driver.destroySnapshot(ds, 'a', { recursive: true });
});

zfsTest('a send that ends normally leaves no journal entry and no hold', async (t) => {
  const pool = await makeZfsPool(t, { size: 64 * MiB, prefix: 'zs' });
  const journal = path.join(tempDir(t, 'syncsh-zfs-journal-'), 'zfs-sends');
  const driver = createZfsDriver({ sendJournal: journal });
  const ds = `${pool.name}/data`;
  await driver.createDataset(ds);
  writeFileSync(path.join((await driver.getDataset(ds))!.mountpoint!, 'f'), 'x');
  await driver.createSnapshot(ds, 'a', { recursive: false });
  let bytes = 0;
  for await (const chunk of driver.send(ds, 'a', { recursive: true })) bytes += (chunk as Buffer).length;
  t.true(bytes > 0);
  await until('the send has cleaned up', () => readdirSync(journal).length === 0, 10_000);
  t.is(await userrefs(`${ds}@a`), 0);
});

/** a journal entry as a send of `owner` would leave it */
function plant(dir: string, owner: SendRecord['owner'], child: SendRecord['child']): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${owner.pid}-planted.json`);
  const record: SendRecord = { dataset: 'nopool/ds', snapshot: 's', recursive: true, owner, child };
  writeFileSync(file, JSON.stringify(record));
  return file;
}

test('the journal leaves the sends of live owners alone and names dead ones, a reused pid included', (t) => {
  const dir = path.join(tempDir(t, 'syncsh-zfs-journal-'), 'zfs-sends');
  const journal = new SendJournal(dir);
  const me = processIdentity(process.pid)!;
  t.truthy(me);
  plant(dir, me, null);
  t.deepEqual(journal.orphans(), [], 'this process is alive: its send is not an orphan');
  // the same pid with another start time: a process that got the pid after the owner died
  const reused = { ...me, start: String(Number(me.start) - 1) };
  plant(dir, reused, null);
  t.deepEqual(
    journal.orphans().map((o) => o.record.owner),
    [reused],
  );
  const rebooted = { ...me, boot: 'another-boot' };
  t.false(stillRunning(rebooted), 'a pid of another boot is never this one');
  t.true(stillRunning(me));
});

test('recover forgets an entry whose owner died before spawning zfs send (no hold was taken), without running zfs', async (t) => {
  const dir = path.join(tempDir(t, 'syncsh-zfs-journal-'), 'zfs-sends');
  const me = processIdentity(process.pid)!;
  plant(dir, { ...me, start: String(Number(me.start) - 1) }, null);
  // a zfs that does not exist: forgetting such an entry must not need one
  const cli = new ZfsCli('/nonexistent/zfs', '/nonexistent/zpool', {}, new SendJournal(dir));
  t.deepEqual(await releaseOrphanedSends(cli), []);
  t.deepEqual(readdirSync(dir), []);
});

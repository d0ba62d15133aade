/**
 * zfs receives that can resume (issue 13): `receive -s` and `send -t` where
 * the installed ZFS has them, a clean restart where it does not (zfs-fuse),
 * logged either way.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { execa } from 'execa';
import path from 'node:path';
import { receiveArgs } from '../../src/services/storage/zfs/receive.js';
import { send, sendArgs } from '../../src/services/storage/zfs/send.js';
import { gatedTest } from '../helpers/system.js';
import { makeAppliance } from '../helpers/appliance.js';
import { sha256File } from '../helpers/fs-tree.js';
import { makeZfsPool, zfsMissing } from '../helpers/zfs-pool.js';

const zfsTest = await gatedTest(['ZFS (zfs-fuse)'], zfsMissing);

test('receive takes -s only where this zfs can resume; a resumed send is `send -t TOKEN` alone', (t) => {
  const table: [Parameters<typeof receiveArgs>, string[]][] = [
    [
      ['tank/dst', false, false],
      ['receive', 'tank/dst'],
    ],
    [
      ['tank/dst', true, false],
      ['receive', '-F', 'tank/dst'],
    ],
    [
      ['tank/dst', false, true],
      ['receive', '-s', 'tank/dst'],
    ],
    [
      ['tank/dst', true, true],
      ['receive', '-s', '-F', 'tank/dst'],
    ],
  ];
  for (const [args, expected] of table) t.deepEqual(receiveArgs(...args), expected, JSON.stringify(args));
  t.deepEqual(sendArgs('tank/src', 'm2', { recursive: false, from: 'm1' }, true), ['send', '-p', '-I', 'tank/src@m1', 'tank/src@m2']);
  t.deepEqual(sendArgs('tank/src', 'm2', { recursive: true, resumeToken: '1-e604ea4bf-e0-789c63a2' }, true), ['send', '-t', '1-e604ea4bf-e0-789c63a2']);
  t.throws(() => send(null as never, 'tank/src', 'm2', { recursive: false, resumeToken: '--help; rm' }), { message: '"--help; rm" is not a zfs resume token.' });
});

zfsTest('zfs-fuse cannot resume a receive: a run cut mid-transfer is sent again from the start, and the log says so', async (t) => {
  const [poolA, poolB] = await Promise.all([makeZfsPool(t), makeZfsPool(t)]);
  const { services } = makeAppliance(t);
  const zfs = await services.storage.usable('zfs');
  t.false((await zfs.receiveResume!(`${poolB.name}/copy`)).supported, 'zfs-fuse has no receive -s');
  await zfs.createDataset(`${poolA.name}/data`);
  const dir = (await zfs.getDataset(`${poolA.name}/data`))!.mountpoint!;
  writeFileSync(path.join(dir, 'big.bin'), randomBytes(48 << 20));
  const { name } = await services.autoSync.create({ fromFs: `zfs:${poolA.name}/data`, toFs: `zfs:${poolB.name}/copy`, recursive: false });
  // before the pools go (teardown runs last-in first-out): zfs-fuse calls a pool with mounted children busy
  t.teardown(async () => {
    await services.autoSync.destroy(name).catch(() => undefined);
    for (const ds of [`${poolB.name}/copy`, `${poolA.name}/data`]) await execa('zfs', ['unmount', '-f', ds], { reject: false });
  });

  const abort = new AbortController();
  await t.throwsAsync(
    services.autoSync.run(name, {
      signal: abort.signal,
      onProgress: (bytes) => {
        if (bytes > 8 << 20) abort.abort(new Error('cut for the test'));
      },
    }),
  );
  t.is(await zfs.getDataset(`${poolB.name}/copy`), null, 'the cut full receive left nothing');

  const r = await services.autoSync.run(name);
  t.true(r.full);
  t.true(r.bytes > 48 << 20, 'everything was sent again');
  const log = services.autoSync.log(name).tail(30).join('\n');
  t.regex(log, /The previous transfer was cut, and this ZFS cannot resume a receive: sent again from the start/);
  t.notRegex(log, /resumed from token/);
  t.is(await sha256File(path.join((await zfs.getDataset(`${poolB.name}/copy`))!.mountpoint!, 'big.bin')), await sha256File(path.join(dir, 'big.bin')));
});

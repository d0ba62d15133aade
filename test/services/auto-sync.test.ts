import test from 'ava';
import { readFile, writeFile, mkdir, rm, rename, symlink, readlink, chmod, stat } from 'node:fs/promises';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import type { Services } from '../../src/services/index.js';

async function folder(services: Services, name: string): Promise<string> {
  const existing = await services.folders.list().then((all) => all.find((f) => f.qualified === name));
  const f = existing ?? (await services.folders.create(name));
  return f.mountpoint!;
}

async function setup(t: Parameters<typeof makeAppliance>[0]) {
  const a = makeAppliance(t);
  await folder(a.services, 'fs:tank');
  const src = await folder(a.services, 'fs:tank/data');
  await mkdir(path.join(src, 'dir'));
  await writeFile(path.join(src, 'dir', 'a.txt'), 'alpha\n');
  await writeFile(path.join(src, 'b.txt'), 'bravo\n');
  const config = await a.services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy', keepSrc: 2, keepDst: 2 });
  return { ...a, src, name: config.name };
}

test('names derive from the source and take the next free number', async (t) => {
  const { services, name } = await setup(t);
  t.is(name, 'tank-data-000');
  const second = await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy2' });
  t.is(second.name, 'tank-data-001');
  t.deepEqual(services.autoSync.names(), ['tank-data-000', 'tank-data-001']);
});

test('bad requests are refused with a specific sentence and create nothing', async (t) => {
  const { services } = await setup(t);
  const full = await folder(services, 'fs:tank/full');
  await writeFile(path.join(full, 'precious.txt'), 'keep me');
  const before = services.autoSync.names();
  const cases: [Parameters<Services['autoSync']['create']>[0], RegExp][] = [
    [{ fromFs: 'fs:tank/missing', toFs: 'fs:tank/x' }, /source dataset fs:tank\/missing does not exist/],
    [{ fromFs: 'fs:tank/data', toFs: 'fs:tank/data' }, /must not be the source/],
    [{ fromFs: 'fs:tank/data', toFs: 'fs:tank/data/inner' }, /must not be the source fs:tank\/data or inside it/],
    [{ fromFs: 'fs:tank/data', toFs: 'zfs:pool/x' }, /same driver/],
    [{ fromFs: 'fs:tank/data', toFs: 'fs:tank/../etc' }, /must not contain "\.\."/],
    [{ fromFs: 'fs:tank/data', toFs: 'fs:tank/x;rm' }, /must not contain ";"/],
    [{ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy' }, /already receives auto-sync:tank-data-000/],
    [{ fromFs: 'fs:tank/data', toFs: 'fs:tank/y', toHost: 'nowhere' }, /"nowhere" is not a bound appliance/],
    [{ fromFs: 'fs:tank/data', toFs: 'fs:tank/y', period: 0 }, /period must be a whole number of at least 1/],
    [{ fromFs: 'fs:tank/data', toFs: 'fs:tank/y', reverseCapable: true }, /needs a service between two appliances/],
    [{ fromFs: 'fs:tank/data', toFs: 'fs:nopool/x' }, /The destination's parent fs:nopool does not exist on localhost/],
    [{ fromFs: 'fs:tank/data', toFs: 'fs:tank/full' }, /already holds data \(0 snapshot\(s\), 1 entries\): the first sync would overwrite it/],
  ];
  for (const [req, message] of cases) await t.throwsAsync(services.autoSync.create(req), { message }, JSON.stringify(req));
  t.deepEqual(services.autoSync.names(), before);
  t.is(await readFile(path.join(full, 'precious.txt'), 'utf8'), 'keep me');
});

test('full then incremental runs mirror the source: edits, deletes, renames, modes, symlinks', async (t) => {
  const { services, src, name } = await setup(t);
  const first = await services.autoSync.run(name);
  t.true(first.full);
  const dst = (await services.folders.list('fs:tank/copy'))[0].mountpoint!;
  t.is(await readFile(path.join(dst, 'dir', 'a.txt'), 'utf8'), 'alpha\n');

  await writeFile(path.join(src, 'b.txt'), 'bravo two\n');
  await rm(path.join(src, 'dir', 'a.txt'));
  await rename(path.join(src, 'dir'), path.join(src, 'renamed'));
  await symlink('b.txt', path.join(src, 'link'));
  await writeFile(path.join(src, 'script.sh'), '#!/bin/sh\n');
  await chmod(path.join(src, 'script.sh'), 0o750);
  const second = await services.autoSync.run(name);
  t.false(second.full);
  t.true(second.bytes < first.bytes + 4096);
  t.is(await readFile(path.join(dst, 'b.txt'), 'utf8'), 'bravo two\n');
  await t.throwsAsync(stat(path.join(dst, 'dir')));
  t.true((await stat(path.join(dst, 'renamed'))).isDirectory());
  t.is(await readlink(path.join(dst, 'link')), 'b.txt');
  t.is((await stat(path.join(dst, 'script.sh'))).mode & 0o777, 0o750);

  const view = services.autoSync.view(name);
  t.is(view.run.lastResult, 'success');
  t.is(view.run.lastMarker, second.marker);
  t.is(view.status, 'up');
  const log = services.autoSync.log(name).tail(50).join('\n');
  t.regex(log, /\[Starting full fs send\/recv of -R tank\/data@syncsh-tank-data-000-000001:[0-9a-f]+ => tank\/copy \]/);
  t.regex(log, /\[Starting incremental fs send\/recv of delta -R -I tank\/data@\S+:tank\/data@\S+ => tank\/copy \]/);
  t.regex(log, /\[SUCCESS: localhost\/tank\/data => localhost\/tank\/copy OK \(\d+ sec\) \]/);
});

test('markers are pruned to the keep counts and the newest common one is held', async (t) => {
  const { services, src, name } = await setup(t);
  for (let i = 0; i < 4; i++) {
    await writeFile(path.join(src, 'n.txt'), String(i));
    await services.autoSync.run(name);
  }
  for (const dataset of ['fs:tank/data', 'fs:tank/copy']) {
    const snaps = (await services.folders.snapshots(dataset)).filter((s) => s.service === name);
    t.is(snaps.length, 2, dataset);
    t.deepEqual(
      snaps.map((s) => s.held),
      [false, true],
      dataset,
    );
  }
});

test('two runs at once: one is refused as busy, the other succeeds', async (t) => {
  const { services, name } = await setup(t);
  const results = await Promise.allSettled([services.autoSync.run(name), services.autoSync.run(name)]);
  const ok = results.filter((r) => r.status === 'fulfilled');
  const refused = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
  t.is(ok.length, 1);
  t.is(refused.length, 1);
  t.regex(refused[0].reason.message, /auto-sync:tank-data-000 is busy: a run by process/);
  t.is((await services.autoSync.run(name)).full, false);
});

test('a destination with no common snapshot puts the service in maintenance, never starting over', async (t) => {
  const { services, name } = await setup(t);
  await services.autoSync.run(name);
  for (const snap of await services.folders.snapshots('fs:tank/copy')) {
    const { createFsDriver } = await import('../../src/services/storage/fs/index.js');
    const driver = createFsDriver(services.home.fsRoot);
    await driver.holdSnapshot('tank/copy', snap.name, false);
    await driver.destroySnapshot('tank/copy', snap.name, { recursive: true });
  }
  const driver = await services.storage.driver('fs');
  await driver.createSnapshot('tank/copy', 'someone-elses', { recursive: false });
  await t.throwsAsync(services.autoSync.run(name), { message: /none in common with the source fs:tank\/data\. Nothing was sent\. Run 'setup auto-sync :tank-data-000 resync'/ });
  const view = services.autoSync.view(name);
  t.is(view.state, 'maintenance');
  t.like(view.config.maintenance, { kind: 'broken-chain', fix: `setup auto-sync :${name} resync` });
  t.regex(view.config.maintenance!.reason, /^Broken chain: /);
  // The refusal and the status name the command that fixes a broken chain, not enable.
  const refusal = await t.throwsAsync(services.autoSync.run(name), { message: /is in maintenance/ });
  t.regex(refusal!.message, new RegExp(`Run 'setup auto-sync :${name} resync' to start over`));
  t.notRegex(refusal!.message, /enable/);
  t.regex(services.autoSync.status(name).message, new RegExp(`^Maintenance: Broken chain: .*Run 'setup auto-sync :${name} resync'`));
  t.regex(services.autoSync.log(name).tail(5).join('\n'), /\[ALERT: auto-sync:tank-data-000 put in maintenance/);

  // resync: a full sync, and the old destination kept under a new name, snapshots and all
  const result = await services.autoSync.run(name, { resync: true });
  t.true(result.full);
  t.is(services.autoSync.view(name).state, 'online');
  const kept = (await services.folders.list()).find((f) => /^fs:tank\/copy-resync-\d{8}T\d{6}$/.test(f.qualified));
  t.truthy(kept, 'the previous destination is kept');
  t.deepEqual(
    (await services.folders.snapshots(kept!.qualified)).map((s) => s.name),
    ['someone-elses'],
  );
  t.regex(services.autoSync.log(name).tail(10).join('\n'), /\[Resync: the previous destination localhost\/tank\/copy is kept as tank\/copy-resync-/);
  const dst = (await services.folders.list('fs:tank/copy'))[0].mountpoint!;
  t.is(await readFile(path.join(dst, 'b.txt'), 'utf8'), 'bravo\n');
});

test('a destination written to since its last snapshot is reported, not rolled back, unless force', async (t) => {
  const { services, name } = await setup(t);
  await services.autoSync.run(name);
  const dst = (await services.folders.list('fs:tank/copy'))[0].mountpoint!;
  await writeFile(path.join(dst, 'local-edit.txt'), 'precious');
  await t.throwsAsync(services.autoSync.run(name), { message: /was written to since its last received snapshot; nothing was rolled back/ });
  t.is(await readFile(path.join(dst, 'local-edit.txt'), 'utf8'), 'precious');
  await services.autoSync.setProperty(name, 'force', 'yes');
  await services.autoSync.run(name);
  await t.throwsAsync(stat(path.join(dst, 'local-edit.txt')));
});

test('properties are validated per key; read-only keys say so', async (t) => {
  const { services, name } = await setup(t);
  await services.autoSync.setProperty(name, 'keep_src', '7');
  t.is(services.autoSync.getProperty(name, 'keep_src')[0].value, '7');
  await services.autoSync.setProperty(name, 'type', 'minute');
  await services.autoSync.setProperty(name, 'period', '15');
  t.is(services.autoSync.getProperty(name, 'schedule')[0].value, 'every 15 minutes');
  await t.throwsAsync(services.autoSync.setProperty(name, 'keep_src', '0'), { message: /keep_src must be between 1 and 10000, not 0/ });
  await t.throwsAsync(services.autoSync.setProperty(name, 'type', 'sometimes'), { message: /not "sometimes"/ });
  await t.throwsAsync(services.autoSync.setProperty(name, 'to_fs', 'fs:x/y'), { message: /to_fs is read-only/ });
  await t.throwsAsync(services.autoSync.setProperty(name, 'colour', 'red'), { message: /Unknown property "colour"/ });
  t.is(services.autoSync.config(name).keepSrc, 7);
});

test('enable, disable and destroy', async (t) => {
  const { services, name } = await setup(t);
  await services.autoSync.run(name);
  await services.autoSync.setEnabled(name, false);
  t.is(services.autoSync.view(name).state, 'disabled');
  await services.autoSync.setEnabled(name, true);
  t.is(services.autoSync.view(name).state, 'online');
  const { keptMarkers } = await services.autoSync.destroy(name);
  t.is(keptMarkers, 2);
  t.deepEqual(services.autoSync.names(), []);
  t.true((await services.folders.snapshots('fs:tank/copy')).every((s) => !s.held));
  await t.throwsAsync(services.folders.destroy('fs:tank/nothing'), { message: /does not exist/ });
});

/**
 * Long dataset names (issue 10 item 10): the fs driver's limit on the whole
 * name is checked up front and stated; a name at the limit works end to end,
 * as a folder, as the source and destination of a service, over runs.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { MAX_DATASET_NAME } from '../../src/services/storage/fs/names.js';

const part = (c: string, n: number) => c.repeat(n);

test('a name longer than the whole-name limit is refused with the limit, and nothing is created', async (t) => {
  const { services, home } = makeAppliance(t);
  await services.folders.create('fs:tank');
  await services.folders.create(`fs:tank/${part('a', 100)}`);
  await services.folders.create(`fs:tank/${part('a', 100)}/${part('b', 90)}`);
  const name = `tank/${part('a', 100)}/${part('b', 90)}/${part('c', 100)}`;
  await t.throwsAsync(services.folders.create(`fs:${name}`), {
    message: `The dataset name ${name} is ${name.length} characters long; the fs driver allows at most ${MAX_DATASET_NAME} in all, "/" included, because its metadata keeps the whole name as one file name.`,
  });
  t.false(existsSync(path.join(home, 'fs', ...name.split('/'))));
});

test('names at the limit work: folders, a service between them, full and incremental runs', async (t) => {
  const { services } = makeAppliance(t);
  await services.folders.create('fs:tank');
  const long = (c: string) => `tank/${part(c, 100)}/${part(c, MAX_DATASET_NAME - 106)}`;
  t.is(long('s').length, MAX_DATASET_NAME);
  await services.folders.create(`fs:tank/${part('s', 100)}`);
  await services.folders.create(`fs:tank/${part('d', 100)}`);
  const src = (await services.folders.create(`fs:${long('s')}`)).mountpoint!;
  await writeFile(path.join(src, 'file.txt'), 'v1');
  const { name } = await services.autoSync.create({ fromFs: `fs:${long('s')}`, toFs: `fs:${long('d')}`, type: 'hour', period: 1 });
  t.true(name.length <= 104, `the service name is cut to a stem and a number: ${name}`);
  t.is((await services.autoSync.run(name)).full, true);
  await writeFile(path.join(src, 'file.txt'), 'v2');
  t.is((await services.autoSync.run(name)).full, false);
  const dst = (await services.folders.list(`fs:${long('d')}`))[0].mountpoint!;
  t.is(await readFile(path.join(dst, 'file.txt'), 'utf8'), 'v2');
  t.is(services.autoSync.history(name, 'send').list().length, 2);
});

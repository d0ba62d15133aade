/**
 * A full disk during a run (issue 10, "Messages"): the failure names the
 * dataset and the phase and says that nothing was changed, which is true:
 * the destination stays at its previous snapshot.
 */
import test from 'ava';
import { readFile, writeFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { statfsSync } from 'node:fs';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { requireSystem } from '../helpers/system.js';
import { smallFs, smallFsMissing, fill } from '../helpers/small-fs.js';
import { createServices } from '../../src/services/index.js';

const free = (dir: string) => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

test('ENOSPC while receiving: a sentence with the dataset, the phase and what was left; the destination is as it was', async (t) => {
  if (!(await requireSystem(t, ['tmpfs'], smallFsMissing))) return;
  const fsRoot = await smallFs(t, '16m');
  const a = makeAppliance(t);
  const services = createServices({ ...a.env, SYNCSH_FS_ROOT: fsRoot });
  await services.folders.create('fs:tank');
  const src = (await services.folders.create('fs:tank/data')).mountpoint!;
  await writeFile(path.join(src, 'file.txt'), 'v1');
  const { name } = await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy', type: 'hour', period: 1 });
  await services.autoSync.run(name);
  const big = 2 << 20;
  await writeFile(path.join(src, 'big.bin'), randomBytes(big));
  await writeFile(path.join(src, 'file.txt'), 'v2');
  // Room for the source snapshot of the new data, not for its copy on the destination.
  const filler = path.join(fsRoot, 'filler');
  fill(filler);
  await rm(filler);
  await writeFile(filler, Buffer.alloc(Math.max(0, free(fsRoot) - Math.round(big * 1.5)), 1));
  const error = await t.throwsAsync(services.autoSync.run(name));
  t.log(error!.message);
  t.is(error!.message, 'No space left for fs:tank/copy while receiving: nothing was changed (the destination stays at its previous snapshot). Free space there, then run again.');
  const dst = (await services.folders.list('fs:tank/copy'))[0].mountpoint!;
  t.is(await readFile(path.join(dst, 'file.txt'), 'utf8'), 'v1');
  t.regex(services.autoSync.store.runState(name).lastError!, /^No space left for /);
  t.true(
    services.autoSync
      .log(name)
      .tail(10)
      .some((l) => /FAILURE: .*No space left for fs:tank/.test(l)),
  );
});

/**
 * A power cut right after a run said it was done (issue 15; issue 11 for
 * zvols): the home on an ext4 image whose power is cut (test/helpers/
 * power-cut.ts), the run through the real CLI, the cut the moment it exits,
 * then the file system mounted again. What the run reported must be there:
 * the destination's files, and both sides' snapshots whole (each read back
 * by a full send into a scratch dataset, which checks every block's hash:
 * the campaign's readBackWhole).
 */
import test from 'ava';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { assertBuilt } from '../../helpers/cli.js';
import { diffTrees, readTree } from '../../helpers/fs-tree.js';
import { makePowerCutDisk, powerCutMissing } from '../../helpers/power-cut.js';
import { requireSystem } from '../../helpers/system.js';
import { makeAppliance, ok } from '../../peer/_fixture.js';
import { readBackWhole } from '../../../bench/faults/world.js';

test('a run that reported success is all there after a power cut the moment it ended: files and both stores', async (t) => {
  if (!(await requireSystem(t, ['ext4 power cut'], powerCutMissing))) return;
  assertBuilt();
  const disk = await makePowerCutDisk(t);
  const a = makeAppliance(t, 'alpha', {}, disk.dir);
  await ok(a, 'create folder fs:tank');
  await ok(a, 'create folder fs:tank/src');
  const src = a.live('tank/src');
  const sizes = [10, 4096, 70_000, 300_000, 1_500_000, 3_000_000];
  for (const [i, size] of sizes.entries()) {
    mkdirSync(path.join(src, `d${i % 3}`), { recursive: true });
    await writeFile(path.join(src, `d${i % 3}`, `f${i}.bin`), randomBytes(size));
  }
  // the operator's files were on disk long before (a cut must not take what syncsh never wrote)
  await execa('sync', ['-f', src]);
  const expected = await readTree(src);
  const made = await ok(a, 'create auto-sync --from-fs fs:tank/src --to-fs fs:tank/copy --type hour --period 1 --recursive no -y');
  const name = /auto-sync:(\S+?):/.exec(made)![1];
  await ok(a, `run auto-sync :${name}`);
  await disk.cut();
  await disk.restore();

  t.deepEqual(diffTrees(await readTree(a.live('tank/copy')), expected), [], "the destination's files");
  const status = await ok(a, `show auto-sync :${name} status`);
  t.notRegex(status, /maintenance|failure/i, status);
  for (const [side, dataset] of [
    ['destination', 'tank/copy'],
    ['source', 'tank/src'],
  ]) {
    const back = await readBackWhole(a, dataset);
    if (typeof back === 'string') t.fail(`the ${side}'s snapshot read back whole: ${back}`);
    else t.deepEqual(diffTrees(back, expected), [], `the ${side}'s snapshot read back whole`);
  }
});

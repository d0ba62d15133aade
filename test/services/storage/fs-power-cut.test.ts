/**
 * A power cut right after a run said it was done (issue 15; issue 11 for
 * zvols): the home on an ext4 image whose power is cut (test/helpers/
 * power-cut.ts), the run through the real CLI, the cut the moment it exits,
 * then the file system mounted again. What the run reported must be there:
 * the destination's files, and both sides' snapshots whole (each read back
 * by a full replication to a fresh dataset, which checks every block's hash).
 */
import test from 'ava';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { assertBuilt, syncsh } from '../../helpers/cli.js';
import { diffTrees, readTree } from '../../helpers/fs-tree.js';
import { makePowerCutDisk, powerCutMissing } from '../../helpers/power-cut.js';
import { requireSystem } from '../../helpers/system.js';

const ok = async (line: string, env: NodeJS.ProcessEnv) => {
  const r = await syncsh(['-c', line], env);
  if (r.exitCode !== 0) throw new Error(`${line}: ${r.stderr}`);
  return String(r.stdout);
};

/** a full replication of `from` to a fresh dataset, and the files it gives (every block of `from`'s store read and hash-checked on the way) */
async function readBackWhole(from: string, to: string, env: NodeJS.ProcessEnv, home: string) {
  const made = await ok(`create auto-sync --from-fs ${from} --to-fs ${to} --type hour --period 1 --recursive no -y`, env);
  const name = /auto-sync:(\S+?):/.exec(made)![1];
  const r = await syncsh(['-c', `run auto-sync :${name}`], env);
  return { ok: r.exitCode === 0, why: String(r.stderr).trim(), tree: r.exitCode === 0 ? await readTree(path.join(home, 'fs', ...to.replace(/^fs:/, '').split('/'))) : null };
}

test('a run that reported success is all there after a power cut the moment it ended: files and both stores', async (t) => {
  if (!(await requireSystem(t, ['ext4 power cut'], powerCutMissing))) return;
  assertBuilt();
  const disk = await makePowerCutDisk(t);
  const home = path.join(disk.dir, 'home');
  mkdirSync(home);
  const env = { ...process.env, SYNCSH_HOME: home, SYNCSH_APPLIANCE_ID: 'alpha' };
  await ok('create folder fs:tank', env);
  await ok('create folder fs:tank/src', env);
  const src = path.join(home, 'fs', 'tank', 'src');
  const sizes = [10, 4096, 70_000, 300_000, 1_500_000, 3_000_000];
  for (const [i, size] of sizes.entries()) {
    mkdirSync(path.join(src, `d${i % 3}`), { recursive: true });
    await writeFile(path.join(src, `d${i % 3}`, `f${i}.bin`), randomBytes(size));
  }
  // the operator's files were on disk long before (a cut must not take what syncsh never wrote)
  await execa('sync', ['-f', src]);
  const expected = await readTree(src);
  const made = await ok('create auto-sync --from-fs fs:tank/src --to-fs fs:tank/copy --type hour --period 1 --recursive no -y', env);
  const name = /auto-sync:(\S+?):/.exec(made)![1];
  await ok(`run auto-sync :${name}`, env);
  await disk.cut();
  await disk.restore();

  t.deepEqual(diffTrees(await readTree(path.join(home, 'fs', 'tank', 'copy')), expected), [], "the destination's files");
  const status = await ok(`show auto-sync :${name} status`, env);
  t.notRegex(status, /maintenance|failure/i, status);
  const copy = await readBackWhole('fs:tank/copy', 'fs:tank/check-copy', env, home);
  t.true(copy.ok, `the destination's snapshot read back whole: ${copy.why}`);
  if (copy.tree) t.deepEqual(diffTrees(copy.tree, expected), []);
  const source = await readBackWhole('fs:tank/src', 'fs:tank/check-src', env, home);
  t.true(source.ok, `the source's snapshot read back whole: ${source.why}`);
  if (source.tree) t.deepEqual(diffTrees(source.tree, expected), []);
});

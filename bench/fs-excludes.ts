/**
 * Exclude patterns and the fs engine: two appliances, each with a generated
 * tree of the same shape (default 20,000 files, 1 GiB), one service with no
 * patterns and one excluding 10% of the files (`/d[0-3]/`: 4 of the 40 top
 * directories); full, then incremental after 1% of the files changed.
 * Printed side by side, and next to `rsync -a --delete --exclude` of the
 * same pattern.
 *   npm run bench:excludes      (BENCH_FILES / BENCH_MB to resize)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { changeFraction, countFiles, fsBenchSource, printTable, syncsh, timed } from './common.js';

const files = Number(process.env.BENCH_FILES) || 20_000;
const megabytes = Number(process.env.BENCH_MB) || 1024;
const PATTERN = '/d[0-3]/';

const work = await mkdtemp(path.join(process.env.BENCH_DIR || os.tmpdir(), 'syncsh-bench-'));
try {
  // Two appliances, each with its own tree of the same shape: a service on a shared source would
  // find the blocks and stat cache the other's snapshot left, and look faster than it is.
  const all = await fsBenchSource(path.join(work, 'all'), files, megabytes);
  const some = await fsBenchSource(path.join(work, 'some'), files, megabytes);
  await syncsh(all.env, 'create auto-sync --from-fs fs:bench/src --to-fs fs:bench/dst --keep-src 2 --keep-dst 2 -y');
  await syncsh(some.env, `create auto-sync --from-fs fs:bench/src --to-fs fs:bench/dst --keep-src 2 --keep-dst 2 --exclude '${PATTERN}' -y`);
  const rsyncDst = path.join(work, 'rsync-dst');
  const rsync = () => execa('rsync', ['-a', '--delete', `--exclude=${PATTERN}`, `${some.src}/`, `${rsyncDst}/`]);
  const run = (env: NodeJS.ProcessEnv) => syncsh(env, 'run auto-sync :bench-src-000');

  const fullAll = await timed(() => run(all.env));
  const fullSome = await timed(() => run(some.env));
  const fullRsync = await timed(rsync);
  const changed = await changeFraction(all.paths, 0.01);
  await changeFraction(some.paths, 0.01);
  const incAll = await timed(() => run(all.env));
  const incSome = await timed(() => run(some.env));
  const incRsync = await timed(rsync);

  const dst = (env: NodeJS.ProcessEnv) => path.join(env.SYNCSH_HOME!, 'fs', 'bench', 'dst');
  const [nAll, nSome, nRsync] = [await countFiles(dst(all.env)), await countFiles(dst(some.env)), await countFiles(rsyncDst)];
  const expected = files - Array.from({ length: files }, (_, i) => i % 40 < 4).filter(Boolean).length;
  if (nAll !== files || nSome !== expected || nRsync !== expected) throw new Error(`file counts differ: all ${nAll} (want ${files}), excluded ${nSome} and rsync ${nRsync} (want ${expected})`);
  for (const r of [fullAll, fullSome, incAll, incSome]) console.log(r.value.stdout);
  printTable(`fs driver, ${PATTERN} excluded (${files - expected} of ${files} files) vs no excludes: ${megabytes} MiB, ${changed} files changed`, 'no excludes', [
    { phase: 'full', ours: fullSome.seconds, theirs: fullAll.seconds },
    { phase: 'incremental (1% changed)', ours: incSome.seconds, theirs: incAll.seconds },
  ]);
  printTable(`fs driver vs rsync -a --delete, both with --exclude ${PATTERN}`, 'rsync --exclude', [
    { phase: 'full', ours: fullSome.seconds, theirs: fullRsync.seconds },
    { phase: 'incremental (1% changed)', ours: incSome.seconds, theirs: incRsync.seconds },
  ]);
} finally {
  await rm(work, { recursive: true, force: true });
}

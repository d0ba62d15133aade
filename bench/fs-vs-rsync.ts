/**
 * The built-in fs engine against `rsync -a --delete` on the same trees in
 * the same run: a full sync of a generated tree (default 20,000 files,
 * 1 GiB), then an incremental sync after 1% of the files changed, another
 * after another 1% changed (the steady state: a destination an incremental
 * commit wrote), and one with nothing changed.
 *   npm run bench:fs            (BENCH_FILES / BENCH_MB to resize)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { changeFraction, countFiles, fsBenchSource, printTable, syncsh, timed } from './common.js';

const files = Number(process.env.BENCH_FILES) || 20_000;
const megabytes = Number(process.env.BENCH_MB) || 1024;

const work = await mkdtemp(path.join(process.env.BENCH_DIR || os.tmpdir(), 'syncsh-bench-'));
try {
  const { env, src, paths } = await fsBenchSource(work, files, megabytes);
  await syncsh(env, 'create auto-sync --from-fs fs:bench/src --to-fs fs:bench/dst --keep-src 2 --keep-dst 2 -y');
  const rsyncDst = path.join(work, 'rsync-dst');
  const rsync = () => execa('rsync', ['-a', '--delete', `${src}/`, `${rsyncDst}/`]);

  const fullOurs = await timed(() => syncsh(env, 'run auto-sync :bench-src-000'));
  const fullTheirs = await timed(rsync);
  const changed = await changeFraction(paths, 0.01);
  const incOurs = await timed(() => syncsh(env, 'run auto-sync :bench-src-000'));
  const incTheirs = await timed(rsync);
  // Every run after that one starts from a destination an incremental commit wrote (not a full receive's): the steady state.
  await changeFraction(paths.slice(1), 0.01);
  const againOurs = await timed(() => syncsh(env, 'run auto-sync :bench-src-000'));
  const againTheirs = await timed(rsync);
  const quietOurs = await timed(() => syncsh(env, 'run auto-sync :bench-src-000'));
  const quietTheirs = await timed(rsync);

  const dst = path.join(env.SYNCSH_HOME, 'fs', 'bench', 'dst');
  const [a, b] = [await countFiles(dst), await countFiles(rsyncDst)];
  if (a !== b || a !== files) throw new Error(`file counts differ: syncsh ${a}, rsync ${b}, source ${files}`);
  console.log(fullOurs.value.stdout);
  console.log(incOurs.value.stdout);
  console.log(againOurs.value.stdout);
  console.log(quietOurs.value.stdout);
  printTable(`fs driver vs rsync -a --delete: ${files} files, ${megabytes} MiB, ${changed} files changed`, 'rsync -a --delete', [
    { phase: 'full', ours: fullOurs.seconds, theirs: fullTheirs.seconds },
    { phase: 'incremental (1% changed)', ours: incOurs.seconds, theirs: incTheirs.seconds },
    { phase: 'incremental again (1%)', ours: againOurs.seconds, theirs: againTheirs.seconds },
    { phase: 'nothing changed', ours: quietOurs.seconds, theirs: quietTheirs.seconds },
  ]);
} finally {
  await rm(work, { recursive: true, force: true });
}

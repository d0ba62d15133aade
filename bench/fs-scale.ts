/**
 * The fs engine at scale, next to `rsync -a --delete`: a tree of many small
 * files (default 100,000 of 1 KiB; the goal is ≤ 200 MB peak for 1,000,000),
 * synced in full, then again with nothing changed, then after 1% of the
 * files changed. Each run is one process under `/usr/bin/time -v`, which
 * gives its wall time and peak RSS (rsync's is its largest process).
 *   npm run bench:fs-scale -- [--files N] [--size BYTES] [--changed FRACTION]
 * BENCH_DIR picks the disk (default the temp dir); BENCH_KEEP=1 keeps it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { BIN, countFiles, syncsh } from './common.js';

const { values } = parseArgs({ options: { files: { type: 'string', default: '100000' }, size: { type: 'string', default: '1024' }, changed: { type: 'string', default: '0.01' } } });
const files = Number(values.files);
const size = Number(values.size);
const fraction = Number(values.changed);
if (!Number.isSafeInteger(files) || files < 1) throw new Error(`--files ${values.files} is not a positive whole number.`);
if (!Number.isSafeInteger(size) || size < 0) throw new Error(`--size ${values.size} is not a whole number of bytes.`);
if (!(fraction > 0 && fraction <= 1)) throw new Error(`--changed ${values.changed} is not a fraction in (0, 1].`);

/** 1,000 files a directory, 100 directories a level: the shape of a file server's home directories. */
function filePath(root: string, i: number): string {
  const d = Math.floor(i / 1000);
  return path.join(root, `g${Math.floor(d / 100)}`, `d${d % 100}`, `f${i}`);
}

/** Distinct content per file (no dedupe to flatter either side), written synchronously: far faster for many small files. */
function generate(root: string): void {
  const body = Buffer.alloc(size);
  for (let i = 0; i < files; i++) {
    const file = filePath(root, i);
    if (i % 1000 === 0) mkdirSync(path.dirname(file), { recursive: true });
    body.write(`${i} ${Date.now()}\n`.padEnd(Math.min(size, 32), '.'), 0);
    writeFileSync(file, size ? body : '');
  }
}

function change(root: string): number {
  const step = Math.max(1, Math.round(1 / fraction));
  const body = Buffer.alloc(size + 1, 'x');
  let n = 0;
  for (let i = 0; i < files; i += step, n++) writeFileSync(filePath(root, i), body);
  return n;
}

interface Measured {
  seconds: number;
  peakMB: number;
}

/** One command under GNU time: its wall time and its largest process's peak RSS. */
async function measure(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<Measured> {
  const r = await execa('/usr/bin/time', ['-v', file, ...args], { env, reject: false });
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.exitCode}): ${r.stderr.slice(-2000)}`);
  const field = (name: string) => {
    const m = new RegExp(`${name}: (.+)`).exec(r.stderr);
    if (!m) throw new Error(`/usr/bin/time printed no "${name}"`);
    return m[1].trim();
  };
  const wall = field('Elapsed \\(wall clock\\) time \\(h:mm:ss or m:ss\\)')
    .split(':')
    .reduce((n, part) => n * 60 + Number(part), 0);
  return { seconds: wall, peakMB: Number(field('Maximum resident set size \\(kbytes\\)')) / 1024 };
}

const work = await mkdtemp(path.join(process.env.BENCH_DIR || os.tmpdir(), 'syncsh-scale-'));
try {
  const env = { ...process.env, SYNCSH_HOME: path.join(work, 'home'), SYNCSH_APPLIANCE_ID: 'bench' };
  await syncsh(env, 'create folder fs:bench');
  await syncsh(env, 'create folder fs:bench/src');
  const src = path.join(env.SYNCSH_HOME, 'fs', 'bench', 'src');
  const rsyncDst = path.join(work, 'rsync-dst');
  const started = Date.now();
  console.log(`generating ${files} files of ${size} bytes in ${src} …`);
  generate(src);
  console.log(`generated in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await syncsh(env, 'create auto-sync --from-fs fs:bench/src --to-fs fs:bench/dst --keep-src 2 --keep-dst 2 -y');
  const ours = () => measure('node', [BIN, '-c', 'run auto-sync :bench-src-000'], env);
  const theirs = () => measure('rsync', ['-a', '--delete', `${src}/`, `${rsyncDst}/`], env);
  const rows: { phase: string; ours: Measured; theirs: Measured }[] = [];
  const phase = async (name: string) => {
    const o = await ours();
    const t = await theirs();
    rows.push({ phase: name, ours: o, theirs: t });
    console.log(`${name}: syncsh ${o.seconds.toFixed(2)} s ${o.peakMB.toFixed(0)} MB, rsync ${t.seconds.toFixed(2)} s ${t.peakMB.toFixed(0)} MB`);
  };
  await phase('full');
  await phase('nothing changed');
  const changed = change(src);
  await phase(`incremental (${changed} changed)`);

  const dst = path.join(env.SYNCSH_HOME, 'fs', 'bench', 'dst');
  const [a, b] = [await countFiles(dst), await countFiles(rsyncDst)];
  if (a !== b || a !== files) throw new Error(`file counts differ: syncsh ${a}, rsync ${b}, source ${files}`);

  console.log(`\nfs driver vs rsync -a --delete at scale: ${files} files of ${size} bytes, load ${os.loadavg()[0].toFixed(1)}`);
  console.log(`${'phase'.padEnd(30)}${'syncsh s'.padStart(10)}${'rsync s'.padStart(10)}${'ratio'.padStart(8)}${'syncsh MB'.padStart(11)}${'rsync MB'.padStart(10)}`);
  for (const r of rows) {
    console.log(
      `${r.phase.padEnd(30)}${r.ours.seconds.toFixed(2).padStart(10)}${r.theirs.seconds.toFixed(2).padStart(10)}${(r.ours.seconds / r.theirs.seconds).toFixed(2).padStart(8)}${r.ours.peakMB.toFixed(0).padStart(11)}${r.theirs.peakMB.toFixed(0).padStart(10)}`,
    );
  }
  console.log('(time ratio = syncsh / rsync; MB = peak resident memory of the run)');
} finally {
  if (process.env.BENCH_KEEP) console.log(`kept ${work}`);
  else await rm(work, { recursive: true, force: true });
}

/** Shared by the benchmarks: timing, tree generation, and the side-by-side table. */
import { mkdir, writeFile, readdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../bin/syncsh.js', import.meta.url));

export async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, value };
}

/** A tree of `files` files totalling about `bytes`, spread over nested directories, sizes skewed like real data. */
export async function generateTree(root: string, files: number, bytes: number): Promise<string[]> {
  const paths: string[] = [];
  const weights = Array.from({ length: files }, (_, i) => (i % 50 === 0 ? 40 : 1 + (i % 7)));
  const total = weights.reduce((a, b) => a + b, 0);
  const chunk = randomBytes(4 << 20);
  for (let i = 0; i < files; i++) {
    const dir = path.join(root, `d${i % 40}`, `s${i % 13}`);
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, `f${i}.dat`);
    const size = Math.floor((bytes * weights[i]) / total);
    const offset = (i * 7919) % (chunk.length - Math.min(size, chunk.length - 1));
    const body = size <= chunk.length - offset ? chunk.subarray(offset, offset + size) : Buffer.concat(Array.from({ length: Math.ceil(size / chunk.length) }, () => chunk)).subarray(0, size);
    await writeFile(file, Buffer.concat([Buffer.from(`${i}\n`), body]));
    paths.push(file);
  }
  return paths;
}

/** Rewrite `fraction` of the files with new content of the same size. */
export async function changeFraction(paths: string[], fraction: number): Promise<number> {
  const step = Math.max(1, Math.round(1 / fraction));
  let n = 0;
  for (let i = 0; i < paths.length; i += step) {
    await writeFile(paths[i], randomBytes(4096 + (i % 32768)));
    n++;
  }
  return n;
}

export async function countFiles(root: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) if (e.isFile()) n++;
  return n;
}

export function syncsh(env: NodeJS.ProcessEnv, command: string) {
  return execa('node', [BIN, '-c', command], { env });
}

/**
 * A fresh appliance home in `work` whose fs dataset bench/src holds a
 * generated tree: the env that runs syncsh as it, the source directory and
 * the generated files (fs-vs-rsync.ts and fs-profile.ts start from this).
 */
export async function fsBenchSource(work: string, files: number, megabytes: number) {
  const env = { ...process.env, SYNCSH_HOME: path.join(work, 'home'), SYNCSH_APPLIANCE_ID: 'bench' };
  await syncsh(env, 'create folder fs:bench');
  await syncsh(env, 'create folder fs:bench/src');
  const src = path.join(env.SYNCSH_HOME, 'fs', 'bench', 'src');
  console.log(`generating ${files} files, ${megabytes} MiB in ${src} …`);
  const paths = await generateTree(src, files, megabytes << 20);
  return { env, src, paths };
}

export function printTable(title: string, peer: string, rows: { phase: string; ours: number; theirs: number }[]): void {
  console.log(`\n${title}`);
  console.log(`${'phase'.padEnd(28)}${'syncsh (s)'.padStart(12)}${`${peer} (s)`.padStart(22)}${'ratio'.padStart(10)}`);
  for (const r of rows) {
    console.log(`${r.phase.padEnd(28)}${r.ours.toFixed(2).padStart(12)}${r.theirs.toFixed(2).padStart(22)}${(r.ours / r.theirs).toFixed(2).padStart(10)}`);
  }
  console.log('(ratio = syncsh / peer; below 1 means syncsh was faster)');
}

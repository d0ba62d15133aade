/**
 * Build, read and compare real directory trees in tests: a temp dir removed
 * at teardown, a declarative tree writer, a summary of a tree (type, mode,
 * size, mtime, content hash, symlink target) and a readable diff of two.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, chmodSync } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, realpath, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** rm -rf that also gets through read-only directories (unmounted mountpoints, 0555 dirs) as a non-root user. */
export function removeAll(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
    return;
  } catch {
    /* a read-only directory inside: open them all up and try again */
  }
  const openUp = (p: string) => {
    try {
      chmodSync(p, 0o700);
      for (const e of readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) openUp(path.join(p, e.name));
    } catch {
      /* gone or not ours */
    }
  };
  openUp(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** A fresh directory under os.tmpdir(), removed when the test ends (pass or fail). */
export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'syncsh-fs-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => removeAll(dir));
  return dir;
}

export type TreeSpec = Record<string, string | Buffer | { content: string | Buffer; mode?: number; mtime?: number } | { symlink: string; mtime?: number } | { dir: true; mode?: number; mtime?: number }>;

/** Write `spec` under `root` (paths relative, parents made as needed); mtime in seconds. */
export async function writeTree(root: string, spec: TreeSpec): Promise<void> {
  const dirTimes: [string, number, number | undefined][] = [];
  for (const [rel, value] of Object.entries(spec)) {
    const p = path.join(root, rel);
    await mkdir(path.dirname(p), { recursive: true });
    if (typeof value === 'string' || Buffer.isBuffer(value)) {
      await writeFile(p, value);
    } else if ('symlink' in value) {
      await symlink(value.symlink, p);
    } else if ('dir' in value) {
      await mkdir(p, { recursive: true });
      if (value.mtime !== undefined || value.mode !== undefined) dirTimes.push([p, value.mtime ?? Date.now() / 1000, value.mode]);
    } else {
      await writeFile(p, value.content);
      if (value.mode !== undefined) chmodSync(p, value.mode);
      if (value.mtime !== undefined) await utimes(p, value.mtime, value.mtime);
    }
  }
  // Directory times last: writing inside a directory moves its mtime.
  for (const [p, mtime, mode] of dirTimes) {
    await utimes(p, mtime, mtime);
    if (mode !== undefined) chmodSync(p, mode);
  }
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (!bytesRead) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

export interface NodeSummary {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  size: number;
  mtimeNs: bigint;
  sha256?: string;
  target?: string;
}

/** Every entry under root except root itself; `exclude` drops top-level names (child datasets). */
/** A child fs dataset's mountpoint is a link to a version of its tree (src/services/storage/fs/versions.ts): walked into, as a mountpoint is. */
export async function isMountLink(p: string): Promise<boolean> {
  try {
    return /\/\.syncsh\/[^/]+\/trees\/[^/]+$/.test(await realpath(p));
  } catch {
    return false;
  }
}

export async function readTree(root: string, exclude: string[] = []): Promise<Map<string, NodeSummary>> {
  const out = new Map<string, NodeSummary>();
  const walk = async (rel: string) => {
    const dir = rel ? path.join(root, rel) : root;
    for (const name of (await readdir(dir)).sort()) {
      if (!rel && exclude.includes(name)) continue;
      const childRel = rel ? `${rel}/${name}` : name;
      const p = path.join(root, childRel);
      const st = (await isMountLink(p)) ? await stat(p, { bigint: true }) : await lstat(p, { bigint: true });
      const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
      const node: NodeSummary = { type, mode: Number(st.mode & 0o7777n), size: Number(st.size), mtimeNs: st.mtimeNs };
      if (type === 'file') node.sha256 = await sha256File(p);
      if (type === 'symlink') node.target = await readlink(p);
      out.set(childRel, node);
      if (type === 'dir') await walk(childRel);
    }
  };
  await walk('');
  return out;
}

/**
 * Differences between two trees as sentences (empty when equal). mtimes are
 * compared to within 2 µs (Node sets times through a double); symlink
 * modes are not compared (Linux cannot set them).
 */
export function diffTrees(a: Map<string, NodeSummary>, b: Map<string, NodeSummary>, opts: { mtimes?: boolean } = {}): string[] {
  const out: string[] = [];
  const mtimes = opts.mtimes ?? true;
  for (const [p, x] of a) {
    const y = b.get(p);
    if (!y) {
      out.push(`${p}: only in the first tree`);
      continue;
    }
    if (x.type !== y.type) out.push(`${p}: ${x.type} vs ${y.type}`);
    else {
      if (x.type !== 'symlink' && x.mode !== y.mode) out.push(`${p}: mode ${x.mode.toString(8)} vs ${y.mode.toString(8)}`);
      if (x.size !== y.size && x.type === 'file') out.push(`${p}: size ${x.size} vs ${y.size}`);
      if (x.sha256 !== y.sha256) out.push(`${p}: content differs`);
      if (x.target !== y.target) out.push(`${p}: target ${x.target} vs ${y.target}`);
      const d = x.mtimeNs - y.mtimeNs;
      if (mtimes && (d > 2000n || d < -2000n)) out.push(`${p}: mtime ${x.mtimeNs} vs ${y.mtimeNs}`);
    }
  }
  for (const p of b.keys()) if (!a.has(p)) out.push(`${p}: only in the second tree`);
  return out;
}

/** `files` files of random content totalling about `bytes`, over nested directories; returns relative paths. */
export async function generateTree(root: string, files: number, bytes: number): Promise<string[]> {
  const pool = randomBytes(Math.min(Math.max(bytes, 1), 8 << 20));
  const paths: string[] = [];
  const each = Math.floor(bytes / files);
  for (let i = 0; i < files; i++) {
    const rel = `d${i % 20}/s${i % 7}/f${i}.dat`;
    await mkdir(path.join(root, path.dirname(rel)), { recursive: true });
    const size = Math.max(1, Math.floor(each * (0.5 + ((i * 7919) % 100) / 100)));
    const start = (i * 104729) % Math.max(1, pool.length - Math.min(size, pool.length));
    const body = size <= pool.length ? pool.subarray(start, start + size) : Buffer.concat([pool, randomBytes(size - pool.length)]);
    await writeFile(path.join(root, rel), Buffer.concat([Buffer.from(`${i}\n`), body]));
    paths.push(rel);
  }
  return paths;
}

/**
 * A sparse file of `size` bytes with random data at the given offsets
 * (sorted, not overlapping). Returns the sha256 of its content, computed as
 * it is written, so checking a copy does not need to read the original.
 */
export async function sparseFile(file: string, size: number, pieces: { offset: number; length: number }[]): Promise<string> {
  const hash = createHash('sha256');
  const zeros = Buffer.alloc(1 << 20);
  const hashZeros = (n: number) => {
    for (let left = n; left > 0; left -= zeros.length) hash.update(zeros.subarray(0, Math.min(left, zeros.length)));
  };
  const fh = await open(file, 'w');
  try {
    await fh.truncate(size);
    let at = 0;
    for (const { offset, length } of pieces) {
      if (offset < at || offset + length > size) throw new Error(`sparseFile: pieces must be sorted, apart and inside the file (${offset}).`);
      hashZeros(offset - at);
      for (let done = 0; done < length; done += 1 << 20) {
        const chunk = randomBytes(Math.min(1 << 20, length - done));
        await fh.write(chunk, 0, chunk.length, offset + done);
        hash.update(chunk);
      }
      at = offset + length;
    }
    hashZeros(size - at);
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

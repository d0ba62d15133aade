/**
 * The conformance suite's platform: one throwaway appliance (makeAppliance)
 * on one fresh pool per scenario, for each driver, and a small DSL over the
 * real service layer, in the spirit of zrepl's platform tests: a scenario
 * says what it writes, which services it creates and runs, and what the
 * destination must then hold, and runs unchanged on fs, zfs and btrfs.
 *
 *   const p = await FIXTURES.zfs.setup(t);
 *   await p.folder('src');
 *   await p.write('src', { 'a.txt': 'alpha' });
 *   const name = await p.service('src', 'dst');
 *   await p.run(name);
 *   await p.expectMirror('src', 'dst');
 *
 * Datasets are named by a leaf ('src', 'src/a'); `p.ds(leaf)` is the
 * driver-qualified name: fs:tank/src, zfs:<pool>/src, btrfs:<mountpoint>/src.
 * Everything is removed in t.teardown, also when the scenario fails.
 */
import type { ExecutionContext } from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, readlink, stat, symlink, writeFile, chmod, lchown, utimes } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import type { Services } from '../../src/services/index.js';
import type { Driver, DriverName, SnapshotInfo } from '../../src/services/storage/driver.js';
import type { CreateRequest } from '../../src/services/auto-sync/index.js';
import { isMarkerOf } from '../../src/services/auto-sync/markers.js';
import { makeAppliance } from './appliance.js';
import { btrfsMissing, makeBtrfsVolume } from './btrfs-volume.js';
import { sha256File as hashFile, isMountLink } from './fs-tree.js';
import type { SystemCheck } from './system.js';
import { makeZfsPool, zfsMissing } from './zfs-pool.js';

export const MiB = 1 << 20;

// ---- trees -----------------------------------------------------------------

export type Entry = string | Buffer | { content: string | Buffer; mode?: number; uid?: number; gid?: number; mtime?: number } | { symlink: string } | { dir: true; mode?: number; mtime?: number };
export type Tree = Record<string, Entry>;

/** what is compared of each entry: the bytes, and the metadata a replication must keep */
export interface Node {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** whole seconds: every driver keeps those; sub-second precision is not asked of them */
  mtime: number;
  sha256?: string;
  target?: string;
}

/** every entry below `root`, by relative path */
export async function treeOf(root: string): Promise<Map<string, Node>> {
  const out = new Map<string, Node>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(root, rel))).sort()) {
      const childRel = rel ? `${rel}/${name}` : name;
      const full = path.join(root, childRel);
      const st = (await isMountLink(full)) ? await stat(full) : await lstat(full); // a child fs dataset: its tree, as a mountpoint shows it
      const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
      const node: Node = { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: type === 'file' ? st.size : 0, mtime: Math.floor(st.mtimeMs / 1000) };
      if (type === 'file') node.sha256 = await hashFile(full);
      if (type === 'symlink') node.target = await readlink(full);
      out.set(childRel, node);
      if (type === 'dir') await walk(childRel);
    }
  };
  await walk('');
  return out;
}

/** differences as sentences; empty when the trees are the same */
export function diffTrees(want: Map<string, Node>, got: Map<string, Node>, opts: { dirTimes?: boolean; owners?: boolean } = {}): string[] {
  const out: string[] = [];
  for (const [p, a] of want) {
    const b = got.get(p);
    if (!b) {
      out.push(`${p}: missing`);
      continue;
    }
    if (a.type !== b.type) {
      out.push(`${p}: a ${a.type} became a ${b.type}`);
      continue;
    }
    if (a.sha256 !== b.sha256) out.push(`${p}: content differs (${a.size} vs ${b.size} bytes)`);
    if (a.target !== b.target) out.push(`${p}: link to ${a.target}, not ${b.target}`);
    if (a.type !== 'symlink' && a.mode !== b.mode) out.push(`${p}: mode ${a.mode.toString(8)} vs ${b.mode.toString(8)}`);
    if ((opts.owners ?? true) && (a.uid !== b.uid || a.gid !== b.gid)) out.push(`${p}: owner ${a.uid}:${a.gid} vs ${b.uid}:${b.gid}`);
    const timed = a.type === 'file' || (a.type === 'dir' && (opts.dirTimes ?? true));
    if (timed && a.mtime !== b.mtime) out.push(`${p}: mtime ${a.mtime} vs ${b.mtime}`);
  }
  for (const p of got.keys()) if (!want.has(p)) out.push(`${p}: unexpected`);
  return out;
}

export async function writeTree(root: string, tree: Tree): Promise<void> {
  const later: Array<() => Promise<void>> = [];
  for (const [rel, entry] of Object.entries(tree)) {
    const full = path.join(root, rel);
    await mkdir(path.dirname(full), { recursive: true });
    if (typeof entry === 'string' || Buffer.isBuffer(entry)) {
      await writeFile(full, entry);
    } else if ('symlink' in entry) {
      await symlink(entry.symlink, full);
    } else if ('dir' in entry) {
      await mkdir(full, { recursive: true });
      // directory modes and times last: writing inside a directory moves its mtime
      later.push(async () => {
        if (entry.mode !== undefined) await chmod(full, entry.mode);
        if (entry.mtime !== undefined) await utimes(full, entry.mtime, entry.mtime);
      });
    } else {
      await writeFile(full, entry.content);
      if (entry.mode !== undefined) await chmod(full, entry.mode);
      if (entry.uid !== undefined || entry.gid !== undefined) await lchown(full, entry.uid ?? 0, entry.gid ?? 0);
      if (entry.mtime !== undefined) await utimes(full, entry.mtime, entry.mtime);
    }
  }
  for (const fn of later.reverse()) await fn();
}

/** `bytes` of random data (incompressible: no driver can cheat on it) */
export const random = (bytes: number): Buffer => randomBytes(bytes);

/** a file of `size` random bytes written in pieces; returns its sha256 */
export async function bigFile(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(file, 'w');
  try {
    for (let at = 0; at < size; at += 4 * MiB) {
      const chunk = randomBytes(Math.min(4 * MiB, size - at));
      hash.update(chunk);
      await fh.write(chunk, 0, chunk.length, at);
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

/** overwrite `length` bytes at `offset` in place with random data */
export async function overwrite(file: string, offset: number, length: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    await fh.write(randomBytes(length), 0, length, offset);
  } finally {
    await fh.close();
  }
}

export { hashFile };

// ---- fault injection --------------------------------------------------------

/**
 * The driver with `send` wrapped: each stream passes `afterBytes` bytes, then
 * fails with "link cut", as a dropped connection would (the sender is
 * stopped). Everything else is the real driver's.
 */
export function cuttingDriver(real: Driver, afterBytes: number): Driver & { cuts: number } {
  let cuts = 0;
  const wrapped = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'cuts') return cuts;
      if (prop === 'send') {
        return (...args: Parameters<Driver['send']>): Readable => {
          const source = target.send(...args);
          let passed = 0;
          const cut = new Transform({
            transform(chunk: Buffer, _enc, done) {
              if (passed + chunk.length < afterBytes) {
                passed += chunk.length;
                return done(null, chunk);
              }
              this.push(chunk.subarray(0, afterBytes - passed));
              passed = afterBytes;
              cuts++;
              source.destroy();
              done(new Error(`conformance: the link was cut after ${afterBytes} bytes`));
            },
          });
          source.on('error', (error) => cut.destroy(error));
          return source.pipe(cut);
        };
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return wrapped as Driver & { cuts: number };
}

// ---- the platform ------------------------------------------------------------

export interface PlatformOptions {
  /** pool / volume size in bytes (zfs and btrfs) */
  size?: number;
}

export interface ServiceOptions extends Partial<Omit<CreateRequest, 'fromFs' | 'toFs'>> {}

export class Platform {
  constructor(
    readonly t: ExecutionContext,
    readonly kind: DriverName,
    readonly services: Services,
    /** driver-local name of the root every leaf is under */
    private readonly root: string,
    /** replicates child datasets */
    readonly recursive: boolean,
    /** makes volumes (zfs-fuse has no zvols) */
    readonly volumes: boolean,
  ) {}

  /** driver-local name of a leaf */
  local(leaf: string): string {
    return `${this.root}/${leaf}`;
  }

  /** driver-qualified name of a leaf */
  ds(leaf: string): string {
    return `${this.kind}:${this.local(leaf)}`;
  }

  driver(): Promise<Driver> {
    return this.services.storage.usable(this.kind);
  }

  /** create a folder (filesystem), or a volume of `volumeSize` bytes; returns its directory (null for a volume) */
  async folder(leaf: string, opts: { volumeSize?: number } = {}): Promise<string | null> {
    return (await this.services.folders.create(this.ds(leaf), opts)).mountpoint;
  }

  /** where a folder's files are */
  async dir(leaf: string): Promise<string> {
    const info = await (await this.driver()).getDataset(this.local(leaf));
    if (!info) throw new Error(`${this.ds(leaf)} does not exist`);
    if (!info.mountpoint) throw new Error(`${this.ds(leaf)} has no directory (mounted: ${info.mounted}, kind: ${info.kind})`);
    return info.mountpoint;
  }

  /** the image file of a volume */
  volumeImage(leaf: string): string {
    switch (this.kind) {
      case 'fs':
        return path.join(this.services.home.fsRoot, ...this.local(leaf).split('/'), 'volume.img');
      case 'btrfs':
        return path.join(this.local(leaf), '.syncsh-volume.img');
      case 'zfs':
        return `/dev/zvol/${this.local(leaf)}`;
    }
  }

  /** every dataset under the root, as leaves */
  async leaves(): Promise<string[]> {
    const all = await (await this.driver()).listDatasets(this.root);
    return all
      .map((d) => d.name)
      .filter((n) => n.startsWith(`${this.root}/`))
      .map((n) => n.slice(this.root.length + 1));
  }

  async exists(leaf: string): Promise<boolean> {
    return (await (await this.driver()).getDataset(this.local(leaf))) !== null;
  }

  async write(leaf: string, tree: Tree): Promise<void> {
    await writeTree(await this.dir(leaf), tree);
  }

  async tree(leaf: string): Promise<Map<string, Node>> {
    return treeOf(await this.dir(leaf));
  }

  /** an auto-sync service from one leaf to another (recursive where the driver replicates children) */
  async service(from: string, to: string, opts: ServiceOptions = {}): Promise<string> {
    const config = await this.services.autoSync.create({ keepSrc: 3, keepDst: 3, recursive: this.recursive, ...opts, fromFs: this.ds(from), toFs: this.ds(to) });
    return config.name;
  }

  run(name: string): ReturnType<Services['autoSync']['run']> {
    return this.services.autoSync.run(name);
  }

  async snapshots(leaf: string): Promise<SnapshotInfo[]> {
    return (await this.driver()).listSnapshots(this.local(leaf));
  }

  async markers(leaf: string, service: string): Promise<SnapshotInfo[]> {
    return (await this.snapshots(leaf)).filter((s) => isMarkerOf(service, s.name));
  }

  /** the destination holds exactly the source's files, byte for byte, with their metadata */
  async expectMirror(from: string, to: string, message = ''): Promise<void> {
    const [want, got] = [await this.tree(from), await this.tree(to)];
    const diff = diffTrees(want, got);
    this.t.deepEqual(diff, [], `${this.ds(to)} mirrors ${this.ds(from)}${message ? ` ${message}` : ''}`);
    if (diff.length === 0) this.t.true(want.size > 0 || message.includes('empty'), 'the trees compared are not both empty by accident');
  }

  /** a tree captured earlier is still what the leaf holds */
  async expectTree(leaf: string, want: Map<string, Node>, message: string): Promise<void> {
    this.t.deepEqual(diffTrees(want, await this.tree(leaf)), [], message);
  }

  /** snapshot names and ids of a leaf, for before / after comparisons */
  async chain(leaf: string): Promise<string[]> {
    return (await this.snapshots(leaf)).map((s) => `${s.name}=${s.id}`);
  }
}

export interface DriverFixture {
  kind: DriverName;
  /** what the gate names when the driver cannot run here */
  what: readonly string[];
  /** null when it can run here (see helpers/system.ts) */
  missing: SystemCheck;
  setup(t: ExecutionContext, opts?: PlatformOptions): Promise<Platform>;
}

export const FIXTURES: Record<DriverName, DriverFixture> = {
  fs: {
    kind: 'fs',
    what: ['the fs driver'],
    missing: async () => null,
    async setup(t) {
      const { services } = makeAppliance(t, 'conformance');
      await services.folders.create('fs:tank');
      return new Platform(t, 'fs', services, 'tank', true, true);
    },
  },
  zfs: {
    kind: 'zfs',
    what: ['ZFS (zfs-fuse)'],
    missing: zfsMissing,
    async setup(t, opts = {}) {
      const pool = await makeZfsPool(t, { size: opts.size ?? 512 * MiB });
      t.teardown(() => patientlyDestroyPool(t, pool.name));
      const { services } = makeAppliance(t, 'conformance');
      return new Platform(t, 'zfs', services, pool.name, true, false);
    },
  },
  btrfs: {
    kind: 'btrfs',
    what: ['btrfs (btrfs-progs, loop devices)'],
    missing: btrfsMissing,
    async setup(t, opts = {}) {
      const volume = await makeBtrfsVolume(t, { size: opts.size ?? 384 * MiB });
      const { services } = makeAppliance(t, 'conformance');
      return new Platform(t, 'btrfs', services, volume.mountpoint, false, true);
    },
  },
};

/**
 * Runs before the pool helper's own destroy (teardowns run last first): under
 * load zfs-fuse calls a pool busy for longer than that helper waits, and it
 * then removes the vdev file of a pool that is still imported. Here the
 * destroy is tried for up to 30 s; the helper then finds the pool gone.
 */
async function patientlyDestroyPool(t: ExecutionContext, pool: string): Promise<void> {
  const { execa } = await import('execa');
  const deadline = Date.now() + 30_000;
  for (let attempt = 1; ; attempt++) {
    await execa('zfs', ['unmount', '-f', pool], { reject: false });
    const result = await execa('zpool', ['destroy', '-f', pool], { reject: false });
    if (!result.failed || /no such pool/i.test(result.stderr)) return;
    if (Date.now() > deadline) return void t.log(`zpool destroy ${pool} still failed after ${attempt} attempts: ${result.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 250 * attempt)));
  }
}

// ---- the scenario table ---------------------------------------------------------

export interface Scenario {
  title: string;
  /** the drivers it runs on (default: all) */
  drivers?: readonly DriverName[];
  /** pool / volume size it needs */
  size?: number;
  run(p: Platform): Promise<void>;
}

/** at most `n` at once: the suite shares two cores with the other test files */
export function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async (fn) => {
    if (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await fn();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

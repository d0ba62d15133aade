/**
 * Two appliances on one machine, bound both ways with local-bind (each can
 * reach the other), and a reverse-capable service alpha:tank/docs =>
 * beta:tank/docs: created on alpha (local-to-remote, alpha master), or with
 * `pull` on beta (remote-to-local, beta master); `to` names beta's copy
 * (default tank/docs); `oneWay` binds alpha to beta only and leaves the
 * service plain (it cannot be made reverse-capable so). `down(x)` makes x unreachable from its partner (its
 * agent script is pointed at nothing) and `up(x)` undoes it.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createServices, type Services } from '../../src/services/index.js';
import { writeTree, type TreeSpec } from '../helpers/fs-tree.js';
import { Fixture, folderWith, makeAppliance, type Appliance } from '../peer/_fixture.js';

export type PairDriver = 'fs' | 'zfs' | 'btrfs';

/** what the looks at a copy need of an appliance (a local-bind one, or one in a network namespace) */
interface Side {
  id: string;
  live(dataset: string): string;
}

/** the service's source on alpha: fs:DATASET in its pool, or a zfs/btrfs dataset on the caller's storage; `files` in it */
export async function seedSource(a: Appliance, driver: PairDriver, dataset: string, files: TreeSpec): Promise<void> {
  if (driver === 'fs') await folderWith(a, dataset, files);
  else await writeTree((await (await a.services.storage.usable(driver)).createDataset(dataset)).mountpoint!, files);
}

/** the directory `dataset` of x is mounted at (it must be mounted) */
export async function mountedDir(s: Services, driver: PairDriver, x: Side, dataset: string): Promise<string> {
  if (driver === 'fs') return x.live(dataset);
  const info = await (await s.storage.usable(driver)).getDataset(dataset);
  if (!info?.mountpoint || !info.mounted) throw new Error(`${x.id}: ${driver}:${dataset} is not mounted`);
  return info.mountpoint;
}

/** `look(dir)` at x's `dataset`, mounted for the look if it is not (and unmounted again); null if there is no such dataset */
export async function lookAt<T>(s: Services, driver: PairDriver, x: Side, dataset: string, look: (dir: string) => Promise<T>): Promise<T | null> {
  const fs = await s.storage.usable(driver);
  const info = await fs.getDataset(dataset);
  if (!info) return null;
  if (!info.mounted) await fs.mount(dataset);
  try {
    return await look(await mountedDir(s, driver, x, dataset));
  } finally {
    if (!info.mounted) await fs.unmount(dataset);
  }
}

export interface Pair {
  a: Appliance;
  b: Appliance;
  /** a fresh service layer of an appliance (what a new process would see) */
  fresh(x: Appliance): Services;
  down(x: Appliance): void;
  up(x: Appliance): void;
  name: string;
  /** the driver both copies are on (fs unless asked) */
  driver: PairDriver;
  /** x's copy of the service's dataset, driver-local (tank/docs on fs) */
  ds(x: Appliance): string;
  /** the directory x's copy is mounted at (it must be mounted) */
  dir(x: Appliance): Promise<string>;
}

/** zfs or btrfs instead of fs: each appliance's copy, made by the caller on storage of its own (alpha's created here, beta's by the service) */
export interface PairDatasets {
  driver: 'zfs' | 'btrfs';
  a: string;
  b: string;
}

export async function reversePair(
  t: { teardown(fn: () => unknown): void },
  files: Record<string, string> = { 'a.txt': 'one\n', 'd/b.bin': 'bee\n' },
  opts: { pull?: boolean; to?: string; oneWay?: boolean; datasets?: PairDatasets } = {},
): Promise<Pair> {
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha');
  const b = makeAppliance(f, 'beta');
  await folderWith(a, 'tank', {});
  await folderWith(b, 'tank', {});
  // oneWay: beta is bound to alpha's agent only the other way round (alpha reaches beta, beta not alpha)
  for (const [x, y] of (opts.oneWay
    ? [[a, b]]
    : [
        [a, b],
        [b, a],
      ]) as [Appliance, Appliance][]) {
    const r = await x.cli(`setup network local-bind ${y.home}`);
    if (r.exitCode !== 0) throw new Error(String(r.stderr));
  }
  const driver = opts.datasets?.driver ?? 'fs';
  const from = opts.datasets?.a ?? 'tank/docs';
  const to = opts.datasets?.b ?? opts.to ?? 'tank/docs';
  await seedSource(a, driver, from, files);
  const capable = opts.oneWay ? 'no' : 'yes';
  const r = opts.pull
    ? await b.cli(`create auto-sync --from-host alpha --from-fs ${driver}:${from} --to-fs ${driver}:${to} --recursive no --reverse-capable ${capable} -y`)
    : await a.cli(`create auto-sync --from-fs ${driver}:${from} --to-host beta --to-fs ${driver}:${to} --recursive no --reverse-capable ${capable} -y`);
  if (r.exitCode !== 0) throw new Error(String(r.stderr));
  const name = /auto-sync:(\S+?):/.exec(String(r.stdout))![1];
  const opened: Services[] = [];
  f.teardown(() => Promise.all(opened.map((s) => s.peers.close())));
  const saved = new Map<string, string>();
  // the partner's record of x: its agent script
  const partnerOf = (x: Appliance) => (x === a ? b : a);
  const peersFile = (x: Appliance) => path.join(x.home, 'peers.json');
  const fresh = (x: Appliance) => {
    const s = createServices(x.env);
    opened.push(s);
    return s;
  };
  const ds = (x: Appliance) => (x === a ? from : to);
  return {
    a,
    b,
    name,
    driver,
    ds,
    dir: (x) => mountedDir(fresh(x), driver, x, ds(x)),
    fresh,
    down(x) {
      const file = peersFile(partnerOf(x));
      const text = readFileSync(file, 'utf8');
      saved.set(file, text);
      writeFileSync(file, text.replaceAll(JSON.stringify(x.home), JSON.stringify(path.join(x.home, 'gone'))).replace(/"script":\s*"[^"]+"/g, '"script": "/nonexistent/syncsh.js"'));
    },
    up(x) {
      const file = peersFile(partnerOf(x));
      writeFileSync(file, saved.get(file)!);
    },
  };
}

/** what filesOf needs of a pair: a reverse pair, local-bind or over SSH */
export interface CopyLooks<X extends Side> {
  driver: PairDriver;
  fresh(x: X): Services;
  ds(x: X): string;
}

/** every file of x's copy (or of `dataset`) on an appliance, byte for byte (mounted for the look if it is not) */
export async function filesOf<X extends Side>(p: CopyLooks<X>, x: X, dataset = p.ds(x)): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = (dir: string, rel: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(dir, e.name), `${rel}${e.name}/`);
      else out[`${rel}${e.name}`] = readFileSync(path.join(dir, e.name)).toString('latin1');
    }
  };
  const found = await lookAt(p.fresh(x), p.driver, x, dataset, async (root) => {
    walk(root, '');
    return out;
  });
  return found ?? {};
}

export const logOf = async (p: Pair, x: Appliance) => (await p.fresh(x).autoSync.log(p.name).all()).join('\n');
export const write = (dir: string, file: string, text: string) => {
  mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
  writeFileSync(path.join(dir, file), text);
};

/** `show auto-sync :NAME orphans --json` on an appliance */
export const orphansOf = async (p: Pair, x: Appliance) => JSON.parse(String((await x.cli(`show auto-sync :${p.name} orphans --json`)).stdout)) as { snapshot: string; dataset: string; held: boolean }[];

/**
 * Disaster recovery, then the old master back: alpha replicates, writes
 * `file` after that, goes down; beta takes over (-y); alpha comes back,
 * still master at epoch 1 until it meets beta's epoch 2.
 */
export async function drThenBack(p: Pair, file: string, text: string): Promise<void> {
  await p.fresh(p.a).autoSync.run(p.name);
  write(p.a.live('tank/docs'), file, text);
  p.down(p.a);
  const r = await p.b.cli(`setup auto-sync :${p.name} reverse-direction -y`);
  if (r.exitCode !== 0) throw new Error(`DR on beta failed: ${String(r.stderr)}`);
  p.up(p.a);
}

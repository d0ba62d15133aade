/**
 * What the scenarios share: a service on one driver, local (one appliance,
 * fs:tank/docs => fs:tank/copy; on zfs and btrfs one pool or volume to
 * another, stores.ts) or to a local-bind peer (alpha:tank/docs =>
 * beta:tank/docs); random writes to its source; the destination as a reader
 * sees it; what a crash may leave behind; and a run of the real CLI with a
 * fault injected.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { chmod, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { BIN } from '../../test/helpers/cli.js';
import { cmdline, descendants as processesBelow } from '../../test/helpers/procs.js';
import { diffTrees, readTree, type NodeSummary } from '../../test/helpers/fs-tree.js';
import { folderWith, makeAppliance, type Appliance, type Fixture } from '../../test/peer/_fixture.js';
import { createServices } from '../../src/services/index.js';
import { processAlive } from '../../src/services/lock.js';
import { encodeName } from '../../src/services/storage/fs/names.js';
import type { Rng } from './campaign.js';
import { storeLeftovers } from './stores.js';

export type Tree = Map<string, NodeSummary>;

export type DriverName = 'fs' | 'zfs' | 'btrfs';

export interface World {
  kind: 'local' | 'peer';
  driver: DriverName;
  /** driver-local names of the service's two datasets */
  srcDataset: string;
  src: Appliance;
  dst: Appliance;
  name: string;
  srcDir: string;
  dstDataset: string;
  /** the files written so far, relative to the source root */
  files: string[];
}

export interface WorldOptions {
  extraEnv?: NodeJS.ProcessEnv;
  peerFsRoot?: string;
  /** zfs or btrfs: the two datasets (made by stores.ts), instead of fs:tank/docs and its copy */
  driver?: DriverName;
  srcDataset?: string;
  dstDataset?: string;
  /** where the appliances' homes are made (default the temp dir) */
  homesUnder?: string;
  /** a peer world over another link (an OpenSSH pair): its two appliances and the line that binds alpha to beta, instead of local-bind */
  over?: { a: Appliance; b: Appliance; bindLine: string };
}

export async function makeWorld(f: Fixture, kind: 'local' | 'peer', opts: WorldOptions = {}): Promise<World> {
  const driver = opts.driver ?? 'fs';
  const a = opts.over?.a ?? makeAppliance(f, 'alpha', opts.extraEnv, opts.homesUnder);
  const b = kind === 'local' ? a : (opts.over?.b ?? makeAppliance(f, 'beta', opts.extraEnv, opts.homesUnder));
  // the peer's fs pools elsewhere (a small file system): its home's fs/ is a link there
  if (opts.peerFsRoot) {
    rmSync(path.join(b.home, 'fs'), { recursive: true, force: true });
    symlinkSync(opts.peerFsRoot, path.join(b.home, 'fs'));
  }
  let srcDataset = 'tank/docs';
  let srcDir: string;
  if (driver === 'fs') {
    await folderWith(a, 'tank', {});
    if (b !== a) await folderWith(b, 'tank', {});
    srcDir = await folderWith(a, srcDataset, {});
  } else {
    srcDataset = opts.srcDataset!;
    const made = await (await a.services.storage.usable(driver)).createDataset(srcDataset);
    if (!made.mountpoint) throw new Error(`${driver}:${srcDataset} has no mountpoint`);
    srcDir = made.mountpoint;
  }
  if (b !== a) {
    const r = await a.cli(opts.over ? `${opts.over.bindLine} -y` : `setup network local-bind ${b.home}`);
    if (r.exitCode !== 0) throw new Error(String(r.stderr));
  }
  const dstDataset = opts.dstDataset ?? (kind === 'peer' ? 'tank/docs' : 'tank/copy');
  const to = kind === 'peer' ? `--to-host beta --to-fs ${driver}:${dstDataset}` : `--to-fs ${driver}:${dstDataset}`;
  const r = await a.cli(`create auto-sync --from-fs ${driver}:${srcDataset} ${to} --type hour --period 1 --recursive no --keep-src 3 --keep-dst 3 -y`);
  if (r.exitCode !== 0) throw new Error(String(r.stderr));
  const name = /auto-sync:(\S+?):/.exec(String(r.stdout))![1];
  return { kind, driver, srcDataset, src: a, dst: b, name, srcDir, dstDataset, files: [] };
}

/** a few random writes: new files (some large), rewrites, appends, deletions, a new directory */
export async function writeRandomly(w: World, rng: Rng, maxFiles = Infinity): Promise<string> {
  const n = rng.int(1, 6);
  const did: string[] = [];
  for (let i = 0; i < n; i++) {
    // chmod: a change of metadata only, which an fs commit makes on a copy of the file (versions.ts cloneTree)
    const what = w.files.length < 3 ? 'new' : w.files.length >= maxFiles ? rng.pick(['rewrite', 'append', 'delete', 'chmod'] as const) : rng.pick(['new', 'new', 'rewrite', 'append', 'delete', 'chmod'] as const);
    if (what === 'new') {
      const rel = `d${rng.int(0, 5)}/f${Date.now().toString(36)}-${rng.int(0, 1e6)}.bin`;
      const size = rng.pick([10, 4096, 70_000, 300_000, 1_500_000]);
      await mkdir(path.join(w.srcDir, path.dirname(rel)), { recursive: true });
      await writeFile(path.join(w.srcDir, rel), randomBytes(size));
      w.files.push(rel);
      did.push(`new ${rel} (${size} B)`);
    } else {
      const i = rng.int(0, w.files.length - 1);
      const rel = w.files[i];
      const p = path.join(w.srcDir, rel);
      if (what === 'delete') {
        await rm(p, { force: true });
        w.files.splice(i, 1);
      } else if (what === 'chmod') await chmod(p, (await stat(p)).mode & 0o077 ? 0o600 : 0o644);
      else if (what === 'append') await writeFile(p, randomBytes(rng.int(1, 100_000)), { flag: 'a' });
      else await writeFile(p, randomBytes(rng.int(1, 500_000)));
      did.push(`${what} ${rel}`);
    }
  }
  return `wrote: ${did.join(', ')}`;
}

const SCRATCH = 'tank/read-back';

/** `dataset`'s newest snapshot sent whole into a scratch dataset and read there, or why it could not be */
export async function readBackWhole(x: Appliance, dataset: string): Promise<Tree | string> {
  const services = createServices(x.env);
  try {
    const fs = await services.storage.usable('fs');
    const newest = (await fs.listSnapshots(dataset)).at(-1);
    if (!newest) return `${dataset} has no snapshot`;
    if (await fs.getDataset(SCRATCH)) await fs.destroyDataset(SCRATCH, { recursive: true });
    try {
      await fs.receive(SCRATCH, fs.send(dataset, newest.name, { recursive: false }), { force: true, recursive: false });
      return await readTree(x.live(SCRATCH));
    } finally {
      await fs.destroyDataset(SCRATCH, { recursive: true }).catch(() => undefined);
    }
  } catch (error) {
    return `${dataset}'s newest snapshot does not read back whole: ${(error as Error).message}`;
  } finally {
    await services.peers.close();
  }
}

/** the state of both sides, for the replay notes of a failed recovery */
async function describe(w: World): Promise<string> {
  const out: string[] = [];
  for (const [side, x, ds] of [
    ['source', w.src, w.srcDataset],
    ['destination', w.dst, w.dstDataset],
  ] as const) {
    const services = createServices(x.env);
    try {
      const fs = await services.storage.usable(w.driver);
      const snaps = await fs.listSnapshots(ds);
      const newest = snaps.at(-1);
      const changed = newest ? await fs.changedSince(ds, newest.name) : null;
      out.push(`${side} ${ds}: snapshots ${snaps.map((s) => s.name.replace(/^.*?(\d+)[^-]*$/, '$1')).join(',')}; changed since ${newest?.name ?? '-'}: ${changed}`);
      // fs: what changed, against the snapshot read back whole
      if (changed && w.driver === 'fs') {
        const back = await readBackWhole(x, ds);
        out.push(
          typeof back === 'string'
            ? back
            : `its files vs ${newest!.name} read back: ${differs(await readTree(x.live(ds)), back)
                .slice(0, 6)
                .join('; ')}`,
        );
      }
    } catch (error) {
      out.push(`${side}: ${(error as Error).message}`);
    } finally {
      await services.peers.close();
    }
  }
  return out.join('; ');
}

/** the destination's files as a reader sees them now (mounted for the look if it is not) */
export async function destination(w: World): Promise<Tree> {
  const services = createServices(w.dst.env);
  try {
    const fs = await services.storage.usable(w.driver);
    const info = await fs.getDataset(w.dstDataset);
    if (!info) return new Map();
    if (!info.mounted) await fs.mount(w.dstDataset);
    try {
      const dir = w.driver === 'fs' ? w.dst.live(w.dstDataset) : (await fs.getDataset(w.dstDataset))?.mountpoint;
      if (!dir) throw new Error(`${w.driver}:${w.dstDataset} has no mountpoint`);
      return await readTree(dir);
    } finally {
      if (!info.mounted) await fs.unmount(w.dstDataset);
    }
  } finally {
    await services.peers.close();
  }
}

export const source = (w: World) => readTree(w.srcDir);

/** the destination as `destination` gives it, or the sentence why a reader cannot see it (a violation, not a failed trial) */
export async function readable(w: World, when: string): Promise<Tree | string> {
  try {
    return await destination(w);
  } catch (error) {
    return `${when}, the destination cannot be read: ${(error as Error).message}`;
  }
}

/** content only: what a snapshot holds (mtimes of directories move as files come and go) */
export function differs(a: Tree, b: Tree): string[] {
  const strip = (t: Tree) => new Map([...t].map(([k, v]) => [k, v.type === 'dir' ? { ...v, mtimeNs: 0n } : v]));
  return diffTrees(strip(a), strip(b));
}

/** the destination is exactly one of `allowed` (complete snapshots), or a sentence why not */
export function oneOf(got: Tree, allowed: Tree[], what: string): string | null {
  if (allowed.some((t) => differs(got, t).length === 0)) return null;
  const nearest = allowed.map((t) => differs(got, t)).sort((x, y) => x.length - y.length)[0];
  return `${what} is no complete source snapshot: ${nearest.slice(0, 4).join('; ')}`;
}

/** the destination has a commit journal a crash left (the driver rolls it forward on its next operation there) */
export function commitPending(w: World): boolean {
  if (w.driver !== 'fs') return false;
  const meta = path.join(w.dst.home, 'fs', '.syncsh');
  const [pool] = w.dstDataset.split('/');
  return existsSync(path.join(meta, pool, 'datasets', encodeName(w.dstDataset), 'journal.json'));
}

/** the words a violation of a torn destination with a commit pending ends in */
export const PENDING_COMMIT = '(a crashed commit is pending roll-forward)';

/** files a crash may leave in an fs pool, which the next successful run must have cleared */
export function leftovers(x: Pick<Appliance, 'id' | 'home'>): string[] {
  const meta = path.join(x.home, 'fs', '.syncsh');
  const out: string[] = [];
  if (!existsSync(meta)) return out;
  for (const pool of readdirSync(meta)) {
    const datasets = path.join(meta, pool, 'datasets');
    if (!existsSync(datasets)) continue;
    // per dataset one live version and at most one spare, the one its `spare` link names (src/services/storage/fs/versions.ts); more is a tree a crash left
    const trees = path.join(meta, pool, 'trees');
    const versions = existsSync(trees) ? readdirSync(trees).filter((n) => !n.startsWith('.link-')) : [];
    const names = readdirSync(datasets);
    // the link holds only the version's name: it is there, not followed
    const spares = names.filter((d) => lstatSync(path.join(datasets, d, 'spare'), { throwIfNoEntry: false })).length;
    if (versions.length > names.length + spares) out.push(`${x.id}: ${pool}/trees has ${versions.length} versions for ${names.length} datasets and ${spares} spares`);
    for (const d of readdirSync(datasets)) {
      const dir = path.join(datasets, d);
      const staging = path.join(dir, 'staging');
      if (existsSync(staging) && readdirSync(staging).length) out.push(`${x.id}: ${d}/staging has ${readdirSync(staging).join(', ')}`);
      if (existsSync(path.join(dir, 'journal.json'))) out.push(`${x.id}: ${d}/journal.json is left`);
      // a pin of a dead sender (kill -9) counts for nothing and goes at the next sweep (gc.ts livePins); a live one after the run is a leak
      const pins = path.join(dir, 'pins');
      const live = existsSync(pins) ? readdirSync(pins).filter((n) => processAlive(Number(n.split('-')[0]))) : [];
      if (live.length) out.push(`${x.id}: ${d}/pins has ${live.join(', ')} of live processes`);
      const blocks = path.join(dir, 'blocks');
      if (existsSync(blocks)) {
        const names = new Set(readdirSync(blocks));
        for (const n of names) if (n.endsWith('.pack') && !names.has(n.replace(/\.pack$/, '.idx'))) out.push(`${x.id}: ${d}/blocks/${n} has no index`);
      }
    }
  }
  return out;
}

/** bytes under the fs pool's metadata (block stores, manifests, stages) */
export function metaBytes(x: Appliance): number {
  let total = 0;
  const walk = (p: string) => {
    let st;
    try {
      st = statSync(p);
    } catch {
      return;
    }
    if (st.isDirectory())
      for (const e of readdirSync(p))
        if (e !== 'trees')
          walk(path.join(p, e)); // trees: the live files (versions.ts), not metadata
        else total += st.size;
  };
  walk(path.join(x.home, 'fs', '.syncsh'));
  return total;
}

/** `syncsh -c "run auto-sync :NAME"` as the source appliance */
export function startRun(w: World, extraEnv: NodeJS.ProcessEnv = {}): ResultPromise<{ reject: false; env: NodeJS.ProcessEnv; extendEnv: false }> {
  return execa(process.execPath, [BIN, '-c', `run auto-sync :${w.name}`], { env: { ...w.src.env, ...extraEnv }, extendEnv: false, reject: false });
}

/** the service's first run (a full sync), which must succeed: how long it took, for the trials' random instants */
export async function firstRun(w: World): Promise<number> {
  const t0 = Date.now();
  const first = await startRun(w);
  if (first.exitCode !== 0) throw new Error(`the first run failed: ${first.stderr}`);
  return Date.now() - t0;
}

/** every process below `pid`, with its command line */
export const descendants = (pid: number): { pid: number; cmd: string }[] => processesBelow(pid).map((p) => ({ pid: p.pid, cmd: cmdline(p.pid).join(' ') }));

/**
 * The next run, as the scheduler would start it, with no operator: its
 * time, and whether it succeeded; `then` must be what the source had when it began.
 */
export async function recover(w: World, expected: Tree): Promise<{ ms: number; violations: string[] }> {
  const t0 = Date.now();
  const r = await startRun(w);
  const ms = Date.now() - t0;
  if (r.exitCode !== 0) return { ms, violations: [`the next run failed (exit ${r.exitCode ?? r.signal}): ${String(r.stderr).trim().split('\n').slice(-3).join(' ')} [${await describe(w)}]`] };
  const got = await destination(w);
  const d = differs(got, expected);
  const violations = d.length ? [`after the next successful run the destination lacks writes the source had: ${d.slice(0, 4).join('; ')}`] : [];
  if (w.driver === 'fs') violations.push(...leftovers(w.src), ...(w.dst === w.src ? [] : leftovers(w.dst)));
  else violations.push(...(await storeLeftovers(w)));
  return { ms, violations };
}

export function removeQuietly(p: string): void {
  rmSync(p, { recursive: true, force: true });
}

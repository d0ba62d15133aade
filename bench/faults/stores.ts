/**
 * The zfs and btrfs worlds' storage: two zfs-fuse pools on file vdevs or two
 * loop-mounted btrfs images (the source's and the destination's, so that the
 * destination alone can be made small and filled), made with the test
 * helpers (the zfs-fuse turn, pool destroy with retries, loop detach) and
 * removed by the fixture's teardown, also on failure. And what a crash may
 * leave in them that the next successful run must have cleared.
 */
import { execa } from 'execa';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { makeBtrfsVolume, btrfsMissing } from '../../test/helpers/btrfs-volume.js';
import { makeZfsPool, zfsMissing } from '../../test/helpers/zfs-pool.js';
import type { Appliance, Fixture } from '../../test/peer/_fixture.js';
import { createServices } from '../../src/services/index.js';
import { SNAPSHOT_DIR } from '../../src/services/storage/btrfs/layout.js';
import type { World } from './world.js';

export interface Stores {
  srcDataset: string;
  dstDataset: string;
  /** a directory on the destination's pool or volume, outside both datasets (for a filler) */
  dstRoot: string;
}

const MiB = 1024 * 1024;

/** the helpers take an ava context for teardown and log; the fixture is one */
const asContext = (f: Fixture) => ({ teardown: (fn: () => unknown) => f.teardown(fn), log: (...xs: unknown[]) => console.error(...xs) }) as unknown as ExecutionContext;

export const storeMissing = (driver: 'zfs' | 'btrfs') => (driver === 'zfs' ? zfsMissing() : btrfsMissing());

/** the two datasets on fresh storage; `dstBytes` sizes the destination's (the source's is 256 MiB) */
export async function makeStores(f: Fixture, driver: 'zfs' | 'btrfs', dstBytes = 256 * MiB): Promise<Stores> {
  const t = asContext(f);
  if (driver === 'zfs') {
    const a = await makeZfsPool(t, { size: 256 * MiB, prefix: 'szfault' });
    const b = await makeZfsPool(t, { size: dstBytes, prefix: 'szfault' });
    // children unmounted before the pools go (zfs-fuse calls a pool with mounted children busy)
    f.teardown(async () => {
      for (const pool of [a, b]) {
        const names = (await execa('zfs', ['list', '-H', '-o', 'name', '-r', pool.name], { reject: false })).stdout.split('\n').filter((n) => n && n !== pool.name);
        for (const name of names.reverse()) await execa('zfs', ['unmount', '-f', name], { reject: false });
      }
    });
    return { srcDataset: `${a.name}/docs`, dstDataset: `${b.name}/docs`, dstRoot: b.mountpoint };
  }
  const a = await makeBtrfsVolume(t, { size: 256 * MiB });
  const b = await makeBtrfsVolume(t, { size: dstBytes });
  return { srcDataset: `${a.mountpoint}/docs`, dstDataset: `${b.mountpoint}/docs`, dstRoot: b.mountpoint };
}

/** snapshots kept per dataset by the worlds' services (--keep-src 3 --keep-dst 3), plus the run's own marker in flight */
const KEEP = 4;

/**
 * Partial receives, probes, swap leftovers and snapshots beyond retention (a hold nobody drops keeps its space for
 * good); `retention: false` where the design keeps more (the orphans of reverse-direction cycles).
 */
export async function storeLeftovers(w: Pick<World, 'driver' | 'srcDataset' | 'dstDataset'> & { src: Pick<Appliance, 'id' | 'env'>; dst: Pick<Appliance, 'id' | 'env'> }, opts: { retention?: boolean } = {}): Promise<string[]> {
  const out: string[] = [];
  for (const [x, ds] of [
    [w.src, w.srcDataset],
    [w.dst, w.dstDataset],
  ] as const) {
    const services = createServices(x.env);
    try {
      const driver = await services.storage.usable(w.driver);
      // a destination a refused full stream never created has no snapshots, and may still have leftovers beside it
      const snaps = (await driver.getDataset(ds)) ? await driver.listSnapshots(ds) : [];
      if ((opts.retention ?? true) && snaps.length > KEEP) out.push(`${x.id}: ${w.driver}:${ds} keeps ${snaps.length} snapshots (retention keeps 3): ${snaps.map((s) => s.name).join(', ')}`);
      if (w.driver === 'zfs') {
        const all = (await execa('zfs', ['list', '-H', '-o', 'name', '-t', 'all', '-r', ds.split('/')[0]!], { reject: false })).stdout.split('\n');
        for (const n of all) if (n.includes('%') || n.includes('@syncsh-probe-')) out.push(`${x.id}: ${n} is left`);
      } else {
        const dir = path.dirname(ds);
        for (const e of readdirSync(dir)) if (e.startsWith('.syncsh-') && e !== SNAPSHOT_DIR) out.push(`${x.id}: ${path.join(dir, e)} is left`);
        const snapDir = path.join(dir, SNAPSHOT_DIR, path.basename(ds));
        const known = new Set(snaps.map((s) => s.name));
        if (existsSync(snapDir)) for (const e of readdirSync(snapDir)) if (e !== '.holds' && !known.has(e)) out.push(`${x.id}: ${path.join(snapDir, e)} is left`);
      }
    } catch (error) {
      out.push(`${x.id}: ${(error as Error).message}`);
    } finally {
      await services.peers.close();
    }
  }
  return out;
}

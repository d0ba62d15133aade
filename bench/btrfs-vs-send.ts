/**
 * syncsh's btrfs driver against the bare `btrfs send [-p parent] snap | btrfs receive dir`
 * on two fresh loop-mounted btrfs images (unmounted and removed at the end, also on
 * failure): a full sync of a generated tree (default 1 GiB), then an incremental one
 * after 5% of the files changed. See bench/send-compare.ts for the flow.
 * syncsh does a little more than the bare pipeline: the live destination
 * subvolume is made a writable snapshot of what arrived (the bare copy stays
 * the read-only received snapshot).
 *   npm run build && npx tsx bench/btrfs-vs-send.ts    (BENCH_MB / BENCH_FILES to resize)
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { makeVolume, pipeline } from './system.js';
import { destinationCopies, megabytes, MiB, runComparison, sh, workDir } from './send-compare.js';

await runComparison('btrfs driver vs btrfs send | btrfs receive', async (bag) => {
  const headroom = 512 * MiB;
  const a = await makeVolume(bag, Math.ceil(megabytes * 1.6) * MiB + headroom, workDir);
  const b = await makeVolume(bag, Math.ceil(megabytes * 1.4 * destinationCopies) * MiB + headroom, workDir);
  const src = path.join(a.mountpoint, 'src');
  await sh('btrfs', 'subvolume', 'create', src);
  // the bare pipeline's snapshots and received copies, apart from syncsh's
  const [mine, theirs] = [path.join(a.mountpoint, 'bare'), path.join(b.mountpoint, 'bare')];
  await mkdir(mine);
  await mkdir(theirs);
  return {
    driver: 'btrfs',
    peer: 'btrfs send | btrfs receive',
    source: `btrfs:${src}`,
    destination: `btrfs:${path.join(b.mountpoint, 'dst')}`,
    sourceDir: src,
    syncshDir: async () => path.join(b.mountpoint, 'dst'),
    bareDir: async () => path.join(theirs, 'bare2'),
    async bareFull() {
      await sh('btrfs', 'subvolume', 'snapshot', '-r', src, path.join(mine, 'bare1'));
      await pipeline(['btrfs', 'send', '-q', path.join(mine, 'bare1')], ['btrfs', 'receive', theirs]);
    },
    async bareIncremental() {
      await sh('btrfs', 'subvolume', 'snapshot', '-r', src, path.join(mine, 'bare2'));
      await pipeline(['btrfs', 'send', '-q', '-p', path.join(mine, 'bare1'), path.join(mine, 'bare2')], ['btrfs', 'receive', theirs]);
    },
  };
});

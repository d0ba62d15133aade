/**
 * syncsh's zfs driver against the bare `zfs send [-i a] pool/x@s | zfs receive -F pool2/y`
 * on two fresh zfs-fuse pools (file vdevs, removed at the end, also on failure):
 * a full sync of a generated tree (default 1 GiB), then an incremental one after
 * 5% of the files changed. See bench/send-compare.ts for the flow.
 *   npm run build && npx tsx bench/zfs-vs-send.ts      (BENCH_MB / BENCH_FILES to resize)
 */
import { makePool } from './system.js';
import { destinationCopies, megabytes, MiB, runComparison, sh, workDir } from './send-compare.js';
import { pipeline } from './system.js';

await runComparison('zfs driver vs zfs send | zfs receive -F (zfs-fuse)', async (bag) => {
  const headroom = 512 * MiB;
  const a = await makePool(bag, 'src', Math.ceil(megabytes * 1.5) * MiB + headroom, workDir);
  const b = await makePool(bag, 'dst', Math.ceil(megabytes * 1.3 * destinationCopies) * MiB + headroom, workDir);
  await sh('zfs', 'create', `${a.name}/src`);
  const src = `${a.name}/src`;
  const bare = `${b.name}/bare`;
  const mountpoint = async (name: string) => sh('zfs', 'get', '-H', '-o', 'value', 'mountpoint', name);
  return {
    driver: 'zfs',
    peer: 'zfs send | zfs receive -F',
    source: `zfs:${src}`,
    destination: `zfs:${b.name}/dst`,
    sourceDir: await mountpoint(src),
    syncshDir: () => mountpoint(`${b.name}/dst`),
    bareDir: () => mountpoint(bare),
    async bareFull() {
      await sh('zfs', 'snapshot', `${src}@bare1`);
      await pipeline(['zfs', 'send', `${src}@bare1`], ['zfs', 'receive', '-F', bare]);
    },
    async bareIncremental() {
      await sh('zfs', 'snapshot', `${src}@bare2`);
      await pipeline(['zfs', 'send', '-i', `${src}@bare1`, `${src}@bare2`], ['zfs', 'receive', '-F', bare]);
    },
  };
});

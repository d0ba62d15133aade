/**
 * Large files through the fs driver with bounded memory: a 2 GiB sparse-ish
 * image and a few hundred MiB of dense random data, sent and received
 * between two appliances while the process's RSS is sampled.
 */
import test from 'ava';
import { statSync } from 'node:fs';
import path from 'node:path';
import { createFsDriver } from '../../../src/services/storage/fs/index.js';
import { sha256File, sparseFile, tempDir } from '../../helpers/fs-tree.js';

const MiB = 1 << 20;
const GiB = 1 << 30;

/** Peak RSS growth (bytes) while `fn` runs. */
async function rssGrowth<T>(fn: () => Promise<T>): Promise<{ growth: number; value: T }> {
  const start = process.memoryUsage().rss;
  let peak = start;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10);
  try {
    const value = await fn();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { growth: peak - start, value };
  } finally {
    clearInterval(timer);
  }
}

async function setup(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t);
  const a = createFsDriver(path.join(dir, 'a'));
  const b = createFsDriver(path.join(dir, 'b'));
  await a.createDataset('tank/big', { parents: true });
  await b.createDataset('tank');
  return { a, b, src: path.join(dir, 'a', 'tank', 'big'), dst: path.join(dir, 'b', 'tank', 'copy') };
}

test.serial('a 2 GiB sparse-ish file is snapshotted, sent and received with bounded memory', async (t) => {
  const { a, b, src, dst } = await setup(t);
  const file = path.join(src, 'disk.img');
  const sum = await sparseFile(file, 2 * GiB, [
    { offset: 0, length: MiB },
    { offset: 100 * MiB + 12345, length: 3 * MiB },
    { offset: GiB, length: 2 * MiB },
    { offset: 2 * GiB - 700_000, length: 700_000 },
  ]);
  const started = Date.now();
  const { growth, value: received } = await rssGrowth(async () => {
    await a.createSnapshot('tank/big', 's1', { recursive: false });
    return b.receive('tank/copy', a.send('tank/big', 's1', { recursive: false }), { force: false, recursive: false });
  });
  t.log(`2 GiB sparse file: snapshot + send + receive ${Date.now() - started} ms, stream ${(received.bytes / MiB).toFixed(1)} MiB, RSS growth ${(growth / MiB).toFixed(0)} MiB`);
  t.true(growth < 200 * MiB, `RSS grew by ${(growth / MiB).toFixed(0)} MiB`);
  t.true(received.bytes < 12 * MiB, 'zero chunks do not travel');
  const out = path.join(dst, 'disk.img');
  t.is(statSync(out).size, 2 * GiB);
  t.true(statSync(out).blocks * 512 < 64 * MiB, 'the copy is sparse too');
  t.is(await sha256File(out), sum);
});

test.serial('a dense file streams chunk by chunk with bounded memory', async (t) => {
  const { a, b, src, dst } = await setup(t);
  const file = path.join(src, 'dense.bin');
  const sum = await sparseFile(file, 384 * MiB, [{ offset: 0, length: 384 * MiB }]);
  const started = Date.now();
  const { growth, value: received } = await rssGrowth(async () => {
    await a.createSnapshot('tank/big', 's1', { recursive: false });
    return b.receive('tank/copy', a.send('tank/big', 's1', { recursive: false }), { force: false, recursive: false });
  });
  t.log(`384 MiB dense file: snapshot + send + receive ${Date.now() - started} ms, RSS growth ${(growth / MiB).toFixed(0)} MiB`);
  t.true(received.bytes > 384 * MiB);
  t.true(growth < 200 * MiB, `RSS grew by ${(growth / MiB).toFixed(0)} MiB`);
  t.is(await sha256File(path.join(dst, 'dense.bin')), sum);
});

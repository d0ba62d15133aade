/** Block lists with runs of zero chunks (block-list.ts), the chunk diff of zvol.ts and block patches (block-patch.ts): table tests of pure functions. */
import test from 'ava';
import { BlockListBuilder, chunkCount, namesAt, patchBlocks, zeroRun } from '../../../src/services/storage/fs/block-list.js';
import { differingChunks } from '../../../src/services/storage/fs/zvol.js';
import { packBlockPatches, unpackBlockPatches, type PatchedEntry } from '../../../src/services/storage/fs/block-patch.js';
import { ZVOL_CHUNK } from '../../../src/services/storage/fs/block-store.js';
import type { Entry, Manifest } from '../../../src/services/storage/fs/manifest.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c'.repeat(64);

test('zeroRun: a stored block is 0, "0" one chunk, "0*n" n chunks; nothing else is a run', (t) => {
  const table: [string, number][] = [
    [A, 0],
    ['0', 1],
    ['0*2', 2],
    ['0*16777216', 16777216],
    ['0*0', 0],
    ['0*01', 0],
    ['0*', 0],
    ['00', 0],
  ];
  for (const [name, n] of table) t.is(zeroRun(name), n, name);
});

test('the builder keeps lists canonical: one zero as "0", longer runs merged, no runs for file trees', (t) => {
  const table: [string[], boolean, string[]][] = [
    [['0', '0', A, '0', '0*3', B], true, ['0*2', A, '0*4', B]],
    [['0', A], true, ['0', A]],
    [['0*2'], false, ['0', '0']],
    [[], true, []],
  ];
  for (const [input, runs, want] of table) {
    const b = new BlockListBuilder(runs);
    for (const h of input) b.push(h);
    t.deepEqual(b.done(), want, input.join(','));
  }
});

test('patchBlocks replaces chunks inside runs and stored blocks, pads and cuts to the chunk count', (t) => {
  const table: [string[], [number, string][], number, string[]][] = [
    [['0*10'], [[3, A]], 10, ['0*3', A, '0*6']],
    [
      ['0*10'],
      [
        [0, A],
        [9, B],
      ],
      10,
      [A, '0*8', B],
    ],
    [[A, B, C], [[1, '0']], 3, [A, '0', C]],
    [[A, '0*4'], [], 8, [A, '0*7']],
    [[A, B, C], [], 2, [A, B]],
    [['0*4', A], [[4, '0']], 5, ['0*5']],
  ];
  for (const [list, updates, chunks, want] of table) {
    const got = patchBlocks(list, new Map(updates), chunks);
    t.deepEqual(got, want, `${list.join(',')} with ${JSON.stringify(updates)}`);
    t.is(chunkCount(got), chunks);
  }
});

test('namesAt and differingChunks walk names, not chunks', (t) => {
  t.deepEqual(
    [...namesAt(['0*3', A, '0*2'], [0, 3, 4, 7])],
    [
      [0, '0'],
      [3, A],
      [4, '0'],
      [7, '0'],
    ],
  );
  const table: [string[], string[], number, number[]][] = [
    [['0*16777216'], ['0*16777216'], 16777216, []],
    [['0*5'], ['0*2', A, '0*2'], 5, [2]],
    [[A, B, C], [A, C, C], 3, [1]],
    [[A, '0*3'], ['0', '0*2', B], 4, [0, 3]],
  ];
  for (const [a, b, chunks, want] of table) t.deepEqual(differingChunks(a, b, chunks), want, `${a.join(',')} vs ${b.join(',')}`);
});

test('block patches: packed only for zvol lists, rebuilt exactly from the base, malformed ones refused', (t) => {
  const h = (c: string) => c.repeat(64);
  const entry = (blocks: string[]): Entry => ({ path: 'volume.img', type: 'file', mode: 0o600, mtimeNs: '1', size: chunkCount(blocks) * ZVOL_CHUNK, blocks });
  const manifest = (blocks: string[], chunkSize = ZVOL_CHUNK) => ({ chunkSize, entries: [{ path: '', type: 'dir', mode: 0o755, mtimeNs: '1', size: 0 }, entry(blocks)] }) as unknown as Manifest;
  const base = manifest([h('a'), '0*6', h('b'), h('c')]);
  const target = manifest([h('a'), '0*2', h('d'), '0*3', h('b'), '0']);
  const delta = { upserts: [entry(target.entries[1].blocks!)], removes: [] };
  const packed = packBlockPatches(base, target, delta);
  t.deepEqual((packed.upserts[0] as PatchedEntry).blocksPatch, {
    chunks: 9,
    set: [
      [3, h('d')],
      [8, '0'],
    ],
  });
  const bad = (why: string) => new Error(why);
  t.deepEqual(unpackBlockPatches(packed.upserts, base, bad), delta.upserts);
  t.is(packBlockPatches(manifest(base.entries[1].blocks!, 1 << 20), manifest(target.entries[1].blocks!, 1 << 20), delta), delta, 'file trees send whole lists');
  const broken = {
    ...packed.upserts[0],
    blocksPatch: {
      chunks: 9,
      set: [
        [8, '0'],
        [3, h('d')],
      ],
    },
  };
  t.throws(() => unpackBlockPatches([broken], base, bad), { message: /malformed block patch/ });
});

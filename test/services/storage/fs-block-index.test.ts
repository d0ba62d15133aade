/** The block index of a store (block-index.ts): maps of sealed packs shared between a process's openings of one store, under each instance's own changes. */
import test from 'ava';
import { BlockIndex, sealedLayers } from '../../../src/services/storage/fs/block-index.js';
import type { PackEntry } from '../../../src/services/storage/fs/pack-index.js';

const pack = (id: string, ...hashes: string[]): PackEntry[] => hashes.map((hash, i) => ({ pack: id, hash, offset: i, length: 1 }));

test('a store opened again with the same packs, or newer ones added, reuses the maps it built (no rebuild of what it had)', (t) => {
  const p1 = pack('p1', 'a', 'b');
  const p2 = pack('p2', 'b', 'c');
  const first = sealedLayers('/store-x', [p1]);
  t.is(sealedLayers('/store-x', [p1])[0], first[0], 'the same packs: the same map');
  const grown = sealedLayers('/store-x', [p1, p2]);
  t.is(grown[0], first[0], 'a newer pack: one more layer over the old map');
  t.is(grown.length, 2);
  const view = new BlockIndex();
  view.setLayers(grown);
  t.is(view.get('b')?.pack, 'p2', "the newer pack's copy wins");
  t.not(sealedLayers('/store-x', [p2])[0], first[0], 'a pack gone (collected): built again');
});

test("an instance's own puts and removals hide the shared layers without changing them", (t) => {
  const layers = sealedLayers('/store-y', [pack('p1', 'a', 'b')]);
  const one = new BlockIndex();
  one.setLayers(layers);
  one.delete('a');
  one.set('c', { pack: 'mine', hash: 'c', offset: 0, length: 1 });
  t.false(one.has('a'));
  t.true(one.has('b'));
  t.is(one.get('c')?.pack, 'mine');
  const other = new BlockIndex();
  other.setLayers(layers);
  t.true(other.has('a'), 'another opening still sees what the first removed only for itself');
  t.false(other.has('c'));
});

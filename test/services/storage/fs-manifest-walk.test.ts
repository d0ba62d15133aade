/** Merge walks over manifests in path order (manifest.ts PathCursor, diffManifests; negotiate.ts mayCarryChunks): table tests of pure functions. */
import test from 'ava';
import fc from 'fast-check';
import { type Entry, type Manifest, PathCursor, applyDelta, blocksOf, diffManifests } from '../../../src/services/storage/fs/manifest.js';
import { chunksToSend, mayCarryChunks } from '../../../src/services/storage/fs/negotiate.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

const dir = (p: string): Entry => ({ path: p, type: 'dir', mode: 0o755, mtimeNs: '1', size: 0 });
const file = (p: string, blocks: string[] = [A], size = 10): Entry => ({ path: p, type: 'file', mode: 0o644, mtimeNs: '1', size, blocks });
const manifest = (entries: Entry[]): Manifest => ({ entries }) as Manifest;

test('PathCursor finds every path asked in ascending order, and nothing that is not there', (t) => {
  const entries = [dir(''), dir('a'), file('a/x'), file('a/y'), dir('b'), file('b/z'), file('c')];
  const table: [string[], (string | undefined)[]][] = [
    [
      ['', 'a', 'a/x', 'a/y', 'b', 'b/z', 'c'],
      ['', 'a', 'a/x', 'a/y', 'b', 'b/z', 'c'],
    ],
    [
      ['a/w', 'a/x', 'a/xx', 'b/z', 'd'],
      [undefined, 'a/x', undefined, 'b/z', undefined],
    ],
    [
      ['c', 'c'],
      ['c', 'c'],
    ],
    [[], []],
  ];
  for (const [asked, want] of table) {
    const cursor = new PathCursor(entries);
    t.deepEqual(
      asked.map((p) => cursor.at(p)?.path),
      want,
      asked.join(','),
    );
  }
});

test('PathCursor asked out of order, or over entries out of order, still finds each path', (t) => {
  const sorted = new PathCursor([dir(''), file('a'), file('b'), file('c')]);
  t.deepEqual(
    ['c', 'a', 'b', 'a', 'x'].map((p) => sorted.at(p)?.path),
    ['c', 'a', 'b', 'a', undefined],
  );
  const unsorted = new PathCursor([dir(''), file('c'), file('a'), file('b')]);
  t.deepEqual(
    ['a', 'b', 'c', 'x'].map((p) => unsorted.at(p)?.path),
    ['a', 'b', 'c', undefined],
  );
});

test('diffManifests by merge walk: upserts changed and new entries, removes only what is gone, and the delta rebuilds the target', (t) => {
  const base = manifest([dir(''), dir('a'), file('a/keep'), file('a/change'), file('a/gone'), dir('b'), file('b/keep'), file('z')]);
  const target = manifest([dir(''), dir('a'), file('a/change', [B]), file('a/keep'), file('a/new'), dir('b'), file('b/keep'), dir('c'), file('c/new2'), file('z', [A], 11)]);
  const delta = diffManifests(base, target);
  t.deepEqual(
    delta.upserts.map((e) => e.path),
    ['a/change', 'a/new', 'c', 'c/new2', 'z'],
  );
  t.deepEqual(delta.removes, ['a/gone']);
  t.deepEqual(applyDelta(base, delta), target.entries);
  t.deepEqual(diffManifests(target, target), { upserts: [], removes: [] });
});

test('mayCarryChunks is false exactly when no file gained a stored block beyond its base at the same path', (t) => {
  const base = manifest([dir(''), file('a'), file('b', [B]), file('z', ['0'])]);
  const table: [string, Entry[], boolean][] = [
    ['the same entries', base.entries, false],
    ['equal lists, other arrays', [dir(''), file('a', [A]), file('b', [B]), file('z', ['0'])], false],
    ['new content', [dir(''), file('a', [B]), file('b', [B])], true],
    ['a new file of known content (not at its path before)', [dir(''), file('a'), file('b', [B]), file('c', [A])], true],
    ['a new all-zero file', [dir(''), file('a'), file('b', [B]), file('y', ['0', '0'], 2 << 20)], false],
    ['files removed', [dir(''), file('b', [B])], false],
    ['a hard link (its first name carries the blocks)', [dir(''), file('a'), { ...file('a2'), link: 'a' }, file('b', [B])], false],
  ];
  for (const [what, entries, want] of table) t.is(mayCarryChunks(manifest(entries), base), want, what);
});

test('chunksToSend with the merge-walk shortcut lists what a set of the base blocks lists', (t) => {
  const hashes = ['0', A, B, 'c'.repeat(64), 'd'.repeat(64)];
  const names = ['a', 'b', 'c', 'd', 'e'];
  const tree = fc.uniqueArray(fc.record({ name: fc.constantFrom(...names), blocks: fc.array(fc.constantFrom(...hashes), { maxLength: 3 }) }), { selector: (f) => f.name });
  const toManifest = (files: { name: string; blocks: string[] }[]) => manifest([dir(''), ...files.sort((x, y) => (x.name < y.name ? -1 : 1)).map((f) => file(f.name, f.blocks, f.blocks.length))]);
  fc.assert(
    fc.property(tree, tree, (b, m) => {
      const base = toManifest(b);
      const target = toManifest(m);
      const skip = new Set(blocksOf(base));
      const slow = [...new Set(blocksOf(target).filter((h) => !skip.has(h)))];
      t.deepEqual(chunksToSend(target, base), slow);
    }),
  );
});

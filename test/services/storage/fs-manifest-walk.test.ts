/** Merge walks over manifests in path order (manifest.ts PathCursor, diffManifests): table tests of pure functions. */
import test from 'ava';
import { type Entry, type Manifest, PathCursor, applyDelta, diffManifests } from '../../../src/services/storage/fs/manifest.js';

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

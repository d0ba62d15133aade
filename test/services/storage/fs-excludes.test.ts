/**
 * The fs driver's exclude matcher (src/services/storage/fs/excludes.ts):
 * gitignore semantics relative to the dataset, directories told apart, and
 * patterns refused with a sentence naming them.
 */
import test from 'ava';
import { checkExcludes, excludeMatcher } from '../../../src/services/storage/fs/excludes.js';

const PATTERNS = ['*.tmp', '!keep.tmp', 'cache/', '/build/**', 'deep/**/secret', 'logs/*.log'];

const cases: [string, boolean, boolean][] = [
  // path, is a directory, excluded
  ['a.tmp', false, true],
  ['x/y/z/a.tmp', false, true],
  ['x/keep.tmp', false, false],
  ['cache', true, true],
  ['x/cache', true, true],
  ['cache', false, false], // a file named cache: the pattern names directories
  ['build', true, false], // /build/** leaves the directory, empty
  ['build/out/z.o', false, true],
  ['x/build/z.o', false, false], // anchored to the dataset's root
  ['deep/secret', false, true],
  ['deep/a/b/secret', false, true],
  ['deep/a/b/public', false, false],
  ['logs/today.log', false, true],
  ['logs/old/today.log', false, false], // * does not cross a slash
  ['', true, false], // the dataset's root is never excluded
  ['space name é.tmp', false, true],
];

for (const [rel, isDir, excluded] of cases) {
  test(`${JSON.stringify(rel)}${isDir ? '/' : ''} is ${excluded ? 'excluded' : 'kept'}`, (t) => {
    t.is(excludeMatcher(PATTERNS)!(rel, isDir), excluded);
  });
}

test('no patterns: no matcher', (t) => {
  t.is(excludeMatcher([]), null);
  t.is(excludeMatcher(undefined), null);
});

test('patterns are trimmed and kept once, in order', (t) => {
  t.deepEqual(checkExcludes([' *.tmp ', 'cache/', '*.tmp']), ['*.tmp', 'cache/']);
});

const refuses = test.macro({
  exec(t, pattern: string, message: RegExp) {
    t.throws(() => checkExcludes(['ok.txt', pattern]), { message });
  },
  title: (_, pattern) => `refuses ${JSON.stringify(pattern)}`,
});
test(refuses, '', /An exclude pattern must not be empty/);
test(refuses, '**', /The exclude pattern "\*\*" would leave everything out of the snapshots/);
test(refuses, '/', /The exclude pattern "\/" would leave everything out/);
test(refuses, 'a/../../etc', /The exclude pattern "a\/..\/..\/etc" must not name ".."/);
test(refuses, '# note', /starts with #, which makes it a comment/);
test(refuses, 'a\nb', /The exclude pattern "a\\nb" must not contain control characters/);
test(refuses, 'x'.repeat(1001), /is longer than 1000 characters/);

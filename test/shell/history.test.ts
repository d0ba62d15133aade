import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { History } from '../../src/shell/history.js';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'syncsh-history-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const fileLines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);

test('lines survive the session, one per line in the file; the directory is made on first write', (t) => {
  const file = join(tempDir(t), 'not', 'yet', 'history');
  const first = new History(file);
  t.deepEqual(first.entries(), [], 'a missing file is an empty history');
  first.add('show auto-sync');
  first.add('create folder fs:tank');
  t.deepEqual(fileLines(file), ['show auto-sync', 'create folder fs:tank']);
  t.is(statSync(file).mode & 0o777, 0o600, 'only its owner reads it');
  t.deepEqual(new History(file).entries(), ['show auto-sync', 'create folder fs:tank']);
});

test('empty lines and a repeat of the previous line are skipped', (t) => {
  const file = join(tempDir(t), 'history');
  const h = new History(file);
  for (const line of ['show', '', '   ', 'show', 'help', 'show']) h.add(line);
  t.deepEqual(h.entries(), ['show', 'help', 'show']);
  t.deepEqual(fileLines(file), ['show', 'help', 'show']);
});

test('history keeps the newest max entries, in memory and in the file', (t) => {
  const file = join(tempDir(t), 'history');
  const h = new History(file, 3);
  for (const line of ['a', 'b', 'c', 'd', 'e']) h.add(line);
  t.deepEqual(h.entries(), ['c', 'd', 'e']);
  t.deepEqual(fileLines(file), ['c', 'd', 'e']);
  writeFileSync(file, 'x\ny\nz\nw\n');
  t.deepEqual(new History(file, 2).entries(), ['z', 'w'], 'a longer file loads its newest lines');
});

test("trimming keeps another session's lines", (t) => {
  const file = join(tempDir(t), 'history');
  const mine = new History(file, 3);
  const theirs = new History(file, 3);
  mine.add('mine 1');
  mine.add('mine 2');
  theirs.add('theirs 1');
  mine.add('mine 3');
  mine.add('mine 4');
  t.deepEqual(fileLines(file), ['theirs 1', 'mine 3', 'mine 4']);
  t.deepEqual(mine.entries(), ['mine 2', 'mine 3', 'mine 4'], "a session's own list is its own lines");
});

test('a line break in an entry does not split it in the file', (t) => {
  const file = join(tempDir(t), 'history');
  new History(file).add('show\nauto-sync');
  t.deepEqual(new History(file).entries(), ['show auto-sync']);
});

test('no file, or one that cannot be written, leaves history in memory', (t) => {
  const none = new History(null);
  none.add('show');
  t.deepEqual(none.entries(), ['show']);
  // a regular file where the directory should be: unwritable even for root
  const notADir = join(tempDir(t), 'file');
  writeFileSync(notADir, '');
  const h = new History(join(notADir, 'history'));
  t.notThrows(() => h.add('show'));
  h.add('help');
  t.deepEqual(h.entries(), ['show', 'help']);
});

test('entries() is a copy', (t) => {
  const h = new History(null);
  h.add('show');
  h.entries().push('changed');
  t.deepEqual(h.entries(), ['show']);
});

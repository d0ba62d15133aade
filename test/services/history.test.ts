import test from 'ava';
import { mkdtempSync, rmSync, existsSync, readFileSync, appendFileSync, openSync, fstatSync, readSync, closeSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { History, rotateBySize, type HistoryEntry } from '../../src/services/history.js';

const tmp = (t: { teardown(fn: () => void): void }) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-history-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

const entry = (n: number, over: Partial<HistoryEntry> = {}): HistoryEntry => ({
  direction: 'send',
  service: 'vol-folder-000',
  peer: 'appliance-b',
  startedAt: new Date(Date.UTC(2026, 10, 21, 12, 0, n)).toISOString(),
  endedAt: new Date(Date.UTC(2026, 10, 21, 12, 0, n + 1)).toISOString(),
  result: 'success',
  bytes: 1000 * n,
  rateBytesPerSec: 1000 * n,
  snapshot: `vol-folder-000-${n}`,
  error: null,
  ...over,
});

test('entries are JSON lines and listed newest first', (t) => {
  const history = new History(path.join(tmp(t), 'h.jsonl'));
  t.deepEqual(history.list(), []);
  history.append(entry(1));
  history.append(entry(2, { result: 'failure', error: 'peer "b" went away\nmid-stream', snapshot: null }));
  history.append(entry(3, { result: 'refused', direction: 'receive' }));
  const lines = readFileSync(history.file, 'utf8').split('\n');
  t.is(lines.length, 4, 'three lines and a final newline; the newline in the error is escaped');
  t.deepEqual(JSON.parse(lines[0]), entry(1));
  t.deepEqual(
    history.list().map((e) => e.bytes),
    [3000, 2000, 1000],
  );
  t.deepEqual(history.list(2), [entry(3, { result: 'refused', direction: 'receive' }), entry(2, { result: 'failure', error: 'peer "b" went away\nmid-stream', snapshot: null })]);
  t.deepEqual(history.list(0), []);
});

test('the file rotates before it would pass maxBytes, keeps `keep` generations and lists across them', (t) => {
  const dir = tmp(t);
  const lineBytes = JSON.stringify(entry(10)).length + 1;
  // Room for three lines per file; 3 rotated files kept.
  const history = new History(path.join(dir, 'h.jsonl'), { maxBytes: lineBytes * 3 + 5, keep: 3 });
  for (let n = 10; n < 40; n++) history.append(entry(n));
  for (const file of history.files()) t.true(statSync(file).size <= history.maxBytes, `${path.basename(file)} stays within maxBytes`);
  t.deepEqual(
    history.files().map((f) => path.basename(f)),
    ['h.jsonl', 'h.jsonl.1', 'h.jsonl.2', 'h.jsonl.3'],
  );
  t.false(existsSync(path.join(dir, 'h.jsonl.4')));
  t.false(existsSync(path.join(dir, 'h.jsonl.lock')), 'the rotation lock is released');
  // 30 appended, 3 per file: the live file holds 37..39, .1 34..36, .2 31..33, .3 28..30.
  const listed = history.list().map((e) => e.bytes / 1000);
  t.deepEqual(
    listed,
    Array.from({ length: 12 }, (_, i) => 39 - i),
  );
  t.deepEqual(
    history.list(5).map((e) => e.bytes / 1000),
    [39, 38, 37, 36, 35],
  );
});

test('defaults: 1 MiB and 3 kept; bad limits are refused with a sentence', (t) => {
  const history = new History(path.join(tmp(t), 'h.jsonl'));
  t.is(history.maxBytes, 1024 * 1024);
  t.is(history.keep, 3);
  t.throws(() => new History('x', { maxBytes: 0 }), { message: 'A rotation size of 0 bytes is not a whole number of at least 1.' });
  t.throws(() => new History('x', { keep: -1 }), { message: 'Keeping -1 rotated files is not a whole number of at least 0.' });
});

test('a line cut short by a crash is skipped, not fatal', (t) => {
  const history = new History(path.join(tmp(t), 'h.jsonl'));
  history.append(entry(1));
  appendFileSync(history.file, '{"direction":"send","serv');
  appendFileSync(history.file, '\n[1,2]\n"text"\n');
  history.append(entry(2));
  t.deepEqual(
    history.list().map((e) => e.bytes),
    [2000, 1000],
  );
});

test('rotateBySize rotates only a non-empty file that passes the size, and with keep 0 drops it', (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'auto-sync-x.log');
  t.false(rotateBySize(file, 10, 2), 'no file: nothing to do');
  writeFileSync(file, '12345');
  t.false(rotateBySize(file, 10, 2));
  t.false(rotateBySize(file, 10, 2, 5), 'exactly at the limit is still within it');
  t.true(rotateBySize(file, 10, 2, 6));
  t.false(existsSync(file));
  t.is(readFileSync(`${file}.1`, 'utf8'), '12345');
  writeFileSync(file, 'second generation');
  t.true(rotateBySize(file, 10, 2));
  writeFileSync(file, 'third generation');
  t.true(rotateBySize(file, 10, 2));
  t.deepEqual([readFileSync(`${file}.1`, 'utf8'), readFileSync(`${file}.2`, 'utf8')], ['third generation', 'second generation']);
  t.false(existsSync(`${file}.3`), 'the oldest is dropped');
  writeFileSync(file, 'gone soon');
  t.true(rotateBySize(file, 5, 0));
  t.false(existsSync(file));
  t.is(readFileSync(`${file}.1`, 'utf8'), 'third generation', 'keep 0 leaves older files alone');
});

test('rotateBySize skips when another writer holds the rotation lock', (t) => {
  const file = path.join(tmp(t), 'h.jsonl');
  writeFileSync(file, 'x'.repeat(100));
  writeFileSync(`${file}.lock`, JSON.stringify({ pid: process.pid, host: os.hostname(), since: 'now', purpose: 'rotating' }));
  t.false(rotateBySize(file, 10, 3));
  t.true(existsSync(file));
  t.false(existsSync(`${file}.1`));
});

test('a reader holding the file by inode (tail -F) sees a rename, not a truncation', (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'h.jsonl');
  const lineBytes = JSON.stringify(entry(10)).length + 1;
  const history = new History(file, { maxBytes: lineBytes * 2, keep: 2 });
  history.append(entry(10));
  history.append(entry(11));

  // The reader opens the file and has read part of it, as tail -F would.
  const fd = openSync(file, 'r');
  t.teardown(() => closeSync(fd));
  const before = fstatSync(fd);
  const firstLine = Buffer.alloc(lineBytes);
  readSync(fd, firstLine, 0, lineBytes, 0);

  history.append(entry(12)); // passes maxBytes: rotates, then writes to a new file

  const held = fstatSync(fd);
  t.is(held.size, before.size, 'the open file was not truncated');
  t.is(statSync(`${file}.1`).ino, before.ino, 'it was renamed to .1');
  t.not(statSync(file).ino, before.ino, 'the path now names a new file');
  // The reader can still finish the old file from where it was, then reopen by name.
  const rest = Buffer.alloc(held.size - lineBytes);
  readSync(fd, rest, 0, rest.length, lineBytes);
  t.deepEqual(JSON.parse(rest.toString('utf8')), entry(11));
  t.deepEqual(JSON.parse(readFileSync(file, 'utf8')), entry(12));
});

test('tail -F follows a History across rotation and never reports a truncation', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'h.jsonl');
  const lineBytes = JSON.stringify(entry(10)).length + 1;
  const history = new History(file, { maxBytes: lineBytes * 2, keep: 2 });
  history.append(entry(10));
  const tail = execa('tail', ['-F', '-s', '0.05', '-n', '+1', file], { reject: false, buffer: true });
  t.teardown(() => tail.kill());
  let out = '';
  tail.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  const seen = async (n: number) => {
    for (let i = 0; i < 100 && out.split('\n').length <= n; i++) await new Promise((r) => setTimeout(r, 20));
  };
  await seen(1);
  for (let n = 11; n < 16; n++) {
    history.append(entry(n)); // rotates every second append
    await seen(n - 9);
  }
  tail.kill();
  const { stderr } = await tail;
  t.deepEqual(
    out
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as HistoryEntry).bytes / 1000),
    [10, 11, 12, 13, 14, 15],
  );
  t.notRegex(stderr, /truncated/);
  t.regex(stderr, /replaced|appeared/, 'tail noticed the new file behind the name');
});

/**
 * replaceShownFile: a file shown to an operator and replaced every second
 * (auto-cdp's status) is replaced whole for readers, and a write that fails
 * leaves no temp file behind.
 */
import test from 'ava';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { replaceShownFile } from '../../../src/services/storage/fs/files.js';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-files-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('replaced whole: a reader between writes sees one complete content, and no temp file stays', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'status.json');
  const seen = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const write = replaceShownFile(file, JSON.stringify({ i, pad: 'x'.repeat(100_000) }));
    try {
      seen.add(String(JSON.parse(readFileSync(file, 'utf8')).i));
    } catch (error) {
      t.is((error as NodeJS.ErrnoException).code, 'ENOENT', 'only before the first write lands');
    }
    await write;
  }
  t.is(JSON.parse(readFileSync(file, 'utf8')).i, 49);
  t.true(seen.size > 0);
  t.deepEqual(readdirSync(dir), ['status.json']);
});

test('a write that fails throws and leaves no temp file', async (t) => {
  const dir = tempDir(t);
  // a directory where the file goes: the rename fails, for root too
  const file = path.join(dir, 'status.json');
  mkdirSync(path.join(file, 'inside'), { recursive: true });
  await t.throwsAsync(replaceShownFile(file, '{}'), { code: 'EISDIR' });
  t.deepEqual(readdirSync(dir), ['status.json']);
  t.deepEqual(readdirSync(file), ['inside']);
});

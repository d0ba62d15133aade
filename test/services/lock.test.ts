import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { lock, tryLock, withLock, LockBusyError } from '../../src/services/lock.js';

const tmp = (t: { teardown(fn: () => void): void }) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

test('a second holder is refused with who holds it', (t) => {
  const file = path.join(tmp(t), 'a.lock');
  const held = tryLock(file, 'auto-sync:x', 'a run');
  const error = t.throws(() => tryLock(file, 'auto-sync:x', 'a run'), { instanceOf: LockBusyError });
  t.regex(error!.message, new RegExp(`auto-sync:x is busy: a run by process ${process.pid}`));
  held.release();
  tryLock(file, 'auto-sync:x', 'a run').release();
  t.false(existsSync(file));
});

test('a lock left by a dead process is taken over', async (t) => {
  const file = path.join(tmp(t), 'b.lock');
  const { pid } = await execa('node', ['-e', 'process.stdout.write(String(process.pid))']).then((r) => ({ pid: Number(r.stdout) }));
  writeFileSync(file, JSON.stringify({ pid, host: os.hostname(), since: 'then', purpose: 'a run' }));
  const held = tryLock(file, 'x', 'a run');
  held.release();
  t.false(existsSync(file));
});

test('waiting takes the lock once it is released; withLock serialises', async (t) => {
  const file = path.join(tmp(t), 'c.lock');
  const held = tryLock(file, 'x', 'first');
  setTimeout(() => held.release(), 50);
  const second = await lock(file, 'x', 'second', 2000);
  second.release();
  let inside = 0;
  let max = 0;
  await Promise.all(Array.from({ length: 5 }, () => withLock(file, 'x', 'n', async () => {
    inside++;
    max = Math.max(max, inside);
    await new Promise((r) => setTimeout(r, 5));
    inside--;
  })));
  t.is(max, 1);
});

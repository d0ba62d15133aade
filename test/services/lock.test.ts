import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { lock, tryLock, withLock, LockBusyError, takeoverAction, type Seen } from '../../src/services/lock.js';
import { assertBuilt } from '../helpers/cli.js';
import { requireSystem } from '../helpers/system.js';
import { smallFs, smallFsMissing, fill } from '../helpers/small-fs.js';

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
  await Promise.all(
    Array.from({ length: 5 }, () =>
      withLock(file, 'x', 'n', async () => {
        inside++;
        max = Math.max(max, inside);
        await new Promise((r) => setTimeout(r, 5));
        inside--;
      }),
    ),
  );
  t.is(max, 1);
});

const dead = { pid: 4242, host: 'h', since: 'then', purpose: 'a run' };
const fresh = { pid: 4343, host: 'h', since: 'now', purpose: 'a run' };
const takeovers: [string, Seen, Seen, 'remove' | 'retry'][] = [
  ['still the dead owner', dead, dead, 'remove'],
  ['still unreadable', 'garbage', 'garbage', 'remove'],
  ['taken since by a live owner', dead, fresh, 'retry'],
  ['gone since (taken over and released)', dead, 'absent', 'retry'],
  ['absent when found: another process may be creating it now', 'absent', 'absent', 'retry'],
  ['absent when found, a fresh lock now', 'absent', fresh, 'retry'],
  ['unreadable when found, a fresh lock now', 'garbage', fresh, 'retry'],
];
for (const [what, found, now, action] of takeovers) {
  test(`takeover of a stale lock: ${what} → ${action}`, (t) => {
    t.is(takeoverAction(found, now), action);
  });
}

test('a lock that is garbage (an older version crashed mid-write) is taken over; one with a dead takeover guard too', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'g.lock');
  writeFileSync(file, '{"pid": 12');
  const pid = await deadPid();
  writeFileSync(`${file}.takeover`, JSON.stringify({ pid, host: os.hostname(), since: 'then', purpose: 'taking over a stale lock' }));
  const held = tryLock(file, 'x', 'a run');
  t.deepEqual(readdirSync(dir).sort(), ['g.lock'], 'the dead guard reaped, nothing set aside left');
  held.release();
  t.false(existsSync(file));
});

/** a pid that no process has any more */
async function deadPid(): Promise<number> {
  const { stdout } = await execa('node', ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(stdout);
}

test('a stale lock is taken over by exactly one of several processes that find it at the same instant', async (t) => {
  assertBuilt();
  const dir = tmp(t);
  const trials = 60;
  const dead = await deadPid();
  for (let i = 0; i < trials; i++) writeFileSync(path.join(dir, `${i}.lock`), JSON.stringify({ pid: dead, host: os.hostname(), since: 'then', purpose: 'a run' }));
  // Each contender tries trial i's lock at the same wall-clock instant as the others, and keeps what it gets until all are done.
  const start = Date.now() + 1500;
  const contender = `
    import { tryLock } from ${JSON.stringify(new URL('../../dist/services/lock.js', import.meta.url).href)};
    const held = [];
    for (let i = 0; i < ${trials}; i++) {
      const at = ${start} + i * 25;
      while (Date.now() < at);
      try { held.push(tryLock(${JSON.stringify(dir)} + '/' + i + '.lock', 'x', 'a run')); console.log('got ' + i); }
      catch (error) { if (error.name !== 'LockBusyError') console.log('error ' + i + ' ' + error.message); }
    }
    await new Promise((r) => setTimeout(r, ${trials * 25 + 1000}));`;
  const runs = await Promise.all(Array.from({ length: 6 }, () => execa('node', ['--input-type=module', '-e', contender])));
  const got = runs.flatMap((r) => r.stdout.split('\n').filter(Boolean));
  t.deepEqual(
    got.filter((l) => l.startsWith('error')),
    [],
  );
  const winners = Array.from({ length: trials }, (_, i) => got.filter((l) => l === `got ${i}`).length);
  t.deepEqual(
    winners,
    Array.from({ length: trials }, () => 1),
    'one holder per lock',
  );
});

test('on a full disk the lock fails with a sentence, leaves no file and no open descriptor', async (t) => {
  if (!(await requireSystem(t, ['tmpfs'], smallFsMissing))) return;
  const dir = await smallFs(t, '64k');
  fill(path.join(dir, 'filler'));
  const fds = () => readdirSync('/proc/self/fd').length;
  const before = fds();
  for (let i = 0; i < 20; i++) {
    t.throws(() => tryLock(path.join(dir, 'run.lock'), 'auto-sync:x', 'a run'), {
      message: `auto-sync:x could not be locked: the file system holding ${dir}/run.lock is full (ENOSPC); nothing was changed.`,
    });
  }
  t.is(fds(), before, 'every descriptor closed');
  t.deepEqual(readdirSync(dir), ['filler'], 'no empty lock and no draft left');
});

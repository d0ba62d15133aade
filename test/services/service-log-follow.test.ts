/**
 * ServiceLog.follow on real files: woken by the watch on the log's directory
 * (lines come long before the safety-net poll), across rotation, truncation
 * and a log that does not exist yet, and letting go of everything it holds
 * when its signal aborts (a child process that must exit on its own).
 */
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { appendFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ServiceLog } from '../../src/services/service-log.js';

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** the text of a line as ServiceLog.write wrote it, without its time stamp */
const text = (line: string) => line.replace(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d /, '');

/** a safety-net poll no test waits for: what these tests see came by the watch */
const NO_POLL = 60_000;

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-follow-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** follows `log` in the background: the lines seen, with when they came */
function following(t: ExecutionContext, log: ServiceLog, pollMs?: number) {
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const seen: { line: string; at: number }[] = [];
  let notify = () => {};
  const done = (async () => {
    for await (const line of log.follow(abort.signal, pollMs)) {
      seen.push({ line, at: performance.now() });
      notify();
    }
  })();
  return {
    abort,
    done,
    /** the texts seen so far */
    lines: () => seen.map((s) => text(s.line)),
    /** when the n-th line came (performance.now()), once it has */
    async nth(n: number, timeoutMs = 5000): Promise<number> {
      const deadline = performance.now() + timeoutMs;
      while (seen.length < n) {
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`The follower saw ${seen.length} line(s), not ${n}, in ${timeoutMs} ms: ${JSON.stringify(seen.map((s) => s.line))}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          notify = () => (clearTimeout(timer), resolve());
        });
      }
      return seen[n - 1].at;
    },
  };
}

test('a line appended is seen at once: by the watch, long before the safety-net poll', async (t) => {
  const log = new ServiceLog(path.join(tempDir(t), 'auto-sync-x.log'));
  log.write('before');
  const f = following(t, log, 1000); // the safety-net poll at 1 s, the default
  await wait(50);
  const latencies: number[] = [];
  for (let i = 1; i <= 3; i++) {
    const sent = performance.now();
    log.write(`line ${i}`);
    latencies.push((await f.nth(i)) - sent);
    await wait(50);
  }
  t.deepEqual(f.lines(), ['[line 1 ]', '[line 2 ]', '[line 3 ]']);
  // all three were written within the first poll interval: by polling they would come at the 1 s tick
  for (const ms of latencies) t.true(ms < 500, `a line took ${ms.toFixed(1)} ms: ${latencies.map((l) => l.toFixed(1)).join(', ')}`);
});

test('rotation: the rest of the old file is read, then the new file from its start', async (t) => {
  const log = new ServiceLog(path.join(tempDir(t), 'auto-sync-x.log'));
  log.write('before');
  const f = following(t, log, NO_POLL);
  log.write('ready');
  await f.nth(1);
  // written, renamed away and replaced before the follower looks: nothing is lost
  log.write('last of the old file');
  appendFileSync(log.file, 'unfinished');
  renameSync(log.file, `${log.file}.1`);
  log.write('first of the new file');
  await f.nth(4);
  // renamed away, and for a while no file at all
  renameSync(log.file, `${log.file}.2`);
  await wait(100);
  log.write('after a gap');
  await f.nth(5);
  t.deepEqual(f.lines(), ['[ready ]', '[last of the old file ]', 'unfinished', '[first of the new file ]', '[after a gap ]']);
});

test('rotation by size, as ServiceLog.write does it, line after line', async (t) => {
  const log = new ServiceLog(path.join(tempDir(t), 'auto-sync-x.log'), { maxBytes: 200, keep: 2 });
  const f = following(t, log, NO_POLL);
  const want: string[] = [];
  for (let i = 0; i < 30; i++) {
    log.write(`line ${i}`);
    want.push(`[line ${i} ]`);
    await f.nth(i + 1);
  }
  t.deepEqual(f.lines(), want);
});

test('truncation: the file is read again from its start', async (t) => {
  const log = new ServiceLog(path.join(tempDir(t), 'auto-sync-x.log'));
  const f = following(t, log, NO_POLL);
  log.write(`a long line ${'x'.repeat(200)}`);
  await f.nth(1);
  truncateSync(log.file, 0);
  appendFileSync(log.file, 'after truncate\n');
  await f.nth(2);
  // emptied and rewritten in one go (same inode), shorter than what was read
  writeFileSync(log.file, 'rewritten\n');
  await f.nth(3);
  log.write('appended');
  await f.nth(4);
  t.deepEqual(f.lines().slice(1), ['after truncate', 'rewritten', '[appended ]']);
});

test('a log that does not exist yet is followed from its creation', async (t) => {
  const log = new ServiceLog(path.join(tempDir(t), 'auto-sync-x.log'));
  const f = following(t, log, NO_POLL);
  await wait(50);
  const sent = performance.now();
  log.write('first');
  log.write('second');
  const ms = (await f.nth(2)) - sent;
  t.deepEqual(f.lines(), ['[first ]', '[second ]']);
  t.true(ms < 500, `the new log was seen after ${ms.toFixed(1)} ms`);
});

test('a log whose directory does not exist yet: the safety-net poll finds it, then the watch takes over', async (t) => {
  const dir = path.join(tempDir(t), 'log');
  const log = new ServiceLog(path.join(dir, 'auto-sync-x.log'));
  const f = following(t, log, 100);
  await wait(50);
  mkdirSync(dir);
  log.write('first');
  await f.nth(1);
  log.write('second');
  await f.nth(2);
  t.deepEqual(f.lines(), ['[first ]', '[second ]']);
});

test('aborting ends the follow at once, even while it waits for the safety-net poll', async (t) => {
  const log = new ServiceLog(path.join(tempDir(t), 'auto-sync-x.log'));
  log.write('before');
  const f = following(t, log, NO_POLL);
  log.write('one');
  await f.nth(1);
  await wait(20);
  const start = performance.now();
  f.abort.abort();
  await f.done;
  t.true(performance.now() - start < 100);
  t.deepEqual(f.lines(), ['[one ]']);
  // a signal aborted before the follow starts: nothing, at once
  const none = [];
  for await (const line of log.follow(AbortSignal.abort(), NO_POLL)) none.push(line);
  t.deepEqual(none, []);
});

const FOLLOW_PROCESS = fileURLToPath(new URL('./follow-process.ts', import.meta.url));

/** the child follows, takes a line, lets go as `mode` says: it must then exit by itself */
const letsGo = test.macro(async (t, mode: string) => {
  const log = new ServiceLog(path.join(tempDir(t), 'auto-sync-x.log'));
  log.write('before');
  const child = execa(process.execPath, ['--import=tsx', FOLLOW_PROCESS, mode, log.file], { reject: false, all: true, buffer: false });
  let out = '';
  child.all?.on('data', (d: Buffer) => (out += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  t.teardown(() => {
    clearTimeout(killer);
    child.kill('SIGKILL');
  });
  while (!out.includes('following')) {
    if (child.exitCode !== null) break;
    await wait(10);
  }
  if (mode !== 'waiting') log.write('the line');
  const { exitCode, signal } = await child;
  t.is(signal ?? undefined, undefined, `the process had to be killed; it printed:\n${out}`);
  t.is(exitCode, 0, out);
  t.regex(out, /ended/);
  t.notRegex(out, /still alive/);
  if (mode !== 'waiting') t.regex(out, /got \S+ \S+ \[the line \]/);
});

test('after abort the process exits: no watcher, timer or file is left', letsGo, 'abort');
test('after abort the process exits, even if the follow is never asked for its next line', letsGo, 'abandon');
test('leaving the loop without aborting releases the follow too', letsGo, 'break');
test('aborting while the follow waits for lines releases it', letsGo, 'waiting');

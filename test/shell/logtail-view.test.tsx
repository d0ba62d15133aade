/**
 * The live logtail view: with ink-testing-library for what it draws, and on
 * a fake terminal (a small VT100) for the whole of followLive as the shell
 * runs it, with a real ServiceLog written, rotated and truncated meanwhile.
 */
import test from 'ava';
import React from 'react';
import { mkdtempSync, rmSync, renameSync, truncateSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ServiceLog } from '../../src/services/service-log.js';
import { fakeTerminal, KEY } from './fake-terminal.js';

// ink is loaded for a person at a terminal by src/shell/line-editor/ink.ts: that comes
// before ink-testing-library, which would load ink as is (on a CI machine: last frame only)
const { LogtailView, followLive, paintLine, statusLine, toneOf } = await import('../../src/shell/logtail-view.js');
const { render } = await import('ink-testing-library');

/** lines pushed by the test, as ServiceLog.follow yields them */
function source() {
  const queue: string[] = [];
  let wake: (() => void) | null = null;
  let aborted = false;
  return {
    push(...lines: string[]) {
      queue.push(...lines);
      wake?.();
    },
    get aborted() {
      return aborted;
    },
    async *follow(signal: AbortSignal): AsyncGenerator<string> {
      signal.addEventListener('abort', () => {
        aborted = true;
        wake?.();
      });
      while (!signal.aborted) {
        while (queue.length) yield queue.shift()!;
        await new Promise<void>((r) => (wake = r));
      }
    },
  };
}

async function until(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Waited in vain for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('failures, alerts and stalls stand out; other lines are as written', (t) => {
  t.is(toneOf('2026-11-21 04:44:52 [FAILURE: localhost/tank/a => localhost/tank/b: no space (3 sec) ]'), 'failure');
  t.is(toneOf('2026-11-21 04:44:52 [ALERT (critical): auto-sync:a: down ]'), 'failure');
  t.is(toneOf('2026-11-21 04:44:52 [STALLED: auto-sync:a: no progress for 600 sec ]'), 'failure');
  t.is(toneOf('2026-11-21 04:44:52 [WARNING: could not prune ]'), 'warning');
  t.is(toneOf('2026-11-21 04:44:52 [SUCCESS: localhost/tank/a => localhost/tank/b OK (3 sec) ]'), 'plain');
  t.is(toneOf('a FAILURE mentioned in passing'), 'plain');
  t.is(paintLine('x [FAILURE: y ]', true), '\u001b[1;31mx [FAILURE: y ]\u001b[22;39m');
  t.is(paintLine('x [FAILURE: y ]', false), 'x [FAILURE: y ]');
  t.is(statusLine({ lines: 3, failures: 1, lastAt: null }, undefined), '-- q or Ctrl-C to stop -- following the log: 3 lines, 1 failure');
});

test.serial('the view prints the last lines, then new ones as they come, with the count under them', async (t) => {
  const log = source();
  const app = render(<LogtailView initial={['2026-11-21 04:00:00 [one ]', '2026-11-21 04:00:01 [FAILURE: two ]']} follow={log.follow} color={false} />);
  const all = () => app.frames.join('');
  // printed lines are frames of their own (in ink's debug mode, which the library uses); the status line is the latest other one
  const status = () => app.frames.filter((f) => f.startsWith('--')).at(-1) ?? '';
  await until(() => /\[one \][\s\S]*\[FAILURE: two \]/.test(all()), 'the initial lines');
  await until(() => /following the log: 2 lines, 1 failure/.test(status()), 'the status line');
  log.push('2026-11-21 04:00:02 [three ]', '2026-11-21 04:00:03 [four ]');
  await until(() => /\[four \]/.test(all()), 'the new lines');
  await until(() => /4 lines, 1 failure, last at/.test(status()), 'the new count');
  t.pass();
  app.stdin.write('q');
  await until(() => log.aborted, 'the follow to stop');
  app.unmount();
});

test.serial('followLive on a terminal: new lines within a fraction of a second, across rotation and truncation; q returns', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-logtail-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = new ServiceLog(path.join(dir, 'auto-sync-a.log'));
  log.write('SUCCESS: first');
  const f = fakeTerminal({ columns: 100, rows: 12 });
  const abort = new AbortController();
  const running = followLive(f.term, { initial: log.tail(5), follow: (s) => log.follow(s, 20) }, abort.signal);
  await f.waitFor(/\[SUCCESS: first \]\n-- q or Ctrl-C to stop -- following the log: 1 line$/);
  t.true(f.raw.mode, 'keys are read raw while it runs');

  const started = Date.now();
  log.write('FAILURE: second');
  await f.waitFor(/\[FAILURE: second \]\n-- q or Ctrl-C to stop -- following the log: 2 lines, 1 failure, last at \d\d:\d\d:\d\d$/);
  t.true(Date.now() - started < 1000, `seen after ${Date.now() - started} ms`);

  renameSync(log.file, `${log.file}.1`);
  log.write('after rotation');
  await f.waitFor(/\[after rotation \]\n--/);
  truncateSync(log.file, 0);
  await new Promise((r) => setTimeout(r, 60));
  log.write('after truncation');
  await f.waitFor(/\[after truncation \]\n--/);

  f.type('q');
  await running;
  t.false(f.raw.mode, 'raw mode is off again');
  t.notRegex(f.screen.text(), /q or Ctrl-C to stop/, 'the keys go; the lines stay');
  t.regex(f.screen.text(), /\[SUCCESS: first \][\s\S]*\[FAILURE: second \][\s\S]*\[after truncation \]\n-- stopped following the log: 4 lines, 1 failure, last at \d\d:\d\d:\d\d$/);
  t.deepEqual(f.screen.cursor(), { x: 0, y: f.screen.text().split('\n').length }, 'the prompt comes back on the next line');
});

test.serial('Ctrl-C and the command being cancelled end the view too', async (t) => {
  const f = fakeTerminal();
  const log = source();
  const first = followLive(f.term, { initial: ['x [one ]'], follow: log.follow }, new AbortController().signal);
  await f.waitFor(/q or Ctrl-C to stop/);
  f.type(KEY.ctrlC);
  await first;
  t.true(log.aborted);

  const g = fakeTerminal();
  const other = source();
  const abort = new AbortController();
  const second = followLive(g.term, { initial: [], follow: other.follow }, abort.signal);
  await g.waitFor(/following the log: 0 lines/);
  abort.abort();
  await second;
  t.true(other.aborted);
});

test.serial('keys typed after q in the same chunk go to the prompt that follows', async (t) => {
  const f = fakeTerminal();
  const log = source();
  const running = followLive(f.term, { initial: ['x [one ]'], follow: log.follow }, new AbortController().signal);
  await f.waitFor(/q or Ctrl-C to stop/);
  f.type('xqexit\r');
  await running;
  const next = await new Promise<string>((resolve) => f.term.input.once('data', (d) => resolve(String(d))));
  t.is(next, 'exit\r');
});

test.serial('keys typed after q, before the view is gone, go to the prompt that follows', async (t) => {
  const f = fakeTerminal();
  const log = source();
  const running = followLive(f.term, { initial: ['x [one ]'], follow: log.follow }, new AbortController().signal);
  await f.waitFor(/q or Ctrl-C to stop/);
  // q read, then the next keys in chunks of their own while the view is closing
  f.type('q');
  await new Promise((r) => setImmediate(r));
  for (const key of ['e', 'x', 'i', 't', '\r']) f.type(key);
  await running;
  const next = await new Promise<string>((resolve) => f.term.input.once('data', (d) => resolve(String(d))));
  t.is(next, 'exit\r');
});

test.serial('a follow that fails ends the view with its error', async (t) => {
  const f = fakeTerminal();
  const failing = {
    initial: [],
    async *follow(): AsyncGenerator<string> {
      yield 'x [one ]';
      throw new Error('The log cannot be read: EACCES.');
    },
  };
  await t.throwsAsync(followLive(f.term, failing, new AbortController().signal), { message: 'The log cannot be read: EACCES.' });
});

import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, chmodSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runAlertCommand, AlertTracker, type Alert } from '../../src/services/alerts.js';
import { ManualClock } from '../../src/services/clock.js';

const tmp = (t: { teardown(fn: () => void): void }) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-alerts-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

/** an executable shell script in dir */
const script = (dir: string, name: string, body: string) => {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
};

const alert: Alert = {
  service: 'vol-folder-000',
  level: 'failure',
  message: `cannot reach "appliance-b": it's down`,
  at: '2026-11-21T12:00:00.000Z',
  appliance: 'appliance-a',
};

/** Running, not merely a zombie: an orphan's zombie lingers where PID 1 does not reap. */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
};

test('the command gets service, level and message as arguments and the alert JSON on stdin', async (t) => {
  const dir = tmp(t);
  const out = path.join(dir, 'out');
  const save = script(dir, 'save-alert', 'out="$1"; shift; printf "%s\\n" "$#" "$@" > "$out.argv"; cat > "$out.stdin"');
  t.deepEqual(await runAlertCommand([save, out], alert), { ok: true });
  t.deepEqual(readFileSync(`${out}.argv`, 'utf8').split('\n'), ['3', 'vol-folder-000', 'failure', `cannot reach "appliance-b": it's down`, '']);
  t.deepEqual(JSON.parse(readFileSync(`${out}.stdin`, 'utf8')), alert);
});

test('a failing command is reported with its exit code and last stderr line, not thrown', async (t) => {
  const dir = tmp(t);
  const failing = script(dir, 'failing', 'echo "first line" >&2; echo "mail: relay refused" >&2; exit 3');
  const result = await runAlertCommand([failing, '--to', 'ops'], alert);
  t.deepEqual(result, { ok: false, error: `The alert command "${failing} --to ops" exited with code 3: mail: relay refused.` });
  const silent = script(dir, 'silent', 'exit 1');
  t.deepEqual(await runAlertCommand([silent], alert), { ok: false, error: `The alert command "${silent}" exited with code 1.` });
});

test('a command that cannot start is reported, not thrown', async (t) => {
  const dir = tmp(t);
  const missing = path.join(dir, 'no-such-command');
  const result = await runAlertCommand([missing], alert);
  t.false(result.ok);
  t.regex(result.error!, new RegExp(`^The alert command "${missing}" could not be started: .*ENOENT`));
  const notExecutable = path.join(dir, 'plain-file');
  writeFileSync(notExecutable, 'echo hi\n');
  const denied = await runAlertCommand([notExecutable], alert);
  t.regex(denied.error!, /could not be started: .*EACCES/);
  t.deepEqual(await runAlertCommand([], alert), { ok: false, error: 'No alert command is set: the command is empty.' });
});

test('a command that hangs is stopped at the timeout, with whatever it started', async (t) => {
  const dir = tmp(t);
  const pidFile = path.join(dir, 'child.pid');
  const hangs = script(dir, 'hangs', `sleep 30 & echo $! > "${pidFile}"; wait`);
  const started = Date.now();
  const result = await runAlertCommand([hangs], alert, { timeoutMs: 300 });
  t.true(Date.now() - started < 3000, 'returned soon after the timeout');
  t.deepEqual(result, { ok: false, error: `The alert command "${hangs}" did not finish within 300 ms and was stopped.` });
  const child = Number(readFileSync(pidFile, 'utf8'));
  for (let i = 0; i < 50 && alive(child); i++) await new Promise((r) => setTimeout(r, 20));
  t.false(alive(child), 'the sleep it started was killed with it');
});

test('a command that ignores SIGTERM is killed after a grace period', async (t) => {
  const dir = tmp(t);
  const stubborn = script(dir, 'stubborn', "trap '' TERM; while :; do sleep 0.05; done");
  const started = Date.now();
  const result = await runAlertCommand([stubborn], alert, { timeoutMs: 100 });
  t.true(Date.now() - started < 4000);
  t.regex(result.error!, /did not finish within 100 ms and was stopped/);
});

test('a background job left holding stdio does not keep us waiting; unread stdin is fine', async (t) => {
  const dir = tmp(t);
  const pidFile = path.join(dir, 'bg.pid');
  const leaves = script(dir, 'leaves-a-job', `sleep 5 & echo $! > "${pidFile}"; exit 0`);
  const started = Date.now();
  t.deepEqual(await runAlertCommand([leaves], alert), { ok: true });
  t.true(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
  t.deepEqual(await runAlertCommand(['true'], alert), { ok: true });
});

test('no temporary files are left behind', async (t) => {
  const dir = tmp(t);
  const out = path.join(dir, 'where');
  // The script records where its stdin came from; that file must be gone afterwards.
  const where = script(dir, 'where', `readlink /proc/$$/fd/0 > "${out}"`);
  t.deepEqual(await runAlertCommand([where], alert), { ok: true });
  const stdinFile = readFileSync(out, 'utf8').trim();
  if (!stdinFile.startsWith('/')) return t.pass('no /proc here to check');
  t.false(existsSync(stdinFile));
  t.false(existsSync(path.dirname(stdinFile)));
});

test('the tracker alerts on a change into warn, maintenance or failure and on recovery only', async (t) => {
  const clock = new ManualClock(Date.parse('2026-11-21T12:00:00Z'));
  const tracker = new AlertTracker({ appliance: 'appliance-a', clock });
  const seen = async (service: string, health: Parameters<AlertTracker['observe']>[1], message: string = health) => {
    await clock.advance(60_000);
    const a = tracker.observe(service, health, message);
    return a && `${a.service} ${a.level} ${a.at.slice(11, 16)} ${a.appliance}`;
  };
  t.is(await seen('a', 'up'), null, 'a new service counts as up');
  t.is(await seen('a', 'up'), null);
  t.is(await seen('a', 'warn'), 'a warn 12:03 appliance-a');
  t.is(await seen('a', 'warn', 'lag 20 min'), null, 'same state, new message: silent');
  t.is(await seen('a', 'failure'), 'a failure 12:05 appliance-a');
  t.is(await seen('a', 'failure'), null);
  t.is(await seen('a', 'maintenance'), 'a maintenance 12:07 appliance-a');
  t.is(await seen('a', 'warn'), 'a warn 12:08 appliance-a');
  t.is(await seen('a', 'up'), 'a recovered 12:09 appliance-a');
  t.is(await seen('a', 'up'), null);
  t.is(await seen('b', 'failure'), 'b failure 12:11 appliance-a', 'a service first seen failing is alerted');
  t.is(tracker.healthOf('a'), 'up');
  t.is(tracker.healthOf('b'), 'failure');
  tracker.forget('b');
  t.is(tracker.healthOf('b'), undefined);
});

test('the tracker keeps the message and can start from known health', (t) => {
  const tracker = new AlertTracker({ appliance: 'x', initial: { a: 'failure' } });
  t.is(tracker.observe('a', 'failure', 'still broken'), null, 'known before a restart: not alerted again');
  const recovered = tracker.observe('a', 'up', 'auto-sync:a is up again');
  t.like(recovered, { service: 'a', level: 'recovered', message: 'auto-sync:a is up again', appliance: 'x' });
  t.regex(recovered!.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
});

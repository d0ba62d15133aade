/**
 * The daemon on a controllable clock: schedules, retries with backoff,
 * warn after max delay with the alert command's JSON, stalls, and changes
 * picked up without a restart. Runs are real (fs driver); only time is not.
 */
import test from 'ava';
import { mkdir, readFile, writeFile, chmod } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { ManualClock } from '../../src/services/clock.js';
import { Daemon, dueAt, DEFAULT_RETRY } from '../../src/services/daemon.js';
import type { Services } from '../../src/services/index.js';
import type { Driver } from '../../src/services/storage/driver.js';
import { EMPTY_RUN_STATE, type AutoSyncConfig } from '../../src/services/auto-sync/model.js';

const T0 = Date.parse('2026-11-21T12:00:00Z');

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}.`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function appliance(t: Parameters<typeof makeAppliance>[0]) {
  const a = makeAppliance(t);
  await a.services.folders.create('fs:tank');
  const src = (await a.services.folders.create('fs:tank/data')).mountpoint!;
  await writeFile(path.join(src, 'file.txt'), 'v1');
  return { ...a, src };
}

function startDaemon(t: Parameters<typeof makeAppliance>[0], services: Services, opts: ConstructorParameters<typeof Daemon>[1]) {
  const stop = new AbortController();
  const lines: string[] = [];
  const daemon = new Daemon(services, { maxIdleMs: 60_000, say: (l) => lines.push(l), ...opts });
  const done = daemon.run(stop.signal);
  t.teardown(async () => {
    stop.abort();
    await done;
  });
  return { stop, done, lines };
}

const sends = (services: Services, name: string) => services.autoSync.history(name, 'send').list();

test('a schedule of every minute runs once a minute, driven by the clock', async (t) => {
  const { services } = await appliance(t);
  const { name } = await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy', type: 'minute', period: 1 });
  const clock = new ManualClock(T0 + 5_000);
  startDaemon(t, services, { clock });
  await until('the first run', () => sends(services, name).length === 1);
  await clock.advance(30_000); // 12:00:35: not due (next at 12:01:00)
  await until('the daemon sleeps on: nothing came due', () => clock.pending === 1);
  t.is(sends(services, name).length, 1);
  await clock.advance(25_000); // 12:01:00
  await until('the second run', () => sends(services, name).length === 2);
  await clock.advance(60_000);
  await until('the third run', () => sends(services, name).length === 3);
  const starts = sends(services, name)
    .map((e) => e.startedAt)
    .reverse();
  t.deepEqual(starts, ['2026-11-21T12:00:05.000Z', '2026-11-21T12:01:00.000Z', '2026-11-21T12:02:00.000Z']);
  t.true(sends(services, name).every((e) => e.result === 'success'));
});

/** a ManualClock whose sleepers wake a few ms after their deadline, as real timers do */
class LateClock extends ManualClock {
  override sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return super.sleep(ms + 4, signal);
  }
}

test('a cron service runs at its first match and every match, with no manual run first', async (t) => {
  const { services } = await appliance(t);
  const { name } = await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy', cron: '*/1 * * * *' });
  await services.autoSync.store.update(name, (c) => ({ ...c, createdAt: new Date(T0 + 5_000).toISOString() }));
  const clock = new LateClock(T0 + 5_000);
  startDaemon(t, services, { clock });
  await until('the daemon asleep', () => clock.pending > 0);
  t.is(sends(services, name).length, 0, 'nothing before the first match');
  await clock.advance(55_010); // 12:01:00.010: the timer fired late
  await until('the run at the first match', () => sends(services, name).length === 1);
  await until('the daemon asleep again', () => clock.pending > 0);
  await clock.advance(60_000); // 12:02:00
  await until('the run at the next match', () => sends(services, name).length === 2);
  const starts = sends(services, name)
    .map((e) => e.startedAt.slice(0, 19))
    .reverse();
  t.deepEqual(starts, ['2026-11-21T12:01:00', '2026-11-21T12:02:00']);
});

test('failures are retried with backoff, recorded in the history, and alerted once', async (t) => {
  const { services, home } = await appliance(t);
  const { name } = await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy', type: 'hour', period: 1 });
  // The source disappears behind the service's back: every run fails until it is back.
  await (await services.storage.driver('fs')).destroyDataset('tank/data', { recursive: true });
  const script = path.join(home, 'alert.sh');
  await writeFile(script, `#!/bin/sh\necho "$@" >> "${home}/alerts.args"\ncat >> "${home}/alerts.json"\necho >> "${home}/alerts.json"\n`);
  await chmod(script, 0o755);
  const clock = new ManualClock(T0);
  startDaemon(t, services, { clock, retry: { attempts: 3, baseMs: 10_000, maxMs: 60_000 }, alertCommand: [script] });
  await until('the first failure', () => sends(services, name).length === 1);
  const first = sends(services, name)[0];
  t.is(first.result, 'failure');
  t.regex(first.error!, /source dataset fs:tank\/data does not exist/);
  await clock.advance(9_000);
  await until('the daemon sleeps on: the retry is not due', () => clock.pending === 1);
  t.is(sends(services, name).length, 1, 'no retry before the backoff');
  await clock.advance(1_000); // +10 s
  await until('the first retry', () => sends(services, name).length === 2);
  await clock.advance(19_000);
  await until('the daemon sleeps on: the second retry is not due', () => clock.pending === 1);
  t.is(sends(services, name).length, 2, 'the second backoff is longer');
  await clock.advance(1_000); // +20 s
  await until('the second retry', () => sends(services, name).length === 3);
  t.is(services.autoSync.store.runState(name).consecutiveFailures, 3);
  await until('the alert', async () => (await readFile(path.join(home, 'alerts.json'), 'utf8').catch(() => '')).includes('failure'));
  const alerts = (await readFile(path.join(home, 'alerts.json'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.is(alerts.length, 1, 'one alert for one change of state');
  t.like(alerts[0], { service: name, level: 'failure', appliance: 'node1' });
  t.regex(await readFile(path.join(home, 'alerts.args'), 'utf8'), new RegExp(`^${name} failure Last run failed`));
  t.regex(services.autoSync.log(name).tail(50).join('\n'), /\[ALERT \(failure\): auto-sync:tank-data-000: Last run failed/);
});

test('dueAt: retries back off and give way to the schedule after the attempts', (t) => {
  const config = { schedule: { type: 'hour', period: 1 } } as AutoSyncConfig;
  const failed = (n: number) => ({ ...EMPTY_RUN_STATE, lastResult: 'failure' as const, lastRunAt: new Date(T0).toISOString(), consecutiveFailures: n });
  const retry = { attempts: 3, baseMs: 10_000, maxMs: 25_000 };
  t.is(dueAt(config, failed(1), T0, retry), T0 + 10_000);
  t.is(dueAt(config, failed(2), T0, retry), T0 + 20_000);
  t.is(dueAt(config, failed(3), T0, retry), T0 + 25_000);
  t.is(dueAt(config, failed(4), T0, retry), T0 + 3_600_000);
  t.is(dueAt(config, { ...EMPTY_RUN_STATE }, T0, DEFAULT_RETRY), T0);
});

test('warn after max delay: status says why, and the alert command gets it', async (t) => {
  const { services, home } = await appliance(t);
  const { name } = await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy', type: 'day', period: 1, maxDelay: 120 });
  const script = path.join(home, 'alert.sh');
  await writeFile(script, `#!/bin/sh\ncat >> "${home}/alerts.json"\necho >> "${home}/alerts.json"\n`);
  await chmod(script, 0o755);
  const clock = new ManualClock(Date.now()); // services are created now: the clock starts there
  startDaemon(t, services, { clock, alertCommand: [script] });
  await until('the first run', () => sends(services, name).length === 1);
  t.is(services.autoSync.status(name, clock.now()).health, 'up');
  await clock.advance(180_000);
  await until('the warn alert', async () => (await readFile(path.join(home, 'alerts.json'), 'utf8').catch(() => '')).includes('warn'));
  const status = services.autoSync.status(name, clock.now());
  t.is(status.health, 'warn');
  t.regex(status.message, /^Last sync on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, older than 120 seconds \(max-delay\)$/);
  const raw = await readFile(path.join(home, 'alerts.json'), 'utf8');
  const alerts = raw
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.deepEqual(
    alerts.map((a) => a.level),
    ['warn'],
  );
  t.like(alerts[0], { service: name, level: 'warn' });
});

/** the real fs driver, with sends that stop after `after` bytes until released */
function stallingDriver(real: Driver, after: number): { driver: Driver; release(): void } {
  let stalled = true;
  const driver: Driver = Object.create(real);
  driver.send = (dataset, snapshot, opts) => {
    const source: Readable = real.send(dataset, snapshot, opts);
    if (!stalled) return source;
    const out = new PassThrough();
    let sent = 0;
    source.on('data', (chunk: Buffer) => {
      if (sent >= after) return source.pause();
      sent += chunk.length;
      out.write(chunk);
    });
    source.on('error', (e) => out.destroy(e));
    opts.signal?.addEventListener('abort', () => {
      source.destroy();
      out.destroy(new Error('aborted'));
    });
    return out;
  };
  return { driver, release: () => (stalled = false) };
}

test('a stalled transfer is ended, logged and retried; the destination stays as it was', async (t) => {
  const { services, src } = await appliance(t);
  const { name } = await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy', type: 'hour', period: 1 });
  await services.autoSync.run(name);
  await writeFile(path.join(src, 'big.bin'), Buffer.alloc(8 << 20, 7));
  await writeFile(path.join(src, 'file.txt'), 'v2');
  const real = await services.storage.driver('fs');
  const stall = stallingDriver(real, 64 << 10);
  services.storage.use(stall.driver);
  const clock = new ManualClock(Date.now() + 2 * 3_600_000);
  startDaemon(t, services, { clock, stallMs: 1_000, retry: { attempts: 3, baseMs: 5_000, maxMs: 5_000 } });
  await until('the stall', () =>
    services.autoSync
      .log(name)
      .tail(20)
      .some((l) => l.includes('STALLED')),
  );
  await until('the failure to be recorded', () => services.autoSync.store.runState(name).lastResult === 'failure');
  // The trail, the state and the FAILURE line give the stall as the reason, not "The operation was aborted".
  const why = /^Stalled: no progress for 1 second; the transfer was ended and will be retried\.$/;
  t.regex(services.autoSync.store.runState(name).lastError!, why);
  t.regex(sends(services, name)[0].error!, why);
  const failure = services.autoSync
    .log(name)
    .tail(20)
    .find((l) => l.includes('FAILURE'));
  t.regex(failure ?? '', /FAILURE: .*: Stalled: no progress for 1 second/);
  const dst = (await services.folders.list('fs:tank/copy'))[0].mountpoint!;
  t.is(await readFile(path.join(dst, 'file.txt'), 'utf8'), 'v1');
  stall.release();
  await clock.advance(5_000);
  await until('the retry to succeed', () => services.autoSync.store.runState(name).lastResult === 'success');
  t.is(await readFile(path.join(dst, 'file.txt'), 'utf8'), 'v2');
  t.is((await readFile(path.join(dst, 'big.bin'))).length, 8 << 20);
});

test('a service created while the daemon runs is picked up without a restart', async (t) => {
  const { services } = await appliance(t);
  const clock = new ManualClock(T0);
  const { lines } = startDaemon(t, services, { clock });
  await until('the daemon to watch its configuration', () => lines.some((l) => l.startsWith('daemon started')));
  const { name } = await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy', type: 'hour', period: 1 });
  await until('the new service to run', () => sends(services, name).length === 1);
  await services.autoSync.setEnabled(name, false);
  await clock.advance(3_600_000);
  await until('the daemon to sleep again after its tick', () => clock.pending === 1);
  t.is(sends(services, name).length, 1, 'a disabled service does not run');
  await mkdir(path.join(services.home.root, 'unused'), { recursive: true });
});

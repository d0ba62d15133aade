import test from 'ava';
import { mkdtempSync, rmSync, renameSync, truncateSync, appendFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ServiceLog, stamp } from '../../src/services/service-log.js';

const make = (t: { teardown(fn: () => void): void }) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return new ServiceLog(path.join(dir, 'auto-sync-x.log'));
};

test('lines are written in NMC style and tailed from the end', async (t) => {
  const log = make(t);
  t.deepEqual(log.tail(5), []);
  for (let i = 0; i < 3000; i++) log.write(`line ${i}`);
  log.write('SUCCESS: localhost/a => localhost/b OK (3 sec)', new Date(2026, 0, 2, 3, 4, 5));
  const last = log.tail(3);
  t.deepEqual(
    last.slice(0, 2).map((l) => l.replace(/^\S+ \S+ /, '')),
    ['[line 2998 ]', '[line 2999 ]'],
  );
  t.is(last[2], '2026-01-02 03:04:05 [SUCCESS: localhost/a => localhost/b OK (3 sec) ]');
  t.is((await log.all()).length, 3001);
  t.regex(stamp(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
});

test('follow yields new lines and survives rotation and truncation', async (t) => {
  const log = make(t);
  log.write('before');
  const abort = new AbortController();
  const seen: string[] = [];
  // each line seen settles the wait for it: the test moves on on that signal, not after a pause
  const waits: (() => void)[] = [];
  const lineSeen = (n: number) => new Promise<void>((resolve) => (seen.length >= n ? resolve() : (waits[n] = resolve)));
  // the follow opens the file at its end before the first await, so 'before' is not seen
  const done = (async () => {
    for await (const line of log.follow(abort.signal, 10)) {
      seen.push(line);
      waits[seen.length]?.();
      if (seen.length === 3) abort.abort();
    }
  })();
  log.write('one');
  await lineSeen(1);
  renameSync(log.file, `${log.file}.1`);
  log.write('two');
  await lineSeen(2);
  truncateSync(log.file, 0);
  appendFileSync(log.file, 'three\n');
  await done;
  t.deepEqual(
    seen.map((l) => l.replace(/^\S+ \S+ /, '')),
    ['[one ]', '[two ]', 'three'],
  );
});

/**
 * Within a run, a query's answer is reused while it can still be true; a
 * command that may change it (one that is not a query) ends the reuse.
 */
import test from 'ava';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { forgetMemo, isQuery, MAX_AGE_MS, reusable, runMemo, withQueryCache } from '../../../src/services/storage/query-cache.js';
import { probe, run } from '../../../src/services/storage/exec.js';

for (const [file, args, query] of [
  ['zfs', ['list', '-H', '-o', 'name', 'tank'], true],
  ['/usr/sbin/zfs', ['get', '-H', 'guid', 'tank@a'], true],
  ['zpool', ['list', '-H', '-o', 'name'], true],
  ['zfs', ['snapshot', 'tank@a'], false],
  ['zfs', ['receive', 'tank/b'], false],
  ['zfs', ['hold', 'syncsh', 'tank@a'], false],
  ['zpool', ['create', 'tank', '/dev/x'], false],
  ['btrfs', ['subvolume', 'show', '/mnt/a'], true],
  ['btrfs', ['property', 'get', '-ts', '/mnt/a', 'ro'], true],
  ['btrfs', ['--version'], true],
  ['btrfs', ['subvolume', 'snapshot', '-r', '/mnt/a', '/mnt/b'], false],
  ['btrfs', ['property', 'set', '-ts', '/mnt/a', 'ro', 'true'], false],
  ['btrfs', ['receive', '-e', '/mnt/s'], false],
  ['lszfs', ['list'], false],
] as const) {
  test(`${file} ${args.join(' ')} is ${query ? '' : 'not '}a query`, (t) => t.is(isQuery(file, args), query));
}

for (const [what, entry, now, current, want] of [
  ['just asked, nothing ran since', { at: 1000, generation: 7 }, 1000, 7, true],
  ['at its age limit', { at: 1000, generation: 7 }, 1000 + MAX_AGE_MS, 7, true],
  ['older than the limit', { at: 1000, generation: 7 }, 1001 + MAX_AGE_MS, 7, false],
  ['another command started or ended since', { at: 1000, generation: 7 }, 1001, 8, false],
  ['the clock went back', { at: 1000, generation: 7 }, 999, 7, false],
] as const) {
  test(`an answer ${what}: ${want ? 'reused' : 'asked again'}`, (t) => t.is(reusable(entry, now, current), want));
}

/** a fake `zfs` that counts its runs in a file and prints the count */
function fakeZfs(t: { teardown(fn: () => void): void }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-query-cache-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const counter = path.join(dir, 'count');
  writeFileSync(counter, '0');
  const zfs = path.join(dir, 'zfs');
  writeFileSync(zfs, `#!/bin/sh\nn=$(($(cat '${counter}') + 1)); echo $n > '${counter}'; echo "$n $*"\n`);
  chmodSync(zfs, 0o755);
  return { zfs, runs: () => Number(readFileSync(counter, 'utf8')) };
}

test('in a run, one spawn answers a repeated query until a command that is not a query runs', async (t) => {
  const { zfs, runs } = fakeZfs(t);
  await withQueryCache(async () => {
    t.is(await run(zfs, ['list', 'tank']), '1 list tank');
    t.is(await run(zfs, ['list', 'tank']), '1 list tank');
    t.is((await probe(zfs, ['list', 'tank'])).stdout.trim(), '2 list tank', 'a probe is its own question');
    t.is((await probe(zfs, ['list', 'tank'])).stdout.trim(), '2 list tank');
    t.is(await run(zfs, ['get', 'guid', 'tank']), '3 get guid tank');
    await run(zfs, ['snapshot', 'tank@a']);
    t.is(await run(zfs, ['list', 'tank']), '5 list tank', 'asked again after the snapshot');
  });
  t.is(runs(), 5);
});

test('outside a run every query spawns', async (t) => {
  const { zfs, runs } = fakeZfs(t);
  await run(zfs, ['list', 'tank']);
  await run(zfs, ['list', 'tank']);
  t.is(runs(), 2);
});

// serial (ava runs it before the others): the command it runs would end the other tests' reuse
test.serial('runMemo keeps an answer for the run whatever ran since, while it is of the kept kind, until forgotten', async (t) => {
  let asked = 0;
  const ask = (readonly: boolean) => async () => ({ n: ++asked, readonly });
  const keep = (a: { readonly: boolean }) => a.readonly;
  await withQueryCache(async () => {
    const first = await runMemo('show:/mnt/.s/a', ask(true), keep);
    await run('true', []); // a command ran: a cached query would be asked again, a memo is not
    t.is((await runMemo('show:/mnt/.s/a', ask(true), keep)).n, first.n);
    t.is((await runMemo('show:/mnt/live', ask(false), keep)).n, 2);
    t.is((await runMemo('show:/mnt/live', ask(false), keep)).n, 3, 'an answer keep refuses is asked again');
    forgetMemo('show:/mnt/.s/a');
    t.is((await runMemo('show:/mnt/.s/a', ask(true), keep)).n, 4, 'forgotten');
    await runMemo('show:/mnt/.s/b', ask(true), keep);
    await runMemo('show:/mnt/.sx', ask(true), keep);
    forgetMemo('show:/mnt/.s', true);
    t.is((await runMemo('show:/mnt/.s/a', ask(true), keep)).n, 7, 'forgotten with the directory it is in');
    t.is((await runMemo('show:/mnt/.sx', ask(true), keep)).n, 6, 'a sibling whose name only begins the same stays');
  });
  await runMemo('show:/mnt/.s/a', ask(true), keep);
  t.is((await runMemo('show:/mnt/.s/a', ask(true), keep)).n, 9, 'outside a run nothing is kept');
});

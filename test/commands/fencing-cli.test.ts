/** `setup network fencing` and `show network fencing` through bin/syncsh.js, with a peer bound by local-bind. */
import test from 'ava';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fails, ok, Fixture, makeAppliance } from '../peer/_fixture.js';

test('fencing policies per bound peer: fence with a command, ignore, manual, clear; bad input named, nothing changed', async (t) => {
  t.timeout(4 * 60_000);
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha', { SYNCSH_DRIVERS: 'fs' });
  const b = makeAppliance(f, 'beta', { SYNCSH_DRIVERS: 'fs' });
  await ok(a, `setup network local-bind ${b.home}`);
  t.regex(await ok(a, 'show network fencing'), /^APPLIANCE\s+POLICY\s+COMMAND.*\nbeta\s+none\s+-/);

  const fence = path.join(a.home, 'fence-b');
  writeFileSync(fence, '#!/bin/sh\nexit 0\n');
  chmodSync(fence, 0o755);
  t.is(
    (await ok(a, `setup network fencing beta fence --command '${fence} --host "bmc b"' --timeout 5`)).trim(),
    `Fencing policy of beta: fence with ${fence} --host 'bmc b' (timeout 5 sec); a mirror that loses it runs the command; a write goes on only if the command exits 0.`,
  );
  t.like(JSON.parse(await ok(a, 'show network fencing --json'))[0], { peer: 'beta', bound: 'outbound', kind: 'fence', command: [fence, '--host', 'bmc b'], timeoutMs: 5000 });

  const file = path.join(a.home, 'fencing.json');
  const before = readFileSync(file, 'utf8');
  t.is(await fails(a, 'setup network fencing gamma ignore'), 'Error: No appliance "gamma" is bound to this one, so it has no fencing policy (the bound appliances are beta). Nothing was changed.');
  t.regex(await fails(a, "setup network fencing beta fence --command 'fence-b --now'"), /must start with the absolute path of its program, not "fence-b"/);
  t.regex(await fails(a, 'setup network fencing beta fence'), /needs --command 'PROGRAM ARGS…'/);
  t.regex(await fails(a, `setup network fencing beta fence --command '${fence} "open'`), /unclosed double quote/);
  t.regex(await fails(a, `setup network fencing beta fence --command ${fence} --timeout 0`), /--timeout/);
  t.is(readFileSync(file, 'utf8'), before, 'no refusal wrote anything');

  t.regex(await ok(a, 'setup network fencing beta manual'), /Fencing policy of beta: manual; a slave that loses it fails writes/);
  t.regex(await ok(a, 'show network fencing'), /beta\s+manual\s+-/);
  t.regex(await ok(a, 'setup network fencing beta ignore'), /Fencing policy of beta: ignore;.*split brain/);
  t.regex(await ok(a, 'setup network fencing beta clear'), /Fencing policy of beta cleared \(was ignore\)/);
  t.regex(await ok(a, 'show network fencing'), /beta\s+none/);
  const log = await ok(a, 'show network fencing log');
  t.is(log.trim().split('\n').length, 4, log);
  t.regex(log, /set: fence with .*\n.*set: manual.*\n.*set: ignore.*\n.*cleared \(was ignore\)/);
});

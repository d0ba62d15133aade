/**
 * The console policy over the real console (OpenSSH client against the built
 * `syncsh serve`): settings that name a program, a file or a home are refused
 * outside the directories the administrator allowed, nothing is changed and
 * the audit log records the attempt; symlinks and `..` do not get out; the
 * same commands on the local shell work as before.
 */
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { makeAppliance } from '../helpers/appliance.js';
import { syncsh } from '../helpers/cli.js';
import { gatedTest } from '../helpers/system.js';
import { createServices } from '../../src/services/index.js';
import { consoleToolsMissing, makeKey, startServe, writeAuthorizedKeys } from './serve-process.js';

const test = await gatedTest(['ssh', 'ssh-keygen', 'tmux'], consoleToolsMissing);

/** node1 served over SSH under a policy of the test's own: alert programs from alert.d, homes under homes/ */
async function setup(t: ExecutionContext) {
  const { home, env, services } = makeAppliance(t, 'node1');
  const admin = mkdtempSync(path.join(os.tmpdir(), 'syncsh-policy-'));
  t.teardown(() => rmSync(admin, { recursive: true, force: true }));
  const alertD = path.join(admin, 'alert.d');
  mkdirSync(alertD);
  writeFileSync(path.join(alertD, 'notify'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  symlinkSync('/bin/sh', path.join(alertD, 'sh'));
  const homes = path.join(admin, 'homes');
  mkdirSync(homes);
  const policy = path.join(admin, 'console-policy.json');
  writeFileSync(policy, JSON.stringify({ programs: [alertD], homes: [homes] }));
  const served = { ...env, SYNCSH_CONSOLE_POLICY: policy };
  const operator = await makeKey(home, 'operator');
  const authorizedKeys = path.join(home, 'authorized_keys');
  writeAuthorizedKeys(authorizedKeys, [operator.publicLine]);
  const serve = await startServe(t, served, authorizedKeys);
  const ssh = (command: string) => execa('ssh', [...serve.sshArgs(operator.file, 'alice'), command], { reject: false, stdin: 'ignore' });
  const local = (command: string) => syncsh(['-c', command], env);
  const audit = () => readFileSync(path.join(home, 'log', 'audit.log'), 'utf8');
  const refusedLines = () =>
    audit()
      .split('\n')
      .filter((l) => / refused user="alice" /.test(l));
  return { home, env, services, admin, alertD, homes, policy, serve, ssh, local, audit, refusedLines };
}

const applianceFile = (home: string) => readFileSync(path.join(home, 'appliance.json'), 'utf8');

test('alert-command: /bin/sh, a symlink to it and a .. way out are refused over the console, audited, nothing changed; an allowed program is taken; the local shell takes any', async (t) => {
  const { home, alertD, ssh, local, refusedLines, policy } = await setup(t);
  const before = applianceFile(home);

  const shell = await ssh(`setup appliance alert-command /bin/sh -c 'touch /tmp/pwned'`);
  t.is(shell.exitCode, 1, shell.stderr);
  t.regex(shell.stderr, new RegExp(`Error: Over the console, the appliance may run a program only under ${alertD} \\(console policy: ${policy}\\); "/bin/sh"( \\(which is [^)]*\\))? is not there, so nothing was changed`));
  for (const sneaky of [path.join(alertD, 'sh'), `${alertD}/../../../../../bin/sh`]) {
    const r = await ssh(`setup appliance alert-command ${sneaky} -c id`);
    t.is(r.exitCode, 1, r.stderr);
    t.regex(r.stderr, new RegExp(`"${sneaky.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" \\(which is /[^)]*sh\\) is not there`), sneaky);
  }
  t.is(applianceFile(home), before, 'appliance.json is byte for byte as it was');
  const lines = refusedLines();
  t.is(lines.length, 3, lines.join('\n'));
  t.regex(lines[0], /refused user="alice" from=127\.0\.0\.1:\d+ conn=\d+ what="program" path="\/[^"]*sh" "Over the console/);

  const allowed = await ssh(`setup appliance alert-command ${alertD}/notify --to ops`);
  t.is(allowed.exitCode, 0, allowed.stderr);
  t.regex(allowed.stdout, new RegExp(`Alerts will run: ${alertD}/notify --to ops`));
  const shown = await ssh('show appliance --json');
  t.deepEqual(JSON.parse(shown.stdout).alertCommand, [path.join(alertD, 'notify'), '--to', 'ops']);

  // the appliance's own root shell is not the console: it may set any program, as before
  const r = await local(`setup appliance alert-command /bin/sh -c 'logger alert'`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.deepEqual(JSON.parse(applianceFile(home)).alertCommand, ['/bin/sh', '-c', 'logger alert']);
});

test("password files and the authorized-keys target: only under the home's files/ over the console; the local shell as before", async (t) => {
  const { home, ssh, local, refusedLines } = await setup(t);
  const passwords = path.join(home, 'console-passwords');

  const shadow = await ssh('setup console password bob --password-file /etc/shadow');
  t.is(shadow.exitCode, 1, shadow.stderr);
  t.regex(shadow.stderr, new RegExp(`may read a file only under ${home}/files, ${home}/images .*"/etc/shadow" is not there, so nothing was changed`));
  t.false(existsSync(passwords));
  const bind = await ssh('setup network ssh-bind 127.0.0.1 --port 9 --password-file /etc/shadow');
  t.is(bind.exitCode, 1, bind.stderr);
  t.regex(bind.stderr, /"\/etc\/shadow" is not there/);

  mkdirSync(path.join(home, 'files'));
  writeFileSync(path.join(home, 'files', 'bob.pw'), 'correct horse battery\n');
  const ok = await ssh(`setup console password bob --password-file ${home}/files/bob.pw`);
  t.is(ok.exitCode, 0, ok.stderr);
  t.regex(readFileSync(passwords, 'utf8'), /^bob:scrypt\$/m);

  const keysBefore = (await ssh('show network --json')).stdout;
  const cron = await ssh('setup network authorized-keys /etc/cron.d/syncsh');
  t.is(cron.exitCode, 1, cron.stderr);
  t.regex(cron.stderr, new RegExp(`may write a file only under ${home}/files, ${home}/images .*"/etc/cron.d/syncsh" is not there`));
  t.is(JSON.parse((await ssh('show network --json')).stdout).authorizedKeys, JSON.parse(keysBefore).authorizedKeys);
  const kinds = refusedLines().map((l) => /what="(\w+)" path="([^"]*)"/.exec(l)?.slice(1).join(' '));
  t.deepEqual(kinds, ['read /etc/shadow', 'read /etc/shadow', 'write /etc/cron.d/syncsh']);

  const inFiles = await ssh(`setup network authorized-keys ${home}/files/peers`);
  t.is(inFiles.exitCode, 0, inFiles.stderr);
  const r = await local('setup network authorized-keys /etc/ssh/syncsh_keys');
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /Peers' keys will be installed in \/etc\/ssh\/syncsh_keys\./);
  t.false(existsSync('/etc/ssh/syncsh_keys'), 'setting it writes nothing yet');
});

test('local-bind over the console: only homes under the allowed directory, not through a symlink out of it; the local shell binds any home', async (t) => {
  const { homes, ssh, local, refusedLines } = await setup(t);
  const elsewhere = makeAppliance(t, 'far');
  const inside = path.join(homes, 'near');
  const near = createServices({ ...process.env, SYNCSH_HOME: inside, SYNCSH_APPLIANCE_ID: 'near' });
  t.teardown(() => near.peers.close());
  symlinkSync(elsewhere.home, path.join(homes, 'link'));

  for (const dir of [elsewhere.home, path.join(homes, 'link'), `${homes}/../../../${elsewhere.home}`]) {
    const r = await ssh(`setup network local-bind ${dir}`);
    t.is(r.exitCode, 1, r.stderr);
    t.regex(r.stderr, new RegExp(`may use an appliance home only under ${homes} .* is not there, so nothing was changed`), dir);
  }
  t.is(refusedLines().filter((l) => /what="home"/.test(l)).length, 3);
  t.deepEqual(elsewhere.services.peers.store.inbound(), []);

  const shown = await ssh('show console --json');
  t.regex(JSON.parse(shown.stdout).policy, new RegExp(`^programs in .*; homes in ${homes}; btrfs datasets in /mnt \\(`));
  const ok = await ssh(`setup network local-bind ${inside}`);
  t.is(ok.exitCode, 0, ok.stderr);
  t.regex(ok.stdout, /Bound to the appliance near at /);
  const r = await local(`setup network local-bind ${elsewhere.home}`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /Bound to the appliance far at /);
});

test('btrfs datasets, which are paths: only under the allowed directories over the console (default /mnt), whatever the command', async (t) => {
  const { ssh, refusedLines } = await setup(t);
  for (const line of ['create folder btrfs:/etc/syncsh/alert.d/x', 'destroy folder btrfs:/.snapshots/1/snapshot -y', 'destroy snapshot btrfs:/home@1 -y', 'create auto-sync --from-fs fs:tank --to-fs btrfs:/etc/syncsh -y']) {
    const r = await ssh(line);
    t.is(r.exitCode, 1, `${line}: ${r.stderr}`);
    t.regex(r.stderr, /Over the console, the appliance may name a btrfs dataset only under \/mnt .* is not there, so nothing was changed/, line);
  }
  t.is(refusedLines().filter((l) => /what="btrfs"/.test(l)).length, 4);
  // under /mnt the command goes on to the driver (no btrfs there: its own error, not the policy's)
  const r = await ssh('create folder btrfs:/mnt/syncsh-test-none/data');
  t.notRegex(r.stderr, /Over the console/);
});

test("what the NBD server exposes to the network (nbd-listen, nbd-allow) is set only from the appliance's own shell", async (t) => {
  const { home, ssh, local, refusedLines } = await setup(t);
  const before = applianceFile(home);
  for (const line of ['setup appliance nbd-listen 0.0.0.0:10809', 'setup appliance nbd-allow 0.0.0.0/0']) {
    const r = await ssh(line);
    t.is(r.exitCode, 1, `${line}: ${r.stderr}`);
    t.regex(r.stderr, /Over the console, nbd-(listen|allow) cannot be changed: .* Use the appliance's own shell\. Nothing was changed\./, line);
  }
  t.is(applianceFile(home), before, 'appliance.json is byte for byte as it was');
  t.is(refusedLines().filter((l) => /what="setting" path="nbd-(listen|allow)"/.test(l)).length, 2);
  const r = await local('setup appliance nbd-allow 10.0.0.0/8');
  t.is(r.exitCode, 0, String(r.stderr));
});

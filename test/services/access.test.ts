/**
 * The console policy's decision (a table), how a path is resolved before it
 * is checked (symlinks, `..`, a missing tail), and what a policy file may say.
 */
import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AccessRefused, consoleAccess, LOCAL_ACCESS, loadConsolePolicy, refusal, resolvePath, type AccessKind, type ConsolePolicy } from '../../src/services/access.js';

const policy: ConsolePolicy = { programs: ['/etc/syncsh/alert.d'], read: ['/h/files'], write: ['/h/files', '/h/images'], homes: [], btrfs: ['/mnt'], source: 'test' };

const table: [AccessKind, string, boolean][] = [
  ['program', '/etc/syncsh/alert.d/mail', true],
  ['program', '/etc/syncsh/alert.d/sub/page', true],
  ['program', '/etc/syncsh/alert.d', false], // the directory itself is no program
  ['program', '/bin/sh', false],
  ['program', '/etc/syncsh/alert.dx/evil', false], // a prefix of the name is not the directory
  ['program', '/etc/syncsh/alert.d/..hidden', true], // a name starting with two dots is still below
  ['read', '/h/files/alice.pw', true],
  ['read', '/h/files', true],
  ['read', '/h/ssh/id_ed25519', false],
  ['read', '/etc/shadow', false],
  ['write', '/h/images/vm1.img', true],
  ['write', '/etc/cron.d/x', false],
  ['home', '/h/other', false], // no homes allowed at all
  ['btrfs', '/mnt/pool/data', true],
  ['btrfs', '/', false],
  ['btrfs', '/.snapshots/1/snapshot', false],
];

for (const [kind, file, allowed] of table) {
  test(`${kind} ${file}: ${allowed ? 'allowed' : 'refused'}`, (t) => {
    const why = refusal(policy, kind, file, file);
    if (allowed) t.is(why, null);
    else t.regex(why ?? '', new RegExp(`"${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" is not there, so nothing was changed`));
  });
}

test('a refusal says which directories are allowed, or that none are', (t) => {
  t.regex(refusal(policy, 'program', '/bin/sh', '/bin/sh')!, /may run a program only under \/etc\/syncsh\/alert\.d \(console policy: test\)/);
  t.regex(refusal(policy, 'home', '/x', '/x')!, /may use no appliance home at all/);
  t.regex(refusal(policy, 'program', '/etc/syncsh/alert.d/../../../bin/sh', '/bin/sh')!, /"\/etc\/syncsh\/alert\.d\/\.\.\/\.\.\/\.\.\/bin\/sh" \(which is \/bin\/sh\)/);
});

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('paths are resolved before the check: symlinks anywhere in them, .., and a tail that does not exist yet', (t) => {
  const dir = tempDir(t);
  mkdirSync(path.join(dir, 'allowed'));
  symlinkSync('/bin/sh', path.join(dir, 'allowed', 'sh'));
  symlinkSync('/etc', path.join(dir, 'allowed', 'etc'));
  t.is(resolvePath(path.join(dir, 'allowed', 'sh')), resolvePath('/bin/sh'));
  t.is(resolvePath(path.join(dir, 'allowed', 'etc', 'cron.d', 'new-file')), path.join(resolvePath('/etc'), 'cron.d', 'new-file'));
  t.is(resolvePath(path.join(dir, 'allowed', '..', '..', 'x', 'y')), path.join(resolvePath(path.dirname(dir)), 'x', 'y'));
  t.is(resolvePath('relative/file', dir), path.join(resolvePath(dir), 'relative', 'file'));
  // a dangling symlink: what a write through it would create
  symlinkSync('/etc/cron.d/not-yet', path.join(dir, 'allowed', 'dangling'));
  t.is(resolvePath(path.join(dir, 'allowed', 'dangling')), path.join(resolvePath('/etc/cron.d'), 'not-yet'));
});

test('the console access reads the policy file, resolves, refuses through the callback; the local shell is allowed all', (t) => {
  const dir = tempDir(t);
  const alertD = path.join(dir, 'alert.d');
  mkdirSync(alertD);
  writeFileSync(path.join(alertD, 'notify'), '#!/bin/sh\n', { mode: 0o755 });
  symlinkSync('/bin/sh', path.join(alertD, 'sh'));
  const file = path.join(dir, 'console-policy.json');
  writeFileSync(file, JSON.stringify({ programs: [alertD] }));
  const home = path.join(dir, 'home');
  const refused: AccessRefused[] = [];
  const access = consoleAccess(home, { SYNCSH_CONSOLE_POLICY: file }, (r) => refused.push(r));
  t.is(access.program(path.join(alertD, 'notify')), path.join(resolvePath(alertD), 'notify'));
  t.throws(() => access.program(path.join(alertD, 'sh')), { instanceOf: AccessRefused, message: /which is \/.*sh\)/ });
  t.throws(() => access.program('notify'), { message: /absolute path, not "notify"/ });
  // what the policy does not name are the defaults: files and images under the home
  t.is(access.readFile(path.join(home, 'files', 'pw')), path.join(resolvePath(home), 'files', 'pw'));
  t.throws(() => access.readFile('/etc/shadow'), { instanceOf: AccessRefused });
  t.throws(() => access.home(path.join(dir, 'other')), { message: /may use no appliance home at all/ });
  t.deepEqual(
    refused.map((r) => r.kind),
    ['program', 'program', 'read', 'home'],
  );
  t.is(LOCAL_ACCESS.program('/bin/sh'), '/bin/sh');
  t.is(LOCAL_ACCESS.writeFile('/etc/x'), '/etc/x');
});

test('a policy file that is damaged, names unknown keys, or lets the console write where programs are is refused', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'console-policy.json');
  const load = () => loadConsolePolicy(path.join(dir, 'home'), { SYNCSH_CONSOLE_POLICY: file });
  t.regex(load().source, /the defaults, as there is no /);
  writeFileSync(file, '{"programs": [');
  t.throws(load, { message: /console-policy\.json cannot be read/ });
  writeFileSync(file, JSON.stringify({ program: ['/x'] }));
  t.throws(load, { message: /unknown key "program"/ });
  writeFileSync(file, JSON.stringify({ programs: '/x' }));
  t.throws(load, { message: /"programs" must be a list of directories/ });
  writeFileSync(file, JSON.stringify({ programs: [path.join(dir, 'bin')], write: [dir] }));
  t.throws(load, { message: /the console could write in .* and so change .*bin/ });
  writeFileSync(file, JSON.stringify({ programs: ['/etc/syncsh/alert.d'], homes: [dir] }));
  t.throws(load, { message: /and so change .*console-policy\.json/ });
  writeFileSync(file, JSON.stringify({ write: ['.'] }));
  t.throws(load, { message: /could write anywhere in .*home, which holds this appliance's home/ });
  // a damaged policy refuses everything at the console, with the reason
  writeFileSync(file, 'nope');
  t.throws(() => consoleAccess(dir, { SYNCSH_CONSOLE_POLICY: file }).readFile(path.join(dir, 'files', 'x')), { instanceOf: AccessRefused, message: /cannot be read.*the console may not name programs, files or homes/ });
});

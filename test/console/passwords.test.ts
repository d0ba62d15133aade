/** The console password file: one hashed line per user, private, read again at every check; and the setting. */
import test, { type ExecutionContext } from 'ava';
import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { passwordAuthSetting, passwordProblem, PasswordFile, setPasswordAuthSetting, userNameProblem } from '../../src/services/console-passwords.js';

const FAST = { N: 1024, r: 8, p: 1 };

function passwordFile(t: ExecutionContext) {
  const { services } = makeAppliance(t);
  return { passwords: PasswordFile.inHome(services.home), home: services.home };
}

test('set, change and remove: one line per user, mode 0600, comments and order kept, no clear text', async (t) => {
  const { passwords, home } = passwordFile(t);
  t.is(passwords.file, path.join(home.root, 'console-passwords'));
  t.deepEqual(passwords.users(), [], 'no file: nobody');

  t.false(await passwords.set('alice', 'alice-secret-1', FAST));
  t.false(await passwords.set('bob', 'bob-secret-22', FAST));
  t.is(statSync(passwords.file).mode & 0o777, 0o600);
  writeFileSync(passwords.file, `# operators of node1\n${readFileSync(passwords.file, 'utf8')}`, { mode: 0o600 });

  t.true(await passwords.set('alice', 'alice-secret-2', FAST), 'a change says the user had one');
  const lines = readFileSync(passwords.file, 'utf8').trimEnd().split('\n');
  t.is(lines.length, 3);
  t.is(lines[0], '# operators of node1');
  t.regex(lines[1], /^alice:scrypt\$1024\$8\$1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
  t.regex(lines[2], /^bob:scrypt\$/);
  t.deepEqual(passwords.users(), ['alice', 'bob']);
  const text = readFileSync(passwords.file, 'utf8');
  for (const clear of ['alice-secret-1', 'alice-secret-2', 'bob-secret-22']) t.false(text.includes(clear), `the file holds ${clear}`);

  t.deepEqual(await passwords.check('alice', 'alice-secret-2'), { ok: true });
  t.deepEqual(await passwords.check('alice', 'alice-secret-1'), { ok: false, reason: 'wrong password' }, 'the old password no longer works');
  t.deepEqual(await passwords.check('bob', 'alice-secret-2'), { ok: false, reason: 'wrong password' }, "one user's password is not another's");

  t.true(await passwords.remove('bob'));
  t.false(await passwords.remove('bob'));
  t.deepEqual(passwords.users(), ['alice']);
  t.is(statSync(passwords.file).mode & 0o777, 0o600);
  t.like(await passwords.check('bob', 'bob-secret-22'), { ok: false, reason: 'no console password is set for "bob"' });
});

test('the file is read again at every check: a line removed by hand counts at once', async (t) => {
  const { passwords } = passwordFile(t);
  await passwords.set('alice', 'alice-secret-1', FAST);
  t.true((await passwords.check('alice', 'alice-secret-1')).ok);
  writeFileSync(passwords.file, '# emptied by hand\n', { mode: 0o600 });
  t.false((await passwords.check('alice', 'alice-secret-1')).ok);
});

test('nobody gets in with no file, a file others may read, or an entry that is no scrypt hash', async (t) => {
  const { passwords } = passwordFile(t);
  const reason = async (user: string, password: string) => {
    const check = await passwords.check(user, password);
    return check.ok ? 'let in' : check.reason;
  };
  t.regex(await reason('alice', 'whatever-1'), /there is no console password file at .*console-passwords/);

  await passwords.set('alice', 'alice-secret-1', FAST);
  chmodSync(passwords.file, 0o644);
  t.regex(await reason('alice', 'alice-secret-1'), /may be read or written by others \(mode 644\); chmod 600 it/);

  writeFileSync(passwords.file, 'alice:hunter2\nbob:scrypt$4194304$8$1$MDEyMzQ1Njc4OWFiY2RlZg$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\n', { mode: 0o600 });
  chmodSync(passwords.file, 0o600);
  t.regex(await reason('alice', 'hunter2'), /the entry on line 1 of .* cannot be used: It is not a scrypt/);
  t.regex(await reason('bob', 'x'), /line 2 .* N must be a power of two from 2 to 1048576/);
});

const badUsers = ['', 'al:ce', 'al ce', '-rf', '.hidden', 'a/b', 'ünï', 'x'.repeat(65), 'alice\nbob:scrypt$1'];
for (const user of badUsers) {
  test(`a user name is refused, naming it, and nothing is written: ${JSON.stringify(user)}`, async (t) => {
    t.regex(userNameProblem(user) ?? '', /^A console user name is 1 to 64 letters, digits, "_", "\." or "-", and does not start with "\." or "-": not ".*"\.$/);
    const { passwords } = passwordFile(t);
    await t.throwsAsync(passwords.set(user, 'good-password', FAST), { message: /A console user name/ });
    t.deepEqual(passwords.users(), []);
  });
}

test('good user names and passwords; passwords that are too short, too long or span lines are refused', (t) => {
  for (const user of ['alice', 'bob.smith', 'op_1', '1st-operator', 'A']) t.is(userNameProblem(user), null, user);
  t.is(passwordProblem('eight ch'), null);
  t.is(passwordProblem(''), 'The password is empty.');
  t.is(passwordProblem('seven c'), 'The password must have at least 8 characters.');
  t.is(passwordProblem('x'.repeat(1025)), 'The password must have at most 1024 characters.');
  t.is(passwordProblem('two\nlines!'), 'The password must not hold a line break or a NUL.');
});

test('password logins are off unless set; the setting is kept in console.json and read afresh', (t) => {
  const { home } = passwordFile(t);
  t.false(passwordAuthSetting(home.root));
  setPasswordAuthSetting(home.root, true);
  t.true(passwordAuthSetting(home.root));
  t.deepEqual(JSON.parse(readFileSync(path.join(home.root, 'console.json'), 'utf8')), { passwordAuth: true });
  writeFileSync(path.join(home.root, 'console.json'), '{"passwordAuth": false}');
  t.false(passwordAuthSetting(home.root), 'changed by another process: seen at once');
  writeFileSync(path.join(home.root, 'console.json'), '{"passwordAuth": tru');
  t.throws(() => passwordAuthSetting(home.root), { message: /^The console settings .*console\.json are not JSON: / });
  // a damaged file is named and left as it is, not written anew
  t.throws(() => setPasswordAuthSetting(home.root, false), { message: /are not JSON: .*Nothing was changed: repair the file, or remove it/ });
  t.is(readFileSync(path.join(home.root, 'console.json'), 'utf8'), '{"passwordAuth": tru');
  rmSync(path.join(home.root, 'console.json'));
  setPasswordAuthSetting(home.root, true);
  t.true(passwordAuthSetting(home.root), 'once the broken file is removed, the setting is written anew');
});

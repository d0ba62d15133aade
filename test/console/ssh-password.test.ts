/**
 * Password logins on the SSH console, as an operator uses them: the real
 * OpenSSH client (the password typed at its prompt by sshpass) against
 * `syncsh serve` (the built CLI); passwords set with the shell's commands,
 * from a file or typed twice in tmux over the console itself. Off unless
 * turned on; a wrong password is refused after a delay and audited; the
 * clear text is in no file of the appliance.
 */
import { execa } from 'execa';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { makeAppliance } from '../helpers/appliance.js';
import { syncsh } from '../helpers/cli.js';
import { tempDir } from '../helpers/fs-tree.js';
import { gatedTest } from '../helpers/system.js';
import { openScreen } from '../helpers/tmux.js';
import { makeKey, passwordToolsMissing, sshWithPassword, startServe, writeAuthorizedKeys } from './serve-process.js';

const test = await gatedTest(['ssh', 'ssh-keygen', 'tmux', 'sshpass'], passwordToolsMissing);

const PROMPT = /syncsh@node1:\/\$\s*$/m;
const ALICE = 'correct horse battery staple';

/** an appliance whose console has an operator key authorized and alice's password set with the CLI (--password-file); serve started with `serveArgs` */
async function setup(t: ExecutionContext, serveArgs: string[]) {
  const { home, env } = makeAppliance(t, 'node1');
  const operator = await makeKey(home, 'operator');
  const authorizedKeys = path.join(home, 'authorized_keys');
  writeAuthorizedKeys(authorizedKeys, [operator.publicLine]);
  const cli = (line: string) => syncsh(['-c', line], env);
  const secrets = tempDir(t, 'syncsh-secret-');
  const passwordFile = path.join(secrets, 'alice');
  writeFileSync(passwordFile, `${ALICE}\n`, { mode: 0o600 });
  const set = await cli(`setup console password alice --password-file ${passwordFile}`);
  t.is(set.exitCode, 0, String(set.stderr));
  const serve = await startServe(t, env, authorizedKeys, serveArgs);
  const ssh = (user: string, password: string, command: string) => sshWithPassword(serve, user, password, command);
  return { home, env, cli, operator, serve, ssh, audit: () => readFileSync(path.join(home, 'log', 'audit.log'), 'utf8') };
}

/** no file of the appliance home holds any of `secrets` */
function clearTextNowhere(t: ExecutionContext, home: string, ...secrets: string[]) {
  const files = readdirSync(home, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
  t.true(files.includes(path.join(home, 'console-passwords')));
  for (const file of files) {
    const content = readFileSync(file);
    for (const secret of secrets) t.false(content.includes(secret), `${file} holds the password ${secret}`);
  }
}

test('with --password-auth yes: the right password logs in, a wrong one or a user without one is refused after a delay; all audited; no clear text', async (t) => {
  const { home, serve, ssh, audit } = await setup(t, ['--password-auth', 'yes']);
  t.regex(serve.output(), /password logins are on \(--password-auth\): 1 user\(s\) in .*console-passwords/);

  const ok = await ssh('alice', ALICE, 'show console passwords');
  t.is(ok.exitCode, 0, ok.stderr);
  t.regex(ok.stdout, /^USER\nalice$/);

  const started = Date.now();
  const wrong = await ssh('alice', 'correct horse battery stapler', 'show console passwords');
  t.is(wrong.exitCode, 255);
  t.regex(wrong.stderr, /alice@127\.0\.0\.1: Permission denied \(publickey,password\)/);
  t.true(Date.now() - started >= 1000, 'a refused password is answered after a delay');
  t.is(wrong.stdout, '');

  const nobody = await ssh('bob', ALICE, 'show console passwords');
  t.is(nobody.exitCode, 255, 'a password is only for its own user');
  t.regex(nobody.stderr, /Permission denied/);

  const lines = audit();
  t.regex(lines, /login user="alice" from=127\.0\.0\.1:\d+ conn=1 method="password"\n/);
  t.regex(lines, /command user="alice" from=127\.0\.0\.1:\d+ conn=1 "show console passwords"/);
  t.regex(lines, /refused user="alice" from=127\.0\.0\.1:\d+ conn=2 method="password" "password refused"\n/);
  t.regex(lines, /refused user="bob" from=127\.0\.0\.1:\d+ conn=3 method="password" "password refused: no console password is set for \\"bob\\""/);
  t.regex(serve.output(), /"alice" logged in with a password/);

  t.is(statSync(path.join(home, 'console-passwords')).mode & 0o777, 0o600);
  t.regex(readFileSync(path.join(home, 'console-passwords'), 'utf8'), /^alice:scrypt\$32768\$8\$1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+\n$/);
  clearTextNowhere(t, home, ALICE, 'correct horse battery stapler');
  t.false(serve.output().includes(ALICE));
});

test('off unless turned on: refused with no setting, on and off with the setting while serve runs, and --password-auth no overrides it', async (t) => {
  const { home, env, cli, operator, serve, ssh } = await setup(t, []);
  t.regex(serve.output(), /password logins are off \(the setting; 'setup console password-auth yes\|no' changes it\)/);

  const off = await ssh('alice', ALICE, 'show console');
  t.is(off.exitCode, 255);
  t.regex(off.stderr, /Permission denied \(publickey\)\./, 'password is not even offered');
  const key = await execa('ssh', [...serve.sshArgs(operator.file, 'operator'), 'show console'], { reject: false, stdin: 'ignore' });
  t.is(key.exitCode, 0, 'keys work either way');

  const turnedOn = await cli('setup console password-auth yes');
  t.is(turnedOn.exitCode, 0, String(turnedOn.stderr));
  const on = await ssh('alice', ALICE, 'show console');
  t.is(on.exitCode, 0, on.stderr);
  t.regex(on.stdout, /password_auth +: yes/);

  const turnedOff = await cli('setup console password-auth no');
  t.is(turnedOff.exitCode, 0, String(turnedOff.stderr));
  t.regex(String(turnedOff.stdout), /Password logins are off: syncsh serve takes keys only\./);
  t.is((await ssh('alice', ALICE, 'show console')).exitCode, 255, 'turned off: refused at once, without a restart');

  // the setting says yes, the server was told no
  const again = await cli('setup console password-auth yes');
  t.is(again.exitCode, 0, String(again.stderr));
  const forced = await startServe(t, env, path.join(home, 'authorized_keys'), ['--password-auth', 'no']);
  t.regex(forced.output(), /password logins are off \(--password-auth\)/);
  const refused = await sshWithPassword(forced, 'alice', ALICE, 'show console');
  t.is(refused.exitCode, 255);
  t.regex(refused.stderr, /Permission denied \(publickey\)\./);

  const bad = await syncsh(['serve', '--password-auth', 'maybe'], env);
  t.is(bad.exitCode, 2);
  t.regex(String(bad.stderr), /--password-auth takes yes or no, not "maybe"\./);
});

test('an operator sets a password at the console, typed twice in a dialog that shows nothing, logs in with it, and it is destroyed', async (t) => {
  const { home, serve, ssh, audit } = await setup(t, ['--password-auth', 'yes']);
  const secret = 'bobs own pass phrase';
  const screen = await openScreen(t, ['ssh', ...serve.sshArgs(path.join(home, 'operator'), 'operator')], { columns: 160, rows: 30 });
  await screen.waitFor(PROMPT);

  // two different answers: nothing is set
  await screen.type('setup console password bob');
  await screen.keys('Enter');
  await screen.waitFor(/New console password for bob:/);
  await screen.type(secret);
  t.false((await screen.capture()).includes(secret), 'nothing of the password is on the screen while typing');
  await screen.keys('Enter');
  await screen.waitFor(/The same password again:/);
  await screen.type('something else');
  await screen.keys('Enter');
  await screen.waitFor(/The two passwords differ\. Nothing was changed\.\n.*syncsh@node1:\/\$\s*$/m);
  t.is((await ssh('bob', secret, 'show console')).exitCode, 255);

  // the first attempt's questions are still on the screen: wait for the second ones
  await screen.type('setup console password bob');
  await screen.keys('Enter');
  await screen.waitFor(/(New console password for bob:[\s\S]*){2}/);
  await screen.type(secret);
  await screen.keys('Enter');
  await screen.waitFor(/(The same password again:[\s\S]*){2}/);
  await screen.type(secret);
  await screen.keys('Enter');
  const shown = await screen.waitFor(/Set the console password of bob \(a scrypt hash in .*console-passwords\)\.[\s\S]*syncsh@node1:\/\$\s*$/);
  t.false(shown.includes(secret));

  const bob = await ssh('bob', secret, 'show console passwords');
  t.is(bob.exitCode, 0, bob.stderr);
  t.regex(bob.stdout, /^USER\nalice\nbob$/);

  await screen.type('destroy console password bob');
  await screen.keys('Enter');
  await screen.waitFor(/Remove the console password of bob\?/);
  await screen.keys('h', 'Enter'); // No -> Yes
  await screen.waitFor(/Removed the console password of bob\.\n.*syncsh@node1:\/\$\s*$/m);
  t.is((await ssh('bob', secret, 'show console')).exitCode, 255, 'removed: refused');
  t.is((await ssh('alice', ALICE, 'show console')).exitCode, 0, "alice's stays");

  const bad = await ssh('alice', ALICE, 'setup console password "al ce" --password-file /dev/null');
  t.is(bad.exitCode, 2);
  t.regex(bad.stderr, /A console user name is 1 to 64 letters, .*not "al ce"\./);

  await screen.type('exit');
  await screen.keys('Enter');
  await screen.waitForExit();
  t.regex(audit(), /command user="operator" from=127\.0\.0\.1:\d+ conn=1 "setup console password bob"/);
  clearTextNowhere(t, home, secret, ALICE);
});

/**
 * The console family at the command line (the built CLI, no terminal):
 * passwords from --password-file, bad input refused with a sentence and
 * nothing changed, removal asking first (-y), listing users only.
 */
import test, { type ExecutionContext } from 'ava';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { syncsh } from '../helpers/cli.js';
import { tempDir } from '../helpers/fs-tree.js';

function appliance(t: ExecutionContext) {
  const { home, env } = makeAppliance(t, 'node1');
  const secrets = tempDir(t, 'syncsh-secret-');
  const secret = (name: string, text: string) => {
    const file = path.join(secrets, name);
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  };
  const cli = async (line: string) => {
    const r = await syncsh(['-c', line], env, { stdin: 'ignore' });
    return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  return { home, cli, secret, file: path.join(home, 'console-passwords') };
}

test('set from a file, list, change, remove with -y; the list shows users only', async (t) => {
  const { cli, secret, file } = appliance(t);
  t.like(await cli('show console passwords'), { code: 0, stdout: "Nobody has a console password. Set one with 'setup console password USER'." });

  const alice = secret('alice', 'alice pass phrase\n');
  const set = await cli(`setup console password alice --password-file ${alice}`);
  t.is(set.code, 0, set.stderr);
  t.regex(set.stdout, /^Set the console password of alice \(a scrypt hash in .*console-passwords\)\. Password logins are off in the settings: /);
  t.is((await cli(`setup console password bob.smith --password-file ${secret('bob', 'bob pass phrase')}`)).code, 0);
  t.regex((await cli(`setup console password alice --password-file ${secret('alice2', 'alice new phrase\r\n')}`)).stdout, /^Changed the console password of alice/);

  const list = await cli('show console passwords');
  t.is(list.stdout, 'USER\nalice\nbob.smith');
  t.deepEqual(JSON.parse((await cli('show console passwords --json')).stdout), [{ user: 'alice' }, { user: 'bob.smith' }]);
  t.notRegex(list.stdout + (await cli('show console passwords --json')).stdout, /scrypt/);

  const text = readFileSync(file, 'utf8');
  t.regex(text, /^alice:scrypt\$32768\$8\$1\$\S+\nbob\.smith:scrypt\$32768\$8\$1\$\S+\n$/);
  for (const clear of ['alice pass phrase', 'alice new phrase', 'bob pass phrase']) t.false(text.includes(clear));

  const asked = await cli('destroy console password alice');
  t.is(asked.code, 1);
  t.regex(asked.stderr, /needs an answer to "Remove the console password of alice\?" but there is no terminal to ask on; pass -y/);
  t.is(readFileSync(file, 'utf8'), text, 'not asked: nothing changed');
  t.like(await cli('destroy console password alice -y'), { code: 0, stdout: 'Removed the console password of alice.' });
  t.is((await cli('show console passwords')).stdout, 'USER\nbob.smith');
});

test('bad input is refused with a sentence and nothing is changed', async (t) => {
  const { cli, secret, file } = appliance(t);
  const good = secret('good', 'a good pass phrase\n');

  const badUser = await cli(`setup console password 'al:ce' --password-file ${good}`);
  t.is(badUser.code, 2, 'it does not parse');
  t.regex(badUser.stderr, /A console user name is 1 to 64 letters, digits, "_", "\." or "-", and does not start with "\." or "-": not "al:ce"\./);

  const noTerminal = await cli('setup console password alice');
  t.is(noTerminal.code, 1);
  t.regex(noTerminal.stderr, /There is no terminal to ask the password of alice on: give it with --password-file FILE\. Nothing was changed\./);

  const short = await cli(`setup console password alice --password-file ${secret('short', 'seven!!\n')}`);
  t.is(short.code, 1);
  t.regex(short.stderr, /The password must have at least 8 characters\. Nothing was changed\./);

  const twoLines = await cli(`setup console password alice --password-file ${secret('two', 'first line\nsecond line\n')}`);
  t.regex(twoLines.stderr, /must not hold a line break/);

  const missing = await cli('setup console password alice --password-file /nonexistent/pw');
  t.is(missing.code, 1);
  t.regex(missing.stderr, /Cannot read the password file \/nonexistent\/pw: ENOENT/);

  t.false(existsSync(file), 'no file was written');

  const none = await cli('destroy console password carol -y');
  t.is(none.code, 1);
  t.regex(none.stderr, /carol has no console password\. Nobody has one\./);
});

test('password-auth: off unless set, shown by show console, refused values named', async (t) => {
  const { cli } = appliance(t);
  t.regex((await cli('show console')).stdout, /password_auth +: no/);
  t.like(await cli('setup console password-auth yes'), { code: 0, stdout: "Password logins are on: syncsh serve takes the passwords of nobody yet ('setup console password USER' sets one)." });
  const shown = await cli('show console --json');
  t.like(JSON.parse(shown.stdout), { passwordAuth: true, passwordUsers: 0 });
  const bad = await cli('setup console password-auth maybe');
  t.is(bad.code, 2);
  t.regex(bad.stderr, /must be yes or no, not "maybe"/);
  t.like(await cli('setup console password-auth no'), { code: 0, stdout: 'Password logins are off: syncsh serve takes keys only.' });
});

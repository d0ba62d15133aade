/**
 * An error that escapes every try in one SSH session (thrown from a timer, a
 * rejection nobody waits for, a throwing reader of the channel's input) ends
 * that session, told on its channel with status 70, and nothing else: the
 * server (test/fixtures/console-escapes.ts, with serve's isolation) goes on
 * serving the other sessions. The real OpenSSH client.
 */
import { execa } from 'execa';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeAppliance } from '../helpers/appliance.js';
import { gatedTest } from '../helpers/system.js';
import { consoleToolsMissing, makeKey, writeAuthorizedKeys } from './serve-process.js';

const test = await gatedTest(['ssh', 'ssh-keygen', 'tmux'], consoleToolsMissing);

const FIXTURE = fileURLToPath(new URL('../fixtures/console-escapes.ts', import.meta.url));

test('an error escaping one session ends that session only; the others and the server go on', async (t) => {
  const { home, env, services } = makeAppliance(t, 'node1');
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/data');
  await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy' });
  const operator = await makeKey(home, 'operator');
  const authorizedKeys = path.join(home, 'authorized_keys');
  writeAuthorizedKeys(authorizedKeys, [operator.publicLine]);

  const child = execa('node', ['--import', 'tsx', FIXTURE, authorizedKeys], { env, reject: false, all: true, buffer: false });
  let output = '';
  child.all?.on('data', (d: Buffer) => (output += d));
  t.teardown(async () => {
    child.kill('SIGTERM');
    await child;
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.all?.on('data', () => {
      const m = /listening on (\d+)/.exec(output);
      if (m) resolve(Number(m[1]));
    });
    void child.then(() => reject(new Error(`the fixture ended before it listened:\n${output}`)));
  });
  const args = (user: string) => [
    '-F',
    '/dev/null',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-i',
    operator.file,
    '-p',
    String(port),
    `${user}@127.0.0.1`,
  ];

  // bob follows the log all along: his session must outlive every other's failure
  const bob = execa('ssh', [...args('bob'), 'show auto-sync :tank-data-000 logtail -f'], { reject: false, stdin: 'ignore' });
  t.teardown(() => void bob.kill());
  let bobSaw = '';
  bob.stdout?.on('data', (d: Buffer) => (bobSaw += d));

  const cases = [
    ['escape timer', 'thrown from a timer'],
    ['escape rejection', 'rejected with nobody to catch it'],
    ['escape reader', 'a reader of the input threw'],
  ] as const;
  for (const [command, message] of cases) {
    const r = await execa('ssh', [...args('carol'), command], { reject: false, input: 'a line for the reader\n' });
    t.is(r.exitCode, 70, `${command}: ${r.stderr}\n${output}`);
    t.regex(r.stderr, new RegExp(`syncsh: this session failed and is closed: ${message}`), command);
    const alice = await execa('ssh', [...args('alice'), 'show auto-sync'], { reject: false, stdin: 'ignore' });
    t.is(alice.exitCode, 0, `after ${command}: ${alice.stderr}`);
    t.regex(alice.stdout, /tank-data-000/);
  }
  t.regex(bobSaw, /Created auto-sync:tank-data-000/);
  t.is(bob.exitCode, null, "bob's session is still open");
  t.notRegex(output, /outside any session/);
  t.regex(output, /conn \d+: the session failed: Error: thrown from a timer/);
});

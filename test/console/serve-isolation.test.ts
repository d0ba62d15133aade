/**
 * One `syncsh serve` process, many SSH sessions, and none of them can take
 * the others down: the real OpenSSH client against the built CLI, in tmux for
 * the operator at a terminal. A dashboard opened and closed in one session
 * while others run commands; a session that reaches a crash point
 * (SYNCSH_FAILPOINTS) ends alone, where it used to SIGKILL the whole server;
 * then SIGTERM: every open session is told, and serve exits 0.
 */
import { execa } from 'execa';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { makeAppliance } from '../helpers/appliance.js';
import { gatedTest } from '../helpers/system.js';
import { openScreen } from '../helpers/tmux.js';
import { consoleToolsMissing, makeKey, startServe, writeAuthorizedKeys } from './serve-process.js';

const test = await gatedTest(['ssh', 'ssh-keygen', 'tmux'], consoleToolsMissing);

const PROMPT = /syncsh@node1:\/\$\s*$/m;

async function setup(t: ExecutionContext) {
  const { home, env, services } = makeAppliance(t, 'node1');
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/data');
  await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy', maxDelay: 3600 });
  await services.autoSync.run('tank-data-000');
  const operator = await makeKey(home, 'operator');
  const authorizedKeys = path.join(home, 'authorized_keys');
  writeAuthorizedKeys(authorizedKeys, [operator.publicLine]);
  // the next snapshot of an fs folder is a crash point: a `run auto-sync` over the console reaches it
  const serve = await startServe(t, { ...env, SYNCSH_FAILPOINTS: 'fs.snapshot.blocks-stored' }, authorizedKeys);
  const ssh = (user: string, command: string) => execa('ssh', [...serve.sshArgs(operator.file, user), command], { reject: false, stdin: 'ignore' });
  return { serve, operator, ssh };
}

test('a dashboard in one session, commands in others, a session that crashes alone, then SIGTERM: every session told, exit 0', async (t) => {
  const { serve, operator, ssh } = await setup(t);
  const alice = await openScreen(t, ['ssh', ...serve.sshArgs(operator.file, 'alice')], { columns: 100, rows: 30 });
  await alice.waitFor(PROMPT);

  // alice's dashboard is open (blessed's screen in this process) while bob runs commands
  await alice.type('show auto-sync dashboard');
  await alice.keys('Enter');
  await alice.waitFor(/auto-sync services[\s\S]*tank-data-000 +online +master +up[\s\S]*q quit/);
  for (let i = 0; i < 3; i++) {
    const r = await ssh('bob', 'show auto-sync');
    t.is(r.exitCode, 0, r.stderr);
    t.regex(r.stdout, /tank-data-000 +fs:tank\/data +fs:tank\/copy/);
  }

  // carol's run reaches the crash point: her session ends, status 70, and nobody else's
  const crashed = await ssh('carol', 'run auto-sync :tank-data-000');
  t.is(crashed.exitCode, 70, crashed.stderr);
  t.regex(crashed.stderr, /syncsh: this session failed and is closed: The failpoint fs\.snapshot\.blocks-stored was reached/);
  t.regex(serve.output(), /"carol" from 127\.0\.0\.1:\d+: exec "run auto-sync :tank-data-000" ended with status 70/);

  // alice's dashboard still redraws and quits back to her prompt; bob still works
  await alice.keys('Down');
  await alice.keys('q');
  await alice.waitFor(/show auto-sync dashboard\n(.*\n)*.*syncsh@node1:\/\$\s*$/m);
  await alice.type('show auto-sync');
  await alice.keys('Enter');
  await alice.waitFor(/tank-data-000 +fs:tank\/data +fs:tank\/copy .*\n.*syncsh@node1:\/\$\s*$/m);
  const after = await ssh('bob', 'show auto-sync :tank-data-000 status');
  t.is(after.exitCode, 0, after.stderr);

  // dave follows the log without a pty; alice sits at her prompt
  const dave = execa('ssh', [...serve.sshArgs(operator.file, 'dave'), 'show auto-sync :tank-data-000 logtail -f'], { reject: false, stdin: 'ignore', buffer: true });
  let daveSaw = '';
  dave.stdout?.on('data', (d: Buffer) => (daveSaw += d));
  const deadline = Date.now() + 10_000;
  while (!/SUCCESS/.test(daveSaw) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.regex(daveSaw, /SUCCESS/);

  t.is(await serve.stop('SIGTERM'), 0, serve.output());
  const told = /syncsh serve: the console is stopping \(SIGTERM\): this session is closed\./;
  await alice.waitFor(told);
  const daveEnd = await dave;
  t.is(daveEnd.exitCode, 143, `${daveEnd.stderr}\n${serve.output()}`);
  t.regex(daveEnd.stderr, told);
  t.regex(serve.output(), /SIGTERM: stopping[\s\S]*syncsh serve: stopped/);
  t.notRegex(serve.output(), /outside any session/);
});

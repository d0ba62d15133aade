/**
 * The SSH console as an operator uses it: the real OpenSSH client against
 * `syncsh serve` (the built CLI), in tmux when a person would be typing.
 * Exec statuses, a refused key, the shell, the live logtail, the dashboard
 * redrawn on a resize, two operators at once, and the audit log.
 */
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { makeAppliance } from '../helpers/appliance.js';
import { gatedTest } from '../helpers/system.js';
import { openScreen, type Screen } from '../helpers/tmux.js';
import { ServiceLog } from '../../src/services/service-log.js';
import { consoleToolsMissing, makeKey, startServe, writeAuthorizedKeys, type ServeProcess } from './serve-process.js';

const test = await gatedTest(['ssh', 'ssh-keygen', 'tmux'], consoleToolsMissing);

const PROMPT = /syncsh@node1:\/\$\s*$/m;

/** an appliance with one service, run once; the console serving it; an operator key authorized, and a stranger's not */
async function setup(t: ExecutionContext) {
  const { home, env, services } = makeAppliance(t, 'node1');
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/data');
  await services.autoSync.create({ fromFs: 'fs:tank/data', toFs: 'fs:tank/copy', maxDelay: 3600 });
  await services.autoSync.run('tank-data-000');
  const operator = await makeKey(home, 'operator');
  const stranger = await makeKey(home, 'stranger');
  const authorizedKeys = path.join(home, 'authorized_keys');
  writeAuthorizedKeys(authorizedKeys, ['# the operators of node1', `restrict ${operator.publicLine}`]);
  const serve = await startServe(t, env, authorizedKeys);
  const ssh = (key: string, command: string, user = 'alice') => execa('ssh', [...serve.sshArgs(key, user), command], { reject: false, stdin: 'ignore' });
  return { home, services, operator, stranger, serve, ssh, audit: () => readFileSync(path.join(home, 'log', 'audit.log'), 'utf8') };
}

async function login(t: ExecutionContext, serve: Awaited<ReturnType<typeof startServe>>, key: string, user: string, size = { columns: 100, rows: 30 }): Promise<Screen> {
  const screen = await openScreen(t, ['ssh', ...serve.sshArgs(key, user)], size);
  await screen.waitFor(PROMPT);
  return screen;
}

/**
 * The shell session ended with status 0, as the server saw it, and ssh is gone. (ssh's own
 * status in tmux is not reliable: tmux may close the pane's terminal, and hang ssh up, while
 * ssh is still on its way out.)
 */
async function endedCleanly(t: ExecutionContext, screen: Screen, serve: ServeProcess, user: string): Promise<void> {
  await screen.waitForExit();
  const deadline = Date.now() + 5000;
  const ended = new RegExp(`"${user}" from 127\\.0\\.0\\.1:\\d+: shell \\([^)]*\\) ended with status (\\d+)`);
  while (!ended.test(serve.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.is(ended.exec(serve.output())?.[1], '0', serve.output());
}

test('exec runs one command and returns its status; no shell escape; a key not listed is refused', async (t) => {
  const { operator, stranger, ssh, audit } = await setup(t);

  const ok = await ssh(operator.file, 'show auto-sync');
  t.is(ok.exitCode, 0, ok.stderr);
  t.regex(ok.stdout, /tank-data-000 +fs:tank\/data +fs:tank\/copy .*online .*up/);

  const typo = await ssh(operator.file, 'shwo');
  t.is(typo.exitCode, 2);
  t.regex(typo.stderr, /Error: Unknown command 'shwo'.*Did you mean 'show'\?/);

  const failing = await ssh(operator.file, 'show folder fs:nope');
  t.is(failing.exitCode, 1);
  t.regex(failing.stderr, /The folder fs:nope does not exist/);

  for (const escape of ['; ls', '$(id)', 'show auto-sync; id']) {
    const r = await ssh(operator.file, escape);
    t.is(r.exitCode, 2, `${escape}: ${r.stderr}`);
    t.regex(r.stderr, /^Error: Unknown (command|word)/, escape);
  }

  const refused = await ssh(stranger.file, 'show auto-sync', 'mallory');
  t.is(refused.exitCode, 255);
  t.regex(refused.stderr, /Permission denied \(publickey\)/);

  const lines = audit();
  t.regex(lines, /command user="alice" from=127\.0\.0\.1:\d+ conn=\d+ "show auto-sync"/);
  t.regex(lines, /command user="alice" from=127\.0\.0\.1:\d+ conn=\d+ "\$\(id\)"/);
  t.regex(lines, /refused user="mallory" from=127\.0\.0\.1:\d+/);
});

test('the shell: a command, the live logtail, the dashboard redrawn on a resize, exit', async (t) => {
  const { home, serve, operator, audit } = await setup(t);
  const screen = await login(t, serve, operator.file, 'alice');

  await screen.type('show auto-sync');
  await screen.keys('Enter');
  await screen.waitFor(/tank-data-000 +fs:tank\/data +fs:tank\/copy .*online .*up\n.*syncsh@node1:\/\$\s*$/m);

  await screen.keys('C-l');
  await screen.type('show auto-sync :tank-data-000 logtail -f');
  await screen.keys('Enter');
  await screen.waitFor(/\[SUCCESS: localhost\/tank\/data => localhost\/tank\/copy OK[^\n]*\n-- q or Ctrl-C to stop -- following the log: \d+ lines?/);
  ServiceLog.forService(path.join(home, 'log'), 'tank-data-000').write('FAILURE: written by the test while an operator watches');
  await screen.waitFor(/\[FAILURE: written by the test while an operator watches \]\n-- q or Ctrl-C to stop -- following the log: \d+ lines, 1 failure, last at/, 3000);
  await screen.keys('q');
  await screen.waitFor(/watches \]\n-- stopped following the log: \d+ lines, 1 failure, last at \d\d:\d\d:\d\d\nsyncsh@node1:\/\$\s*$/m);

  await screen.type('show auto-sync dashboard');
  await screen.keys('Enter');
  const first = await screen.waitFor(/auto-sync services[\s\S]*tank-data-000 +online +master +up[\s\S]*lag \/ max-delay[\s\S]*q quit/);
  t.is(first.split('\n')[0].length, 100, 'drawn across the whole window');
  await screen.resize(80, 24);
  await screen.waitFor(/^┌─ auto-sync services ─+┐\n[\s\S]*q quit +\d\d:\d\d:\d\d\s*$/);
  const redrawn = await screen.capture();
  t.is(redrawn.split('\n')[0].length, 80, `redrawn for 80 columns:\n${redrawn}`);
  await screen.keys('q');
  await screen.waitFor(/show auto-sync dashboard\n.*syncsh@node1:\/\$\s*$/m);

  await screen.type('exit');
  await screen.keys('Enter');
  await endedCleanly(t, screen, serve, 'alice');
  t.regex(audit(), /"show auto-sync :tank-data-000 logtail -f"[\s\S]*"show auto-sync dashboard"[\s\S]*"exit"/);
});

test('two operators at once, each with their own session', async (t) => {
  const { home, serve, operator, audit } = await setup(t);
  const [alice, bob] = await Promise.all([login(t, serve, operator.file, 'alice'), login(t, serve, operator.file, 'bob', { columns: 90, rows: 25 })]);

  // alice follows the log while bob works
  await alice.type('show auto-sync :tank-data-000 logtail -f');
  await alice.keys('Enter');
  await alice.waitFor(/q or Ctrl-C to stop/);
  await bob.type('run auto-sync :tank-data-000');
  await bob.keys('Enter');
  await bob.waitFor(/auto-sync:tank-data-000: incremental sync OK/);
  await alice.waitFor(/\[SUCCESS: localhost\/tank\/data => localhost\/tank\/copy OK[^\n]*\n(.*\n)*-- q or Ctrl-C to stop/);
  t.notRegex(await bob.capture(), /q or Ctrl-C to stop/, "bob's screen is his own");

  // Ctrl-C ends alice's view only
  await alice.keys('C-c');
  await alice.waitFor(PROMPT);
  ServiceLog.forService(path.join(home, 'log'), 'tank-data-000').write('after the view');
  await bob.type('exit');
  await bob.keys('Enter');
  await endedCleanly(t, bob, serve, 'bob');
  await alice.type('show auto-sync');
  await alice.keys('Enter');
  await alice.waitFor(/tank-data-000 .*online/);
  await alice.type('exit');
  await alice.keys('Enter');
  await endedCleanly(t, alice, serve, 'alice');

  const lines = audit();
  t.regex(lines, /command user="alice" from=127\.0\.0\.1:\d+ conn=\d+ "show auto-sync :tank-data-000 logtail -f"/);
  t.regex(lines, /command user="bob" from=127\.0\.0\.1:\d+ conn=\d+ "run auto-sync :tank-data-000"/);
  t.regex(serve.output(), /"alice" logged in with ssh-ed25519 SHA256:\S+ \(operator@test\)/);
});

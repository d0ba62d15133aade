import test, { type ExecutionContext } from 'ava';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { checkFenceProgram, showCommand, splitCommand, FencingService } from '../../src/services/fencing.js';
import { AccessRefused, consoleAccess, LOCAL_ACCESS } from '../../src/services/access.js';
import { ConfigDamagedError } from '../../src/services/config-file.js';
import type { OutboundPeer } from '../../src/services/peer/store.js';

/** an appliance with one outbound peer `beta` recorded (the store only: no agent is reached here) */
async function withPeer(t: ExecutionContext) {
  const a = makeAppliance(t, 'alpha');
  const beta: OutboundPeer = {
    id: 'beta',
    transport: 'ssh',
    address: '10.0.0.2',
    port: 22,
    user: 'root',
    fingerprint: 'SHA256:x',
    hostKeyType: 'ssh-ed25519',
    agent: { node: process.execPath, script: '/x/bin/syncsh.js', home: '/var/lib/syncsh' },
    boundAt: new Date().toISOString(),
  };
  await a.services.peers.store.putOutbound(beta);
  const dir = path.join(a.home, 'fence.d');
  mkdirSync(dir);
  const script = (name: string, body: string, mode = 0o755) => {
    const file = path.join(dir, name);
    writeFileSync(file, `#!/bin/sh\n${body}\n`);
    chmodSync(file, mode);
    return file;
  };
  return { ...a, fencing: a.services.fencing, dir, script, file: path.join(a.home, 'fencing.json') };
}

const snapshotOf = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : null);

test('splitCommand reads quotes as a shell would and nothing else; an unclosed quote or nothing is refused', (t) => {
  const table: [string, string[]][] = [
    ['/usr/bin/fence-ipmi --host bmc-b', ['/usr/bin/fence-ipmi', '--host', 'bmc-b']],
    [`/x --name "b 1" --note 'it''s'`, ['/x', '--name', 'b 1', '--note', 'its']],
    ['/x $HOME *.txt | rm -rf / ; reboot', ['/x', '$HOME', '*.txt', '|', 'rm', '-rf', '/', ';', 'reboot']],
    ['  /x   a  ', ['/x', 'a']],
  ];
  for (const [line, argv] of table) t.deepEqual(splitCommand(line), argv, line);
  t.throws(() => splitCommand('/x "open'), { message: 'The fence command "/x \\"open" has an unclosed double quote. Nothing was changed.' });
  t.throws(() => splitCommand("/x 'open"), { message: /unclosed single quote/ });
  t.throws(() => splitCommand('   '), { message: /^The fence command is empty/ });
  t.is(showCommand(['/x', 'b 1', "it's", '']), `/x 'b 1' 'it'"'"'s' ''`);
});

test('a fence policy for a peer that is not bound is refused by name, and nothing is written', async (t) => {
  const a = await withPeer(t);
  const ok = a.script('ok', 'exit 0');
  a.fencing.list(); // conf writes the empty file on first read
  const before = snapshotOf(a.file);
  await t.throwsAsync(a.fencing.setFence('gamma', ok), { message: 'No appliance "gamma" is bound to this one, so it has no fencing policy (the bound appliances are beta). Nothing was changed.' });
  await t.throwsAsync(a.fencing.setSimple('gamma', 'ignore'), { message: /No appliance "gamma"/ });
  await t.throwsAsync(a.fencing.clear('gamma'), { message: /No appliance "gamma"/ });
  t.is(snapshotOf(a.file), before);
  t.deepEqual(
    a.fencing.list().map((r) => [r.peer, r.kind]),
    [['beta', 'none']],
  );
});

test('a fence program must be an absolute path to an executable file; each refusal names it and changes nothing', async (t) => {
  const a = await withPeer(t);
  await a.fencing.setSimple('beta', 'manual');
  const before = snapshotOf(a.file);
  const noexec = a.script('noexec', 'exit 0', 0o644);
  const cases: [string, RegExp][] = [
    ['fence-ipmi --host b', /must start with the absolute path of its program, not "fence-ipmi"/],
    [`${a.dir}/missing`, new RegExp(`The fence program ${a.dir}/missing does not exist`)],
    [a.dir, new RegExp(`The fence program ${a.dir} is not a file`)],
    [noexec, new RegExp(`The fence program ${noexec} is not executable`)],
  ];
  for (const [line, message] of cases) await t.throwsAsync(a.fencing.setFence('beta', line), { message }, line);
  await t.throwsAsync(a.fencing.setFence('beta', a.script('ok', 'exit 0'), { timeoutMs: 500 }), { message: /The fence timeout must be 1 to 3600 seconds, not 0.5/ });
  t.is(snapshotOf(a.file), before);
  t.is(a.fencing.kindOf('beta'), 'manual');
});

test('over the SSH console a fence program must lie under a directory the console policy allows', async (t) => {
  const a = await withPeer(t);
  const allowed = path.join(a.home, 'allowed');
  mkdirSync(allowed);
  const inside = path.join(allowed, 'fence');
  writeFileSync(inside, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const outside = a.script('fence-outside', 'exit 0');
  const policy = path.join(a.home, 'policy.json');
  writeFileSync(policy, JSON.stringify({ programs: [allowed] }));
  const refused: AccessRefused[] = [];
  const access = consoleAccess(a.home, { SYNCSH_CONSOLE_POLICY: policy }, (r) => refused.push(r));
  await t.throwsAsync(a.fencing.setFence('beta', `${outside} --now`, { access }), { instanceOf: AccessRefused, message: new RegExp(`may run a program only under ${allowed}.*"${outside}" is not there, so nothing was changed`) });
  t.is(refused.length, 1, 'the refusal goes to the audit log');
  t.is(a.fencing.kindOf('beta'), 'none');
  const set = await a.fencing.setFence('beta', `${inside} --now`, { access });
  t.deepEqual(set.kind === 'fence' && set.command, [inside, '--now']);
  t.is(checkFenceProgram(outside, LOCAL_ACCESS), outside, 'the local shell may name any executable');
});

test('set, show, clear: the policies are kept in fencing.json and logged', async (t) => {
  const a = await withPeer(t);
  const ok = a.script('ok', 'exit 0');
  await a.fencing.setFence('10.0.0.2', `${ok} --host "bmc b"`, { timeoutMs: 5000 });
  const rows = a.fencing.list();
  t.like(rows[0], { peer: 'beta', bound: 'outbound', kind: 'fence', command: [ok, '--host', 'bmc b'], timeoutMs: 5000 });
  t.like(JSON.parse(readFileSync(a.file, 'utf8')).peers.beta, { kind: 'fence', command: [ok, '--host', 'bmc b'] });
  await a.fencing.setSimple('beta', 'ignore');
  t.is(a.fencing.kindOf('beta'), 'ignore');
  t.like(await a.fencing.clear('beta'), { peer: 'beta', was: { kind: 'ignore' } });
  t.is(a.fencing.kindOf('beta'), 'none');
  t.like(await a.fencing.clear('beta'), { was: null });
  const log = await a.fencing.log.all();
  t.regex(log[0], new RegExp(`Fencing policy of beta set: fence with ${ok} --host 'bmc b' \\(timeout 5 sec\\)`));
  t.regex(log[1], /Fencing policy of beta set: ignore/);
  t.regex(log[2], /Fencing policy of beta cleared \(was ignore\)/);
  t.is(log.length, 3, 'a clear of nothing is not logged');
});

test('a damaged fencing.json is named and never overwritten; a policy left by a peer no longer bound is listed and can be cleared', async (t) => {
  const a = await withPeer(t);
  await a.fencing.setSimple('beta', 'manual');
  writeFileSync(a.file, '{"peers": {"beta": {"kind": "manual", "setAt": "x"}, "old": {"kind": "ignore", "setAt": "y"}}}');
  const rows = new FencingService(a.services.home, a.services.peers.store).list();
  t.deepEqual(
    rows.map((r) => [r.peer, r.bound, r.kind]),
    [
      ['beta', 'outbound', 'manual'],
      ['old', 'unbound', 'ignore'],
    ],
  );
  t.like(await new FencingService(a.services.home, a.services.peers.store).clear('old'), { peer: 'old', was: { kind: 'ignore' } });

  for (const bad of ['{"peers": {"beta": ', '{"peers": {"beta": {"kind": "shoot", "setAt": "x"}}}', '{"peers": {"beta": {"kind": "fence", "setAt": "x"}}}']) {
    writeFileSync(a.file, bad);
    const fresh = new FencingService(a.services.home, a.services.peers.store);
    t.throws(() => fresh.list(), { instanceOf: ConfigDamagedError, message: new RegExp(`The configuration file ${a.file} is damaged: .*Nothing was changed\\. The last good copy`) }, bad);
    await t.throwsAsync(fresh.setSimple('beta', 'ignore'), { instanceOf: ConfigDamagedError });
    t.is(readFileSync(a.file, 'utf8'), bad);
  }
});

test('the fence runner: exit 0 fences, with its output and environment logged', async (t) => {
  const a = await withPeer(t);
  const out = path.join(a.dir, 'out');
  const ok = a.script('ok', `printf '%s\\n' "$@" > ${out}; echo "peer=$SYNCSH_FENCE_PEER at $SYNCSH_FENCE_ADDRESS"; echo "power off: done" >&2`);
  await a.fencing.setFence('beta', `${ok} --host "bmc b"`);
  const r = await a.fencing.fence('beta', 'mirror tank-vm1-000 lost it');
  t.true(r.ok);
  t.deepEqual(readFileSync(out, 'utf8').split('\n'), ['--host', 'bmc b', '']);
  t.regex(r.message, /^beta was fenced: .* exited with code 0 in \d+\.\d sec \(peer=beta at 10\.0\.0\.2 \| power off: done\)\.$/);
  const log = await a.fencing.log.all();
  t.regex(log.at(-2)!, /Fence of beta \(mirror tank-vm1-000 lost it\): running .*ok --host 'bmc b' \(timeout 30 sec\)/);
  t.regex(log.at(-1)!, /Fence of beta: SUCCESS: beta was fenced/);
});

test('the fence runner: a failing command does not fence, with its exit code and last output', async (t) => {
  const a = await withPeer(t);
  const failing = a.script('failing', 'echo "bmc-b: connection refused" >&2; exit 4');
  await a.fencing.setFence('beta', failing);
  const r = await a.fencing.fence('beta', 'test');
  t.false(r.ok);
  t.is(r.result.exitCode, 4);
  t.is(r.message, `beta was NOT fenced: The fence command "${failing}" exited with code 4: bmc-b: connection refused.`);
  t.regex((await a.fencing.log.all()).at(-1)!, /Fence of beta: FAILED: beta was NOT fenced/);
});

test('the fence runner: a command that hangs is stopped at its timeout, with what it started, and does not fence', async (t) => {
  const a = await withPeer(t);
  const pidFile = path.join(a.dir, 'child.pid');
  const hangs = a.script('hangs', `sleep 600 & echo $! > ${pidFile}; wait`);
  await a.fencing.setFence('beta', hangs, { timeoutMs: 1000 });
  const r = await a.fencing.fence('beta', 'test');
  t.false(r.ok);
  t.true(r.result.timedOut);
  t.is(r.message, `beta was NOT fenced: The fence command "${hangs}" did not finish within 1000 ms and was stopped.`);
  const child = Number(readFileSync(pidFile, 'utf8'));
  const gone = () => {
    try {
      process.kill(child, 0);
      return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${child}/stat`, 'utf8'));
    } catch {
      return true;
    }
  };
  t.true(gone(), 'the sleep it started is gone too');
});

test('the fence runner: a command no longer executable, or no fence command at all, does not fence', async (t) => {
  const a = await withPeer(t);
  const ok = a.script('ok', 'exit 0');
  await a.fencing.setFence('beta', ok);
  chmodSync(ok, 0o644);
  const r = await a.fencing.fence('beta', 'test');
  t.false(r.ok);
  t.regex(r.message, new RegExp(`^beta was NOT fenced: The fence command "${ok}" could not be started: .*EACCES`));
  await a.fencing.setSimple('beta', 'ignore');
  t.like(await a.fencing.fence('beta', 'test'), { ok: false, message: 'No fence command is set for beta, so it was not fenced.' });
});

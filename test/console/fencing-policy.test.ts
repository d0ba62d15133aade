/**
 * A fence command is a program the appliance runs as root: over the real
 * console (OpenSSH client against the built `syncsh serve`) it follows the
 * alert command's rule, only programs under the directories the
 * administrator allowed; refused ones are audited and change nothing. The
 * local shell names any executable.
 */
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { syncsh } from '../helpers/cli.js';
import { gatedTest } from '../helpers/system.js';
import { consoleToolsMissing, makeKey, startServe, writeAuthorizedKeys } from './serve-process.js';
import type { OutboundPeer } from '../../src/services/peer/store.js';

const test = await gatedTest(['ssh', 'ssh-keygen', 'tmux'], consoleToolsMissing);

test('fence commands over the console: only allowed programs, refusals audited and nothing changed; the local shell takes any executable', async (t) => {
  const { home, env, services } = makeAppliance(t, 'node1');
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
  await services.peers.store.putOutbound(beta);
  const admin = mkdtempSync(path.join(os.tmpdir(), 'syncsh-policy-'));
  t.teardown(() => rmSync(admin, { recursive: true, force: true }));
  const alertD = path.join(admin, 'alert.d');
  mkdirSync(alertD);
  writeFileSync(path.join(alertD, 'fence-ipmi'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  symlinkSync('/bin/sh', path.join(alertD, 'sh'));
  const policy = path.join(admin, 'console-policy.json');
  writeFileSync(policy, JSON.stringify({ programs: [alertD] }));
  const operator = await makeKey(home, 'operator');
  const authorizedKeys = path.join(home, 'authorized_keys');
  writeAuthorizedKeys(authorizedKeys, [operator.publicLine]);
  const serve = await startServe(t, { ...env, SYNCSH_CONSOLE_POLICY: policy }, authorizedKeys);
  const ssh = (command: string) => execa('ssh', [...serve.sshArgs(operator.file, 'alice'), command], { reject: false, stdin: 'ignore' });
  const fencingFile = path.join(home, 'fencing.json');
  const kept = () => (existsSync(fencingFile) ? JSON.parse(readFileSync(fencingFile, 'utf8')).peers : {});

  for (const program of ['/bin/sh', path.join(alertD, 'sh'), `${alertD}/../../../../../bin/sh`]) {
    const r = await ssh(`setup network fencing beta fence --command '${program} -c "touch /tmp/pwned"'`);
    t.is(r.exitCode, 1, r.stderr);
    t.regex(
      r.stderr,
      new RegExp(
        `Error: Over the console, the appliance may run a program only under ${alertD} \\(console policy: ${policy}\\); "${program.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"( \\(which is [^)]*\\))? is not there, so nothing was changed`,
      ),
      program,
    );
  }
  t.deepEqual(kept(), {}, 'no policy was kept');
  const refused = readFileSync(path.join(home, 'log', 'audit.log'), 'utf8')
    .split('\n')
    .filter((l) => / refused user="alice" .*what="program"/.test(l));
  t.is(refused.length, 3, refused.join('\n'));

  const allowed = await ssh(`setup network fencing beta fence --command '${alertD}/fence-ipmi --host bmc-b'`);
  t.is(allowed.exitCode, 0, allowed.stderr);
  t.deepEqual(kept().beta.command, [path.join(alertD, 'fence-ipmi'), '--host', 'bmc-b']);
  const shown = await ssh('show network fencing --json');
  t.like(JSON.parse(shown.stdout)[0], { peer: 'beta', kind: 'fence' });

  const local = await syncsh(['-c', "setup network fencing beta fence --command '/bin/sh -c true'"], env);
  t.is(local.exitCode, 0, String(local.stderr));
  t.deepEqual(kept().beta.command, ['/bin/sh', '-c', 'true']);
});

/**
 * `syncsh serve` as a child process of a test (the built CLI), with an
 * operator key made by ssh-keygen in its authorized_keys, and the options
 * the OpenSSH client needs to reach it without asking anything; for password
 * logins, ssh fed the password by sshpass.
 */
import { execa, type ResultPromise } from 'execa';
import { writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { BIN, assertBuilt } from '../helpers/cli.js';
import { missingCommand } from '../helpers/system.js';

/** null when ssh, ssh-keygen and tmux are there */
export async function consoleToolsMissing(): Promise<string | null> {
  const missing = await missingCommand('ssh', 'ssh-keygen', 'tmux');
  return missing ? `${missing} is not installed (apt-get install openssh-client tmux)` : null;
}

/** a key pair made as an operator makes one: ssh-keygen -t ed25519 -N '' */
export async function makeKey(dir: string, name: string): Promise<{ file: string; publicLine: string }> {
  const file = path.join(dir, name);
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@test`, '-f', file]);
  return { file, publicLine: readFileSync(`${file}.pub`, 'utf8').trim() };
}

/** null when sshpass is there too (it types the password into ssh's prompt) */
export async function passwordToolsMissing(): Promise<string | null> {
  return (await consoleToolsMissing()) ?? ((await missingCommand('sshpass')) ? 'sshpass is not installed (apt-get install sshpass)' : null);
}

export interface ServeProcess {
  port: number;
  /** everything it printed */
  output(): string;
  /** ssh's arguments up to (not including) the command: options, key, port, user@host */
  sshArgs(key: string, user?: string): string[];
  /** the same for a password login: no key, no agent, one password prompt (for sshpass) */
  sshPasswordArgs(user?: string): string[];
  /** sends `signal` and resolves serve's exit status */
  stop(signal?: NodeJS.Signals): Promise<number | undefined>;
}

/** `extraArgs`: more of serve's options, such as --password-auth yes */
export async function startServe(t: ExecutionContext, env: NodeJS.ProcessEnv, authorizedKeys: string, extraArgs: string[] = []): Promise<ServeProcess> {
  assertBuilt();
  const child: ResultPromise = execa('node', [BIN, 'serve', '--listen', '127.0.0.1:0', '--authorized-keys', authorizedKeys, ...extraArgs], { env, reject: false, all: true, buffer: false });
  let output = '';
  child.all?.on('data', (d: Buffer) => (output += d));
  t.teardown(async () => {
    child.kill('SIGTERM');
    await child;
  });
  // a start-up on a busy machine (2 cores shared by many test processes) can take 20 s
  const deadline = Date.now() + 60_000;
  let port = 0;
  while (!port) {
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(output);
    // the audit log's line is the last of what it prints when it starts
    if (m && /syncsh serve: audit log /.test(output)) port = Number(m[1]);
    else if (Date.now() > deadline || child.exitCode !== null) throw new Error(`syncsh serve did not start. It printed:\n${output}`);
    else await new Promise((r) => setTimeout(r, 25));
  }
  const common = ['-F', '/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
  return {
    port,
    output: () => output,
    async stop(signal = 'SIGTERM') {
      child.kill(signal);
      return (await child).exitCode;
    },
    sshArgs: (key, user = 'alice') => [...common, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', key, '-p', String(port), `${user}@127.0.0.1`],
    sshPasswordArgs: (user = 'alice') => [...common, '-o', 'PreferredAuthentications=password', '-o', 'PubkeyAuthentication=no', '-o', 'IdentityAgent=none', '-o', 'NumberOfPasswordPrompts=1', '-p', String(port), `${user}@127.0.0.1`],
  };
}

/** `ssh … command` logging in with `password`, which sshpass types at ssh's prompt (given in its environment, not its arguments) */
export function sshWithPassword(serve: ServeProcess, user: string, password: string, command: string) {
  return execa('sshpass', ['-e', 'ssh', ...serve.sshPasswordArgs(user), command], { env: { ...process.env, SSHPASS: password }, reject: false, stdin: 'ignore' });
}

export function writeAuthorizedKeys(file: string, lines: string[]): void {
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
}

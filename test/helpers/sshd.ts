/**
 * A real OpenSSH sshd for a test: its own config, host key and
 * authorized_keys file in a temp dir, listening on one address and port
 * (inside a network namespace when given one), stopped at teardown.
 *
 *   const sshd = await startSshd(t, { netns: link, address: link.nsAddr, port: 2222 });
 */
import { execa, type ResultPromise } from 'execa';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { findCommand, isRoot, type Cleanup, type NetLink } from './netns.js';

export interface SshdOptions {
  netns?: NetLink;
  address: string;
  port: number;
  /** allow password logins (for a throwaway user) */
  passwords?: boolean;
  /** the user owning the authorized_keys dir (default root) */
  owner?: { uid: number; gid: number };
  /** environment sshd sets in every session (SetEnv), such as a PATH without some program */
  setEnv?: Record<string, string>;
}

export interface Sshd {
  address: string;
  port: number;
  dir: string;
  /** the AuthorizedKeysFile sshd reads (for every user) */
  authorizedKeys: string;
  /** SHA256:… of the current host key */
  fingerprint(): Promise<string>;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** SIGSTOP / SIGCONT: connections are accepted by the kernel but never answered */
  pause(): void;
  resume(): void;
  /** a new host key, and sshd restarted with it */
  rekey(): Promise<void>;
  /** what sshd logged (for failure messages) */
  log(): string;
}

export async function sshdMissing(): Promise<string | null> {
  if (!isRoot()) return 'sshd tests run as root (sshd must switch users)';
  for (const c of ['sshd', 'ssh-keygen']) if (!(await findCommand(c))) return `${c} is not installed (apt-get install openssh-server)`;
  return null;
}

/** a TCP port on 127.0.0.1 that nothing listens on right now (for an sshd on loopback) */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function startSshd(t: Cleanup, opts: SshdOptions): Promise<Sshd> {
  const sshdPath = (await findCommand('sshd'))!;
  // privilege separation directory sshd insists on
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-sshd-'));
  chmodSync(dir, 0o755);
  const keysDir = path.join(dir, 'keys');
  mkdirSync(keysDir, { mode: 0o755 });
  const authorizedKeys = path.join(keysDir, 'authorized_keys');
  writeFileSync(authorizedKeys, '', { mode: 0o600 });
  if (opts.owner) {
    chownSync(keysDir, opts.owner.uid, opts.owner.gid);
    chownSync(authorizedKeys, opts.owner.uid, opts.owner.gid);
  }
  const hostKey = path.join(dir, 'host_ed25519');
  const config = path.join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `ListenAddress ${opts.address}:${opts.port}`,
      `HostKey ${hostKey}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'StrictModes no',
      `PermitRootLogin ${opts.passwords ? 'yes' : 'prohibit-password'}`,
      `PasswordAuthentication ${opts.passwords ? 'yes' : 'no'}`,
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'UsePAM no',
      'PermitUserEnvironment no',
      // a client gone without a word (a cut link) is noticed within a few seconds
      'ClientAliveInterval 1',
      'ClientAliveCountMax 3',
      'MaxSessions 32',
      'MaxStartups 64',
      'LogLevel VERBOSE',
      ...Object.entries(opts.setEnv ?? {}).map(([k, v]) => `SetEnv ${k}=${v}`),
      '',
    ].join('\n'),
  );

  let proc: ResultPromise | null = null;
  let logText = '';
  const keygen = async () => {
    rmSync(hostKey, { force: true });
    rmSync(`${hostKey}.pub`, { force: true });
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'syncsh-test-host', '-f', hostKey]);
  };
  const start = async () => {
    const argv = [sshdPath, '-D', '-e', '-f', config];
    const [file, ...args] = opts.netns ? opts.netns.exec(argv) : argv;
    const p = execa(file, args, { reject: false, buffer: false, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' });
    proc = p;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sshd did not start within 10 s:\n${logText}`)), 10_000);
      p.stderr!.setEncoding('utf8');
      p.stderr!.on('data', (chunk: string) => {
        logText = (logText + chunk).slice(-20_000);
        if (logText.includes('Server listening on')) {
          clearTimeout(timer);
          resolve();
        }
      });
      void p.then((r) => {
        clearTimeout(timer);
        reject(new Error(`sshd exited (${r.exitCode ?? r.signal}):\n${logText}`));
      });
    });
  };
  const stop = async () => {
    const p = proc;
    proc = null;
    if (!p) return;
    p.kill('SIGCONT');
    p.kill('SIGTERM');
    await Promise.race([p, new Promise((r) => setTimeout(r, 5000))]);
    p.kill('SIGKILL');
  };
  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await keygen();
  await start();
  return {
    address: opts.address,
    port: opts.port,
    dir,
    authorizedKeys,
    async fingerprint() {
      const out = (await execa('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKey}.pub`])).stdout;
      return out.split(/\s+/)[1];
    },
    start,
    stop,
    pause: () => void proc?.kill('SIGSTOP'),
    resume: () => void proc?.kill('SIGCONT'),
    async rekey() {
      await stop();
      await keygen();
      await start();
    },
    log: () => logText,
  };
}

/** whether a file exists (for checks on the peer's side) */
export const exists = existsSync;

/**
 * Two appliances for the SSH benches, both on this machine: beta's sshd in a
 * network namespace of its own (a claimed subnet, over a veth pair) or on
 * loopback; alpha bound to it with its agent key; a second, unrestricted
 * key for plain ssh and rsync. Needs root, sshd and iproute2.
 */
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { syncsh } from './common.js';
import { makeNetLink, type Cleanup } from '../test/helpers/netns.js';
import { freePort, startSshd } from '../test/helpers/sshd.js';

export class Teardown implements Cleanup {
  private steps: (() => unknown)[] = [];
  teardown(fn: () => unknown): void {
    this.steps.push(fn);
  }
  log(...args: unknown[]): void {
    console.error(...args);
  }
  async run(): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) await Promise.resolve(step()).catch((e: Error) => console.error(`teardown: ${e.message}`));
  }
}

export async function must(result: Promise<{ exitCode?: number; stdout: unknown; stderr: unknown }> | ReturnType<typeof syncsh>) {
  const r = await result;
  if (r.exitCode) throw new Error(String(r.stderr));
  return String(r.stdout);
}

/** two appliances, beta behind an sshd; alpha bound to it; a second, unrestricted key for ssh/rsync */
export async function appliances(cleanup: Teardown, work: string, where: { netns: boolean; rate?: string | null }) {
  const link = where.netns ? await makeNetLink(cleanup) : null;
  const address = link ? link.nsAddr : '127.0.0.1';
  const port = link ? 2222 : await freePort();
  const sshd = await startSshd(cleanup, { netns: link ?? undefined, address, port });
  if (link && where.rate) await link.throttle(where.rate);
  const tag = randomBytes(2).toString('hex');
  const envA = { ...process.env, SYNCSH_HOME: path.join(work, `alpha-${tag}`), SYNCSH_APPLIANCE_ID: 'alpha' };
  const envB = { ...process.env, SYNCSH_HOME: path.join(work, `beta-${tag}`), SYNCSH_APPLIANCE_ID: 'beta' };
  delete (envA as NodeJS.ProcessEnv).SYNCSH_FS_ROOT;
  delete (envB as NodeJS.ProcessEnv).SYNCSH_FS_ROOT;
  await must(syncsh(envB, `setup network authorized-keys ${sshd.authorizedKeys}`));
  const key = JSON.parse(await must(syncsh(envA, 'show appliance --json'))).sshPublicKey as string;
  await writeFile(sshd.authorizedKeys, `${key}\n`);
  await must(syncsh(envA, `setup network ssh-bind ${address} --port ${port} --user root --remote-home ${envB.SYNCSH_HOME} -y`));
  const sshKey = path.join(work, `ssh-${tag}`);
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', sshKey]);
  await appendFile(sshd.authorizedKeys, await readFile(`${sshKey}.pub`, 'utf8'));
  const ssh = ['ssh', '-i', sshKey, '-p', String(port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR'];
  return { envA, envB, address, ssh, link };
}

/**
 * Two appliances for the peer tests: each its own home; B's sshd in a
 * network namespace of its own (10.231.N.2), A here (10.231.N.1). A fixture
 * is shared by the serial tests of one file and torn down once, pass or fail.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createServices, type Services } from '../../src/services/index.js';
import { ensureKeyPair } from '../../src/services/peer/keys.js';
import { assertBuilt, syncsh } from '../helpers/cli.js';
import { removeAll, writeTree, type TreeSpec } from '../helpers/fs-tree.js';
import { makeNetLink, type Cleanup, type NetLink } from '../helpers/netns.js';
import { freePort, startSshd, type Sshd } from '../helpers/sshd.js';

/** short timeouts so that faults show within seconds */
export const FAST_ENV = {
  SYNCSH_PEER_CONNECT_TIMEOUT_MS: '3000',
  SYNCSH_PEER_KEEPALIVE_MS: '1000',
  SYNCSH_PEER_KEEPALIVE_COUNT: '2',
  SYNCSH_PEER_IDLE_TIMEOUT_MS: '6000',
  SYNCSH_PEER_LINGER_MS: '300',
};

/** teardown steps of a fixture, run last-in first-out by `after.always` */
export class Fixture implements Cleanup {
  private readonly steps: (() => unknown)[] = [];
  teardown(fn: () => unknown): void {
    this.steps.push(fn);
  }
  async close(): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        console.error(`teardown: ${(error as Error).message}`);
      }
    }
  }
}

export interface Appliance {
  id: string;
  home: string;
  env: NodeJS.ProcessEnv;
  services: Services;
  /** run `syncsh -c LINE` as this appliance */
  cli(line: string, extraEnv?: NodeJS.ProcessEnv): ReturnType<typeof syncsh>;
  /** the directory where an fs dataset's files live */
  live(dataset: string): string;
}

/** `under`: the directory its home is made in (default the temp dir), e.g. a disk whose power a test cuts */
export function makeAppliance(c: Cleanup, id: string, extraEnv: NodeJS.ProcessEnv = {}, under = os.tmpdir()): Appliance {
  assertBuilt();
  const home = mkdtempSync(path.join(under, `syncsh-${id}-`));
  c.teardown(() => removeAll(home));
  const env: NodeJS.ProcessEnv = { ...process.env, ...FAST_ENV, ...extraEnv, SYNCSH_HOME: home, SYNCSH_APPLIANCE_ID: id };
  delete env.SYNCSH_FS_ROOT; // each appliance keeps its pools in its own home
  const services = createServices(env);
  c.teardown(() => services.peers.close());
  return {
    id,
    home,
    env,
    services,
    cli: (line, more = {}) => syncsh(['-c', line], { ...env, ...more }),
    live: (dataset) => path.join(home, 'fs', ...dataset.split('/')),
  };
}

/** a dataset with files, on an appliance's fs driver */
/** a command line that must succeed: its output */
export async function ok(x: Appliance, line: string): Promise<string> {
  const r = await x.cli(line);
  if (r.exitCode !== 0) throw new Error(`${line}: ${String(r.stderr)}`);
  return String(r.stdout);
}

/** a command line that must fail: its error */
export async function fails(x: Appliance, line: string): Promise<string> {
  const r = await x.cli(line);
  if (r.exitCode === 0) throw new Error(`${line} should have failed: ${String(r.stdout)}`);
  return String(r.stderr).trim();
}

export async function folderWith(x: Appliance, dataset: string, files: TreeSpec): Promise<string> {
  const fs = await x.services.storage.usable('fs');
  const parts = dataset.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const name = parts.slice(0, i).join('/');
    if (!(await fs.getDataset(name))) await fs.createDataset(name);
  }
  await writeTree(x.live(dataset), files);
  return x.live(dataset);
}

export interface SshPair {
  a: Appliance;
  b: Appliance;
  /** absent for a pair on loopback */
  link: NetLink;
  sshd: Sshd;
  /** `setup network ssh-bind` as A would type it, for B's sshd */
  bindLine: string;
}

/**
 * A (here) and B (sshd in a namespace of its own, or on loopback with
 * `loopback`: `ip netns exec` also gives sshd its own mount namespace, where
 * zfs-fuse cannot mount): B installs keys in the sshd's AuthorizedKeysFile;
 * A's key is already there, unrestricted, as an operator would have put it
 * ("an existing key").
 */
export async function sshPair(c: Cleanup, opts: { preauthorize?: boolean; loopback?: boolean; sshdEnv?: Record<string, string> } = {}): Promise<SshPair> {
  const link = opts.loopback ? (null as unknown as NetLink) : await makeNetLink(c);
  const address = opts.loopback ? '127.0.0.1' : link.nsAddr;
  const port = opts.loopback ? await freePort() : 2222;
  const sshd = await startSshd(c, { netns: opts.loopback ? undefined : link, address, port, setEnv: opts.sshdEnv });
  const a = makeAppliance(c, 'alpha');
  const b = makeAppliance(c, 'beta');
  await b.services.peers.store.setAuthorizedKeysFile(sshd.authorizedKeys);
  if (opts.preauthorize ?? true) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(sshd.authorizedKeys, `${ensureKeyPair(a.services.home, a.id).publicKey}\n`, { mode: 0o600 });
  }
  return { a, b, link, sshd, bindLine: `setup network ssh-bind ${address} --port ${port} --user root --remote-home ${b.home}` };
}

/** wait until `check` is true (polling), or fail with `what` */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}.`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

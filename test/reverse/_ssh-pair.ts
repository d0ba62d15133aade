/**
 * Two appliances over real SSH, symmetric: alpha and beta each have their
 * own home, their own OpenSSH sshd and their own network namespace, and
 * each reaches the other only through a switch (a bridge in a third
 * namespace) that both are cabled to by a veth pair:
 *
 *   [alpha ns: lan0 10.231.61.1, sshd :2222] --alpha--[switch ns: br0]--beta-- [beta ns: lan0 10.231.61.2, sshd :2222]
 *
 * Nothing here has an address in the test's own namespace: an appliance's
 * CLI (`cli(x, line)`) runs inside its namespace, and so does everything it
 * starts. The namespace is entered by network only (`nsenter --net`, as in
 * helpers/netns.ts), not with `ip netns exec`: that also gives the command a
 * mount namespace of its own, and with this machine's root mount private it
 * would not see the pools and images mounted after it started, and the
 * mounts zfs-fuse makes on its behalf would land in the daemon's namespace. `down(x)` unplugs x's cable at the switch
 * (the switch port goes down): the other side really cannot reach it, and
 * x cannot reach the other, as with a host gone from the network (nobody
 * answers ARP: EHOSTUNREACH after a few seconds, or the SSH handshake
 * times out; FAST_ENV keeps either within seconds). x itself stays alive:
 * its CLI still runs and its users may still write. `up(x)` plugs it back.
 *
 * The two are bound both ways with `setup network ssh-bind` (each one's key
 * preauthorized on the other's sshd, as sshPair does), and the service
 * alpha:fs:tank/docs => beta:fs:tank/docs is created reverse-capable from
 * alpha's CLI; or, given `datasets` (as reversePair takes them), alpha's
 * zfs or btrfs dataset => beta's, each on storage of its own the caller made.
 * Everything (namespaces, sshds, homes) goes at teardown, pass or fail.
 */
import { execa, type ResultPromise } from 'execa';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { createServices, type Services } from '../../src/services/index.js';
import type { AutoSyncConfig } from '../../src/services/auto-sync/model.js';
import { ensureKeyPair } from '../../src/services/peer/keys.js';
import { BIN } from '../helpers/cli.js';
import { readTree, type NodeSummary, type TreeSpec } from '../helpers/fs-tree.js';
import type { Cleanup, NetLink } from '../helpers/netns.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { Fixture, folderWith, makeAppliance, type Appliance } from '../peer/_fixture.js';
import { lookAt, mountedDir, seedSource, type PairDatasets, type PairDriver } from './_pair.js';

/** 10.231.61.0/24, inside the pair's own namespaces only (the host's links claim theirs in helpers/netns.ts; these never meet them) */
export const SUBNET = 61;
const PORT = 2222;
const NS_PREFIX = `syncsh-rv${SUBNET}-`;

export interface SshAppliance extends Omit<Appliance, 'cli'> {
  /** `syncsh -c LINE` as this appliance, inside its namespace */
  cli(line: string): Promise<CliResult>;
  /** the same, started: the process, to be killed or cut off while it runs */
  start(line: string): ResultPromise<{ env: NodeJS.ProcessEnv; extendEnv: false; reject: false; all: true }>;
  /** its network namespace: its sshd, its CLI and its outgoing SSH connections live there */
  ns: string;
  address: string;
  sshd: Sshd;
  /** the end of its cable at the switch */
  port: string;
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr together, for messages */
  all: string;
  ms: number;
}

export interface SshReversePair {
  a: SshAppliance;
  b: SshAppliance;
  /** the auto-sync service (tank-docs-000) */
  name: string;
  /** `syncsh -c LINE` as x, inside x's namespace */
  cli(x: SshAppliance, line: string): Promise<CliResult>;
  /** cut x's link (at the switch) / plug it back */
  down(x: SshAppliance): Promise<void>;
  up(x: SshAppliance): Promise<void>;
  /** x's copy of the service, read from its home (what a new process there would see) */
  config(x: SshAppliance): AutoSyncConfig;
  /** x's service log */
  log(x: SshAppliance): Promise<string>;
  /** a fresh service layer on x's home, for local looks only (no network from the test's namespace) */
  fresh(x: SshAppliance): Services;
  /** the driver both copies are on (fs unless asked) */
  driver: PairDriver;
  /** x's copy of the service's dataset, driver-local (tank/docs on fs) */
  ds(x: SshAppliance): string;
  /** the directory x's copy is mounted at (it must be mounted) */
  dir(x: SshAppliance): Promise<string>;
  /** every entry of a dataset on x (its copy unless told), with contents (mounted for the look if it is not) */
  tree(x: SshAppliance, dataset?: string): Promise<Tree>;
}

export interface Tree {
  /** path => file contents (latin1), 'dir/' entries for directories, '-> target' for symlinks */
  files: Record<string, string>;
  /** type, mode, size, mtime, sha256 of every entry (for diffTrees) */
  meta: Map<string, NodeSummary>;
}

const ip = (...args: string[]) => execa('ip', args);

/** namespaces of an earlier run of this fixture whose process is gone (killed before its teardown) */
async function removeStale(): Promise<void> {
  const list = (await execa('ip', ['netns', 'list'], { reject: false })).stdout;
  for (const line of list.split('\n')) {
    const name = line.split(/\s+/)[0];
    const m = new RegExp(`^${NS_PREFIX}(\\d+)-`).exec(name ?? '');
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) await execa('ip', ['netns', 'del', name], { reject: false });
  }
}

/**
 * The switch and the two namespaces cabled to it. Returns, for each
 * appliance, its namespace and a NetLink-shaped handle (startSshd wants one
 * to run sshd inside the namespace).
 */
async function makeNetwork(c: Cleanup): Promise<{ sw: string; nodes: { id: string; ns: string; address: string; port: string; link: NetLink }[] }> {
  await removeStale();
  const tag = `${NS_PREFIX}${process.pid}-${randomBytes(3).toString('hex')}`;
  const sw = `${tag}-sw`;
  const ids = ['alpha', 'beta'];
  const spaces = [sw, ...ids.map((id) => `${tag}-${id}`)];
  c.teardown(async () => {
    for (const ns of spaces.reverse()) await execa('ip', ['netns', 'del', ns], { reject: false });
  });
  await ip('netns', 'add', sw);
  await ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
  await ip('-n', sw, 'link', 'set', 'br0', 'up');
  await ip('-n', sw, 'link', 'set', 'lo', 'up');
  const nodes = [];
  for (const [i, id] of ids.entries()) {
    const ns = `${tag}-${id}`;
    const address = `10.231.${SUBNET}.${i + 1}`;
    const port = id; // interface names are per namespace: the switch port is named after the appliance
    await ip('netns', 'add', ns);
    await ip('-n', sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'lan0', 'netns', ns);
    await ip('-n', sw, 'link', 'set', port, 'master', 'br0');
    await ip('-n', sw, 'link', 'set', port, 'up');
    await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'lan0');
    await ip('-n', ns, 'link', 'set', 'lan0', 'up');
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
    const link: NetLink = {
      ns,
      hostIf: port,
      nsIf: 'lan0',
      hostAddr: '',
      nsAddr: address,
      exec: (argv) => ['nsenter', `--net=/run/netns/${ns}`, ...argv], // by network only: see the header
      down: async () => void (await ip('-n', sw, 'link', 'set', port, 'down')),
      up: async () => void (await ip('-n', sw, 'link', 'set', port, 'up')),
      throttle: async () => {
        throw new Error('throttle is not supported on the reverse pair');
      },
    };
    nodes.push({ id, ns, address, port, link });
  }
  return { sw, nodes };
}

/** every entry under root, with contents; and the metadata summary */
async function readAll(root: string): Promise<Tree> {
  const files: Record<string, string> = {};
  const walk = async (dir: string, rel: string) => {
    for (const e of (await readdir(dir, { withFileTypes: true })).sort((x, y) => x.name.localeCompare(y.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        files[`${rel}${e.name}/`] = '';
        await walk(p, `${rel}${e.name}/`);
      } else if (e.isSymbolicLink()) files[`${rel}${e.name}`] = `-> ${await readlink(p)}`;
      else files[`${rel}${e.name}`] = (await readFile(p)).toString('latin1');
    }
  };
  await walk(root, '');
  return { files, meta: await readTree(root) };
}

/**
 * The pair, bound both ways over SSH, with the reverse-capable service
 * tank-docs-000 from alpha to beta created on alpha and `files` in alpha's
 * tank/docs (or in `opts.datasets.a`, beta's copy then `opts.datasets.b`).
 */
export async function sshReversePair(
  t: Cleanup,
  files: TreeSpec = { 'a.txt': 'one\n', 'd/b.txt': randomBytes(48 << 10).toString('base64'), 'd/e/empty': { dir: true }, ln: { symlink: 'a.txt' } },
  opts: { datasets?: PairDatasets } = {},
): Promise<SshReversePair> {
  const f = new Fixture();
  t.teardown(() => f.close());
  const net = await makeNetwork(f);
  const made: SshAppliance[] = [];
  const bases: Appliance[] = [];
  for (const node of net.nodes) {
    const sshd = await startSshd(f, { netns: node.link, address: node.address, port: PORT });
    const base = makeAppliance(f, node.id);
    await base.services.peers.store.setAuthorizedKeysFile(sshd.authorizedKeys);
    bases.push(base);
    const start = (line: string) => {
      const [file, ...args] = node.link.exec([process.execPath, BIN, '-c', line]);
      return execa(file!, args, { env: base.env, extendEnv: false as const, reject: false as const, all: true as const });
    };
    const cli = async (line: string): Promise<CliResult> => {
      const started = Date.now();
      const proc = start(line);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 90_000);
      const r = await proc.finally(() => clearTimeout(timer));
      return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), all: String(r.all), ms: Date.now() - started };
    };
    made.push({ ...base, ns: node.ns, address: node.address, sshd, port: node.port, cli, start });
  }
  const [a, b] = made;
  const opened: Services[] = [];
  f.teardown(() => opened.forEach((s) => s.peers.close()));

  const cli = (x: SshAppliance, line: string) => x.cli(line);
  const must = async (x: SshAppliance, line: string) => {
    const r = await cli(x, line);
    if (r.exitCode !== 0) throw new Error(`${x.id}: ${line}: exit ${r.exitCode}\n${r.all}`);
    return r;
  };

  // each one's key is already in the other's sshd, unrestricted, as an operator would have put it
  for (const [x, y] of [
    [a, b],
    [b, a],
  ] as const)
    writeFileSync(y.sshd.authorizedKeys, `${ensureKeyPair(x.services.home, x.id).publicKey}\n`, { mode: 0o600 });
  await folderWith(bases[0], 'tank', {});
  await folderWith(bases[1], 'tank', {});
  for (const [x, y] of [
    [a, b],
    [b, a],
  ] as const) {
    const r = await must(x, `setup network ssh-bind ${y.address} --port ${PORT} --user root --remote-home ${y.home} -y`);
    if (!/Bound to the appliance/.test(r.stdout)) throw new Error(`${x.id} bound to ${y.id}? ${r.all}`);
  }
  const driver = opts.datasets?.driver ?? 'fs';
  const from = opts.datasets?.a ?? 'tank/docs';
  const to = opts.datasets?.b ?? 'tank/docs';
  await seedSource(bases[0], driver, from, files);
  // an ssh-bound peer is named by its appliance id
  const created = await must(a, `create auto-sync --from-fs ${driver}:${from} --to-host ${b.id} --to-fs ${driver}:${to} --recursive no --reverse-capable yes -y`);
  const name = /auto-sync:(\S+?):/.exec(created.stdout)?.[1];
  if (!name) throw new Error(`no service name in: ${created.all}`);

  const fresh = (x: SshAppliance) => {
    const s = createServices(x.env);
    opened.push(s);
    return s;
  };
  const byId = (x: SshAppliance) => (x.id === a.id ? net.nodes[0] : net.nodes[1]);
  const ds = (x: SshAppliance) => (x.id === a.id ? from : to);
  return {
    a,
    b,
    name,
    cli,
    fresh,
    down: (x) => byId(x).link.down(),
    up: (x) => byId(x).link.up(),
    config: (x) => fresh(x).autoSync.config(name),
    log: async (x) => (await fresh(x).autoSync.log(name).all()).join('\n'),
    driver,
    ds,
    dir: (x) => mountedDir(fresh(x), driver, x, ds(x)),
    async tree(x, dataset = ds(x)) {
      return (await lookAt(fresh(x), driver, x, dataset, readAll)) ?? { files: {}, meta: new Map() };
    },
  };
}

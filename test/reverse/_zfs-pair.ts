/**
 * Two appliances over real SSH, each with its own zfs-fuse pool, and a
 * reverse-capable service alpha:zfs:POOL_A/docs => beta:zfs:POOL_B/docs
 * created by the CLI.
 *
 * The machine is split in two by a network namespace joined to this one by a
 * veth pair (helpers/netns.ts): alpha lives here (its sshd on 10.231.N.1),
 * beta inside the namespace (its sshd on 10.231.N.2, and every command typed
 * "on beta" runs there). Each binds the other with `setup network ssh-bind`.
 * `down(x)` cuts the link, so that each appliance really cannot reach the
 * other (the connection attempts fail or time out), and `up(x)` restores it.
 *
 * Beta's processes enter the namespace with `nsenter --net` (helpers/netns.ts) and not with
 * `ip netns exec`: the latter also gives them a mount namespace of their own,
 * and with this machine's root mount private (no propagation) the FUSE mounts
 * the zfs-fuse daemon makes for them land in the daemon's (this) namespace,
 * so their `zfs` sees its datasets as not mounted and `zfs mount` says busy.
 * A network namespace alone is all the split needs. Both appliances still
 * share the one zfs-fuse daemon of the machine (each touches only its pool).
 */
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createServices, type Services } from '../../src/services/index.js';
import { ensureKeyPair } from '../../src/services/peer/keys.js';
import { BIN } from '../helpers/cli.js';
import { makeNetLink, type NetLink } from '../helpers/netns.js';
import { startSshd } from '../helpers/sshd.js';
import { makeZfsPool, type ZfsPool } from '../helpers/zfs-pool.js';
import { makeAppliance, type Appliance } from '../peer/_fixture.js';

export type Files = Record<string, Buffer>;

export interface ZfsPair {
  a: Appliance;
  b: Appliance;
  link: NetLink;
  poolA: ZfsPool;
  poolB: ZfsPool;
  /** the driver-local dataset names, `POOL/docs` */
  dsA: string;
  dsB: string;
  /** the service, as `create auto-sync` named it */
  name: string;
  /** `syncsh -c LINE` on x (beta's inside its namespace) */
  cli(x: Appliance, line: string): Promise<{ exitCode?: number; stdout: string; stderr: string }>;
  /** the same, with --json, parsed; throws with stderr when it fails */
  json<T = unknown>(x: Appliance, line: string): Promise<T>;
  /** a fresh service layer of an appliance, for what is on its own disk only (it runs here, outside beta's namespace) */
  fresh(x: Appliance): Services;
  /** x's dataset of the service (driver-local name) */
  ds(x: Appliance): string;
  /** x cannot be reached any more, nor reach: the link is cut */
  down(x: Appliance): Promise<void>;
  up(x: Appliance): Promise<void>;
  /** every file of x's dataset, byte for byte, read through its mountpoint (mounted for the look if it is not, then unmounted again) */
  filesOf(x: Appliance, dataset?: string): Promise<Files>;
  /** the directory where x's dataset is mounted, as `show folder` says (it must be mounted) */
  dirOf(x: Appliance, dataset?: string): Promise<string>;
  /** `show folder zfs:DATASET` on x: mounted or not */
  mounted(x: Appliance, dataset?: string): Promise<boolean>;
  /** the names of the snapshots of x's dataset, oldest first */
  snapshots(x: Appliance, dataset?: string): Promise<string[]>;
}

interface FolderData {
  qualified: string;
  mountpoint: string | null;
  mounted: boolean;
}

const MiB = 1024 * 1024;

export async function zfsReversePair(t: ExecutionContext, files: Record<string, string | Buffer>): Promise<ZfsPair> {
  const link = await makeNetLink(t);
  // alpha's sshd here, beta's in the namespace (entered by network only, see the header)
  const sshdA = await startSshd(t, { address: link.hostAddr, port: 2222 });
  const sshdB = await startSshd(t, { netns: link, address: link.nsAddr, port: 2222 });
  const a = makeAppliance(t, 'alpha');
  const madeB = makeAppliance(t, 'beta');
  const run = (x: Appliance, line: string, json = false) => {
    const argv = ['node', BIN, ...(json ? ['--json'] : []), '-c', line];
    const [file, ...args] = x === madeB ? link.exec(argv) : argv;
    return execa(file, args, { env: x.env, reject: false, encoding: 'utf8' });
  };
  const b: Appliance = { ...madeB, cli: (line) => run(madeB, line) as ReturnType<Appliance['cli']> };
  const who = (x: Appliance) => (x.id === 'alpha' ? a : madeB);

  // each appliance's key already in the other's sshd (an operator put it there), and where each installs keys
  writeFileSync(sshdB.authorizedKeys, `${ensureKeyPair(a.services.home, a.id).publicKey}\n`, { mode: 0o600 });
  writeFileSync(sshdA.authorizedKeys, `${ensureKeyPair(madeB.services.home, madeB.id).publicKey}\n`, { mode: 0o600 });
  await a.services.peers.store.setAuthorizedKeysFile(sshdA.authorizedKeys);
  await madeB.services.peers.store.setAuthorizedKeysFile(sshdB.authorizedKeys);
  for (const [x, addr, y] of [
    [a, link.nsAddr, madeB],
    [madeB, link.hostAddr, a],
  ] as const) {
    const r = await run(x, `setup network ssh-bind ${addr} --port 2222 --user root --remote-home ${y.home} -y`);
    if (r.exitCode !== 0) throw new Error(`ssh-bind from ${x.id}: ${r.stderr}`);
  }

  // the pools, small; the services and connections go before them at teardown (last-in first-out)
  const [poolA, poolB] = [await makeZfsPool(t, { size: 64 * MiB }), await makeZfsPool(t, { size: 64 * MiB })];
  const opened: Services[] = [];
  t.teardown(async () => {
    for (const s of opened) s.peers.close();
    // children unmounted first, deepest first: zfs-fuse calls a pool with mounted children busy for a while
    for (const pool of [poolA, poolB]) {
      const names = (await execa('zfs', ['list', '-H', '-o', 'name', '-r', pool.name], { reject: false })).stdout.split('\n').filter((n) => n && n !== pool.name);
      for (const name of names.reverse()) await execa('zfs', ['unmount', '-f', name], { reject: false });
    }
  });
  const dsA = `${poolA.name}/docs`;
  const dsB = `${poolB.name}/docs`;
  const ds = (x: Appliance) => (x.id === 'alpha' ? dsA : dsB);

  const json = async <T>(x: Appliance, line: string): Promise<T> => {
    const r = await run(x, line, true);
    if (r.exitCode !== 0) throw new Error(`${x.id}: ${line}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const folder = async (x: Appliance, dataset: string) => (await json<FolderData[]>(x, `show folder zfs:${dataset}`)).find((f) => f.qualified === `zfs:${dataset}`)!;
  const dirOf = async (x: Appliance, dataset = ds(x)) => {
    const f = await folder(x, dataset);
    if (!f.mounted || !f.mountpoint) throw new Error(`zfs:${dataset} is not mounted on ${x.id}`);
    return f.mountpoint;
  };

  const created = await run(a, `create folder zfs:${dsA}`);
  if (created.exitCode !== 0) throw new Error(String(created.stderr));
  writeFiles(await dirOf(a, dsA), files);
  const r = await run(a, `create auto-sync --from-fs zfs:${dsA} --to-host beta --to-fs zfs:${dsB} --recursive no --reverse-capable yes -y`);
  if (r.exitCode !== 0) throw new Error(String(r.stderr));
  const name = /auto-sync:(\S+?):/.exec(String(r.stdout))![1];

  const fresh = (x: Appliance) => {
    const s = createServices(who(x).env);
    opened.push(s);
    return s;
  };
  return {
    a,
    b,
    link,
    poolA,
    poolB,
    dsA,
    dsB,
    name,
    ds,
    fresh,
    json,
    dirOf,
    cli: (x, line) => run(who(x), line),
    down: () => link.down(),
    up: () => link.up(),
    async mounted(x, dataset = ds(x)) {
      return (await folder(x, dataset)).mounted;
    },
    async snapshots(x, dataset = ds(x)) {
      const zfs = await fresh(x).storage.usable('zfs');
      return (await zfs.listSnapshots(dataset)).map((s) => s.name);
    },
    async filesOf(x, dataset = ds(x)) {
      const zfs = await fresh(x).storage.usable('zfs');
      const info = await zfs.getDataset(dataset);
      if (!info) return {};
      if (!info.mounted) await zfs.mount(dataset);
      try {
        // the mountpoint as `show folder` gives it, asked of the driver directly (one CLI process less per look)
        const dir = (await zfs.getDataset(dataset))?.mountpoint;
        if (!dir) throw new Error(`zfs:${dataset} on ${x.id} has no mountpoint after mounting it`);
        return readFiles(dir);
      } finally {
        if (!info.mounted) await zfs.unmount(dataset);
      }
    },
  };
}

export function writeFiles(dir: string, files: Record<string, string | Buffer>): void {
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), content);
  }
}

/** every regular file below dir, by relative path */
export function readFiles(dir: string): Files {
  const out: Files = {};
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name), `${rel}${e.name}/`);
      else out[`${rel}${e.name}`] = readFileSync(path.join(d, e.name));
    }
  };
  walk(dir, '');
  return out;
}

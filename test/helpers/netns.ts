/**
 * A network namespace joined to this one by a veth pair: the namespace end
 * has its own address (10.231.N.2), this end 10.231.N.1. Used to give an
 * appliance (its sshd and agents) an address of its own, to slow the link
 * down (tbf) and to cut it mid-transfer. Removed at teardown, pass or fail.
 */
import { execa } from 'execa';
import { randomBytes, randomInt } from 'node:crypto';
import { access } from 'node:fs/promises';
import { constants, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** where teardown steps go: an ava ExecutionContext, or a fixture shared by a file's tests */
export interface Cleanup {
  teardown(fn: () => unknown): void;
}

export interface NetLink {
  ns: string;
  /** the interface in this (the test's) namespace */
  hostIf: string;
  nsIf: string;
  hostAddr: string;
  nsAddr: string;
  /** run a command inside the namespace: argv of `nsenter --net=… …` (the network only, see makeNetLink) */
  exec(argv: string[]): string[];
  /** cut the link (this end down) and bring it back */
  down(): Promise<void>;
  up(): Promise<void>;
  /** limit the rate both ways, e.g. '40mbit'; null removes the limit */
  throttle(rate: string | null): Promise<void>;
}

// (not from ./system.js, which loads ava: the benchmarks use these helpers too)
export const isRoot = (): boolean => process.getuid?.() === 0;

export async function findCommand(command: string): Promise<string | null> {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'].filter(Boolean)) {
    const candidate = path.join(dir, command);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return null;
}

export async function netnsMissing(): Promise<string | null> {
  if (!isRoot()) return 'network namespaces need root';
  if (!(await findCommand('ip'))) return 'ip (iproute2) is not installed';
  try {
    const probe = `sstprobe${randomBytes(3).toString('hex')}`;
    await execa('ip', ['netns', 'add', probe]);
    await execa('ip', ['netns', 'del', probe]);
  } catch (error) {
    return `cannot create network namespaces here: ${(error as Error).message.split('\n')[0]}`;
  }
  return null;
}

/** where live claims on subnets are kept: one file per subnet, holding the claimer's pid */
const CLAIMS = '/run/syncsh-test-subnets';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Claims a free 10.231.N.0/24 for this process (N in 20..250): the claim is a
 * file created exclusively, so two test files (or a bench beside a test run)
 * never get the same N. A claim whose process is gone is taken over, and the
 * veths it left behind are removed; a live one is never touched.
 */
async function claimSubnet(t: Cleanup): Promise<number> {
  mkdirSync(CLAIMS, { recursive: true });
  const start = 20 + randomInt(231);
  for (let i = 0; i < 231; i++) {
    const subnet = 20 + ((start - 20 + i) % 231);
    const file = path.join(CLAIMS, String(subnet));
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number(readFileSync(file, 'utf8'));
      if (!holder || alive(holder)) continue; // (empty: being written by its claimer)
      rmSync(file, { force: true }); // left by a killed run
      i--;
      continue;
    }
    t.teardown(() => rmSync(file, { force: true }));
    // veths of a killed run that held this subnet
    const stale = (await execa('ip', ['-o', '-4', 'addr', 'show'])).stdout.split('\n').filter((l) => l.includes(` 10.231.${subnet}.1/24 `));
    for (const line of stale) {
      const dev = line.split(/\s+/)[1]?.replace(/@.*$/, '');
      if (dev) await execa('ip', ['link', 'del', dev], { reject: false });
    }
    return subnet;
  }
  throw new Error(`no free subnet of 10.231.0.0/16 to claim: every one in ${CLAIMS} is held by a live process`);
}

/** A link on a subnet of its own (claimed, released at teardown). */
export async function makeNetLink(t: Cleanup): Promise<NetLink> {
  const subnet = await claimSubnet(t);
  const tag = randomBytes(3).toString('hex');
  const ns = `syncsh-t${subnet}-${tag}`;
  const hostIf = `ss${subnet}${tag}a`.slice(0, 15);
  const nsIf = `ss${subnet}${tag}b`.slice(0, 15);
  const hostAddr = `10.231.${subnet}.1`;
  const nsAddr = `10.231.${subnet}.2`;
  // by network only, not `ip netns exec`: that also gives the command a mount namespace of its own, and with this
  // machine's root mount private it would not see what is mounted after it started (a btrfs image, zfs-fuse's mounts)
  const exec = (argv: string[]) => ['nsenter', `--net=/run/netns/${ns}`, ...argv];
  const ip = (...args: string[]) => execa('ip', args);
  t.teardown(async () => {
    await execa('ip', ['link', 'del', hostIf], { reject: false });
    await execa('ip', ['netns', 'del', ns], { reject: false });
  });
  await ip('netns', 'add', ns);
  await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', ns);
  await ip('addr', 'add', `${hostAddr}/24`, 'dev', hostIf);
  await ip('link', 'set', hostIf, 'up');
  await ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${nsAddr}/24`, 'dev', nsIf);
  await ip('netns', 'exec', ns, 'ip', 'link', 'set', nsIf, 'up');
  await ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
  return {
    ns,
    hostIf,
    nsIf,
    hostAddr,
    nsAddr,
    exec,
    down: async () => void (await ip('link', 'set', hostIf, 'down')),
    up: async () => {
      await ip('link', 'set', hostIf, 'up');
      // the connected route comes back with the link
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        if ((await ip('-4', 'route', 'show', 'dev', hostIf)).stdout.trim()) return;
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    throttle: async (rate) => {
      // both ends, so that either direction of a transfer is slowed
      for (const prefix of [[], ['ip', 'netns', 'exec', ns]]) {
        const dev = prefix.length ? nsIf : hostIf;
        const tc = [...prefix, 'tc', 'qdisc'];
        const [file, ...args] = rate === null ? [...tc, 'del', 'dev', dev, 'root'] : [...tc, 'replace', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', '32kb', 'latency', '400ms'];
        await execa(file, args, { reject: rate !== null });
      }
    },
  };
}

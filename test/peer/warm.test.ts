/**
 * Warm peer connections (issue 13): a long-lived process (the daemon, the
 * shell: PeerService.keepWarm) keeps one SSH connection per peer between
 * runs, with its agent. Over real OpenSSH sshd in a network namespace: two
 * runs share one TCP connection; a connection that died between runs (the
 * link cut, or the peer's end hung) is replaced once by a fresh one and the
 * run succeeds; an idle connection closes after warmMs; a changed host key is
 * still refused when the connection is made again. The tests share one pair
 * and run in order.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import test, { type ExecutionContext } from 'ava';
import { gatedTest } from '../helpers/system.js';
import { netnsMissing } from '../helpers/netns.js';
import { sshdMissing } from '../helpers/sshd.js';
import { diffTrees, readTree } from '../helpers/fs-tree.js';
import { createServices, type Services } from '../../src/services/index.js';
import type { PeerError } from '../../src/services/peer/index.js';
import { Fixture, folderWith, sshPair, until, type SshPair } from './_fixture.js';
import { consoleToolsMissing, makeKey, startServe, writeAuthorizedKeys } from '../console/serve-process.js';

const sshTest = await gatedTest(['sshd', 'network namespaces'], async () => (await sshdMissing()) ?? (await netnsMissing()));
const serveTest = await gatedTest(['sshd', 'network namespaces', 'ssh client'], async () => (await sshdMissing()) ?? (await netnsMissing()) ?? (await consoleToolsMissing()));

const fixture = new Fixture();
let pair: SshPair;
test.after.always(() => fixture.close());

const SERVICE = 'tank-docs-000';

if (!sshTest.missing) {
  test.before(async () => {
    pair = await sshPair(fixture);
    await folderWith(pair.b, 'tank', {});
    const r = await pair.a.cli(`${pair.bindLine} -y`);
    if (r.exitCode !== 0) throw new Error(String(r.stderr));
    await folderWith(pair.a, 'tank/docs', { 'readme.txt': 'hello\n' });
    await pair.a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: 'beta', toFs: 'fs:tank/docs-copy', recursive: false });
    await pair.a.services.autoSync.run(SERVICE); // the full run: each test's runs are incremental
    pair.a.services.peers.close();
  });
}

/** alpha as a long-lived process: its own services on alpha's home, connections kept warm */
function warmAlpha(t: ExecutionContext, env: NodeJS.ProcessEnv = {}): Services {
  const services = createServices({ ...pair.a.env, ...env });
  services.peers.keepWarm();
  t.teardown(() => services.peers.close());
  return services;
}

/** the client ports of the SSH connections established to beta's sshd now, and the sshd processes holding them */
async function connections(): Promise<{ ports: number[]; pids: number[] }> {
  const [file, ...args] = pair.link.exec(['ss', '-Htnp', 'state', 'established', '( sport = :2222 )']);
  const out = (await execa(file, args)).stdout;
  const ports = new Set<number>();
  const pids = new Set<number>();
  for (const line of out.split('\n').filter(Boolean)) {
    const peer = line.trim().split(/\s+/)[3]; // Recv-Q Send-Q Local Peer Process
    ports.add(Number(peer.slice(peer.lastIndexOf(':') + 1)));
    for (const m of line.matchAll(/pid=(\d+)/g)) pids.add(Number(m[1]));
  }
  return { ports: [...ports], pids: [...pids] };
}

/** the client port of the last key login sshd logged (the log keeps its tail only: the last is what counts) */
function lastLogin(): number | null {
  const all = [...pair.sshd.log().matchAll(/Accepted publickey for root from \S+ port (\d+)/g)];
  return all.length ? Number(all[all.length - 1][1]) : null;
}

/** beta's agents serving alpha that run `sub` (the forced command names it in SSH_ORIGINAL_COMMAND) */
function agents(sub: 'receive' | 'send'): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (!argv.includes('agent') || !argv.includes(pair.b.home) || !argv.includes('alpha')) continue;
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const asked = env.find((e) => e.startsWith('SSH_ORIGINAL_COMMAND='));
      if (asked?.split(' ').includes(sub)) found.push(Number(pid));
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

async function change(t: ExecutionContext, services: Services, text: string) {
  writeFileSync(path.join(pair.a.live('tank/docs'), 'readme.txt'), `${text}\n`);
  const result = await services.autoSync.run(SERVICE);
  t.false(result.full);
  t.deepEqual(diffTrees(await readTree(pair.a.live('tank/docs')), await readTree(pair.b.live('tank/docs-copy'))), []);
}

/** SIGSTOP the sshd processes of a connection: the peer is up, that connection no longer answers */
async function hang(t: ExecutionContext, pids: number[]) {
  t.teardown(() => {
    for (const pid of pids)
      for (const sig of ['SIGCONT', 'SIGKILL'] as const) {
        try {
          process.kill(pid, sig);
        } catch {
          /* gone already */
        }
      }
  });
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
}

sshTest.serial('two runs in one long-lived process share one SSH connection (one handshake)', async (t) => {
  const warm = warmAlpha(t);
  await change(t, warm, 'first run');
  const first = await connections();
  t.is(first.ports.length, 1, 'one connection to beta after the first run');
  t.is(lastLogin(), first.ports[0]);
  await change(t, warm, 'second run');
  await change(t, warm, 'third run');
  const later = await connections();
  t.deepEqual(later.ports, first.ports, 'the same TCP connection carried the later runs');
  t.is(lastLogin(), first.ports[0], 'no login since the first run');
});

serveTest.serial('runs typed in two logins to `syncsh serve` (the SSH console) share one SSH connection to the peer, as in the daemon', async (t) => {
  const dir = pair.a.home;
  const key = await makeKey(dir, 'operator');
  const keys = path.join(dir, 'operators');
  writeAuthorizedKeys(keys, [key.publicLine]);
  const serve = await startServe(t, pair.a.env, keys);
  const typed = async (text: string) => {
    writeFileSync(path.join(pair.a.live('tank/docs'), 'readme.txt'), `${text}\n`);
    const r = await execa('ssh', [...serve.sshArgs(key.file), `run auto-sync :${SERVICE}`], { reject: false, stdin: 'ignore' });
    t.is(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
    t.deepEqual(diffTrees(await readTree(pair.a.live('tank/docs')), await readTree(pair.b.live('tank/docs-copy'))), []);
  };
  await typed('typed in the console, first login');
  const first = await connections();
  t.is(first.ports.length, 1, 'one connection to beta after the first run');
  t.is(lastLogin(), first.ports[0]);
  await typed('typed in the console, second login');
  t.deepEqual((await connections()).ports, first.ports, 'the second run went over the same TCP connection');
  t.is(lastLogin(), first.ports[0], 'no login to beta since the first run');
  t.is(await serve.stop(), 0);
  await until('serve closed its connection to beta when it stopped', async () => (await connections()).ports.length === 0);
});

sshTest.serial("a warm connection starts the next run's receive agent ahead: the next run uses it, one is left waiting, none outlive the connection", async (t) => {
  const warm = warmAlpha(t);
  await change(t, warm, 'spare one');
  await until('a receive agent waits for the next run', () => agents('receive').length === 1);
  const [spare] = agents('receive');
  await change(t, warm, 'spare two');
  // nothing but a run's header ends a waiting agent while its connection lives: gone, it served the run
  await until('the used agent ended and another waits', () => {
    const now = agents('receive');
    return now.length === 1 && now[0] !== spare;
  });
  warm.peers.close();
  await until('no agent outlives the connection', () => agents('receive').length === 0);
  t.pass();
});

sshTest.serial('a short-lived process (no keepWarm) still closes its connection a moment after its run', async (t) => {
  const services = createServices(pair.a.env);
  t.teardown(() => services.peers.close());
  await change(t, services, 'short-lived');
  const port = lastLogin();
  await until('the connection closed after the linger', async () => !(await connections()).ports.includes(port!));
  t.pass();
});

sshTest.serial('the connection hangs between runs (the peer is up): the stale one is replaced once and the run succeeds', async (t) => {
  // keepalives far apart: nothing but the ping before reuse can notice
  const warm = warmAlpha(t, { SYNCSH_PEER_KEEPALIVE_MS: '60000', SYNCSH_PEER_PROBE_MS: '1500', SYNCSH_PEER_PROBE_AFTER_MS: '0' });
  await change(t, warm, 'before the hang');
  const before = await connections();
  t.is(before.ports.length, 1);
  await hang(t, before.pids);
  const started = Date.now();
  await change(t, warm, 'after the hang');
  const elapsed = Date.now() - started;
  const login = lastLogin();
  t.not(login, before.ports[0], 'a fresh connection was made');
  t.true((await connections()).ports.includes(login!));
  t.true(elapsed < 30_000, `the run did not hang (${elapsed} ms)`);
});

sshTest.serial('the link is cut between runs: the next run reconnects and succeeds', async (t) => {
  const warm = warmAlpha(t, { SYNCSH_PEER_KEEPALIVE_MS: '60000', SYNCSH_PEER_PROBE_MS: '2000' });
  await change(t, warm, 'before the cut');
  const before = await connections();
  t.is(before.ports.length, 1);
  await pair.link.down();
  t.teardown(() => pair.link.up());
  // beta's sshd gives up on the silent client (ClientAliveInterval 1, CountMax 3)
  await until('sshd dropped the connection', async () => !(await connections()).ports.includes(before.ports[0]), 20_000);
  await pair.link.up();
  await change(t, warm, 'after the cut');
  t.not(lastLogin(), before.ports[0], 'a fresh connection was made');
});

sshTest.serial('an idle warm connection closes after warmMs, and the next run opens another', async (t) => {
  const warm = warmAlpha(t, { SYNCSH_PEER_WARM_MS: '2000' });
  await change(t, warm, 'before idle');
  const idleFrom = Date.now();
  const port = lastLogin()!;
  t.true((await connections()).ports.includes(port));
  await until('the idle connection closed', async () => !(await connections()).ports.includes(port), 15_000);
  t.true(Date.now() - idleFrom >= 1900, `kept open for warmMs (closed after ${Date.now() - idleFrom} ms)`);
  await change(t, warm, 'after idle');
  t.not(lastLogin(), port);
});

sshTest.serial('a changed host key is refused when a dead warm connection is made again; binding again lets runs go on', async (t) => {
  const warm = warmAlpha(t, { SYNCSH_PEER_KEEPALIVE_MS: '60000', SYNCSH_PEER_PROBE_MS: '1500', SYNCSH_PEER_PROBE_AFTER_MS: '0' });
  await change(t, warm, 'before rekey');
  const before = await connections();
  const old = pair.a.services.peers.store.outboundPeer('beta')!.fingerprint;
  await pair.sshd.rekey();
  await hang(t, before.pids);
  writeFileSync(path.join(pair.a.live('tank/docs'), 'readme.txt'), 'after rekey\n');
  const error = await t.throwsAsync(warm.autoSync.run(SERVICE));
  t.is((error as PeerError).code, 'host-key', error!.message);
  t.true(error!.message.includes(old!) && error!.message.includes(await pair.sshd.fingerprint()), error!.message);

  // bound again by another process: the warm one picks up the new record
  const r = await pair.a.cli(`${pair.bindLine} -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  await change(t, warm, 'after rebind');
});

/**
 * Appliance to appliance over SSH, in the same run and on the same data:
 *  - the fs driver through the agent protocol (ssh2, forced-command key)
 *    against `rsync -a --delete -e ssh` through the same sshd: a full sync of
 *    a generated tree, then an incremental one after 1% of the files changed
 *    (from the CLI; then in one long-lived process like the daemon, on a new
 *    connection, on the warm one, and with its receive agent started ahead);
 *  - with BENCH_ZFS=1, the zfs driver against `zfs send | ssh HOST zfs receive`.
 * Both appliances are on this machine: beta's sshd runs in a network
 * namespace of its own (10.231.N.2, a claimed subnet) reached over a veth pair (for zfs, on
 * loopback: zfs-fuse cannot mount inside the mount namespace `ip netns exec`
 * makes). Needs root, sshd, iproute2 and rsync.
 *
 *   npm run build && tsx bench/ssh-replication.ts
 *   BENCH_FILES=5000 BENCH_MB=512 BENCH_RATE=1gbit BENCH_ZFS=1 tsx bench/ssh-replication.ts
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { changeFraction, countFiles, generateTree, printTable, syncsh, timed } from './common.js';
import { createServices } from '../src/services/index.js';
import { appliances, must, Teardown } from './ssh-pair.js';

const files = Number(process.env.BENCH_FILES) || 5_000;
const megabytes = Number(process.env.BENCH_MB) || 512;
const rate = process.env.BENCH_RATE || null;
const withZfs = process.env.BENCH_ZFS === '1';

async function benchFs(cleanup: Teardown, work: string) {
  const { envA, envB, address, ssh } = await appliances(cleanup, work, { netns: true, rate });
  await must(syncsh(envB, 'create folder fs:bench'));
  await must(syncsh(envA, 'create folder fs:bench'));
  await must(syncsh(envA, 'create folder fs:bench/src'));
  const src = path.join(envA.SYNCSH_HOME!, 'fs', 'bench', 'src');
  console.log(`generating ${files} files, ${megabytes} MiB in ${src} …`);
  const paths = await generateTree(src, files, megabytes << 20);
  await must(syncsh(envA, 'create auto-sync --from-fs fs:bench/src --to-host beta --to-fs fs:bench/dst --keep-src 2 --keep-dst 2 -y'));
  const rsyncDst = path.join(work, 'rsync-dst');
  const rsync = () => execa('rsync', ['-a', '--delete', '-e', ssh.join(' '), `${src}/`, `root@${address}:${rsyncDst}/`]);

  const fullOurs = await timed(() => must(syncsh(envA, 'run auto-sync :bench-src-000')));
  const fullTheirs = await timed(rsync);
  const changed = await changeFraction(paths, 0.01);
  const incOurs = await timed(() => must(syncsh(envA, 'run auto-sync :bench-src-000')));
  const incTheirs = await timed(rsync);

  // A long-lived process (the daemon): the same incremental run on a new connection, then on the
  // one kept warm (PeerService.keepWarm), then also with the receive agent started ahead (spare).
  // The first run in the process only loads its modules.
  const inProcess = async (services: ReturnType<typeof createServices>) => {
    await changeFraction(paths, 0.01);
    const ours = await timed(() => services.autoSync.run('bench-src-000'));
    return { ours: ours.seconds, theirs: (await timed(rsync)).seconds };
  };
  const daemon = createServices({ ...envA, SYNCSH_PEER_SPARE_AGENTS: '0' });
  daemon.peers.keepWarm();
  await inProcess(daemon);
  daemon.peers.close();
  const cold = await inProcess(daemon);
  const warm = await inProcess(daemon);
  daemon.peers.close();
  const spared = createServices(envA);
  spared.peers.keepWarm();
  await inProcess(spared);
  const spare = await inProcess(spared);
  spared.peers.close();

  const dst = path.join(envB.SYNCSH_HOME!, 'fs', 'bench', 'dst');
  const [a, b] = [await countFiles(dst), await countFiles(rsyncDst)];
  if (a !== b || a !== files) throw new Error(`file counts differ: syncsh ${a}, rsync ${b}, source ${files}`);
  console.log(fullOurs.value.trim());
  console.log(incOurs.value.trim());
  printTable(`fs driver over SSH (agent) vs rsync -a --delete -e ssh: ${files} files, ${megabytes} MiB, ${changed} files changed${rate ? `, link ${rate}` : ''}`, 'rsync -a --delete -e ssh', [
    { phase: 'full', ours: fullOurs.seconds, theirs: fullTheirs.seconds },
    { phase: 'incremental (1% changed)', ours: incOurs.seconds, theirs: incTheirs.seconds },
    { phase: 'incr., daemon, new conn.', ...cold },
    { phase: 'incr., daemon, warm conn.', ...warm },
    { phase: 'incr., warm + spare agent', ...spare },
  ]);
}

/** a pool on a file vdev (zfs-fuse must be running, or the zfs kernel module loaded) */
async function zpool(cleanup: Teardown, work: string, size: number): Promise<{ name: string }> {
  const name = `syncshbench${randomBytes(3).toString('hex')}`;
  const file = path.join(work, `${name}.vdev`);
  await execa('truncate', ['-s', String(size), file]);
  await execa('zpool', ['create', '-m', path.join(work, `${name}.mnt`), '-O', 'atime=off', name, file]);
  cleanup.teardown(async () => {
    // zfs-fuse calls a pool busy while the last receive's mounts wind down: try a few times
    for (let attempt = 1; attempt <= 10; attempt++) {
      const r = await execa('zpool', ['destroy', '-f', name], { reject: false });
      if (!r.failed || /no such pool/i.test(String(r.stderr))) return;
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
    console.error(`could not destroy the pool ${name}: zpool destroy -f ${name}`);
  });
  return { name };
}

async function benchZfs(cleanup: Teardown, work: string) {
  const probe = await execa('zpool', ['list'], { reject: false });
  if (probe.failed) {
    console.log(`\nzfs: skipped, ZFS does not answer (${String(probe.stderr).trim().split('\n').pop()}); start zfs-fuse (or load the zfs module) first.`);
    return;
  }
  const { envA, address, ssh } = await appliances(cleanup, work, { netns: false, rate });
  const size = Math.max(512, megabytes * 3) << 20;
  const [poolA, poolB, poolC] = [await zpool(cleanup, work, size), await zpool(cleanup, work, size), await zpool(cleanup, work, size)];
  await execa('zfs', ['create', `${poolA.name}/src`]);
  const src = (await execa('zfs', ['get', '-H', '-o', 'value', 'mountpoint', `${poolA.name}/src`])).stdout.trim();
  console.log(`generating ${files} files, ${megabytes} MiB in ${src} …`);
  const paths = await generateTree(src, files, megabytes << 20);
  await must(syncsh(envA, `create auto-sync --from-fs zfs:${poolA.name}/src --to-host beta --to-fs zfs:${poolB.name}/dst --keep-src 2 --keep-dst 2 -y`));
  const service = `${poolA.name}-src-000`;
  // the peer: the same snapshots, sent by hand through ssh into a third pool
  const pipe = async (snapshot: string, from?: string) => {
    const send = execa('zfs', ['send', '-p', ...(from ? ['-I', `@${from}`] : []), `${poolA.name}/src@${snapshot}`], { buffer: false });
    await send.pipe(ssh[0], [...ssh.slice(1), `root@${address}`, 'zfs', 'receive', '-F', `${poolC.name}/dst`], { buffer: false });
  };
  await execa('zfs', ['snapshot', `${poolA.name}/src@bench1`]);
  const fullOurs = await timed(() => must(syncsh(envA, `run auto-sync :${service}`)));
  const fullTheirs = await timed(() => pipe('bench1'));
  const changed = await changeFraction(paths, 0.01);
  await execa('zfs', ['snapshot', `${poolA.name}/src@bench2`]);
  const incOurs = await timed(() => must(syncsh(envA, `run auto-sync :${service}`)));
  const incTheirs = await timed(() => pipe('bench2', 'bench1'));
  console.log(fullOurs.value.trim());
  console.log(incOurs.value.trim());
  await must(syncsh(envA, `destroy auto-sync :${service} -y`));
  printTable(`zfs driver over SSH (agent) vs zfs send | ssh HOST zfs receive: ${files} files, ${megabytes} MiB, ${changed} files changed`, 'zfs send | ssh zfs recv', [
    { phase: 'full', ours: fullOurs.seconds, theirs: fullTheirs.seconds },
    { phase: 'incremental (1% changed)', ours: incOurs.seconds, theirs: incTheirs.seconds },
  ]);
}

const work = await mkdtemp(path.join(process.env.BENCH_DIR || os.tmpdir(), 'syncsh-bench-ssh-'));
const cleanup = new Teardown();
try {
  await benchFs(cleanup, work);
  if (withZfs) await benchZfs(cleanup, work);
} finally {
  await cleanup.run();
  await rm(work, { recursive: true, force: true });
}

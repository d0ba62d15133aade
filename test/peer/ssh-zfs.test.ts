/**
 * The same agent protocol with the zfs driver: local-to-remote and
 * remote-to-local over SSH between two pools. One zfs-fuse daemon serves
 * both appliances, and beta's sshd listens on loopback: in a namespace made
 * by `ip netns exec` (which also gives it a mount namespace of its own)
 * zfs-fuse cannot mount what it receives.
 */
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gatedTest } from '../helpers/system.js';
import { sshdMissing } from '../helpers/sshd.js';
import { makeZfsPool, zfsMissing } from '../helpers/zfs-pool.js';
import { sshPair } from './_fixture.js';

const zfsSshTest = await gatedTest(['sshd', 'ZFS (zfs-fuse)'], async () => (await sshdMissing()) ?? (await zfsMissing()));

zfsSshTest('zfs datasets replicate both ways over SSH: full, then incremental', async (t) => {
  const { a, b, bindLine } = await sshPair(t, { loopback: true });
  const bound = await a.cli(`${bindLine} -y`);
  t.is(bound.exitCode, 0, String(bound.stderr));
  const [poolA, poolB] = await Promise.all([makeZfsPool(t), makeZfsPool(t)]);
  const zfs = await a.services.storage.usable('zfs');
  const dirOf = async (name: string) => (await zfs.getDataset(name))!.mountpoint!;

  // alpha's pool to beta's
  await zfs.createDataset(`${poolA.name}/docs`);
  const srcA = await dirOf(`${poolA.name}/docs`);
  writeFileSync(path.join(srcA, 'a.txt'), 'on alpha\n');
  writeFileSync(path.join(srcA, 'a.bin'), randomBytes(200_000));
  const l2r = await a.services.autoSync.create({ fromFs: `zfs:${poolA.name}/docs`, toHost: 'beta', toFs: `zfs:${poolB.name}/docs`, recursive: false });
  t.true((await a.services.autoSync.run(l2r.name)).full);
  writeFileSync(path.join(srcA, 'a.txt'), 'changed on alpha\n');
  const inc = await a.services.autoSync.run(l2r.name);
  t.false(inc.full);
  const dstB = await dirOf(`${poolB.name}/docs`);
  t.is(readFileSync(path.join(dstB, 'a.txt'), 'utf8'), 'changed on alpha\n');
  t.deepEqual(readFileSync(path.join(dstB, 'a.bin')), readFileSync(path.join(srcA, 'a.bin')));
  t.like(b.services.autoSync.history(l2r.name, 'receive').list()[0], { result: 'success', peer: 'alpha', snapshot: inc.marker });
  t.is(b.services.autoSync.store.runState(l2r.name).lastMarker, inc.marker);

  // beta's pool back to alpha's
  await zfs.createDataset(`${poolB.name}/src`);
  const srcB = await dirOf(`${poolB.name}/src`);
  writeFileSync(path.join(srcB, 'b.txt'), 'on beta\n');
  const r2l = await a.services.autoSync.create({ fromHost: 'beta', fromFs: `zfs:${poolB.name}/src`, toFs: `zfs:${poolA.name}/from-beta`, recursive: false });
  await a.services.autoSync.run(r2l.name);
  writeFileSync(path.join(srcB, 'b.txt'), 'changed on beta\n');
  t.false((await a.services.autoSync.run(r2l.name)).full);
  t.is(readFileSync(path.join(await dirOf(`${poolA.name}/from-beta`), 'b.txt'), 'utf8'), 'changed on beta\n');
  t.like(b.services.autoSync.history(r2l.name, 'send').list()[0], { result: 'success', peer: 'alpha' });

  // services and connections go before the pools (teardown runs last-in first-out): no agent may still use them
  t.teardown(async () => {
    for (const name of [l2r.name, r2l.name]) await a.services.autoSync.destroy(name).catch(() => undefined);
    a.services.peers.close();
    await new Promise((r) => setTimeout(r, 500));
    // children unmounted first, deepest first: zfs-fuse calls a pool with mounted children busy for a while
    for (const pool of [poolA, poolB]) {
      const names = (await execa('zfs', ['list', '-H', '-o', 'name', '-r', pool.name], { reject: false })).stdout.split('\n').filter((n) => n && n !== pool.name);
      for (const name of names.reverse()) await execa('zfs', ['unmount', '-f', name], { reject: false });
    }
  });
});

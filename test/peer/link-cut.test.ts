/**
 * The link between two appliances is cut in the middle of a stream (the
 * veth goes down while the transfer is throttled): the run fails cleanly,
 * the destination stays exactly at its previous snapshot, and once the link
 * is back the next run succeeds. Both directions.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gatedTest } from '../helpers/system.js';
import { netnsMissing } from '../helpers/netns.js';
import { sshdMissing } from '../helpers/sshd.js';
import { diffTrees, readTree } from '../helpers/fs-tree.js';
import { Layout } from '../../src/services/storage/fs/layout.js';
import type { PeerError } from '../../src/services/peer/index.js';
import { Fixture, folderWith, sshPair, until, type Appliance, type SshPair } from './_fixture.js';

/** B's address as a pattern: its subnet is claimed at setup */
const beta = () => `${pair.link.nsAddr.replaceAll('.', '\\.')}:2222`;
const sshTest = await gatedTest(['sshd', 'network namespaces', 'tc'], async () => (await sshdMissing()) ?? (await netnsMissing()));

const fixture = new Fixture();
let pair: SshPair;
test.after.always(() => fixture.close());

/** what an operator could see of a destination: files, snapshots, and nothing left staged */
async function destination(x: Appliance, dataset: string) {
  const layout = new Layout(path.join(x.home, 'fs'));
  const staging = layout.stagingRoot(dataset);
  return {
    tree: await readTree(x.live(dataset)),
    snapshots: (await (await x.services.storage.usable('fs')).listSnapshots(dataset)).map((s) => `${s.name}=${s.id}`),
    staged: existsSync(staging) ? readdirSync(staging) : [],
  };
}

/** the receiving agent has given up on the cut stream and cleaned up */
function settled(x: Appliance, dataset: string) {
  const layout = new Layout(path.join(x.home, 'fs'));
  return () => !existsSync(layout.lockFile(dataset)) && (!existsSync(layout.stagingRoot(dataset)) || readdirSync(layout.stagingRoot(dataset)).length === 0);
}

async function cutMidStream(t: ExecutionContext, name: string, to: Appliance, dataset: string) {
  const before = await destination(to, dataset);
  await pair.link.throttle('40mbit'); // about 5 MB/s: the 24 MB change takes seconds
  let cutAt = 0;
  const started = Date.now();
  const error = await t.throwsAsync(
    pair.a.services.autoSync.run(name, {
      onProgress: (bytes) => {
        if (!cutAt && bytes > 3 << 20) {
          cutAt = bytes;
          void pair.link.down();
        }
      },
    }),
  );
  t.true(cutAt > 0, 'the link was cut while bytes were flowing');
  t.is((error as PeerError).code, 'link', error!.message);
  t.regex(error!.message, new RegExp(String.raw`connection to the appliance beta at ${beta()} was lost`));
  t.true(Date.now() - started < 30_000);
  t.is(pair.a.services.autoSync.store.runState(name).lastResult, 'failure');

  // the receiver notices the dead stream by itself and drops what it staged
  await until('the receiver to give up on the cut stream', settled(to, dataset), 20_000);
  const after = await destination(to, dataset);
  t.deepEqual(diffTrees(before.tree, after.tree), [], 'the destination files are unchanged');
  t.deepEqual(after.snapshots, before.snapshots, 'the destination is at its previous snapshot');
  t.deepEqual(after.staged, []);

  await pair.link.up();
  await pair.link.throttle(null);
  const r = await pair.a.services.autoSync.run(name);
  t.false(r.full, 'the next run is incremental from the snapshot both still have');
}

// bound appliances behind a link that can be cut, shared by the tests below
if (!sshTest.missing) {
  test.before(async () => {
    pair = await sshPair(fixture);
    const r = await pair.a.cli(`${pair.bindLine} -y`);
    if (r.exitCode !== 0) throw new Error(`Binding the pair failed: ${String(r.stderr)}`);
    await folderWith(pair.b, 'tank', {});
    await folderWith(pair.a, 'tank', {});
  });
}

sshTest.serial('local-to-remote: the link drops mid-stream; the destination stays at its previous snapshot; the next run succeeds', async (t) => {
  const { a, b } = pair;
  const src = await folderWith(a, 'tank/l2r', { 'small.txt': 'first\n' });
  const { name } = await a.services.autoSync.create({ fromFs: 'fs:tank/l2r', toHost: 'beta', toFs: 'fs:tank/l2r-copy', recursive: false });
  await a.services.autoSync.run(name);
  writeFileSync(path.join(src, 'big.bin'), randomBytes(24 << 20));
  writeFileSync(path.join(src, 'small.txt'), 'second\n');
  await cutMidStream(t, name, b, 'tank/l2r-copy');
  t.deepEqual(diffTrees(await readTree(src), await readTree(b.live('tank/l2r-copy'))), []);
  t.is(b.services.autoSync.store.runState(name).lastResult, 'success');
});

sshTest.serial('remote-to-local: the link drops mid-stream; the destination stays at its previous snapshot; the next run succeeds', async (t) => {
  const { a, b } = pair;
  const src = await folderWith(b, 'tank/r2l', { 'small.txt': 'first\n' });
  const { name } = await a.services.autoSync.create({ fromHost: 'beta', fromFs: 'fs:tank/r2l', toFs: 'fs:tank/r2l-copy', recursive: false });
  await a.services.autoSync.run(name);
  writeFileSync(path.join(src, 'big.bin'), randomBytes(24 << 20));
  await cutMidStream(t, name, a, 'tank/r2l-copy');
  t.deepEqual(diffTrees(await readTree(src), await readTree(a.live('tank/r2l-copy'))), []);
});

/**
 * The peer link cut for real: alpha here, beta behind OpenSSH in a network
 * namespace (test/peer/_fixture.ts sshPair), both daemons running, a sync
 * mirror with --peer-timeout 2, qemu-io writing on alpha's export while the
 * veth is down (link.down()). 003's master cases on a cut link:
 *   master + manual → the writes succeed, beta is logging; the link back →
 *     only the dirty chunks are sent, both copies equal;
 *   master + no fencing → the write in flight when the link went fails
 *     with EIO and alpha steps down to slave.
 */
import { gatedTest } from '../helpers/system.js';
import { netnsMissing } from '../helpers/netns.js';
import { sshdMissing } from '../helpers/sshd.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { Fixture, ok, sshPair } from '../peer/_fixture.js';
import { compare, figuresUntil, MIRROR, mirrorBetween, qemuIo, role, uri } from './_pair.js';

const test = await gatedTest(['sshd', 'network namespaces', 'qemu-utils'], async () => (await sshdMissing()) ?? (await netnsMissing()) ?? (await nbdClientsMissing('qemu-io', 'qemu-img')()));

test.serial('a cut link over SSH: master + manual keeps writing and resyncs only the dirty chunks; master + none fails the write in flight with EIO and steps down', async (t) => {
  t.timeout(8 * 60_000);
  const f = new Fixture();
  t.teardown(() => f.close());
  const pair = await sshPair(f);
  const { a, b, link } = pair;
  await ok(a, `${pair.bindLine} -y`);
  await ok(a, 'create folder fs:tank');
  await ok(b, 'create folder fs:tank');
  const { da } = await mirrorBetween(t, a, b, { create: '--peer-timeout 2' });
  t.regex((await qemuIo(uri(a), 'write -P 0x10 0 1M')).stdout, /wrote 1048576\/1048576 bytes/);

  // master + manual (case 6): the link cut, the writes go on into beta's dirty map
  await ok(a, 'setup network fencing beta manual');
  let from = da.lines.lines.length;
  await link.down();
  const cut = await qemuIo(uri(a), 'write -P 0x21 0 64k', 'write -P 0x22 5M 64k', 'write -P 0x23 9M 128k');
  t.regex(cut.stdout, /(wrote \d+\/\d+ bytes[\s\S]*){3}/, cut.stdout + cut.stderr);
  await da.lines.wait(/lost beta/, from, 30_000);
  await figuresUntil(a, (x) => x.state === 'logging' && x.dirtyChunks === 4);
  from = da.lines.lines.length;
  await link.up();
  t.regex(await da.lines.wait(/connected to beta; \d+ dirty chunk\(s\) to send/, from, 90_000), /connected to beta; 4 dirty chunk\(s\) to send/);
  await da.lines.wait(/beta is level/, from, 60_000);
  t.is(await compare(a, b), '0: Images are identical.');

  // master + none (case 4): the write in flight when the link goes is refused, and alpha steps down
  await ok(a, 'setup network fencing beta clear');
  from = da.lines.lines.length;
  await link.down();
  const refused = await qemuIo(uri(a), 'write -P 0x31 0 64k');
  t.regex(refused.stdout + refused.stderr, /Input\/output error/, refused.stdout + refused.stderr);
  await da.lines.wait(/Peer beta lost \(fencing policy none, this copy master at epoch 1\): .*steps down to slave/, from, 30_000);
  t.like(await role(a), { role: 'slave', epoch: 1 });
  t.regex(await ok(a, `show auto-cdp :${MIRROR} log`), /Peer beta lost: .*peer timeout 2 sec/);
  await link.up();
});

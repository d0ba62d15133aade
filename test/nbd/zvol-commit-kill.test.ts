/**
 * issue 15: a receive into a zvol killed (SIGKILL) half-way through
 * patching its image, then `syncsh daemon` started with no recover run:
 * an NBD client (nbdcopy, qemu-io) reads the new snapshot whole, and a
 * write it makes then is not undone by the commit's replay; while a
 * client has it open, a rollback is refused and the export is unchanged.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { execa } from 'execa';
import { gatedTest } from '../helpers/system.js';
import { makeAppliance } from '../helpers/appliance.js';
import { assertBuilt } from '../helpers/cli.js';
import { startNbdDaemon } from '../helpers/daemon.js';
import { driverElsewhere, RECEIVE_OPTS } from '../helpers/fs-elsewhere.js';
import { RawClient, nbdClientsMissing, nbdTempDir, unixUri } from '../helpers/nbd.js';
import { createFsDriver } from '../../src/services/storage/fs/index.js';

const test = await gatedTest(['qemu-utils', 'libnbd-bin'], nbdClientsMissing('nbdcopy', 'qemu-io'));
const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

test('a zvol receive killed mid-patch: the daemon started next serves the new snapshot whole, and keeps a client write made then', async (t) => {
  assertBuilt();
  const a = makeAppliance(t);
  const dir = nbdTempDir(t);
  // The source on a driver of its own; the zvol received into the appliance's fs pool.
  const src = createFsDriver(path.join(dir, 'src'));
  await src.createDataset('tank');
  await src.createDataset('tank/vm1', { volumeSize: 8 * MiB, zvol: { blockSize: 4096 } });
  const v = await src.openVolume!('tank/vm1');
  await v.write(0, randomBytes(8 * MiB), { fua: true });
  await v.close();
  await src.createSnapshot('tank/vm1', 's1', { recursive: false });
  const w = await src.openVolume!('tank/vm1');
  for (let c = 0; c < 128; c += 2) await w.write(c * CHUNK, randomBytes(CHUNK), { fua: false });
  const fresh = sha(await w.read(0, 8 * MiB));
  await w.close();
  await src.createSnapshot('tank/vm1', 's2', { recursive: false });
  const root = a.services.home.fsRoot;
  const dst = createFsDriver(root);
  await dst.createDataset('tank');
  await dst.receive('tank/vm1', Readable.from([await collect(src.send('tank/vm1', 's1', { recursive: false }))]), { force: false, recursive: false });
  const deltaFile = path.join(dir, 'delta.stream');
  writeFileSync(deltaFile, await collect(src.send('tank/vm1', 's2', { from: 's1', recursive: false })));
  const killed = await driverElsewhere(root, `await driver.receive('tank/vm1', createReadStream(${JSON.stringify(deltaFile)}), ${RECEIVE_OPTS});`, { SYNCSH_FAILPOINTS: 'fs.zvol.patch.half' });
  t.is(killed.signal, 'SIGKILL', killed.stderr);
  const image = path.join(root, 'tank', 'vm1', 'volume.img');
  t.not(sha(readFileSync(image)), fresh, 'the image file itself is part old, part new');

  const { daemon, socket } = await startNbdDaemon(t, a.env, a.home);
  const uri = unixUri(socket, 'fs:tank/vm1');
  const copy = path.join(dir, 'copy.img');
  await execa('nbdcopy', [uri, copy]);
  t.is(sha(readFileSync(copy)), fresh, 'the export reads the new snapshot');
  const io = await execa('qemu-io', ['-f', 'raw', '-c', 'write -f -P 0x5a 1M 64k', uri]);
  t.notRegex(io.stdout, /failed/i);
  // While a client has it open, no commit patches it under the client: refused, naming the daemon.
  const held = await RawClient.connect(t, socket);
  await held.open('fs:tank/vm1');
  const rb = await driverElsewhere(root, `await driver.rollback('tank/vm1', 's1');`);
  t.regex(rb.stderr, new RegExp(`The zvol fs:tank/vm1 is served over NBD by process ${daemon.pid}; disconnect its clients \\(or stop that daemon\\) before rolling it back\\.`));
  const still = await execa('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x5a 1M 64k', uri]);
  t.notRegex(still.stdout, /failed|mismatch/i, 'the export is as the client left it');
  daemon.kill('SIGTERM');
  await daemon;
  // Nothing is left for a replay to write over the client's write.
  t.deepEqual(await dst.recover('tank/vm1'), []);
  t.deepEqual(readFileSync(image).subarray(MiB, MiB + CHUNK), Buffer.alloc(CHUNK, 0x5a));
  t.deepEqual(
    (await dst.listSnapshots('tank/vm1')).map((s) => s.name),
    ['s1', 's2'],
  );
});

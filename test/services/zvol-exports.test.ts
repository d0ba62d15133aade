/** The zvols as an NBD ExportSource (what the daemon hands NbdServer), and the clients file it writes. */
import test from 'ava';
import { makeAppliance } from '../helpers/appliance.js';
import { zvolExports } from '../../src/services/zvol-exports.js';
import { connectedClients, writeNbdClients } from '../../src/services/zvol-clients.js';

const MiB = 1024 * 1024;

test('lists every zvol by its qualified name, opens it as a BlockVolume, and nothing else', async (t) => {
  const { services } = makeAppliance(t);
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/data');
  await services.folders.create('fs:tank/img', { volumeSize: 8 * MiB });
  const exports = zvolExports(services);
  t.deepEqual(await exports.list(), []);
  await services.zvols.create('fs:tank/vm1', { size: 8 * MiB, blockSize: 4096 });
  await services.zvols.setProperty('fs:tank/vm1', 'description', 'build VM');
  t.deepEqual(await exports.list(), [{ name: 'fs:tank/vm1', description: 'zvol fs:tank/vm1, 8388608 bytes: build VM' }], 'a zvol made meanwhile is listed at once');
  const vol = (await exports.open('fs:tank/vm1'))!;
  t.like(vol, { size: 8 * MiB, minBlockSize: 512, preferredBlockSize: 4096, readOnly: false });
  await vol.write(4096, Buffer.alloc(4096, 3), { fua: true });
  t.is((await vol.read(4096, 4096))[100], 3);
  await vol.close();
  for (const name of ['fs:tank/data', 'fs:tank/img', 'fs:tank/none', 'tank/vm1', 'zfs:x/y', 'not a name']) t.is(await exports.open(name), null, name);
  await services.zvols.setProperty('fs:tank/vm1', 'readonly', 'yes');
  const ro = (await exports.open('fs:tank/vm1'))!;
  t.true(ro.readOnly);
  await t.throwsAsync(ro.write(0, Buffer.alloc(512), { fua: false }), { message: 'The export is read-only.' });
  await ro.close();
});

test('the clients file: written by the daemon, read by anyone, empty once its writer is gone', (t) => {
  const { services } = makeAppliance(t);
  t.deepEqual(connectedClients(services.home), []);
  writeNbdClients(services.home, [{ export: 'fs:tank/vm1', client: 'unix', since: '2026-12-06T10:00:00.000Z' }]);
  t.deepEqual(connectedClients(services.home), [{ export: 'fs:tank/vm1', client: 'unix', since: '2026-12-06T10:00:00.000Z' }]);
  writeNbdClients(services.home, []);
  t.deepEqual(connectedClients(services.home), []);
});

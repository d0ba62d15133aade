/**
 * zvol commands through the real CLI: create, show (table and --json with
 * the NBD URI), setup size and property, destroy (asks; refused while NBD
 * clients are attached or a service uses it), bad input each with its own
 * sentence and nothing changed; and zvols with the commands that take a
 * dataset: show/destroy snapshot, auto-sync locally while this process
 * writes (the CLI's snapshot pauses our writes through the control
 * socket), and to a peer bound with local-bind.
 */
import test, { type ExecutionContext } from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fails, ok, Fixture, makeAppliance, type Appliance } from '../peer/_fixture.js';
import { writeNbdClients } from '../../src/services/zvol-clients.js';
import type { BlockVolume } from '../../src/services/nbd/volume.js';

const MiB = 1024 * 1024;

function appliance(t: { teardown(fn: () => unknown): void }, id = 'alpha'): Appliance {
  const f = new Fixture();
  t.teardown(() => f.close());
  return makeAppliance(f, id, { SYNCSH_DRIVERS: 'fs' });
}

const image = (x: Appliance, name: string) => path.join(x.live(name), 'volume.img');
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

test('create, show, setup and destroy a zvol; the JSON has the NBD URI', async (t) => {
  t.timeout(8 * 60_000); // many CLI processes, on a machine shared by five
  const a = appliance(t);
  await ok(a, 'create folder fs:tank');
  t.regex(await ok(a, 'create zvol fs:tank/vm1 --size 10G --block-size 4K'), /Created zvol fs:tank\/vm1 \(10G\); attach it at nbd\+unix:\/\/\/fs:tank\/vm1\?socket=/);
  const shown = JSON.parse(await ok(a, 'show zvol fs:tank/vm1 --json'));
  t.like(shown, { name: 'fs:tank/vm1', size: 10 * 1024 * MiB, blockSize: 4096, written: 0, clients: [], nbd: `nbd+unix:///fs:tank/vm1?socket=${a.home}/run/nbd.sock` });
  t.regex(await ok(a, 'show zvol'), /fs:tank\/vm1\s+10G\s+0B\s+0B\s+1\.00x\s+0\s+nbd\+unix/);
  t.regex(await ok(a, 'setup zvol fs:tank/vm1 size 20G'), /is now 20G/);
  await ok(a, 'setup zvol fs:tank/vm1 property description the build VM');
  await ok(a, 'setup zvol fs:tank/vm1 property readonly yes');
  t.like(JSON.parse(await ok(a, 'show zvol fs:tank/vm1 --json')), { size: 20 * 1024 * MiB, properties: { readonly: true, description: 'the build VM' } });
  t.regex(await ok(a, 'destroy zvol fs:tank/vm1 -y'), /Destroyed zvol fs:tank\/vm1\./);
  t.regex(await ok(a, 'show zvol'), /No zvols/);
  t.deepEqual(
    JSON.parse(await ok(a, 'show folder --json')).map((f: { qualified: string }) => f.qualified),
    ['fs:tank'],
  );
});

test('bad input: each a specific sentence naming the value, and nothing changed', async (t) => {
  t.timeout(8 * 60_000); // many CLI processes, on a machine shared by five
  const a = appliance(t);
  await ok(a, 'create folder fs:tank');
  await ok(a, 'create folder fs:tank/data');
  await ok(a, 'create zvol fs:tank/vm1 --size 1G');
  const before = await ok(a, 'show folder --json');
  t.is(await fails(a, 'create zvol fs:tank/x --size 0'), 'Error: The value of --size must be more than 0 bytes, not "0".');
  t.is(await fails(a, 'create zvol fs:tank/x --size -1'), 'Error: The value of --size must be a positive size such as 10G, not "-1".');
  t.is(await fails(a, 'create zvol fs:tank/x --size 10Q'), 'Error: The value of --size has an unknown unit "Q" in "10Q": use K, M, G, T or P (powers of 1024), or none for bytes.');
  t.is(await fails(a, 'create zvol fs:tank/x --size 100000'), 'Error: The size of zvol fs:tank/x (100000 bytes) is not a multiple of its block size (65536 bytes).');
  t.is(await fails(a, 'create zvol fs:tank/x --size 1G --block-size 3K'), 'Error: The block size of zvol fs:tank/x must be a power of two from 512 to 64K, not 3072 bytes.');
  t.is(await fails(a, 'create zvol fs:tank/x'), 'Error: create zvol needs its size: add --size, e.g. --size 10G.');
  t.is(await fails(a, 'create zvol fs:tank/data --size 1G'), 'Error: The folder fs:tank/data already exists; choose another name for the zvol.');
  t.is(await fails(a, 'create zvol fs:tank/vm1 --size 1G'), 'Error: The volume fs:tank/vm1 already exists; choose another name for the zvol.');
  t.is(await fails(a, 'setup zvol fs:tank/vm1 size 512M'), 'Error: The zvol fs:tank/vm1 is 1073741824 bytes; it can only grow, not shrink to 536870912 bytes.');
  t.is(await fails(a, 'setup zvol fs:tank/vm1 size 1G'), 'Error: The zvol fs:tank/vm1 is already 1073741824 bytes.');
  t.is(await fails(a, 'setup zvol fs:tank/vm1 property readonly maybe'), 'Error: The property readonly of zvol fs:tank/vm1 is yes or no, not "maybe".');
  t.is(await fails(a, 'setup zvol fs:tank/vm1 property colour red'), 'Error: A zvol has no property "colour": use readonly or description (and "size" to grow it).');
  t.is(await fails(a, 'show zvol fs:tank/data'), 'Error: The dataset fs:tank/data is a folder, not a zvol.');
  t.is(await fails(a, 'destroy zvol fs:tank/nope -y'), 'Error: The zvol fs:tank/nope does not exist.');
  t.is(await ok(a, 'show folder --json'), before);
  t.like(JSON.parse(await ok(a, 'show zvol fs:tank/vm1 --json')), { size: 1024 * MiB, properties: { readonly: false } });
});

test('destroy is refused while NBD clients are attached or a service uses the zvol, naming them', async (t) => {
  t.timeout(8 * 60_000); // many CLI processes, on a machine shared by five
  const a = appliance(t);
  await ok(a, 'create folder fs:tank');
  await ok(a, 'create zvol fs:tank/vm1 --size 64M');
  writeNbdClients(a.services.home, [{ export: 'fs:tank/vm1', client: '10.0.0.5:40112', since: new Date('2026-01-02T03:04:05Z') }]);
  t.like(JSON.parse(await ok(a, 'show zvol fs:tank/vm1 --json')), { clients: [{ export: 'fs:tank/vm1', client: '10.0.0.5:40112' }] });
  t.regex(await fails(a, 'destroy zvol fs:tank/vm1 -y'), /The zvol fs:tank\/vm1 has 1 NBD client\(s\) connected \(10\.0\.0\.5:40112 since 2026-01-02T03:04:05\.000Z\); disconnect them first\./);
  // A file left by a daemon that is gone lists nobody.
  writeNbdClients(a.services.home, [{ export: 'fs:tank/vm1', client: 'unix', since: new Date() }], 2 ** 22 + 12345);
  t.deepEqual(JSON.parse(await ok(a, 'show zvol fs:tank/vm1 --json')).clients, []);
  t.regex(await ok(a, 'create auto-sync --from-fs fs:tank/vm1 --to-fs fs:tank/copy -y'), /Created auto-sync:tank-vm1-000/);
  t.is(await fails(a, 'destroy zvol fs:tank/vm1 -y'), 'Error: The zvol fs:tank/vm1 is used by auto-sync:tank-vm1-000; destroy that service first.');
  t.truthy(JSON.parse(await ok(a, 'show zvol fs:tank/vm1 --json')));
});

test('auto-sync of a zvol this process is writing: the CLI pauses the writes for its snapshot; snapshots show and destroy', async (t) => {
  t.timeout(8 * 60_000); // many CLI processes, on a machine shared by five
  const a = appliance(t);
  await ok(a, 'create folder fs:tank');
  await ok(a, 'create zvol fs:tank/vm1 --size 256M');
  const fs = await a.services.storage.usable('fs');
  const vol: BlockVolume = await fs.openVolume!('tank/vm1');
  t.teardown(() => vol.close());
  await vol.write(3 * MiB, randomBytes(2 * MiB), { fua: true });
  await ok(a, 'create auto-sync --from-fs fs:tank/vm1 --to-fs fs:tank/copy -y');
  // Writes go on while the CLI's run snapshots: the served zvol is paused through its control socket.
  let stop = false;
  let writes = 0;
  const writer = (async () => {
    while (!stop) {
      await vol.write(100 * MiB + (writes % 64) * 4096, randomBytes(4096), { fua: false });
      writes++;
      await new Promise((r) => setImmediate(r));
    }
  })();
  t.regex(await ok(a, 'run auto-sync :tank-vm1-000'), /full sync OK/);
  stop = true;
  await writer;
  t.true(writes > 0);
  await vol.flush();
  const run2 = await ok(a, 'run auto-sync :tank-vm1-000');
  t.regex(run2, /OK/);
  t.is(sha(image(a, 'tank/copy')), sha(image(a, 'tank/vm1')), 'the copy is the source once writes stopped');
  const snaps = JSON.parse(await ok(a, 'show snapshot fs:tank/vm1 --json')) as { qualified: string }[];
  t.true(snaps.length >= 1);
  const doomed = snaps[0].qualified;
  if (snaps.length > 1) {
    t.regex(await ok(a, `destroy snapshot ${doomed} -y`), /Destroyed snapshot/);
    t.false((JSON.parse(await ok(a, 'show snapshot fs:tank/vm1 --json')) as { qualified: string }[]).some((s) => s.qualified === doomed));
  }
  // The copy is a zvol too.
  t.like(JSON.parse(await ok(a, 'show zvol fs:tank/copy --json')), { size: 256 * MiB, written: 0 });
});

/** alpha bound to beta with local-bind, each with the fs pool tank */
async function boundPair(t: ExecutionContext) {
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha', { SYNCSH_DRIVERS: 'fs' });
  const b = makeAppliance(f, 'beta', { SYNCSH_DRIVERS: 'fs' });
  await ok(a, 'create folder fs:tank');
  await ok(b, 'create folder fs:tank');
  await ok(a, `setup network local-bind ${b.home}`);
  return { a, b };
}

test('auto-sync of a zvol to a peer bound with local-bind: full, then an incremental of one chunk', async (t) => {
  t.timeout(8 * 60_000); // many CLI processes, on a machine shared by five
  const { a, b } = await boundPair(t);
  await ok(a, 'create zvol fs:tank/vm1 --size 1G');
  const fs = await a.services.storage.usable('fs');
  const vol = await fs.openVolume!('tank/vm1');
  await vol.write(0, randomBytes(4 * MiB), { fua: true });
  await vol.close();
  await ok(a, 'create auto-sync --from-fs fs:tank/vm1 --to-host beta --to-fs fs:tank/vm1 -y');
  t.regex(await ok(a, 'run auto-sync :tank-vm1-000'), /full sync OK/);
  t.is(sha(image(b, 'tank/vm1')), sha(image(a, 'tank/vm1')));
  const vol2 = await fs.openVolume!('tank/vm1');
  await vol2.write(512 * MiB, randomBytes(4096), { fua: true });
  await vol2.close();
  await ok(a, 'run auto-sync :tank-vm1-000');
  t.is(sha(image(b, 'tank/vm1')), sha(image(a, 'tank/vm1')));
  const shown = JSON.parse(await ok(a, 'show auto-sync :tank-vm1-000 --json'));
  const bytes = JSON.stringify(shown).match(/"lastBytes":(\d+)/)?.[1] ?? JSON.stringify(shown).match(/"bytes":(\d+)/)?.[1];
  t.log(`incremental after one 4 KiB write: ${bytes} bytes`);
  t.like(JSON.parse(await ok(b, 'show zvol fs:tank/vm1 --json')), { size: 1024 * MiB });
});

test('export-image and create --from-image through the CLI, the sha256 printed by one checked by the other', async (t) => {
  t.timeout(8 * 60_000);
  const a = appliance(t);
  await ok(a, 'create folder fs:tank');
  await ok(a, 'create zvol fs:tank/vm1 --size 16M');
  const fs = await a.services.storage.usable('fs');
  const vol = await fs.openVolume!('tank/vm1');
  await vol.write(4 * MiB, randomBytes(MiB), { fua: true });
  await vol.close();
  const out = await ok(a, 'setup zvol fs:tank/vm1 export-image vm1.img.gz --compress gzip');
  const hex = /sha256 ([0-9a-f]{64})/.exec(out)?.[1];
  t.truthy(hex, out);
  t.is(await fails(a, 'setup zvol fs:tank/vm1 export-image x.img --compress xz'), 'Error: The value of --compress is gzip (the only compression), not "xz".');
  t.is(await fails(a, `create zvol fs:tank/seed --from-image vm1.img.gz --size 16M --sha256 ${hex}`), 'Error: create zvol --from-image takes its size from the image: leave out --size.');
  t.regex(await fails(a, 'create zvol fs:tank/seed --from-image vm1.img.gz'), /needs the image's checksum: add --sha256 HEX/);
  t.regex(
    await ok(a, `create zvol fs:tank/seed --from-image vm1.img.gz --sha256 ${hex}`),
    /Created zvol fs:tank\/seed \(16M\) from vm1\.img\.gz \(sha256 verified; 16 of 256 chunks hold data; it is the snapshot @export-\d+T\d+Z-[0-9a-f]{6} of the exported zvol/,
  );
  t.is(sha(image(a, 'tank/seed')), sha(image(a, 'tank/vm1')));
});

test('a seeded copy on a peer: the first auto-sync sends only the chunks written since the export; a seed that lies is refused', async (t) => {
  t.timeout(8 * 60_000);
  const { a, b } = await boundPair(t);
  await ok(a, 'create zvol fs:tank/vm1 --size 256M');
  const fs = await a.services.storage.usable('fs');
  let vol = await fs.openVolume!('tank/vm1');
  await vol.write(0, randomBytes(32 * MiB), { fua: true });
  await vol.close();
  const hex = /sha256 ([0-9a-f]{64})/.exec(await ok(a, 'setup zvol fs:tank/vm1 export-image vm1.img'))![1];
  // shipped to the other site
  const aImages = path.join(a.home, 'images');
  const bImages = path.join(b.home, 'images');
  mkdirSync(bImages, { recursive: true });
  for (const name of ['vm1.img', 'vm1.img.seed.json']) copyFileSync(path.join(aImages, name), path.join(bImages, name));
  t.regex(await ok(b, `create zvol fs:tank/vm1 --from-image vm1.img --sha256 ${hex}`), /it is the snapshot @export-/);
  vol = await fs.openVolume!('tank/vm1');
  await vol.write(200 * MiB, randomBytes(4096), { fua: true }); // written since the export
  await vol.close();
  await ok(a, 'create auto-sync --from-fs fs:tank/vm1 --to-host beta --to-fs fs:tank/vm1 -y');
  const run = await ok(a, 'run auto-sync :tank-vm1-000');
  t.notRegex(run, /full sync/);
  const state = JSON.stringify(JSON.parse(await ok(a, 'show auto-sync :tank-vm1-000 --json')));
  const bytes = Number(/"lastBytes":(\d+)/.exec(state)?.[1]);
  t.true(bytes < 2 * 64 * 1024, `the first sync to the seed sent ${bytes} bytes, not the 32 MiB`);
  t.is(sha(image(b, 'tank/vm1')), sha(image(a, 'tank/vm1')));

  // A seed whose chunk names are not the image's: refused, nothing left behind.
  const seed = JSON.parse(readFileSync(path.join(bImages, 'vm1.img.seed.json'), 'utf8'));
  const file = seed.entries.find((e: { path: string }) => e.path === 'volume.img');
  file.blocks[0] = 'e'.repeat(64);
  writeFileSync(path.join(bImages, 'vm1.img.seed.json'), JSON.stringify(seed));
  t.regex(await fails(b, `create zvol fs:tank/other --from-image vm1.img --sha256 ${hex}`), /The zvol fs:tank\/other is not the snapshot @export-\S+ its seed describes: 1 of 4096 chunks differ \(the first at byte 0\)\./);
  t.regex(await fails(b, 'show zvol fs:tank/other'), /does not exist/);
});

/**
 * Seeding from a raw image without a seed file (issue 11), through the CLI:
 * a zvol made `--from-image` from a `dd` image of the source shares no
 * snapshot with it, so the first run compares chunk hashes and sends only
 * the chunks that differ; an image of another disk (more than half of the
 * chunks differ) stops the run before anything is sent, puts the service in
 * maintenance, and `resync` then does the full sync.
 */
import test, { type ExecutionContext } from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fails, ok, Fixture, makeAppliance, type Appliance } from '../peer/_fixture.js';

const MiB = 1024 * 1024;

function appliance(t: ExecutionContext): Appliance {
  const f = new Fixture();
  t.teardown(() => f.close());
  return makeAppliance(f, 'alpha', { SYNCSH_DRIVERS: 'fs' });
}

const image = (x: Appliance, name: string) => path.join(x.live(name), 'volume.img');
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const state = async (x: Appliance, service: string) => JSON.parse(await ok(x, `show auto-sync :${service} --json`)) as unknown;

/** a 64 MiB zvol with 32 MiB of random data written through its writer */
async function sourceZvol(a: Appliance): Promise<void> {
  await ok(a, 'create folder fs:tank');
  await ok(a, 'create zvol fs:tank/vm1 --size 64M');
  const fs = await a.services.storage.usable('fs');
  const vol = await fs.openVolume!('tank/vm1');
  await vol.write(0, randomBytes(32 * MiB), { fua: true });
  await vol.close();
}

/** a raw image file in the appliance's images directory (what `dd` of a disk gives), and its sha256 */
function rawImage(a: Appliance, name: string, from: string | Buffer): string {
  const dir = path.join(a.home, 'images');
  mkdirSync(dir, { recursive: true });
  if (typeof from === 'string') copyFileSync(from, path.join(dir, name));
  else writeFileSync(path.join(dir, name), from);
  return sha(path.join(dir, name));
}

test('a dd image of the source, one region changed since: the first run sends only the chunks that differ', async (t) => {
  t.timeout(8 * 60_000);
  const a = appliance(t);
  await sourceZvol(a);
  const hex = rawImage(a, 'dd.img', image(a, 'tank/vm1'));
  t.regex(await ok(a, `create zvol fs:tank/copy --from-image dd.img --sha256 ${hex}`), /Created zvol fs:tank\/copy \(64M\) from dd\.img/);
  const fs = await a.services.storage.usable('fs');
  const vol = await fs.openVolume!('tank/vm1');
  await vol.write(8 * MiB, randomBytes(MiB), { fua: true }); // changed after the image was taken
  await vol.close();

  await ok(a, 'create auto-sync --from-fs fs:tank/vm1 --to-fs fs:tank/copy -y');
  await ok(a, 'run auto-sync :tank-vm1-000');
  const log = await ok(a, 'show auto-sync :tank-vm1-000 log');
  t.regex(log, /Partial resync: localhost\/tank\/copy shares no snapshot with the source but holds 496 of its 512 chunks; only the other 16 are sent/);
  t.regex(log, /sent 16 of 512 chunks \(1\.\d MB\); the other 496 were on the destination already/);
  const bytes = Number(/"lastBytes":(\d+)/.exec(JSON.stringify(await state(a, 'tank-vm1-000')))?.[1]);
  t.true(bytes < 2 * MiB, `the first sync sent ${bytes} bytes, not the 32 MiB`);
  t.is(sha(image(a, 'tank/copy')), sha(image(a, 'tank/vm1')), 'byte-identical');
  t.notRegex(await ok(a, 'run auto-sync :tank-vm1-000'), /FAILURE/, 'and the chain goes on incrementally');
});

test('an image of another disk: the run stops before sending anything, maintenance says why, and resync does the full sync', async (t) => {
  t.timeout(8 * 60_000);
  const a = appliance(t);
  await sourceZvol(a);
  const other = Buffer.alloc(64 * MiB);
  randomBytes(32 * MiB).copy(other);
  const hex = rawImage(a, 'other.img', other);
  await ok(a, `create zvol fs:tank/copy --from-image other.img --sha256 ${hex}`);
  await ok(a, 'create auto-sync --from-fs fs:tank/vm1 --to-fs fs:tank/copy -y');

  const refusal = await fails(a, 'run auto-sync :tank-vm1-000');
  t.regex(
    refusal,
    /The destination localhost\/tank\/copy shares no snapshot with the source and lacks 512 of the 512 chunks it would be sent: it is not a seed of localhost\/tank\/vm1 \(more than half of the chunks differ\)\. Nothing was sent\. Run 'setup auto-sync :tank-vm1-000 resync'/,
  );
  const json = JSON.stringify(await state(a, 'tank-vm1-000'));
  t.regex(json, /"kind":"not-a-seed"/);
  t.regex(json, /"lastBytes":0\b/);
  t.is(sha(image(a, 'tank/copy')), hex, 'the destination is untouched');
  t.regex(await fails(a, 'run auto-sync :tank-vm1-000'), /is in maintenance: .*not a seed.*Run 'setup auto-sync :tank-vm1-000 resync' to start over with a full sync; the current destination is kept aside/);

  await ok(a, 'setup auto-sync :tank-vm1-000 resync -y');
  t.is(sha(image(a, 'tank/copy')), sha(image(a, 'tank/vm1')), 'the resync made a full copy');
  t.notRegex(JSON.stringify(await state(a, 'tank-vm1-000')), /not-a-seed/, 'out of maintenance');
  const aside = (await (await a.services.storage.usable('fs')).listDatasets('tank')).map((d) => d.name).find((n) => n.startsWith('tank/copy-resync-'));
  t.truthy(aside, 'the old destination is kept aside');
  t.is(sha(image(a, aside!)), hex);
});

/**
 * Seeding images: export a zvol's snapshot as a raw image (sparse, or
 * gzipped) with its sha256; create a zvol from it on another appliance,
 * verified first; bad images, checksums and paths each refused with a
 * sentence and nothing created. The images directory is the only place
 * read or written.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { makeAppliance } from '../helpers/appliance.js';
import { imagesDir } from '../../src/services/zvol-images.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function source(t: Parameters<typeof makeAppliance>[0]) {
  const a = makeAppliance(t, 'alpha');
  await a.services.folders.create('fs:tank');
  await a.services.zvols.create('fs:tank/vm1', { size: 64 * MiB });
  const fs = await a.services.storage.usable('fs');
  const vol = await fs.openVolume!('tank/vm1');
  await vol.write(MiB, randomBytes(3 * MiB), { fua: false });
  await vol.write(40 * MiB, randomBytes(64 * 1024), { fua: true });
  await vol.close();
  return a;
}

test('export raw and gzip images with their sha256, and seed zvols from them on another appliance', async (t) => {
  const a = await source(t);
  const raw = await a.services.zvolImages.exportImage('fs:tank/vm1', 'vm1.img');
  const live = readFileSync(path.join(a.home, 'fs', 'tank', 'vm1', 'volume.img'));
  const img = readFileSync(raw.file);
  t.is(raw.sha256, sha(img));
  t.is(sha(img), sha(live), 'the image is the disk, byte for byte');
  t.true(statSync(raw.file).blocks * 512 < 8 * MiB, 'zeroes stay holes in a raw image');
  const gz = await a.services.zvolImages.exportImage('fs:tank/vm1', 'vm1.img.gz', { compress: 'gzip' });
  t.is(sha(gunzipSync(readFileSync(gz.file))), raw.sha256, 'the checksum is of the raw image, compressed or not');
  const snaps = await a.services.folders.snapshots('fs:tank/vm1');
  t.true(
    snaps.filter((s) => s.name.startsWith('export-')).every((s) => s.held),
    'the exported snapshots are held',
  );
  t.like(a.services.zvolImages.exports()[0], { zvol: 'fs:tank/vm1', sha256: raw.sha256, snapshot: raw.snapshot });

  const b = makeAppliance(t, 'beta');
  await b.services.folders.create('fs:tank');
  mkdirSync(imagesDir(b.services.home), { recursive: true }); // where the administrator puts shipped images
  for (const [file, name] of [
    [raw.file, 'seed.img'],
    [gz.file, 'seed.img.gz'],
  ] as const) {
    writeFileSync(path.join(imagesDir(b.services.home), name), readFileSync(file));
    const target = `fs:tank/${name.replace(/\./g, '-')}`;
    const r = await b.services.zvolImages.createFromImage(target, name, raw.sha256);
    t.like(r, { size: 64 * MiB, chunks: 1024, stored: 49 });
    const copy = readFileSync(path.join(b.home, 'fs', 'tank', target.slice('fs:tank/'.length), 'volume.img'));
    t.is(sha(copy), raw.sha256);
    t.like(await b.services.zvols.one(target), { size: 64 * MiB, written: 49 * 64 * 1024 }, 'the first snapshot rereads only the chunks that hold data');
  }
});

test('bad images, checksums and paths: each refused with a sentence, and nothing is created', async (t) => {
  const a = await source(t);
  const raw = await a.services.zvolImages.exportImage('fs:tank/vm1', 'vm1.img');
  const gz = await a.services.zvolImages.exportImage('fs:tank/vm1', 'vm1.img.gz', { compress: 'gzip' });
  const images = a.services.zvolImages;
  const dir = imagesDir(a.services.home);
  const nothing = async () =>
    t.deepEqual(
      (await a.services.zvols.list()).map((z) => z.name),
      ['fs:tank/vm1'],
    );

  await t.throwsAsync(images.createFromImage('fs:tank/x', 'vm1.img', 'f'.repeat(64)), { message: `The image vm1.img has sha256 ${raw.sha256}, not ${'f'.repeat(64)} as given; nothing was created.` });
  await t.throwsAsync(images.createFromImage('fs:tank/x', 'vm1.img', 'abc'), { message: 'The --sha256 value must be 64 hexadecimal digits, not "abc".' });
  const whole = readFileSync(gz.file);
  writeFileSync(path.join(dir, 'cut.img.gz'), whole.subarray(0, whole.length - 100));
  await t.throwsAsync(images.createFromImage('fs:tank/x', 'cut.img.gz', raw.sha256), { message: /^Cannot read the image cut\.img\.gz: it is not a complete gzip file \(.+\); nothing was created\.$/ });
  const odd = Buffer.concat([readFileSync(raw.file), Buffer.alloc(1000, 1)]);
  writeFileSync(path.join(dir, 'odd.img'), odd);
  await t.throwsAsync(images.createFromImage('fs:tank/x', 'odd.img', sha(odd)), { message: `The image odd.img is ${odd.length} bytes, not a multiple of the block size (65536 bytes); nothing was created.` });
  await t.throwsAsync(images.createFromImage('fs:tank/vm1', 'vm1.img', raw.sha256), { message: 'The volume fs:tank/vm1 already exists; choose another name for the zvol.' });
  await t.throwsAsync(images.createFromImage('fs:tank/x', '../fs/tank/vm1/volume.img', raw.sha256), {
    message: `The image ../fs/tank/vm1/volume.img is outside ${dir}; images are read and written there only (put it there, or give its name).`,
  });
  await t.throwsAsync(images.createFromImage('fs:tank/x', '/etc/passwd', raw.sha256), { message: `The image /etc/passwd is outside ${dir}; images are read and written there only (put it there, or give its name).` });
  symlinkSync('/etc/passwd', path.join(dir, 'sneaky.img'));
  await t.throwsAsync(images.createFromImage('fs:tank/x', 'sneaky.img', raw.sha256), { message: `The image sneaky.img leads outside ${dir} (to /etc/passwd); images are read there only.` });
  await t.throwsAsync(images.createFromImage('fs:tank/x', 'none.img', raw.sha256), { message: `The image none.img does not exist in ${dir}.` });
  await t.throwsAsync(images.exportImage('fs:tank/vm1', 'vm1.img'), { message: `The image vm1.img already exists in ${dir}; remove it or choose another name.` });
  await t.throwsAsync(images.exportImage('fs:tank/vm1', '../../escape.img'), { message: /is outside/ });
  await nothing();
  t.is(await (await a.services.storage.usable('fs')).getDataset('tank/x'), null);
});

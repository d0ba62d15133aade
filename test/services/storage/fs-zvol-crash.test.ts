/**
 * issue 15: a zvol's receive (incremental, or full into a zvol just
 * created) or rollback killed (SIGKILL, another process) at each commit
 * phase and half-way through patching its image: the image is byte for
 * byte the old or the new snapshot once the driver's recover has run, and
 * whatever opens the zvol next (the NBD daemon serving it) finishes the
 * pending commit first, so it never serves a torn image.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Driver } from '../../../src/services/storage/driver.js';
import { createFsDriver } from '../../../src/services/storage/fs/index.js';
import { PHASES } from '../../../src/services/storage/fs/journal.js';
import { VOLUME_FILE } from '../../../src/services/storage/fs/layout.js';
import { driverElsewhere, RECEIVE_OPTS } from '../../helpers/fs-elsewhere.js';
import { tempDir } from '../../helpers/fs-tree.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;
const SIZE = 8 * MiB;
const opts = { force: false, recursive: false };

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A zvol with s1 (random everywhere) and s2 (a third of its chunks rewritten, some zeroed, a 4 KiB write); both streams and both images' hashes. */
async function source(dir: string) {
  const a = createFsDriver(path.join(dir, 'src-root'));
  await a.createDataset('tank');
  await a.createDataset('tank/vol', { volumeSize: SIZE, zvol: { blockSize: 4 * KiB } });
  const image = path.join(dir, 'src-root', 'tank', 'vol', VOLUME_FILE);
  const v = await a.openVolume!('tank/vol');
  await v.write(0, randomBytes(SIZE), { fua: true });
  await v.close();
  await a.createSnapshot('tank/vol', 's1', { recursive: false });
  const old = sha(readFileSync(image));
  const w = await a.openVolume!('tank/vol');
  for (let c = 1; c < SIZE / CHUNK; c += 3) await w.write(c * CHUNK, randomBytes(CHUNK), { fua: false });
  await w.writeZeroes(40 * CHUNK, 4 * CHUNK, { fua: false, noHole: false });
  await w.write(100 * CHUNK + 512, randomBytes(4 * KiB), { fua: true });
  await w.close();
  await a.createSnapshot('tank/vol', 's2', { recursive: false });
  const fresh = sha(readFileSync(image));
  return {
    full: await collect(a.send('tank/vol', 's1', { recursive: false })),
    delta: await collect(a.send('tank/vol', 's2', { from: 's1', recursive: false })),
    old,
    fresh,
  };
}

async function destination(dir: string, full: Buffer): Promise<{ root: string; b: Driver; image: string }> {
  const root = path.join(dir, 'dst-root');
  const b = createFsDriver(root);
  await b.createDataset('tank');
  await b.receive('tank/vol', Readable.from([full]), opts);
  return { root, b, image: path.join(root, 'tank', 'vol', VOLUME_FILE) };
}

/** where to kill a commit: before each phase, and half-way through the patch of the image */
const KILLS = [...PHASES.map((p) => `fs.commit.${p}`), 'fs.zvol.patch.half'];

/** what the image is now: 'old', 'new' or 'torn' */
const state = (image: string, src: { old: string; fresh: string }) => {
  const h = sha(readFileSync(image));
  return h === src.old ? 'old' : h === src.fresh ? 'new' : 'torn';
};

test('a zvol receive killed at each commit phase and mid-patch is the old or the new snapshot after recover', async (t) => {
  t.timeout(5 * 60_000);
  const dir = tempDir(t, 'syncsh-zvol-crash-');
  const src = await source(dir);
  const deltaFile = path.join(dir, 'delta.stream');
  writeFileSync(deltaFile, src.delta);
  const seen = new Set<string>();
  for (const [i, fp] of KILLS.entries()) {
    const { b, root, image } = await destination(path.join(dir, `rx-${i}`), src.full);
    t.is(state(image, src), 'old');
    const child = await driverElsewhere(root, `await driver.receive('tank/vol', createReadStream(${JSON.stringify(deltaFile)}), ${RECEIVE_OPTS});`, { SYNCSH_FAILPOINTS: fp });
    t.is(child.signal, 'SIGKILL', `${fp}: ${child.stderr}`);
    seen.add(state(image, src));
    t.regex((await b.recover('tank/vol')).join('\n'), /Finished an interrupted commit: Received tank\/vol@s2/, fp);
    t.is(state(image, src), 'new', `killed at ${fp}, then recovered`);
    t.false(await b.changedSince('tank/vol', 's2'), fp);
    t.deepEqual(
      (await b.listSnapshots('tank/vol')).map((s) => s.name),
      ['s1', 's2'],
    );
    t.deepEqual(await b.recover('tank/vol'), [], `${fp}: nothing left to recover`);
  }
  t.true(seen.has('torn'), 'the mid-patch kill did stop half-way through the image');
});

test('a full receive into a zvol made empty beforehand (create zvol, no snapshot) killed mid-commit is all zero or the snapshot after recover', async (t) => {
  t.timeout(5 * 60_000);
  const dir = tempDir(t, 'syncsh-zvol-crash-');
  const src = await source(dir);
  const fullFile = path.join(dir, 'full.stream');
  writeFileSync(fullFile, src.full);
  for (const [i, fp] of KILLS.entries()) {
    const root = path.join(dir, `empty-${i}`);
    const b = createFsDriver(root);
    await b.createDataset('tank');
    await b.createDataset('tank/vol', { volumeSize: SIZE, zvol: { blockSize: 4 * KiB } });
    const image = path.join(root, 'tank', 'vol', VOLUME_FILE);
    const zero = sha(Buffer.alloc(SIZE));
    t.is(sha(readFileSync(image)), zero);
    const child = await driverElsewhere(root, `await driver.receive('tank/vol', createReadStream(${JSON.stringify(fullFile)}), ${RECEIVE_OPTS});`, { SYNCSH_FAILPOINTS: fp });
    t.is(child.signal, 'SIGKILL', `${fp}: ${child.stderr}`);
    t.regex((await b.recover('tank/vol')).join('\n'), /Finished an interrupted commit: Received tank\/vol@s1/, fp);
    t.is(sha(readFileSync(image)), src.old, `full receive killed at ${fp}, then recovered`);
    t.false(await b.changedSince('tank/vol', 's1'), fp);
  }
});

test('a zvol rollback killed at each commit phase and mid-patch is the old or the new snapshot after recover', async (t) => {
  t.timeout(5 * 60_000);
  const dir = tempDir(t, 'syncsh-zvol-crash-');
  const src = await source(dir);
  for (const [i, fp] of KILLS.entries()) {
    const { b, root, image } = await destination(path.join(dir, `rb-${i}`), src.full);
    await b.receive('tank/vol', Readable.from([src.delta]), opts);
    t.is(state(image, src), 'new');
    const child = await driverElsewhere(root, `await driver.rollback('tank/vol', 's1');`, { SYNCSH_FAILPOINTS: fp });
    t.is(child.signal, 'SIGKILL', `${fp}: ${child.stderr}`);
    t.regex((await b.recover('tank/vol')).join('\n'), /Finished an interrupted commit: Rolled back to tank\/vol@s1/, fp);
    t.is(state(image, src), 'old', `rollback killed at ${fp}, then recovered`);
    t.false(await b.changedSince('tank/vol', 's1'), fp);
    t.deepEqual(await b.recover('tank/vol'), [], `${fp}: nothing left to recover`);
  }
});

test('a zvol opened for serving after a receive was killed mid-patch finishes that commit first: its readers see the new snapshot, never a torn image', async (t) => {
  const dir = tempDir(t, 'syncsh-zvol-crash-');
  const src = await source(dir);
  const deltaFile = path.join(dir, 'delta.stream');
  writeFileSync(deltaFile, src.delta);
  const { root, image } = await destination(path.join(dir, 'serve'), src.full);
  const child = await driverElsewhere(root, `await driver.receive('tank/vol', createReadStream(${JSON.stringify(deltaFile)}), ${RECEIVE_OPTS});`, { SYNCSH_FAILPOINTS: 'fs.zvol.patch.half' });
  t.is(child.signal, 'SIGKILL', child.stderr);
  t.is(state(image, src), 'torn');
  // As the daemon does for an NBD client: no recover first.
  const d = createFsDriver(root);
  const v = await d.openVolume!('tank/vol');
  t.teardown(() => v.close());
  t.is(sha(await v.read(0, SIZE)), src.fresh);
  t.deepEqual(
    (await d.listSnapshots('tank/vol')).map((s) => s.name),
    ['s1', 's2'],
  );
  // A write now lands on the new snapshot and is not undone by a later replay.
  await v.write(0, Buffer.alloc(4 * KiB, 7), { fua: true });
  await v.close();
  t.deepEqual(await d.recover('tank/vol'), []);
  t.deepEqual(readFileSync(image).subarray(0, 4 * KiB), Buffer.alloc(4 * KiB, 7));
});

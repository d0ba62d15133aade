/**
 * Resumable fs transfers (issue 13): a receive cut short keeps the chunks
 * it verified (partial.ts), the receiver says which chunks it holds
 * (negotiate.ts), and the next send carries only the rest; kept chunks that
 * are never used are reclaimed.
 */
import test from 'ava';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createFsDriver } from '../../../src/services/storage/fs/index.js';
import { Layout } from '../../../src/services/storage/fs/layout.js';
import { countHeld, isSeed } from '../../../src/services/storage/fs/negotiate.js';
import { diffTrees, readTree, tempDir, writeTree } from '../../helpers/fs-tree.js';
import { driverElsewhere, RECEIVE_OPTS } from '../../helpers/fs-elsewhere.js';

const opts = { force: false, recursive: false };

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

async function until(what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function pair(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t);
  const srcRoot = path.join(dir, 'a');
  const dstRoot = path.join(dir, 'b');
  return { a: createFsDriver(srcRoot), b: createFsDriver(dstRoot), dstRoot, layout: new Layout(dstRoot), srcLive: path.join(srcRoot, 'tank', 'src'), dstLive: path.join(dstRoot, 'tank', 'dst') };
}

/** bytes of the kept packs that are sealed (what a cut cannot take away) */
function keptBytes(layout: Layout, dataset: string): number {
  if (!existsSync(layout.partialFile(dataset))) return 0;
  const { packs } = JSON.parse(readFileSync(layout.partialFile(dataset), 'utf8')) as { packs: string[] };
  const dir = layout.blocksDir(dataset);
  return packs.filter((id) => existsSync(path.join(dir, `${id}.idx`))).reduce((n, id) => n + statSync(path.join(dir, `${id}.pack`)).size, 0);
}

function packIds(layout: Layout, dataset: string): string[] {
  return readdirSync(layout.blocksDir(dataset))
    .filter((n) => n.endsWith('.idx'))
    .map((n) => n.slice(0, -4));
}

test('a full receive killed (SIGKILL) halfway keeps what it verified; the next send carries only the rest, byte-identical', async (t) => {
  const { a, b, dstRoot, layout, srcLive, dstLive } = pair(t);
  await a.createDataset('tank/src', { parents: true });
  await b.createDataset('tank');
  await writeTree(srcLive, { 'big.bin': randomBytes(96 << 20), 'small.txt': 'small\n' });
  await a.createSnapshot('tank/src', 's1', { recursive: false });
  const total = (await collect(a.send('tank/src', 's1', { recursive: false }))).length;

  // seal every 8 MiB, however fast it goes
  const child = driverElsewhere(dstRoot, `await driver.receive('tank/dst', process.stdin, ${RECEIVE_OPTS});`, { SYNCSH_FS_SEAL_INTERVAL_MS: '0' });
  const stream = a.send('tank/src', 's1', { recursive: false });
  stream.pipe(child.stdin!);
  child.stdin!.on('error', () => undefined);
  await until('half of the data to be kept on the receiver', () => keptBytes(layout, 'tank/dst') >= total / 2);
  child.kill('SIGKILL');
  await child;
  stream.destroy();
  t.is(await b.getDataset('tank/dst'), null, 'nothing was created');

  const offer = await a.offerChunks!('tank/src', 's1', { recursive: false });
  const answer = await b.heldChunks!('tank/dst', offer);
  const { held, offered } = countHeld(answer, offer);
  t.is(offered, 97, '96 chunks of the big file and the small one');
  t.true(held >= 48, `the receiver holds ${held} chunks`);
  const rest = await collect(a.send('tank/src', 's1', { recursive: false, held: answer }));
  t.true(rest.length <= 0.55 * total, `sent ${rest.length} of ${total} bytes`);
  await b.receive('tank/dst', Readable.from([rest]), opts);
  t.deepEqual(diffTrees(await readTree(srcLive), await readTree(dstLive)), []);
  t.false(existsSync(layout.partialFile('tank/dst')), 'the kept chunks are part of the snapshot now');
  t.deepEqual(await b.recover('tank/dst'), [], 'nothing left to sweep');
});

test('chunks kept from a transfer that is never resumed are reclaimed by the next receive that completes', async (t) => {
  const { a, b, layout, srcLive, dstLive } = pair(t);
  await a.createDataset('tank/src', { parents: true });
  await b.createDataset('tank');
  await writeTree(srcLive, { 'f.txt': 'one\n' });
  await a.createSnapshot('tank/src', 's1', { recursive: false });
  await b.receive('tank/dst', a.send('tank/src', 's1', { recursive: false }), opts);
  const before = packIds(layout, 'tank/dst');

  // A transfer cut short: its verified chunks stay, listed as kept.
  writeFileSync(path.join(srcLive, 'big.bin'), randomBytes(40 << 20));
  await a.createSnapshot('tank/src', 's2', { recursive: false });
  const delta = await collect(a.send('tank/src', 's2', { from: 's1', recursive: false }));
  await t.throwsAsync(b.receive('tank/dst', Readable.from([delta.subarray(0, delta.length - (4 << 20))]), opts), { message: /truncated.*Nothing was changed on fs dataset tank\/dst\./ });
  const kept = packIds(layout, 'tank/dst').filter((id) => !before.includes(id));
  t.true(kept.length > 0 && keptBytes(layout, 'tank/dst') >= 32 << 20, 'the verified chunks are kept');
  t.deepEqual(
    (await b.listSnapshots('tank/dst')).map((s) => s.name),
    ['s1'],
  );
  t.regex((await b.recover('tank/dst')).join(' '), /^$/, 'a recover within the grace leaves them');
  t.true(kept.every((id) => packIds(layout, 'tank/dst').includes(id)));

  // Something else is sent instead and completes: the kept chunks it did not use go.
  await a.destroySnapshot('tank/src', 's2', { recursive: false });
  writeFileSync(path.join(srcLive, 'big.bin'), randomBytes(1 << 20));
  await a.createSnapshot('tank/src', 's3', { recursive: false });
  const offer = await a.offerChunks!('tank/src', 's3', { from: 's1', recursive: false });
  t.is(countHeld(await b.heldChunks!('tank/dst', offer), offer).held, 0);
  await b.receive('tank/dst', a.send('tank/src', 's3', { from: 's1', recursive: false }), opts);
  t.deepEqual(diffTrees(await readTree(srcLive), await readTree(dstLive)), []);
  t.false(existsSync(layout.partialFile('tank/dst')));
  t.deepEqual(
    packIds(layout, 'tank/dst').filter((id) => kept.includes(id)),
    [],
    'no kept pack is left',
  );
});

test.serial('kept chunks past their grace are reclaimed by recover, also of a dataset that was never created', async (t) => {
  const { a, b, layout, srcLive } = pair(t);
  await a.createDataset('tank/src', { parents: true });
  await b.createDataset('tank');
  await writeTree(srcLive, { 'big.bin': randomBytes(40 << 20) });
  await a.createSnapshot('tank/src', 's1', { recursive: false });
  const full = await collect(a.send('tank/src', 's1', { recursive: false }));
  await t.throwsAsync(b.receive('tank/dst', Readable.from([full.subarray(0, full.length - (4 << 20))]), opts), { message: /truncated/ });
  t.true(keptBytes(layout, 'tank/dst') >= 32 << 20);
  t.regex((await b.recover('tank/dst')).join(' '), /Kept 3\d\.\d MB of chunks an interrupted receive into tank\/dst verified, for the next run\./);
  process.env.SYNCSH_FS_PARTIAL_GRACE_S = '0';
  t.teardown(() => delete process.env.SYNCSH_FS_PARTIAL_GRACE_S);
  const offer = await a.offerChunks!('tank/src', 's1', { recursive: false });
  t.is(countHeld(await b.heldChunks!('tank/dst', offer), offer).held, 0, 'past the grace nothing is offered as held');
  t.deepEqual(await b.recover('tank/dst'), ['Removed the leftovers of tank/dst, which was never completely created.']);
  t.false(existsSync(layout.datasetMeta('tank/dst')));
});

test('a malformed chunk offer, or an answer that does not fit the offer, is refused with a sentence', async (t) => {
  const { a, b, srcLive } = pair(t);
  await a.createDataset('tank/src', { parents: true });
  await b.createDataset('tank');
  await writeTree(srcLive, { 'f.txt': 'one\n' });
  await a.createSnapshot('tank/src', 's1', { recursive: false });
  await t.throwsAsync(b.heldChunks!('tank/dst', { datasets: [{ rel: '', chunks: 'xyz' }] }), {
    message: 'The chunk offer for tank/dst is malformed: it must be sha256 names (64 lowercase hex digits each) back to back.',
  });
  await t.throwsAsync(b.heldChunks!('tank/dst', { datasets: [{ rel: '../x', chunks: '' }] }), { message: /tank\/dst\/\.\.\/x/ });
  await t.throwsAsync(b.heldChunks!('tank/dst', null as never), { message: 'The chunk offer for tank/dst is malformed: it has no list of datasets.' });
  await t.throwsAsync(collect(a.send('tank/src', 's1', { recursive: false, held: { datasets: [{ rel: '', held: 'AAAA' }] } })), {
    message: "The receiver's answer about the chunks of tank/src@s1 covers 24 chunks, but 1 were offered; the snapshot or its base changed since the offer.",
  });
});

test('a destination without a common snapshot is a seed when it holds at least half of the chunks it would be sent', (t) => {
  const table: [number, number, boolean][] = [
    [0, 0, true], // nothing to send: nothing can differ
    [512, 512, true],
    [512, 496, true],
    [512, 256, true],
    [512, 255, false],
    [512, 0, false],
    [1, 0, false],
  ];
  for (const [offered, held, seed] of table) t.is(isSeed({ offered, held }), seed, `${held} of ${offered}`);
});

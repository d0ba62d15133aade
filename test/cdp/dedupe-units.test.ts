/**
 * Dedupe-aware transfer, one module at a time: how a write is planned into
 * data and copy pieces (table), the DEDUP frame round-trip, and a master's
 * link talking to a real receiver over in-process streams into image files:
 * a repeated write crosses as references; a stale reference is refused by
 * the receiver's hash check (MISS), the write is sent whole, later frames
 * wait behind it, and the image is right.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { BLOCK, PeerBlocks, runHashOf, sha256, type Piece } from '../../src/services/cdp/dedupe.js';
import { encode, frames, FrameType, type Frame, type MirrorHello } from '../../src/services/cdp/frames.js';
import { receiveMirror } from '../../src/services/cdp/receiver.js';
import { OWNED, TargetLink } from '../../src/services/cdp/target-link.js';
import { BufferPool } from '../../src/services/nbd/buffer-pool.js';
import type { MirrorStore } from '../../src/services/cdp/store.js';
import type { MirrorConfig } from '../../src/services/cdp/model.js';
import { FileVolume } from '../../src/services/nbd/file-volume.js';

const K = 1024;
const shape = (pieces: Piece[] | null) => pieces?.map((p) => ('data' in p ? `data ${p.length}` : `copy ${p.length} from ${p.source}`)) ?? null;

test('plan: what crosses as a reference and what as data', (t) => {
  const a = randomBytes(64 * K);
  const cases: { name: string; before: [number, Buffer][]; write: [number, Buffer]; want: string[] | null }[] = [
    { name: 'nothing known', before: [], write: [0, a], want: null },
    { name: 'the same 64K elsewhere: one run', before: [[0, a]], write: [1024 * K, a], want: ['copy 65536 from 0'] },
    { name: 'unaligned: whole blocks copied, the edges as data', before: [[0, a]], write: [1024 * K - 512, Buffer.concat([Buffer.alloc(512, 7), a, Buffer.alloc(100, 8)])], want: ['data 512', 'copy 65536 from 0', 'data 100'] },
    {
      name: 'a block in the middle changed: two runs around its data',
      before: [[0, a]],
      write: [512 * K, Buffer.concat([a.subarray(0, 8 * K), randomBytes(4 * K), a.subarray(12 * K)])],
      want: ['copy 8192 from 0', 'data 4096', 'copy 53248 from 12288'],
    },
    { name: 'a source the write itself overwrites is not used (block 1), one it leaves is (block 0)', before: [[0, a.subarray(0, 8 * K)]], write: [4 * K, a.subarray(0, 8 * K)], want: ['copy 4096 from 0', 'data 4096'] },
    {
      name: 'overwritten since: forgotten',
      before: [
        [0, a],
        [0, randomBytes(64 * K)],
      ],
      write: [128 * K, a],
      want: null,
    },
    {
      name: 'zeroed since (ZERO frame): forgotten',
      before: [
        [0, a],
        [-1, Buffer.alloc(0)],
      ],
      write: [128 * K, a],
      want: null,
    },
  ];
  for (const c of cases) {
    const k = new PeerBlocks();
    for (const [at, data] of c.before) {
      if (at < 0) k.forget(0, 1 << 30);
      else k.plan(at, data);
    }
    t.deepEqual(shape(k.plan(...c.write)), c.want, c.name);
  }
});

test('plan: the knowledge stays bounded, the oldest forgotten first', (t) => {
  const k = new PeerBlocks(16);
  const first = randomBytes(16 * BLOCK);
  k.plan(0, first);
  k.plan(64 * BLOCK, randomBytes(8 * BLOCK));
  t.is(k.size, 16);
  // blocks 0..7 were pushed out, 8..15 are still known
  t.deepEqual(shape(k.plan(1000 * BLOCK, first)), ['data 32768', 'copy 32768 from 32768']);
});

test('saved and loaded: the knowledge outlives the engine, without the blocks the target may not hold; a damaged file is no knowledge', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'syncsh-known-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'beta.known');
  const a = randomBytes(16 * K);
  const known = new PeerBlocks();
  known.plan(0, a); // blocks 0..3
  known.save(file);
  t.deepEqual(shape(PeerBlocks.load(file, true, () => true).plan(1024 * K, a)), ['copy 16384 from 0']);
  // block 1's chunk dirty: not trusted, so the run splits around it
  t.deepEqual(shape(PeerBlocks.load(file, true, (b) => b !== 1).plan(1024 * K, a)), ['copy 4096 from 0', 'data 4096', 'copy 8192 from 8192']);
  t.is(PeerBlocks.load(file, false, () => true).size, 0, 'dedupe off: nothing loaded');
  t.is(PeerBlocks.load(path.join(dir, 'none'), true, () => true).size, 0);
  writeFileSync(file, Buffer.concat([readFileSync(file), Buffer.from('xyz')]));
  t.is(PeerBlocks.load(file, true, () => true).size, 0, 'a damaged file is ignored');
  // saved every N ms only while it changes
  const later = new PeerBlocks();
  later.plan(0, a);
  later.save(file, 10_000, 20_000);
  t.is(PeerBlocks.load(file, true, () => true).size, 4);
  later.plan(64 * K, randomBytes(4 * K));
  later.save(file, 10_000, 25_000);
  t.is(PeerBlocks.load(file, true, () => true).size, 4, 'not yet: saved 5 s ago');
  later.save(file, 10_000, 30_000);
  t.is(PeerBlocks.load(file, true, () => true).size, 5);
});

test('DEDUP and MISS frames round-trip', async (t) => {
  const list: Frame[] = [
    {
      type: FrameType.DEDUP,
      seq: 7,
      offset: 2 ** 33,
      pieces: [
        { length: 3, data: Buffer.from('abc') },
        { length: 8192, source: 2 ** 32, hash: sha256(Buffer.from('x')) },
      ],
    },
    { type: FrameType.MISS, seq: 7 },
  ];
  const s = new PassThrough();
  s.end(Buffer.concat(list.flatMap(encode)));
  const out: Frame[] = [];
  for await (const f of frames(s)) out.push(f);
  t.deepEqual(out, list);
});

const hello: MirrorHello = { name: 'tank-vm1-000', createdAt: '2026-12-06T00:00:00.000Z', epoch: 1, role: 'master', from: 'alpha', zvol: 'fs:tank/vm1', size: 16 * 1024 * K };
const slave: MirrorConfig = { name: hello.name, zvol: hello.zvol, size: hello.size, mode: 'sync', role: 'slave', epoch: 1, master: { host: 'alpha', zvol: 'fs:tank/vm1' }, targets: [], description: '', createdAt: hello.createdAt };

async function linkToReceiver(t: { teardown(f: () => unknown): void }) {
  const dir = mkdtempSync(path.join(tmpdir(), 'cdp-dedupe-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const img = path.join(dir, 'target.img');
  writeFileSync(img, '');
  truncateSync(img, hello.size);
  const toTarget = new PassThrough();
  const toMaster = new PassThrough();
  const received = receiveMirror({ store: { get: () => slave } as unknown as MirrorStore, open: () => FileVolume.open(img) }, 'alpha', toTarget, toMaster);
  const link = await TargetLink.open({ input: toMaster, output: toTarget, close: () => toTarget.end() }, hello);
  t.teardown(async () => {
    link.close();
    await received;
  });
  let seq = 0;
  const write = (offset: number, data: Buffer) => link.send({ type: FrameType.WRITE, seq: ++seq, offset, data }, data.length);
  return { img, link, write };
}

test('a link and a receiver: a repeated write crosses as references, the image as written', async (t) => {
  const { img, link, write } = await linkToReceiver(t);
  const data = randomBytes(1024 * K);
  await write(0, data);
  const afterFirst = link.known.wireBytes;
  await write(4096 * K, data);
  const second = link.known.wireBytes - afterFirst;
  t.true(second < 200, `the second write took ${second} bytes on the wire`);
  t.is(link.known.dedupedBytes, data.length);
  const got = readFileSync(img);
  t.true(got.subarray(4096 * K, 5120 * K).equals(data));
});

test('a stale reference: the receiver hashes the source, answers MISS, the write comes whole (even when the client reused its buffer); frames behind it wait and keep their order', async (t) => {
  const { img, link, write } = await linkToReceiver(t);
  const data = randomBytes(256 * K);
  await write(0, data);
  // behind the mirror's back (as a crash that lost the write would): the source no longer holds it
  const fv = await FileVolume.open(img);
  await fv.write(64 * K, randomBytes(4 * K), { fua: true });
  await fv.close();
  const later = randomBytes(8 * K);
  // sent before the MISS can come back: it overwrites part of the missed write, so it must be applied after it
  const sent = Buffer.from(data);
  const [a, b] = [write(1024 * K, sent), write(1024 * K + 128 * K, later)];
  // the NBD server's buffer pool reuses a write's buffer once it returned (async mode: before the MISS comes back)
  sent.fill(0);
  await Promise.all([a, b]);
  t.is(link.known.misses, 1);
  const want = Buffer.from(data);
  later.copy(want, 128 * K);
  const got = readFileSync(img);
  t.true(got.subarray(1024 * K, 1280 * K).equals(want), 'the target holds the write and then the later one');
  t.true(runHashOf(got.subarray(1024 * K, 1280 * K)).equals(runHashOf(want)));
});

test('a pooled NBD buffer lent to the link: reused by the pool only once the frame is done with it, so a MISS refill sends what the client wrote', async (t) => {
  const { img, link } = await linkToReceiver(t);
  const pool = new BufferPool();
  const data = randomBytes(256 * K);
  await link.send({ type: FrameType.WRITE, seq: 1, offset: 0, data }, data.length, OWNED);
  // behind the mirror's back: the source of the references no longer holds it (a MISS comes)
  const fv = await FileVolume.open(img);
  await fv.write(64 * K, randomBytes(4 * K), { fua: true });
  await fv.close();
  // as transmission.ts does: the payload in a pooled lease, lent to the link, released when the write returned
  const lease = pool.acquire(data.length);
  data.copy(lease.buf);
  const acked = link.send({ type: FrameType.WRITE, seq: 2, offset: 1024 * K, data: lease.buf }, data.length, lease.hold);
  lease.release();
  // the next requests' payloads: never the lent buffer while the DEDUP may still need it
  const next = pool.acquire(data.length);
  t.not(next.buf.buffer, lease.buf.buffer, 'the pool handed out a buffer the link still holds');
  next.buf.fill(0);
  await acked;
  t.is(link.known.misses, 1);
  t.true(
    readFileSync(img)
      .subarray(1024 * K, 1280 * K)
      .equals(data),
    'the refill carried what the client wrote',
  );
  // acknowledged (and the refill sent): back in the pool
  t.is(pool.acquire(data.length).buf.buffer, lease.buf.buffer);
  next.release();
});

test('a lent buffer of a plain WRITE goes back once written to the stream; a link gone down gives back what it held', async (t) => {
  const { link } = await linkToReceiver(t);
  const pool = new BufferPool();
  const lease = pool.acquire(64 * K);
  lease.buf.fill(5);
  const p = link.send({ type: FrameType.WRITE, seq: 1, offset: 0, data: lease.buf }, lease.buf.length, lease.hold);
  lease.release();
  t.not(pool.acquire(64 * K).buf.buffer, lease.buf.buffer, 'held until the frame went out');
  await p;
  t.is(pool.acquire(64 * K).buf.buffer, lease.buf.buffer, 'written: the pool has it again');
  const held = pool.acquire(64 * K);
  const lost = link.send({ type: FrameType.WRITE, seq: 2, offset: 0, data: held.buf }, held.buf.length, held.hold);
  held.release();
  link.close();
  await t.throwsAsync(lost);
  t.is(pool.acquire(64 * K).buf.buffer, held.buf.buffer, 'the link went down: nothing holds it');
});

test('a master that asks per frame (hello.applied): APPLIED only for the frames that ask, and it covers those before; an older master gets one for every frame', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cdp-tell-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const img = path.join(dir, 'target.img');
  writeFileSync(img, '');
  truncateSync(img, hello.size);
  const round = async (h: MirrorHello) => {
    const toTarget = new PassThrough();
    const toMaster = new PassThrough();
    const received = receiveMirror({ store: { get: () => slave } as unknown as MirrorStore, open: () => FileVolume.open(img) }, 'alpha', toTarget, toMaster);
    const got: Frame[] = [];
    const reading = (async () => {
      for await (const f of frames(toMaster)) got.push(f);
    })();
    const put = (f: Frame) => toTarget.write(Buffer.concat(encode(f)));
    put({ type: FrameType.HELLO, hello: h });
    put({ type: FrameType.WRITE, seq: 1, offset: 0, data: Buffer.alloc(4 * K, 1) });
    await new Promise((r) => setTimeout(r, 100));
    put({ type: FrameType.ZERO, seq: 2, offset: 0, length: 4 * K, tell: true });
    await new Promise((r) => setTimeout(r, 100));
    toTarget.end();
    await received;
    await reading;
    return got.filter((f) => f.type === FrameType.APPLIED).map((f) => (f as { seq: number }).seq);
  };
  t.deepEqual(await round({ ...hello, applied: 'asked' }), [2]);
  t.deepEqual(await round(hello), [1, 2]);
  const s = new PassThrough();
  s.end(Buffer.concat(encode({ type: FrameType.WRITE, seq: 3, offset: 8, data: Buffer.from('x'), tell: true })));
  for await (const f of frames(s)) t.deepEqual(f, { type: FrameType.WRITE, seq: 3, offset: 8, data: Buffer.from('x'), tell: true });
});

test('frames joined into reused buffers (the receiver): every frame is whole and right when it is yielded, the stream cut in 64 KiB reads at any place', async (t) => {
  const list: Frame[] = [];
  for (let i = 0; i < 6; i++) list.push({ type: FrameType.WRITE, seq: i + 1, offset: i * 4096, data: randomBytes([1024 * K, 300 * K, 100, 2048 * K, 64 * K, 1024 * K + 7][i]) });
  const wire = Buffer.concat(list.flatMap(encode));
  const s = new PassThrough();
  const reading = (async () => {
    let i = 0;
    for await (const f of frames(s, true)) {
      t.deepEqual(f, list[i], `frame ${i}`);
      i++;
    }
    return i;
  })();
  for (let at = 0; at < wire.length; at += 64 * K - 3) {
    s.write(wire.subarray(at, Math.min(wire.length, at + 64 * K - 3)));
    await new Promise((r) => setImmediate(r));
  }
  s.end();
  t.is(await reading, list.length);
});

/**
 * The pure parts of auto-cdp: the mirror frames round-trip (and a cut or
 * oversize stream is an error), the resync set, chunk-range locks order
 * overlapping holders, and the receiver's HELLO decision as a table.
 */
import test from 'ava';
import { PassThrough } from 'node:stream';
import { encode, frames, FrameType, MAX_FRAME, type Frame, type MirrorHello } from '../../src/services/cdp/frames.js';
import { ResyncSet } from '../../src/services/cdp/resync-set.js';
import { RangeLocks } from '../../src/services/cdp/range-locks.js';
import { refuseHello } from '../../src/services/cdp/receiver.js';
import type { MirrorConfig } from '../../src/services/cdp/model.js';

async function roundTrip(list: Frame[], split = 7): Promise<Frame[]> {
  const s = new PassThrough();
  const bytes = Buffer.concat(list.flatMap(encode));
  for (let i = 0; i < bytes.length; i += split) s.write(bytes.subarray(i, i + split));
  s.end();
  const out: Frame[] = [];
  for await (const f of frames(s)) out.push(f);
  return out;
}

const hello: MirrorHello = { name: 'tank-vm1-000', createdAt: '2026-12-06T00:00:00.000Z', epoch: 3, role: 'master', from: 'alpha', zvol: 'fs:tank/vm1', size: 1 << 26 };

test('frames round-trip, split anywhere', async (t) => {
  const list: Frame[] = [
    { type: FrameType.HELLO, hello },
    { type: FrameType.WELCOME, epoch: 3 },
    { type: FrameType.WRITE, seq: 2 ** 40, offset: 2 ** 41 + 512, data: Buffer.alloc(70_000, 0x5a) },
    { type: FrameType.ZERO, seq: 5, offset: 0, length: 2 ** 30 },
    { type: FrameType.ACK, seq: 9 },
    { type: FrameType.HASH_REQUEST, seq: 10, offset: 65536, count: 256 },
    { type: FrameType.HASHES, seq: 10, hashes: [Buffer.alloc(32, 1), Buffer.alloc(32, 2)] },
    { type: FrameType.ERROR, message: 'no such mirror' },
    { type: FrameType.FWD_WRITE, id: 7, offset: 4096, data: Buffer.alloc(4096, 0x33) },
    { type: FrameType.FWD_ZERO, id: 8, offset: 2 ** 33, length: 65536 },
    { type: FrameType.FWD_DONE, id: 7, error: '' },
    { type: FrameType.FWD_DONE, id: 8, error: 'the write was refused: EIO' },
  ];
  for (const split of [1, 7, 4096, 1 << 20]) t.deepEqual(await roundTrip(list, split), list);
});

test('a cut stream and an oversize frame are errors, not short reads', async (t) => {
  const cut = new PassThrough();
  cut.end(Buffer.concat(encode({ type: FrameType.WRITE, seq: 1, offset: 0, data: Buffer.alloc(100) })).subarray(0, 50));
  await t.throwsAsync(
    async () => {
      for await (const _ of frames(cut)) void _;
    },
    { message: /cut in the middle of a frame \(50 bytes left over\)/ },
  );
  const big = new PassThrough();
  const h = Buffer.alloc(5);
  h.writeUInt32BE(MAX_FRAME + 1);
  big.end(h);
  await t.throwsAsync(
    async () => {
      for await (const _ of frames(big)) void _;
    },
    { message: `A mirror frame of ${MAX_FRAME + 1} bytes is not allowed (at most ${MAX_FRAME}).` },
  );
});

test('resync set: counts only real chunks, finds the next wrapping round, progress', (t) => {
  const bits = Buffer.from([0b1000_0001, 0, 0xff]); // chunks 0, 7, and 16..19 (20 chunks: the rest of the last byte is not chunks)
  const s = new ResyncSet(20, bits);
  t.is(s.size, 6);
  t.is(s.next(0), 0);
  t.is(s.next(1), 7);
  t.is(s.next(8), 16);
  t.true(s.delete(16));
  t.false(s.delete(16));
  t.is(s.next(18), 18);
  for (const c of [0, 7, 17, 18, 19]) s.delete(c);
  t.is(s.next(5), -1);
  s.add(3);
  t.is(s.next(10), 3); // wraps
  t.is(s.percentDone(), 83);
});

test('range locks: an overlapping holder waits, a disjoint one does not', async (t) => {
  const locks = new RangeLocks();
  const order: string[] = [];
  const r1 = await locks.lock(0, 3);
  const p2 = locks.lock(3, 5).then((r) => (order.push('overlap'), r));
  const r3 = await locks.lock(6, 9);
  order.push('disjoint');
  r1();
  (await p2)();
  r3();
  t.deepEqual(order, ['disjoint', 'overlap']);
});

const mine = (over: Partial<MirrorConfig> = {}): MirrorConfig => ({
  name: 'tank-vm1-000',
  zvol: 'fs:tank/vm1',
  size: 1 << 26,
  mode: 'sync',
  role: 'slave',
  epoch: 3,
  master: { host: 'alpha', zvol: 'fs:tank/vm1' },
  targets: [],
  description: '',
  createdAt: hello.createdAt,
  ...over,
});

const cases: [string, MirrorHello, MirrorConfig | undefined, RegExp | null][] = [
  ['its master, same epoch', hello, mine(), null],
  ['its master, a newer epoch', { ...hello, epoch: 4 }, mine(), null],
  ['no such mirror', hello, undefined, /^there is no auto-cdp:tank-vm1-000 here$/],
  ['another mirror of that name', { ...hello, createdAt: '2025-01-01T00:00:00.000Z' }, mine(), /another mirror of that name/],
  ['master here', hello, mine({ role: 'master', master: null }), /is master here \(epoch 3\): it takes no writes from alpha/],
  ['a stream claiming another sender', { ...hello, from: 'gamma' }, mine(), /^the stream says it comes from gamma, but it came from alpha$/],
  ['not its master', hello, mine({ master: { host: 'gamma', zvol: 'fs:tank/vm1' } }), /^the master of auto-cdp:tank-vm1-000 is gamma, not alpha$/],
  ['an older epoch', { ...hello, epoch: 2 }, mine(), /alpha is at epoch 2, this copy at 3: an older master takes no part/],
  ['another zvol', { ...hello, zvol: 'fs:tank/vm2' }, mine(), /the target here is fs:tank\/vm1 \(67108864 bytes\), not fs:tank\/vm2/],
];
for (const [title, h, config, want] of cases) {
  test(`receiver HELLO: ${title}`, (t) => {
    const why = refuseHello(h, 'alpha', config);
    if (want === null) t.is(why, null);
    else t.regex(why ?? '', want);
  });
}

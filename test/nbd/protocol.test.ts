/**
 * The protocol by a raw socket: what real clients never send (garbage in the
 * handshake, unknown options and commands, requests past the end or
 * misaligned, writes to a read-only export) gets the answer the protocol
 * document asks for, and other clients go on. Plus refusal() as a table.
 */
import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import * as P from '../../src/services/nbd/protocol.js';
import { refusal, type ExportShape, type Request } from '../../src/services/nbd/transmission.js';
import { NbdServer } from '../../src/services/nbd/server.js';
import { FileVolume } from '../../src/services/nbd/file-volume.js';
import type { ExportSource } from '../../src/services/nbd/volume.js';
import { RawClient, makeImage, nbdTempDir, startFileServer } from '../helpers/nbd.js';

const MiB = 1024 * 1024;
const shape: ExportShape = { size: 4 * MiB, minBlockSize: 512, readOnly: false, structured: true, allocation: false };
const req = (type: number, offset: number, length: number, flags = 0): Request => ({ type, offset, length, flags, cookie: Buffer.alloc(8) });

const refusals: [string, Request, Partial<ExportShape>, P.NbdErrorName | null][] = [
  ['an aligned read inside', req(P.NBD_CMD_READ, 0, 4096), {}, null],
  ['a read ending at the end', req(P.NBD_CMD_READ, 4 * MiB - 512, 512), {}, null],
  ['a read past the end', req(P.NBD_CMD_READ, 4 * MiB - 512, 1024), {}, 'EINVAL'],
  ['a write past the end', req(P.NBD_CMD_WRITE, 4 * MiB, 512), {}, 'ENOSPC'],
  ['write-zeroes past the end', req(P.NBD_CMD_WRITE_ZEROES, 0, 8 * MiB), {}, 'ENOSPC'],
  ['a misaligned offset', req(P.NBD_CMD_READ, 100, 512), {}, 'EINVAL'],
  ['a misaligned length', req(P.NBD_CMD_WRITE, 0, 700), {}, 'EINVAL'],
  ['a zero-length read', req(P.NBD_CMD_READ, 0, 0), {}, 'EINVAL'],
  ['a read over the max payload', req(P.NBD_CMD_READ, 0, P.MAX_PAYLOAD + 512), { size: 64 * MiB }, 'EOVERFLOW'],
  ['a write on a read-only export', req(P.NBD_CMD_WRITE, 0, 512), { readOnly: true }, 'EPERM'],
  ['a trim on a read-only export', req(P.NBD_CMD_TRIM, 0, 512), { readOnly: true }, 'EPERM'],
  ['a read on a read-only export', req(P.NBD_CMD_READ, 0, 512), { readOnly: true }, null],
  ['an unknown command', req(42, 0, 512), {}, 'EINVAL'],
  ['an unknown flag', req(P.NBD_CMD_READ, 0, 512, 1 << 9), {}, 'EINVAL'],
  ['NO_HOLE on a write', req(P.NBD_CMD_WRITE, 0, 512, P.NBD_CMD_FLAG_NO_HOLE), {}, 'EINVAL'],
  ['NO_HOLE on write-zeroes', req(P.NBD_CMD_WRITE_ZEROES, 0, 512, P.NBD_CMD_FLAG_NO_HOLE), {}, null],
  ['DF without structured replies', req(P.NBD_CMD_READ, 0, 512, P.NBD_CMD_FLAG_DF), { structured: false }, 'EINVAL'],
  ['BLOCK_STATUS without a context', req(P.NBD_CMD_BLOCK_STATUS, 0, 512), {}, 'EINVAL'],
  ['BLOCK_STATUS with base:allocation', req(P.NBD_CMD_BLOCK_STATUS, 0, 512), { allocation: true }, null],
  ['FUA on a write', req(P.NBD_CMD_WRITE, 0, 512, P.NBD_CMD_FLAG_FUA), {}, null],
  ['a flush', req(P.NBD_CMD_FLUSH, 0, 0), {}, null],
];
for (const [title, r, over, expected] of refusals) {
  test(`refusal: ${title} → ${expected ?? 'runs'}`, (t) => {
    t.is(refusal(r, { ...shape, ...over }), expected);
  });
}

async function twoExports(t: ExecutionContext) {
  const dir = nbdTempDir(t);
  const rw = await makeImage(path.join(dir, 'rw.img'), 4 * MiB);
  const ro = await makeImage(path.join(dir, 'ro.img'), 1 * MiB);
  return { ...(await startFileServer(t, { vol: { path: rw }, ro: { path: ro, readOnly: true } })), rw };
}

test('garbage in the handshake drops that client with a log line; another client goes on', async (t) => {
  const s = await twoExports(t);
  const good = await RawClient.connect(t, s.socket);
  await good.open('vol');
  const bad = await RawClient.connect(t, s.socket);
  await bad.greet();
  bad.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await bad.closed();
  t.true(
    s.logs.some((l) => /handshake error: the client sent 0x[0-9a-f]+ where an option \(IHAVEOPT\) belongs/.test(l)),
    s.logs.join('\n'),
  );
  const c = good.send(P.NBD_CMD_WRITE, 0, 512, { payload: Buffer.alloc(512, 7) });
  t.deepEqual(await good.reply(), { error: 0, cookie: c, data: Buffer.alloc(0) });
});

test('a client that is not fixed newstyle is disconnected and logged', async (t) => {
  const s = await twoExports(t);
  const c = await RawClient.connect(t, s.socket);
  await c.greet(0);
  await c.closed();
  t.true(s.logs.some((l) => l.includes('does not speak fixed newstyle')));
});

test('unknown options and STARTTLS get NBD_REP_ERR_UNSUP, and the haggling goes on', async (t) => {
  const s = await twoExports(t);
  const c = await RawClient.connect(t, s.socket);
  await c.greet();
  for (const opt of [99, P.NBD_OPT_STARTTLS, 11 /* EXTENDED_HEADERS */]) {
    const [r] = await c.option(opt, Buffer.from('junk'));
    t.is(r.type, P.NBD_REP_ERR_UNSUP);
    t.is(r.option, opt);
  }
  const [bad] = await c.option(P.NBD_OPT_GO, Buffer.from([0, 0, 0, 9, 1]));
  t.is(bad.type, P.NBD_REP_ERR_INVALID, 'a GO whose name length runs past its data is malformed');
  const [unknown] = await c.option(P.NBD_OPT_GO, RawClient.goData('nope'));
  t.is(unknown.type, P.NBD_REP_ERR_UNKNOWN);
  t.regex(unknown.data.toString(), /no export named "nope"/);
  const list = await c.option(P.NBD_OPT_LIST);
  t.deepEqual(
    list
      .filter((r) => r.type === P.NBD_REP_SERVER)
      .map((r) => r.data.subarray(4, 4 + r.data.readUInt32BE(0)).toString())
      .sort(),
    ['ro', 'vol'],
  );
  const info = await c.option(P.NBD_OPT_INFO, RawClient.goData('vol', [P.NBD_INFO_BLOCK_SIZE]));
  const bs = info.find((r) => r.type === P.NBD_REP_INFO && r.data.readUInt16BE(0) === P.NBD_INFO_BLOCK_SIZE)!.data;
  t.deepEqual([bs.readUInt32BE(2), bs.readUInt32BE(6), bs.readUInt32BE(10)], [512, 4096, 4 * MiB], 'the maximum: the max payload, or the whole export when smaller');
  const go = await c.option(P.NBD_OPT_GO, RawClient.goData('vol'));
  t.is(go.at(-1)!.type, P.NBD_REP_ACK);
});

test('NBD_OPT_EXPORT_NAME with and without NO_ZEROES; an unknown name closes', async (t) => {
  const s = await twoExports(t);
  for (const flags of [P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES, P.NBD_FLAG_C_FIXED_NEWSTYLE]) {
    const c = await RawClient.connect(t, s.socket);
    await c.greet(flags);
    c.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('vol'));
    const head = await c.reader.take(flags & P.NBD_FLAG_C_NO_ZEROES ? 10 : 134);
    t.is(Number(head.readBigUInt64BE(0)), 4 * MiB);
    t.truthy(head.readUInt16BE(8) & P.NBD_FLAG_HAS_FLAGS);
    const cookie = c.send(P.NBD_CMD_READ, 0, 512);
    t.is((await c.reply(512)).cookie, cookie);
  }
  const gone = await RawClient.connect(t, s.socket);
  await gone.greet();
  gone.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('missing'));
  await gone.closed();
  t.pass();
});

test('requests past the end, misaligned, oversize, unknown, or writing a read-only export get their NBD errors; the connection goes on', async (t) => {
  const s = await twoExports(t);
  const c = await RawClient.connect(t, s.socket);
  await c.open('vol');
  const cases: [string, () => bigint, number][] = [
    ['read past end', () => c.send(P.NBD_CMD_READ, 4 * MiB, 512), P.NBD_ERRNO.EINVAL],
    ['misaligned read', () => c.send(P.NBD_CMD_READ, 3, 512), P.NBD_ERRNO.EINVAL],
    ['write past end', () => c.send(P.NBD_CMD_WRITE, 4 * MiB - 512, 1024, { payload: Buffer.alloc(1024) }), P.NBD_ERRNO.ENOSPC],
    ['misaligned write', () => c.send(P.NBD_CMD_WRITE, 0, 100, { payload: Buffer.alloc(100) }), P.NBD_ERRNO.EINVAL],
    ['oversize write', () => c.send(P.NBD_CMD_WRITE, 0, P.MAX_PAYLOAD + 512, { payload: Buffer.alloc(P.MAX_PAYLOAD + 512) }), P.NBD_ERRNO.EOVERFLOW],
    ['unknown command', () => c.send(42, 0, 512), P.NBD_ERRNO.EINVAL],
  ];
  for (const [what, send, errno] of cases) {
    const cookie = send();
    const r = await c.reply();
    t.is(r.cookie, cookie, what);
    t.is(r.error, errno, what);
  }
  const ok = c.send(P.NBD_CMD_READ, 0, 512);
  t.like(await c.reply(512), { error: 0, cookie: ok });
  t.deepEqual(await readFile(s.rw).then((b) => b.length), 4 * MiB, 'nothing was written past the end');

  const ro = await RawClient.connect(t, s.socket);
  const { flags } = await ro.open('ro', { structured: true });
  t.truthy(flags & P.NBD_FLAG_READ_ONLY);
  for (const type of [P.NBD_CMD_WRITE, P.NBD_CMD_TRIM, P.NBD_CMD_WRITE_ZEROES]) {
    const cookie = ro.send(type, 0, 512, type === P.NBD_CMD_WRITE ? { payload: Buffer.alloc(512, 1) } : {});
    t.like(await ro.reply(), { error: P.NBD_ERRNO.EPERM, cookie });
  }
  const past = ro.send(P.NBD_CMD_READ, MiB, 512);
  const r = await ro.reply();
  t.like(r, { error: P.NBD_ERRNO.EINVAL, cookie: past, chunkType: P.NBD_REPLY_TYPE_ERROR }, 'a structured READ error comes as an error chunk');
  const read = ro.send(P.NBD_CMD_READ, 0, 512);
  const data = await ro.reply();
  t.like(data, { error: 0, cookie: read, chunkType: P.NBD_REPLY_TYPE_OFFSET_DATA });
  t.deepEqual(data.data.subarray(8), Buffer.alloc(512));
});

test('pipelined requests: many in flight, every one replied to with its own cookie and data', async (t) => {
  const s = await twoExports(t);
  const c = await RawClient.connect(t, s.socket);
  await c.open('vol');
  const writes = new Map<bigint, number>();
  for (let i = 0; i < 64; i++) writes.set(c.send(P.NBD_CMD_WRITE, i * 4096, 4096, { payload: Buffer.alloc(4096, i + 1) }), i);
  for (let i = 0; i < 64; i++) t.is((await c.reply()).error, 0);
  const flush = c.send(P.NBD_CMD_FLUSH, 0, 0);
  t.like(await c.reply(), { error: 0, cookie: flush });
  const reads = new Map<bigint, number>();
  for (let i = 0; i < 64; i++) reads.set(c.send(P.NBD_CMD_READ, i * 4096, 4096), i);
  for (let i = 0; i < 64; i++) {
    const r = await c.reply(4096);
    t.deepEqual(r.data, Buffer.alloc(4096, reads.get(r.cookie)! + 1));
    reads.delete(r.cookie);
  }
  t.is(reads.size, 0);
  const file = await readFile(s.rw);
  t.deepEqual(file.subarray(63 * 4096, 64 * 4096), Buffer.alloc(4096, 64));
});

test('BLOCK_STATUS base:allocation: negotiated only where the volume has extents, answered from them', async (t) => {
  const dir = nbdTempDir(t);
  const file = await makeImage(path.join(dir, 'x.img'), 4 * MiB);
  // a FileVolume that also describes extents: the first MiB data, the rest a hole
  const exports: ExportSource = {
    list: async () => [
      { name: 'sparse', description: '' },
      { name: 'plain', description: '' },
    ],
    open: async (name) => {
      const v = await FileVolume.open(file);
      if (name === 'plain') return v;
      return Object.assign(v, {
        extents: async (offset: number, length: number) =>
          [
            { length: MiB - offset, hole: false, zero: false },
            { length: 3 * MiB, hole: true, zero: true },
          ].filter(() => length > 0),
      });
    },
  };
  const server = new NbdServer({ exports, unixSocket: path.join(dir, 'run', 'nbd.sock') });
  t.teardown(() => server.close());
  await server.start();

  const c = await RawClient.connect(t, path.join(dir, 'run', 'nbd.sock'));
  await c.open('sparse', { structured: true, metaContexts: [P.BASE_ALLOCATION, 'qemu:dirty-bitmap:x'] });
  const cookie = c.send(P.NBD_CMD_BLOCK_STATUS, 0, 4 * MiB);
  const r = await c.reply();
  t.like(r, { error: 0, cookie, chunkType: P.NBD_REPLY_TYPE_BLOCK_STATUS });
  t.is(r.data.readUInt32BE(0), 1, 'the context id we gave base:allocation');
  t.deepEqual([r.data.readUInt32BE(4), r.data.readUInt32BE(8), r.data.readUInt32BE(12), r.data.readUInt32BE(16)], [MiB, 0, 3 * MiB, P.NBD_STATE_HOLE | P.NBD_STATE_ZERO]);
  const one = c.send(P.NBD_CMD_BLOCK_STATUS, 0, 4 * MiB, { flags: P.NBD_CMD_FLAG_REQ_ONE });
  t.is((await c.reply()).data.length, 4 + 8, 'REQ_ONE: a single extent');
  t.is(one, 1n + cookie);

  const plain = await RawClient.connect(t, path.join(dir, 'run', 'nbd.sock'));
  await plain.greet();
  await plain.option(P.NBD_OPT_STRUCTURED_REPLY);
  const n = Buffer.from('plain');
  const set = Buffer.concat([Buffer.from([0, 0, 0, n.length]), n, Buffer.from([0, 0, 0, 1, 0, 0, 0, 15]), Buffer.from(P.BASE_ALLOCATION)]);
  const replies = await plain.option(P.NBD_OPT_SET_META_CONTEXT, set);
  t.deepEqual(
    replies.map((x) => x.type),
    [P.NBD_REP_ACK],
    'a volume without extents offers no context',
  );
});

test('clients() and onClientsChanged follow connections; withdraw ends those of one export only', async (t) => {
  const dir = nbdTempDir(t);
  const a = await makeImage(path.join(dir, 'a.img'), MiB);
  const b = await makeImage(path.join(dir, 'b.img'), MiB);
  const seen: string[][] = [];
  const s = await startFileServer(t, { a: { path: a }, b: { path: b } }, { onClientsChanged: (cs) => seen.push(cs.map((c) => c.export).sort()) });
  const ca = await RawClient.connect(t, s.socket);
  await ca.open('a');
  const cb = await RawClient.connect(t, s.socket);
  await cb.open('b');
  t.deepEqual(
    s.server
      .clients()
      .map((c) => c.export)
      .sort(),
    ['a', 'b'],
  );
  t.true(s.server.clients().every((c) => c.client.startsWith('unix#') && c.since instanceof Date));
  await s.server.withdraw('a');
  await ca.closed();
  t.deepEqual(
    s.server.clients().map((c) => c.export),
    ['b'],
  );
  const still = cb.send(P.NBD_CMD_READ, 0, 512);
  t.like(await cb.reply(512), { error: 0, cookie: still });
  t.deepEqual(seen.at(-1), ['b']);
});

test('NBD_CMD_DISC: requests sent before it are answered, then the server closes', async (t) => {
  const s = await twoExports(t);
  const c = await RawClient.connect(t, s.socket);
  await c.open('vol');
  const cookies = Array.from({ length: 8 }, (_, i) => c.send(P.NBD_CMD_WRITE, i * 65536, 65536, { payload: Buffer.alloc(65536, 0x61 + i) }));
  c.send(P.NBD_CMD_DISC, 0, 0);
  const got: bigint[] = [];
  for (let i = 0; i < 8; i++) got.push((await c.reply()).cookie);
  t.deepEqual(got.sort(), [...cookies].sort());
  await c.closed();
  const file = await readFile(s.rw);
  t.true(file.subarray(7 * 65536, 8 * 65536).equals(Buffer.alloc(65536, 0x68)));
});

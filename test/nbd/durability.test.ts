/**
 * An acknowledged write survives kill -9 of the server process: a write
 * replied to with FUA, and writes replied to before an acknowledged FLUSH,
 * are in the image when the process is gone. (A power cut is the same
 * promise one layer down: FUA and FLUSH reply only after fdatasync.)
 */
import test from 'ava';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import * as P from '../../src/services/nbd/protocol.js';
import { RawClient, makeImage, nbdTempDir, serveInProcess } from '../helpers/nbd.js';

const MiB = 1024 * 1024;

test('FUA writes and writes before an acknowledged FLUSH survive kill -9 of the server', async (t) => {
  const dir = nbdTempDir(t);
  const image = await makeImage(path.join(dir, 'a.img'), 8 * MiB);
  const socket = path.join(dir, 'run', 'nbd.sock');
  const { child } = await serveInProcess(t, socket, [`vol=${image}`]);
  const c = await RawClient.connect(t, socket);
  await c.open('vol', { structured: true });

  const fua = new Map<bigint, number>();
  for (let i = 0; i < 16; i++) fua.set(c.send(P.NBD_CMD_WRITE, i * 65536, 65536, { flags: P.NBD_CMD_FLAG_FUA, payload: Buffer.alloc(65536, 0x40 + i) }), i);
  const plain: bigint[] = [];
  for (let i = 0; i < 16; i++) plain.push(c.send(P.NBD_CMD_WRITE, 4 * MiB + i * 65536, 65536, { payload: Buffer.alloc(65536, 0x80 + i) }));
  for (let i = 0; i < 32; i++) t.is((await c.reply()).error, 0);
  const flush = c.send(P.NBD_CMD_FLUSH, 0, 0);
  t.like(await c.reply(), { error: 0, cookie: flush });

  child.kill('SIGKILL');
  const result = await child;
  t.is(result.signal, 'SIGKILL');
  const file = await readFile(image);
  for (let i = 0; i < 16; i++) {
    t.true(file.subarray(i * 65536, (i + 1) * 65536).equals(Buffer.alloc(65536, 0x40 + i)), `FUA write ${i}`);
    t.true(file.subarray(4 * MiB + i * 65536, 4 * MiB + (i + 1) * 65536).equals(Buffer.alloc(65536, 0x80 + i)), `flushed write ${i}`);
  }
});

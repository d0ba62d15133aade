/**
 * The mirror's hot path with the real engine, link and receiver joined by
 * in-process streams (the daemons and the agent between them are
 * mirror.test.ts's): a sync write waits for the target to have written it,
 * a FUA write and a FLUSH for the target's flush (asked for at once; else
 * the target flushes shortly after on its own); a write to a clean chunk
 * of a live target marks its 4 MiB extent dirty with one map sync (a
 * sequential writer the next 28 MiB as well), a write
 * while the target is away exactly its chunks; a 1 MiB frame in 64 KiB
 * reads arrives whole.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { MirrorEngine } from '../../src/services/cdp/engine.js';
import { encode, frames, FrameType, type Frame } from '../../src/services/cdp/frames.js';
import { MirrorVolume } from '../../src/services/cdp/mirror-volume.js';
import type { MirrorConfig } from '../../src/services/cdp/model.js';
import { receiveMirror } from '../../src/services/cdp/receiver.js';
import type { MirrorStore } from '../../src/services/cdp/store.js';
import type { MirrorStream } from '../../src/services/cdp/target-link.js';
import type { BlockVolume, Extent } from '../../src/services/nbd/volume.js';

const CHUNK = 64 * 1024;
const SIZE = 12 * 64 * CHUNK; // twelve 4 MiB extents

/** a volume in memory whose flush can be held; `durable` is what a flush made durable */
class MemVolume implements BlockVolume {
  readonly size = SIZE;
  readonly minBlockSize = 512;
  readonly preferredBlockSize = CHUNK;
  readonly readOnly = false;
  readonly data = Buffer.alloc(SIZE);
  durable = Buffer.alloc(SIZE);
  flushes = 0;
  private held: Promise<void> | null = null;
  private release: (() => void) | null = null;
  /** resolves when a flush has started while held */
  entered: Promise<void> = Promise.resolve();
  private enter: (() => void) | null = null;

  hold(): void {
    this.held = new Promise((resolve) => (this.release = resolve));
    this.entered = new Promise((resolve) => (this.enter = resolve));
  }
  letGo(): void {
    this.release?.();
    this.held = null;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    return Buffer.from(this.data.subarray(offset, offset + length));
  }
  async write(offset: number, data: Buffer): Promise<void> {
    data.copy(this.data, offset);
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.data.fill(0, offset, offset + length);
  }
  async trim(): Promise<void> {}
  /** all zero or not (so the first sync sends the untouched volume as zero runs) */
  async extents(offset: number, length: number): Promise<Extent[]> {
    const zero = this.data.subarray(offset, offset + length).equals(Buffer.alloc(length));
    return [{ length, zero, hole: zero }];
  }
  async flush(): Promise<void> {
    const copy = Buffer.from(this.data);
    this.enter?.();
    await this.held;
    this.durable = copy;
    this.flushes++;
  }
  async close(): Promise<void> {}
}

const config = (mode: 'sync' | 'async', paused = false): MirrorConfig => ({
  name: 'tank-vm1-000',
  zvol: 'fs:tank/vm1',
  size: SIZE,
  mode,
  role: 'master',
  epoch: 1,
  master: null,
  targets: [{ host: 'beta', zvol: 'fs:tank/vm1', state: 'mirroring', reason: null, paused, fullSync: 'all', addedAt: '2026-12-07T00:00:00.000Z' }],
  description: '',
  createdAt: '2026-12-07T00:00:00.000Z',
});

/** an engine mirroring a memory volume to a receiver writing another, both in this process */
async function pair(t: import('ava').ExecutionContext, mode: 'sync' | 'async', hotMs?: number) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'syncsh-cdp-hot-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const local = new MemVolume();
  const remote = new MemVolume();
  let current = config(mode);
  const slave: MirrorConfig = { ...config(mode), role: 'slave', master: { host: 'alpha', zvol: 'fs:tank/vm1' }, targets: [] };
  const store = { get: () => slave } as unknown as MirrorStore;
  const lines: string[] = [];
  /** the streams to the target, the last one the live link's */
  const streams: PassThrough[] = [];
  const dial = async (): Promise<MirrorStream> => {
    const toTarget = new PassThrough();
    streams.push(toTarget);
    const toMaster = new PassThrough();
    void receiveMirror({ store, open: async () => remote }, 'alpha', toTarget, toMaster);
    return { input: toMaster, output: toTarget, close: () => (toTarget.destroy(), toMaster.destroy()) };
  };
  const engine = await MirrorEngine.start({ me: 'alpha', mapDir: dir, config: () => current, dial, log: (l) => lines.push(l), retryMs: 50, hotMs }, local);
  t.teardown(() => engine.close());
  // level, and the first sync's chunks cleaned (acknowledged, never written: not hot); each tick is a step of the engine's own timer
  while (!lines.some((l) => /beta is level/.test(l)) || engine.status()[0].dirtyChunks > 0) await engine.tick().then(() => new Promise((r) => setImmediate(r)));
  return { engine, volume: new MirrorVolume(engine), local, remote, lines, streams, set: (c: MirrorConfig) => (current = c) };
}

/** a promise's outcome so far */
function watch(p: Promise<unknown>): { done: boolean } {
  const w = { done: false };
  void p.then(() => (w.done = true));
  return w;
}

test('sync: a write resolves once the target wrote it; a FUA write and a FLUSH wait for its flush', async (t) => {
  const { volume, remote } = await pair(t, 'sync');
  remote.hold();
  const flushes = remote.flushes;
  const data = Buffer.alloc(4096, 0x11);
  await volume.write(0, data, { fua: false }); // resolves with every flush there held
  t.true(remote.data.subarray(0, 4096).equals(data), 'written there');
  t.is(remote.flushes, flushes);
  const flush = watch(volume.flush());
  const fua = watch(volume.write(CHUNK, Buffer.alloc(4096, 0x22), { fua: true }));
  await remote.entered; // the target flushes (asked at once, or on its own): held there
  await new Promise((r) => setImmediate(r));
  t.false(flush.done, 'the FLUSH waits for the target');
  t.false(fua.done, 'the FUA write waits for the target');
  remote.letGo();
  while (!flush.done || !fua.done) await new Promise((r) => setImmediate(r));
  t.true(remote.durable.subarray(0, 4096).equals(data), 'durable there once the FLUSH resolved');
  t.true(remote.durable.subarray(CHUNK, CHUNK + 4096).equals(Buffer.alloc(4096, 0x22)));
});

test('async: a FLUSH is the local one, a write waits for nothing there; the target flushes it on its own soon after', async (t) => {
  const { engine, volume, remote } = await pair(t, 'async');
  remote.hold();
  const flushes = remote.flushes;
  const data = Buffer.alloc(4096, 0x33);
  // both resolve with every flush there held
  await volume.write(0, data, { fua: true });
  await volume.flush();
  t.is(remote.flushes, flushes);
  remote.letGo();
  // no FLUSH asked for it: the receiver's own commit makes it durable and acknowledges it
  while (engine.status()[0].lagBytes > 0) await new Promise((r) => setImmediate(r));
  t.true(remote.durable.subarray(0, 4096).equals(data));
});

test("async: a write resolves before anything of its frame is written to the target's stream; the client's buffer reused at once changes nothing there", async (t) => {
  const { engine, volume, remote, streams } = await pair(t, 'async');
  const out = streams[streams.length - 1];
  let writes = 0;
  const write = out.write.bind(out) as (...a: unknown[]) => boolean;
  out.write = ((...a: unknown[]) => {
    writes++;
    return write(...a);
  }) as typeof out.write;
  const data = Buffer.alloc(4096, 0x44);
  await volume.write(5 * CHUNK, data, { fua: false });
  t.is(writes, 0, 'the NBD reply goes out first: the frame is encoded and written after this turn');
  data.fill(0x99); // what the NBD server does with a write's buffer once it returned
  while (engine.status()[0].lagBytes > 0) await new Promise((r) => setImmediate(r));
  t.true(writes > 0);
  t.true(remote.data.subarray(5 * CHUNK, 5 * CHUNK + 4096).equals(Buffer.alloc(4096, 0x44)), 'the target got the data as written');
});

test('a live target: a write marks its whole extent dirty; an away one: exactly the chunks written', async (t) => {
  const { engine, volume, set } = await pair(t, 'sync', 600_000); // nothing written turns cold during the test
  t.is(engine.status()[0].dirtyChunks, 0);
  await volume.write(3 * CHUNK, Buffer.alloc(4096, 1), { fua: false });
  t.is(engine.status()[0].dirtyChunks, 64, 'chunks 0..63: later writes there need no map sync');
  await volume.write(3 * 64 * CHUNK, Buffer.alloc(CHUNK, 1), { fua: false });
  t.is(engine.status()[0].dirtyChunks, 128, 'extent 3 alone: extent 2 was not written');
  await volume.write(4 * 64 * CHUNK, Buffer.alloc(CHUNK, 1), { fua: false });
  t.is(engine.status()[0].dirtyChunks, 128 + 8 * 64, 'a sequential writer: extents 4..11 with one sync');
  set(config('sync', true)); // paused: away
  await engine.tick();
  await volume.write(100 * CHUNK, Buffer.alloc(2 * CHUNK, 2), { fua: false });
  t.is(engine.status()[0].state, 'paused');
  t.is(engine.status()[0].dirtyChunks, 128 + 8 * 64 + 2, 'and exactly chunks 100, 101');
});

test('a 1 MiB frame in 64 KiB reads arrives whole, and frames after it', async (t) => {
  const s = new PassThrough();
  const list: Frame[] = [
    { type: FrameType.WRITE, seq: 1, offset: 0, data: Buffer.alloc(1 << 20, 0x5a) },
    { type: FrameType.APPLIED, seq: 1 },
    { type: FrameType.ACK, seq: 1 },
  ];
  const bytes = Buffer.concat(list.flatMap(encode));
  for (let i = 0; i < bytes.length; i += CHUNK) s.write(bytes.subarray(i, i + CHUNK));
  s.end();
  const out: Frame[] = [];
  for await (const f of frames(s)) out.push(f);
  t.deepEqual(out, list);
});

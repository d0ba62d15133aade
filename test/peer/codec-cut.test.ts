/**
 * The codec between a data channel and the run, when the channel dies
 * (RemoteDriver over a transport whose channel the test kills): whatever
 * the codec was doing — waiting for input the dead channel will never end,
 * or blocked on output no one reads — the run fails with the lost link,
 * promptly, and no codec program outlives it. Real zstd and lz4 programs,
 * Node's gzip; the channel is a set of PassThroughs, as ssh2 leaves them
 * when a connection breaks (its output not ended while unread bytes wait).
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AgentLink, RemoteDriver } from '../../src/services/peer/client.js';
import type { Hello } from '../../src/services/peer/protocol.js';
import { type Channel, type ExitStatus, PeerError, type Transport } from '../../src/services/peer/transport.js';
import { codecStream, codecUnavailable, type Codec } from '../../src/services/wire/codecs.js';
import { codecChildren } from '../helpers/procs.js';
import { until } from './_fixture.js';

const LOST = 'The connection to beta was lost: no answer to 3 keepalives 1 s apart (is the link down?).';

/** one data channel the test can cut: `die()` is the connection breaking under it */
class CuttableTransport implements Transport {
  readonly label = 'root@beta:22';
  closed = false;
  channel!: Channel & { stdin: PassThrough; stdout: PassThrough; stderr: PassThrough; die(): void };
  onClose(): void {}
  close(): void {
    this.closed = true;
  }
  async exec(): Promise<Channel> {
    let die!: () => void;
    const done = new Promise<ExitStatus>((resolve) => {
      die = () => resolve({ code: null, signal: null, lost: new PeerError('link', LOST) });
    });
    this.channel = { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough(), done, close: () => undefined, die };
    return this.channel;
  }
}

function driverOver(transport: CuttableTransport): RemoteDriver {
  const link = new AgentLink(transport, { expectId: null, name: 'beta', hello: { protocol: 1, from: 'alpha', version: 'test' } as Hello, idleTimeoutMs: 60_000 });
  return new RemoteDriver('fs', { acquire: async () => link, release: () => undefined }, 'beta', 60_000);
}

/** `bytes` of incompressible data, compressed with `codec`: what an agent would put on the channel */
async function compressed(codec: Codec, bytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(Readable.from([randomBytes(bytes)]), (await codecStream(codec, 'compress'))!, new Writable({ write: (c: Buffer, _e, done) => (parts.push(c), done()) }));
  return Buffer.concat(parts);
}

const until2 = (what: string, check: () => boolean) => until(what, check, 10_000);

for (const codec of ['zstd', 'lz4', 'gzip'] as const) {
  for (const reader of ['reads', 'stopped reading'] as const) {
    test.serial(`send, ${codec}: the channel dies mid-stream while the run ${reader}; the run fails with the lost link and no decompressor is left`, async (t) => {
      const why = await codecUnavailable(codec);
      if (why) return process.env.CI ? t.fail(why) : t.pass(`skipped: ${why}`);
      const transport = new CuttableTransport();
      const out = driverOver(transport).send('tank/docs', 'snap-1', { recursive: false, compress: codec });
      const failed = new Promise<Error>((resolve) => out.once('error', resolve));
      await until2('the data channel', () => transport.channel !== undefined);
      const wire = await compressed(codec, 8 << 20);
      let got = 0;
      if (reader === 'reads') out.on('data', (c: Buffer) => (got += c.length));
      // half the stream arrives; the rest never will
      transport.channel.stdout.write(wire.subarray(0, wire.length >> 1));
      if (reader === 'reads') await until2('decompressed bytes to reach the run', () => got > 0);
      if (codec !== 'gzip') t.true(codecChildren().length > 0, 'the decompressor runs');
      transport.channel.die();
      const error = await failed;
      t.is(error.message, LOST);
      await until2('no codec program left', () => codecChildren().length === 0);
      t.deepEqual(codecChildren(), []);
    });
  }

  test.serial(`receive, ${codec}: the channel dies while the run still has data to send; the run fails with the lost link and no compressor is left`, async (t) => {
    const why = await codecUnavailable(codec);
    if (why) return process.env.CI ? t.fail(why) : t.pass(`skipped: ${why}`);
    const transport = new CuttableTransport();
    // the source is not ended: the run would go on sending; the channel takes nothing (a stalled link)
    const source = new PassThrough();
    source.write(randomBytes(4 << 20));
    t.teardown(() => source.destroy());
    const receiving = driverOver(transport).receive('tank/docs', source, { force: false, recursive: false, compress: codec });
    receiving.catch(() => undefined);
    await until2('the data channel', () => transport.channel !== undefined);
    if (codec !== 'gzip') await until2('the compressor to start', () => codecChildren().length > 0);
    transport.channel.die();
    await t.throwsAsync(receiving, { message: LOST });
    await until2('no codec program left', () => codecChildren().length === 0);
    t.deepEqual(codecChildren(), []);
  });
}

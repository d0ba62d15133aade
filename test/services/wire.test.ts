/**
 * What crosses the wire: the rate limit (real time, a few seconds) and the
 * codecs (the real zstd and lz4 programs, Node's gzip), with their values.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { formatRate, parseRate, rateLimiter, waitMs } from '../../src/services/wire/rate-limit.js';
import { codecStream, codecUnavailable, parseCodec, type Codec } from '../../src/services/wire/codecs.js';

const MiB = 1 << 20;

for (const [typed, bytes] of [
  ['20M', 20 * MiB],
  ['512K', 512 << 10],
  ['1G', 1 << 30],
  ['1.5M', 1.5 * MiB],
  ['20MB/s', 20 * MiB],
  ['0', 0],
  ['none', 0],
] as const) {
  test(`rate ${typed} is ${bytes} bytes per second`, (t) => t.is(parseRate(typed), bytes));
}
for (const [typed, message] of [
  ['fast', /rate_limit must be a rate per second such as 20M, 512K or 1G \(0 for none\), not "fast"/],
  ['-5M', /not "-5M"/],
  ['20T', /not "20T"/],
  ['100', /at least 1K per second \(0 for none\), not "100"/],
] as const) {
  test(`rate "${typed}" is refused with a sentence naming it`, (t) => t.throws(() => parseRate(typed), { message }));
}
for (const [bytes, shown] of [
  [0, '0'],
  [20 * MiB, '20M'],
  [512 << 10, '512K'],
  [1.5 * 2 ** 30, '1.5G'],
] as const) {
  test(`${bytes} bytes per second reads back as ${shown}`, (t) => t.is(formatRate(bytes), shown));
}
for (const [sent, elapsed, rate, wait] of [
  [MiB, 0, MiB, 1000],
  [MiB, 400, MiB, 600],
  [MiB, 1500, MiB, 0],
  [5 * MiB, 1000, 2 * MiB, 1500],
  [MiB, 0, 0, 0],
] as const) {
  test(`${sent} bytes sent ${elapsed} ms in at ${rate}/s: wait ${wait} ms`, (t) => t.is(waitMs(sent, elapsed, rate), wait));
}
test('codec names: one of none, gzip, zstd, lz4, case-insensitive; others refused naming the value', (t) => {
  t.is(parseCodec('ZSTD'), 'zstd');
  t.throws(() => parseCodec('bzip2'), { message: 'The value of compress must be one of none, gzip, zstd, lz4, not "bzip2".' });
});

test.serial('a rate-limited stream of 6 MiB at 2 MiB/s takes 3 s, within 10%', async (t) => {
  const body = randomBytes(6 * MiB);
  let got = 0;
  const start = process.hrtime.bigint();
  await pipeline(
    Readable.from(
      (function* () {
        for (let at = 0; at < body.length; at += 256 << 10) yield body.subarray(at, at + (256 << 10));
      })(),
    ),
    rateLimiter(2 * MiB),
    new Writable({ write: (chunk: Buffer, _e, done) => ((got += chunk.length), done()) }),
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  t.is(got, body.length);
  t.true(seconds >= 2.7 && seconds <= 3.3, `took ${seconds.toFixed(2)} s for 3 s of data`);
});

/** what a codec makes of `input`: its compressed size and the round trip */
async function roundTrip(codec: Codec, input: Buffer): Promise<{ wire: number; back: Buffer }> {
  const squeeze = (await codecStream(codec, 'compress'))!;
  const parts: Buffer[] = [];
  await pipeline(Readable.from([input]), squeeze, new Writable({ write: (c: Buffer, _e, done) => (parts.push(c), done()) }));
  const wire = Buffer.concat(parts);
  const inflate = (await codecStream(codec, 'decompress'))!;
  const back: Buffer[] = [];
  await pipeline(Readable.from([wire]), inflate, new Writable({ write: (c: Buffer, _e, done) => (back.push(c), done()) }));
  return { wire: wire.length, back: Buffer.concat(back) };
}

/** log-like text: what compresses on a real link */
function logText(bytes: number): Buffer {
  const lines: string[] = [];
  let n = 0;
  for (let size = 0; size < bytes; n++) {
    const line = `2026-12-06T22:${String(n % 60).padStart(2, '0')}:${String((n * 7) % 60).padStart(2, '0')}Z auto-sync:tank-docs-000 INFO sent ${n * 4096 + (n % 97)} bytes of /tank/docs/file-${n % 1000}.txt to beta (${(n * 31) % 1000} ms)\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

for (const codec of ['zstd', 'lz4', 'gzip'] as const) {
  test(`${codec}: text round-trips whole; zstd crosses at ≤ 0.4 of its size`, async (t) => {
    const why = await codecUnavailable(codec);
    if (why) return process.env.CI ? t.fail(why) : t.pass(`skipped: ${why}`);
    const text = logText(4 * MiB);
    const { wire, back } = await roundTrip(codec, text);
    t.true(back.equals(text), 'what comes back is what went in');
    t.true(wire < text.length * 0.6, `${codec}: ${wire} bytes on the wire for ${text.length}`);
    if (codec === 'zstd') t.true(wire <= text.length * 0.4, `zstd: ${(wire / text.length).toFixed(3)} of the size`);
  });
}

test('a compressed stream cut short fails to decompress: never a short but complete stream', async (t) => {
  for (const codec of ['zstd', 'gzip'] as const) {
    const squeeze = (await codecStream(codec, 'compress'))!;
    const parts: Buffer[] = [];
    await pipeline(Readable.from([logText(MiB)]), squeeze, new Writable({ write: (c: Buffer, _e, done) => (parts.push(c), done()) }));
    const wire = Buffer.concat(parts);
    const inflate = (await codecStream(codec, 'decompress'))!;
    await t.throwsAsync(pipeline(Readable.from([wire.subarray(0, Math.floor(wire.length / 2))]), inflate, new Writable({ write: (_c, _e, done) => done() })), undefined, codec);
  }
});

test.serial('a codec whose program is not installed is a sentence naming it and what to install', async (t) => {
  const empty = mkdtempSync(path.join(os.tmpdir(), 'syncsh-no-path-'));
  t.teardown(() => rmSync(empty, { recursive: true, force: true }));
  const saved = process.env.PATH;
  process.env.PATH = empty;
  try {
    t.is(await codecUnavailable('zstd'), 'zstd is not available on this appliance: the zstd program was not found; install the zstd package, or use gzip or none.');
    t.regex((await codecUnavailable('lz4'))!, /^lz4 is not available on this appliance: the lz4 program was not found/);
    t.is(await codecUnavailable('gzip'), null, "gzip is Node's own");
    await t.throwsAsync(codecStream('zstd', 'compress'), { message: /^zstd is not available on this appliance/ });
  } finally {
    process.env.PATH = saved;
  }
});

/**
 * Compression and the rate limit between two appliances on one machine
 * (`syncsh agent` as a child process): the codec goes in the data channel's
 * header, the agent decompresses what it receives and compresses what it
 * sends; the trees arrive whole both ways.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { diffTrees, readTree } from '../helpers/fs-tree.js';
import { codecUnavailable } from '../../src/services/wire/codecs.js';
import { Fixture, folderWith, makeAppliance } from './_fixture.js';

async function pairOf(t: { teardown(fn: () => unknown): void }) {
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha');
  const b = makeAppliance(f, 'beta');
  await folderWith(a, 'tank', {});
  await folderWith(b, 'tank', {});
  const r = await a.cli(`setup network local-bind ${b.home}`);
  if (r.exitCode !== 0) throw new Error(String(r.stderr));
  return { a, b };
}

const text = (n: number) => Array.from({ length: n }, (_, i) => `line ${i} of a log that compresses well\n`).join('');

for (const codec of ['zstd', 'lz4', 'gzip'] as const) {
  test(`compress ${codec}: local-to-remote and remote-to-local arrive whole`, async (t) => {
    const why = await codecUnavailable(codec);
    if (why) return process.env.CI ? t.fail(why) : t.pass(`skipped: ${why}`);
    const { a, b } = await pairOf(t);
    const src = await folderWith(a, 'tank/docs', { 'log.txt': text(40_000), 'd/noise.bin': randomBytes(300_000) });
    const l2r = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: 'beta', toFs: 'fs:tank/docs', recursive: false, compress: codec });
    t.is(a.services.autoSync.config(l2r.name).compress, codec);
    await a.services.autoSync.run(l2r.name);
    t.deepEqual(diffTrees(await readTree(src), await readTree(b.live('tank/docs'))), []);

    const bsrc = await folderWith(b, 'tank/src', { 'z.txt': text(20_000), 'r.bin': randomBytes(200_000) });
    const r2l = await a.services.autoSync.create({ fromHost: 'beta', fromFs: 'fs:tank/src', toFs: 'fs:tank/src-copy', recursive: false, compress: codec });
    await a.services.autoSync.run(r2l.name);
    t.deepEqual(diffTrees(await readTree(bsrc), await readTree(a.live('tank/src-copy'))), []);
  });
}

test('compression by default: none locally and to a local-bind peer (nothing crosses a wire; over SSH it is zstd, test/peer/ssh.test.ts); what is asked at create wins', async (t) => {
  const why = await codecUnavailable('zstd');
  if (why) return process.env.CI ? t.fail(why) : t.pass(`skipped: ${why}`);
  const { a } = await pairOf(t);
  await folderWith(a, 'tank/docs', { 'x.txt': 'x\n' });
  const remote = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: 'beta', toFs: 'fs:tank/docs', recursive: false });
  const local = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toFs: 'fs:tank/copy', recursive: false });
  t.is(String((await a.cli(`show auto-sync :${remote.name} property compress`)).stdout).match(/compress +(\S+)/)?.[1], 'none');
  t.is(String((await a.cli(`show auto-sync :${local.name} property compress`)).stdout).match(/compress +(\S+)/)?.[1], 'none');
  const asked = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: 'beta', toFs: 'fs:tank/other', recursive: false, compress: 'zstd' });
  t.is(a.services.autoSync.config(asked.name).compress, 'zstd');
  const bad = await a.cli(`setup auto-sync :${remote.name} property compress brotli`);
  t.is(bad.exitCode, 1);
  t.regex(String(bad.stderr), /The value of compress must be one of none, gzip, zstd, lz4, not "brotli"\./);
  t.is(a.services.autoSync.config(remote.name).compress, 'none', 'nothing changed');
});

test('a rate-limited run to another appliance takes at least its bytes over the rate, and arrives whole', async (t) => {
  const { a, b } = await pairOf(t);
  const src = await folderWith(a, 'tank/docs', { 'big.bin': randomBytes(3 << 20) });
  const { name } = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: 'beta', toFs: 'fs:tank/docs', recursive: false, rateLimit: '1M', compress: 'none' });
  t.is(String((await a.cli(`show auto-sync :${name} property rate_limit`)).stdout).match(/rate_limit +(\S+)/)?.[1], '1M');
  const start = Date.now();
  const r = await a.services.autoSync.run(name);
  const seconds = (Date.now() - start) / 1000;
  t.true(seconds >= (r.bytes / (1 << 20)) * 0.9, `${r.bytes} bytes in ${seconds.toFixed(2)} s at 1M/s`);
  t.deepEqual(diffTrees(await readTree(src), await readTree(b.live('tank/docs'))), []);
});

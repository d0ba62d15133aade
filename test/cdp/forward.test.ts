/**
 * Writes on the slave's export (QUADStor's active-active), end to end: two
 * daemons, real NBD clients (qemu-io with patterns) writing on both
 * appliances' exports at once, to disjoint and to the same ranges. A write
 * on the slave travels to the master, which orders it with its own, applies
 * and mirrors it back, and only then is the slave's client acked: the two
 * copies are then equal byte for byte (qemu-img compare), in sync and in
 * async mode, and every acknowledged pattern is where it was written.
 */
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { ok } from '../peer/_fixture.js';
import { compare, figuresUntil, MIRROR, mirrored, qemuIo, qemuRead, uri } from './_pair.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io', 'qemu-img'));

const wrote = (n: number, size: string) => new RegExp(`(wrote ${size}/${size} bytes[\\s\\S]*){${n}}`);

for (const mode of ['sync', 'async'] as const) {
  test.serial(`${mode}: clients write on both exports at once, disjoint and overlapping; the slave's writes go through the master and both copies are equal`, async (t) => {
    const { a, b } = await mirrored(t, { mode });
    // disjoint: alpha's clients below 8M, beta's above; overlapping: both write 64k pieces of 12M..13M, 20 rounds each
    const overlap = (p: number) => Array.from({ length: 20 }, (_, i) => `write -P ${p + (i % 8)} ${12 * 1024 + (i % 4) * 256}k 64k`);
    const [ra, rb, ra2, rb2] = await Promise.all([
      qemuIo(uri(a), 'write -P 0xa1 0 1M', 'write -P 0xa2 2M 64k', 'write -z 3M 128k'),
      qemuIo(uri(b), 'write -P 0xb1 8M 1M', 'write -P 0xb2 10M 4k', 'write -z 11M 64k'),
      qemuIo(uri(a), ...overlap(0x10)),
      qemuIo(uri(b), ...overlap(0x20)),
    ]);
    t.regex(ra.stdout, wrote(3, '\\d+'), ra.stdout + ra.stderr);
    t.regex(rb.stdout, wrote(3, '\\d+'), `the slave's writes are acknowledged: ${rb.stdout}${rb.stderr}`);
    t.regex(ra2.stdout, wrote(20, '65536'), ra2.stdout + ra2.stderr);
    t.regex(rb2.stdout, wrote(20, '65536'), rb2.stdout + rb2.stderr);
    // a forwarded write is on the slave's own copy when its client is acked (read back there at once), and on the master
    for (const [name, x] of [
      ['alpha', a],
      ['beta', b],
    ] as const) {
      const read = await qemuRead(uri(x), 'read -P 0xb1 8M 1M', 'read -P 0xb2 10M 4k', 'read -P 0 11M 64k', 'read -P 0xa1 0 1M', 'read -P 0 3M 128k');
      t.regex(read, /(read \d+\/\d+ bytes[\s\S]*){5}/, `${name}: ${read}`);
      t.notRegex(read, /Pattern verification failed/, `${name}: ${read}`);
    }
    // async: alpha's own writes may still be on their way; the forwarded ones were waited for
    await figuresUntil(a, (f) => f.lagBytes === 0 && f.state === 'mirroring');
    t.is(await compare(a, b), '0: Images are identical.');
    t.regex(await ok(a, `show auto-cdp :${MIRROR}`), /beta/);
  });
}

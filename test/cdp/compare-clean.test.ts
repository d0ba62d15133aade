/**
 * A compared sync (--no-full-sync) that finds chunks equal must clear them from the dirty map:
 * left dirty, every later resync compares them again and a hand role switch back is refused as
 * owed. The target acknowledges a HASH_REQUEST's place in the stream durably, like a write's.
 */
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { compare, mirrored, statusUntil } from './_pair.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io', 'qemu-img'));

test('a compared sync that finds every chunk equal leaves the dirty map empty, with nothing written since', async (t) => {
  const { a, b } = await mirrored(t, { create: '--no-full-sync' });
  const level = await statusUntil(a, (x) => x.state === 'mirroring' && x.dirtyChunks === 0);
  t.is(level.targets[0].dirtyChunks, 0);
  t.is(await compare(a, b), '0: Images are identical.');
});

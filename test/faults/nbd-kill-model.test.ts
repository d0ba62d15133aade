/**
 * The NBD daemon kill scenario's model (bench/faults/block-writes.ts, the nbd-kill scenario's): which
 * values a block may hold after the kill, from qemu-io's acknowledgements.
 */
import test from 'ava';
import { acknowledged, allowedSync, allowedValues, check, fates, qemuIoCommand, type Command } from '../../bench/faults/block-writes.js';

const w = (first: number, value: number, fua = false, count = 1): Command => ({ kind: 'write', first, count, value, fua });
const flush: Command = { kind: 'flush' };
const sets = (xs: Set<number>[]) => xs.map((s) => [...s].sort((a, b) => a - b));

const cases: [string, Command[], number, number[][]][] = [
  ['nothing acknowledged: old, or the one write in flight', [w(0, 1), w(0, 2), w(1, 3)], 0, [[0, 1], [9]]],
  [
    'an acknowledged plain write may be lost',
    [w(0, 1), w(1, 2)],
    2,
    [
      [0, 1],
      [2, 9],
    ],
  ],
  ['an acknowledged FUA write is there, or a later one', [w(0, 1, true), w(0, 2), w(0, 3)], 2, [[1, 2, 3], [9]]],
  ['a flush acknowledged (a write after it was) makes what came before it durable', [w(0, 1), flush, w(1, 2)], 2, [[1], [2, 9]]],
  [
    'a flush not known to be acknowledged makes nothing durable',
    [w(0, 1), flush, w(1, 2)],
    1,
    [
      [0, 1],
      [2, 9],
    ],
  ],
  ['a write of several blocks', [w(0, 1, true, 2), w(1, 2)], 1, [[1], [1, 2]]],
  ['writes after the one in flight were never sent', [w(0, 1), w(0, 2), w(0, 3)], 1, [[0, 1, 2], [9]]],
];
for (const [name, cmds, acked, want] of cases) {
  test(`allowedValues: ${name}`, (t) => {
    t.deepEqual(sets(allowedValues([0, 9], cmds, acked)), want);
  });
}

test('acknowledged counts qemu-io\'s "wrote" lines, in order, and refuses one that names another write', (t) => {
  const cmds = [w(0, 1), flush, w(3, 2, true, 2), w(1, 3)];
  t.is(qemuIoCommand(cmds[2]), 'write -f -P 2 12288 8192');
  t.is(acknowledged(cmds, 'wrote 4096/4096 bytes at offset 0\n4 KiB, 1 ops; 00.00 sec\nwrote 8192/8192 bytes at offset 12288\nwrite failed: Input/output error\n'), 2);
  t.throws(() => acknowledged(cmds, 'wrote 4096/4096 bytes at offset 4096\n'), { message: /acknowledged "wrote 4096\/4096 bytes at offset 4096" where write 1 was write -P 1 0 4096/ });
});

test('check names a torn block and a lost durable write', (t) => {
  const image = Buffer.concat([Buffer.alloc(4096, 1), Buffer.alloc(4096, 5), Buffer.concat([Buffer.alloc(2048, 2), Buffer.alloc(2048, 3)])]);
  const r = check(image, [new Set([1]), new Set([4]), new Set([2, 3])]);
  t.deepEqual(r.values, [1, 5, 2]);
  t.deepEqual(r.violations, ['block 1 holds the data of write 5, but one of {4} was due (an acknowledged durable write is lost)', 'block 2 is torn: not the data of one write (it starts with 2)']);
});

test('fates: a "write failed" line fails the next write; past the last line, one write was in flight (it may have landed), the rest never sent', (t) => {
  const cmds = [w(0, 1), flush, w(0, 2), w(1, 3), w(0, 4), w(0, 5)];
  t.deepEqual(fates(cmds, 'wrote 4096/4096 bytes at offset 0\nwrite failed: Input/output error\nwrote 4096/4096 bytes at offset 4096\n'), ['acked', 'failed', 'acked', 'failed', 'unsent']);
  t.deepEqual(fates(cmds.slice(0, 2), 'wrote 4096/4096 bytes at offset 0\n'), ['acked']);
});

test('allowedSync (the cdp failover scenario): every acknowledged write is durable, a failed one may have landed', (t) => {
  const cmds = [w(0, 1), w(0, 2), w(1, 3), w(1, 4)];
  t.deepEqual(sets(allowedSync([0, 9], cmds, ['acked', 'failed', 'acked', 'unsent'])), [[1, 2], [3]]);
});

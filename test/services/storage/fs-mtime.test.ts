/**
 * Times the fs driver sets come back as set, and setting a time read back
 * from a set one changes nothing: a destination tree is cloned for every
 * commit, and an mtime that lost a microsecond on each clone drifted past
 * the 2 µs the trees are compared with (seen in test/peer/ssh.test.ts).
 */
import { lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { sameMtime, setMtime } from '../../../src/services/storage/fs/files.js';

/** what a time keeps through Node: whole microseconds, cut toward zero */
const toMicro = (ns: bigint) => (ns / 1_000n) * 1_000n;

const times = (): bigint[] => {
  const out: bigint[] = [0n, 1n, 999n, 1_000n, -1n, -1_000n, -1_500_000_000n, -1_499_999_999n, 1_796_000_000_071_935_738n, 1_796_000_000_071_935_000n, 4_102_444_800_000_000_999n];
  let seed = 7n;
  for (let i = 0; i < 2_000; i++) {
    seed = (seed * 6_364_136_223_846_793_005n + 1_442_695_040_888_963_407n) % 2n ** 64n;
    const ns = 1_000_000_000_000_000_000n + (seed % 1_000_000_000_000_000_000n); // 2001 .. 2033
    out.push(i % 2 ? ns : toMicro(ns));
  }
  return out;
};

test('a file, a directory and a symlink keep the microsecond they were given, however often it is set again', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-mtime-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'f');
  const sub = path.join(dir, 'd');
  const link = path.join(dir, 'l');
  writeFileSync(file, 'x');
  mkdirSync(sub);
  symlinkSync('f', link);
  const targets: [string, boolean][] = [
    [file, false],
    [sub, false],
    [link, true],
  ];
  const wrong: string[] = [];
  for (const ns of times()) {
    for (const [p, symlink] of targets) {
      setMtime(p, String(ns), symlink);
      let got = lstatSync(p, { bigint: true }).mtimeNs;
      if (got !== toMicro(ns)) wrong.push(`${p} set to ${ns}: ${got}`);
      // a clone sets the time it read back: nothing may move
      for (let again = 0; again < 3; again++) setMtime(p, String(got), symlink);
      const after = lstatSync(p, { bigint: true }).mtimeNs;
      if (after !== got) wrong.push(`${p} set again to ${got}: ${after}`);
      got = after;
      if (!sameMtime(Number(got) / 1e6, String(ns))) wrong.push(`${p}: ${got} is not the same mtime as ${ns}`);
    }
  }
  t.deepEqual(wrong.slice(0, 10), []);
});

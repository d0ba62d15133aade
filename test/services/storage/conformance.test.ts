/**
 * One conformance suite for the three drivers, through the real service
 * layer: the same scenarios (a table, below) run on fs, on a fresh zfs-fuse
 * pool and on a fresh btrfs loop volume, each in its own throwaway appliance
 * (`services.folders.create`, `services.autoSync.create`, `.run`), and
 * the destination is compared with the source byte for byte, with modes,
 * owners and mtimes. Where a driver cannot do something (btrfs: recursive;
 * zfs-fuse: zvols) the scenario asserts its sentence instead.
 *
 * Helpers and fixtures: test/helpers/conformance.ts. zfs and btrfs skip
 * outside CI when missing (and fail under CI), like every system test.
 */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { chmod, lchown, link, lstat, readdir, readFile, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { DriverName } from '../../../src/services/storage/driver.js';
import { snapshotPath, swapPath } from '../../../src/services/storage/btrfs/layout.js';
import { gatedTest, type GatedTest } from '../../helpers/system.js';
import { bigFile, cuttingDriver, FIXTURES, hashFile, limiter, MiB, overwrite, random, type Platform, type Scenario, type Tree } from '../../helpers/conformance.js';

const T0 = 1_600_000_000; // a fixed mtime, in seconds, far from "now"

/** a tree that exercises what a replication must keep */
const RICH = {
  'empty.txt': '',
  'one.txt': 'x',
  'docs/readme.md': '# readme\n',
  'docs/deep/er/still/leaf.bin': random(100_000),
  'docs/space name é.txt': 'unicode and a space',
  'bin/run.sh': { content: '#!/bin/sh\necho hi\n', mode: 0o755 },
  'private/key': { content: 'secret', mode: 0o600, uid: 1234, gid: 5678 },
  'old.txt': { content: 'old', mtime: T0 },
  'media/one-mib.bin': random(MiB),
  'links/rel': { symlink: '../docs/readme.md' },
  'links/dangling': { symlink: 'nowhere/at/all' },
  emptydir: { dir: true, mode: 0o750, mtime: T0 },
} as const;

/** source 'src' with the rich tree (and `extra`), one service src -> dst, run once */
async function mirrored(p: Platform, opts: Parameters<Platform['service']>[2] = {}, extra: Tree = {}) {
  await p.folder('src');
  await p.write('src', { ...RICH, ...extra });
  const name = await p.service('src', 'dst', opts);
  const first = await p.run(name);
  return { name, first };
}

/** the names of each file that has several (hard links) under root, as sorted lists of relative paths */
async function linkSets(root: string): Promise<string[][]> {
  const byInode = new Map<number, string[]>();
  for (const rel of (await readdir(root, { recursive: true })).sort()) {
    const st = await lstat(path.join(root, rel));
    if (st.isFile() && st.nlink > 1) byInode.set(st.ino, [...(byInode.get(st.ino) ?? []), rel]);
  }
  return [...byInode.values()].filter((names) => names.length > 1).sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

const SCENARIOS: Scenario[] = [
  {
    title: 'full: the first run copies everything, byte for byte, with modes, owners, times and links',
    async run(p) {
      const { name, first } = await mirrored(p);
      p.t.true(first.full);
      p.t.true(first.bytes > MiB, `${first.bytes} bytes sent`);
      await p.expectMirror('src', 'dst');
      const [src, dst] = [await p.markers('src', name), await p.markers('dst', name)];
      p.t.is(src.length, 1);
      p.t.deepEqual(
        dst.map((s) => [s.name, s.id]),
        src.map((s) => [s.name, s.id]),
        'the marker arrived with its identity',
      );
      p.t.true(dst[0]!.held && src[0]!.held, 'the common marker is held on both sides');
      const view = p.services.autoSync.view(name);
      p.t.like(view, { state: 'online', status: 'up' });
      p.t.like(view.run, { lastResult: 'success', lastMarker: first.marker, lastError: null });
    },
  },
  {
    title: 'incremental: only the delta travels, and each run mirrors the source again',
    async run(p) {
      // 8 MiB more, so that the delta (a few chunks: fs's are 1 MiB) is well below half of it
      const { name, first } = await mirrored(p, {}, { 'bulk.bin': random(8 * MiB) });
      const dir = await p.dir('src');
      for (let round = 1; round <= 3; round++) {
        await writeFile(path.join(dir, 'one.txt'), `x, round ${round}`);
        await overwrite(path.join(dir, 'media/one-mib.bin'), 100_000 * round, 4096);
        await writeFile(path.join(dir, `round-${round}.txt`), `new in round ${round}`);
        await chmod(path.join(dir, 'docs/readme.md'), round % 2 ? 0o600 : 0o644);
        await lchown(path.join(dir, 'old.txt'), 1000 + round, 1000 + round);
        await utimes(path.join(dir, 'empty.txt'), T0 + round, T0 + round);
        const next = await p.run(name);
        p.t.false(next.full, `round ${round} is incremental`);
        p.t.true(next.bytes < first.bytes / 2, `round ${round}: ${next.bytes} bytes, the full run ${first.bytes}`);
        await p.expectMirror('src', 'dst', `after round ${round}`);
      }
      const idle = await p.run(name);
      p.t.false(idle.full);
      p.t.true(idle.bytes < 256 * 1024, `a run with nothing changed sends little (${idle.bytes} bytes)`);
      await p.expectMirror('src', 'dst', 'after an idle run');
    },
  },
  {
    title: 'recursive: child datasets are replicated as datasets, new children too',
    drivers: ['fs', 'zfs'],
    async run(p) {
      await p.folder('src');
      await p.folder('src/a');
      await p.folder('src/a/b');
      await p.folder('src/c');
      await p.write('src', { 'top.txt': 'top' });
      await p.write('src/a', { 'a.txt': 'in a', 'sub/deeper.bin': random(50_000) });
      await p.write('src/a/b', { 'b.txt': 'in b' });
      await p.write('src/c', { 'c.txt': 'in c' });
      const name = await p.service('src', 'dst', { recursive: true });
      p.t.true((await p.run(name)).full);
      const names = async () => (await p.services.folders.list(p.ds('dst'))).map((f) => f.qualified).sort();
      p.t.deepEqual(
        await names(),
        ['dst', 'dst/a', 'dst/a/b', 'dst/c'].map((l) => p.ds(l)),
      );
      for (const leaf of ['', '/a', '/a/b', '/c']) await p.expectMirror(`src${leaf}`, `dst${leaf}`);

      await p.folder('src/d');
      await p.write('src/d', { 'd.txt': 'a child made after the first run' });
      await p.write('src/a/b', { 'b.txt': 'in b, changed' });
      p.t.false((await p.run(name)).full);
      p.t.deepEqual(
        await names(),
        ['dst', 'dst/a', 'dst/a/b', 'dst/c', 'dst/d'].map((l) => p.ds(l)),
      );
      for (const leaf of ['', '/a', '/a/b', '/c', '/d']) await p.expectMirror(`src${leaf}`, `dst${leaf}`, 'after the incremental');
      p.t.is((await p.markers('dst/a/b', name)).length, 2, 'a child has the markers too');
      p.t.is((await p.markers('dst/d', name)).length, 1, 'a new child has the marker it arrived with');
    },
  },
  {
    title: 'recursive is refused with a sentence, and nothing is made',
    drivers: ['btrfs'],
    async run(p) {
      await p.folder('src');
      await p.write('src', { 'a.txt': 'a' });
      const before = p.services.autoSync.names();
      await p.t.throwsAsync(p.service('src', 'dst', { recursive: true }), { message: /A btrfs service cannot be recursive: btrfs send leaves nested subvolumes out\./ });
      p.t.deepEqual(p.services.autoSync.names(), before, 'no service is made');
      p.t.false(await p.exists('dst'));
      p.t.deepEqual(await p.snapshots('src'), [], 'no marker is left on the source');
      const name = await p.service('src', 'dst', { recursive: false });
      await p.t.throwsAsync(p.services.autoSync.setProperty(name, 'recursive', 'yes'), { message: /btrfs service cannot be recursive/ });
      p.t.true((await p.run(name)).full, 'the same service works, not recursive');
      await p.expectMirror('src', 'dst');
    },
  },
  {
    title: 'a swap cut between its renames (no live path) is finished by the next run: an incremental, no subvolume left over',
    drivers: ['btrfs'],
    async run(p) {
      await p.folder('src');
      await p.write('src', { 'a.txt': 'a', 'big.bin': random(2 * MiB) });
      const name = await p.service('src', 'dst', { recursive: false });
      await p.run(name);
      // what a kill -9 between swap.ts's two renames leaves: the live subvolume moved aside, its replacement beside it
      const dst = p.local('dst');
      const newest = (await p.snapshots('dst')).at(-1)!;
      const [fresh, old] = [swapPath(dst, 'new'), swapPath(dst, 'old')];
      await execa('btrfs', ['subvolume', 'snapshot', snapshotPath(dst, newest.name), fresh]);
      await rename(dst, old);
      p.t.false(await p.exists('dst'), 'the live path is missing');
      await p.write('src', { 'b.txt': 'b' });
      const second = await p.run(name);
      p.t.false(second.full, 'an incremental: the swap was finished, not the destination taken for gone');
      await p.expectMirror('src', 'dst');
      p.t.deepEqual(
        (await readdir(path.dirname(dst))).filter((e) => e.includes(`-${path.basename(dst)}-`)),
        [],
        'no swap subvolume left over',
      );
    },
  },
  {
    title: 'properties: user properties travel and follow changes (recursive and not)',
    drivers: ['zfs'],
    async run(p) {
      const get = async (leaf: string, prop: string) => (await execa('zfs', ['get', '-H', '-o', 'value', prop, p.local(leaf)])).stdout.trim();
      const set = (leaf: string, assignment: string) => execa('zfs', ['set', assignment, p.local(leaf)]);
      await p.folder('src');
      await p.folder('src/kid');
      await p.write('src', { 'a.txt': 'a' });
      await set('src', 'syncsh:owner=ops');
      await set('src/kid', 'syncsh:role=child');
      await set('src', 'compression=on');
      const deep = await p.service('src', 'dst', { recursive: true });
      const flat = await p.service('src', 'flat', { recursive: false });
      await p.run(deep);
      await p.run(flat);
      for (const leaf of ['dst', 'flat']) {
        p.t.is(await get(leaf, 'syncsh:owner'), 'ops', `${leaf}: a user property survives`);
        p.t.is(await get(leaf, 'compression'), 'on', `${leaf}: a native property survives`);
      }
      p.t.is(await get('dst/kid', 'syncsh:role'), 'child', "a child's property survives a recursive run");
      p.t.false(await p.exists('flat/kid'), 'a non-recursive service leaves children out');

      await set('src', 'syncsh:owner=dev');
      await set('src', 'syncsh:tier=gold');
      await p.write('src', { 'b.txt': 'b' });
      await p.run(deep);
      await p.run(flat);
      for (const leaf of ['dst', 'flat']) {
        p.t.is(await get(leaf, 'syncsh:owner'), 'dev', `${leaf}: a changed property follows`);
        p.t.is(await get(leaf, 'syncsh:tier'), 'gold', `${leaf}: a new property arrives`);
        await p.expectMirror('src', leaf);
      }
    },
  },
  {
    title: 'owners and hard links: files, directories and symlinks keep their owners; the names of one file stay one file, full and incremental',
    async run(p) {
      await p.folder('src');
      await p.write('src', { 'a.txt': 'alpha', 'dir/b.txt': 'bravo', 'dir/to-a': { symlink: '../a.txt' }, 'big.bin': random(2 * MiB), 'c.txt': 'charlie' });
      const dir = await p.dir('src');
      const at = (rel: string) => path.join(dir, rel);
      await lchown(at('dir'), 1001, 1002);
      await lchown(at('dir/b.txt'), 1003, 1004);
      await lchown(at('dir/to-a'), 1005, 1006);
      await lchown(at('a.txt'), 1007, 1008);
      await link(at('a.txt'), at('dir/a-again.txt'));
      await link(at('big.bin'), at('big-again.bin'));
      await link(at('c.txt'), at('dir/c-again.txt'));
      const name = await p.service('src', 'dst');
      const first = await p.run(name);
      p.t.true(first.full);
      p.t.true(first.bytes < 3 * MiB, `a file with two names travels once: ${first.bytes} bytes`);
      await p.expectMirror('src', 'dst');
      const dst = await p.dir('dst');
      p.t.deepEqual(await linkSets(dst), await linkSets(dir), 'the same names are one file');

      await link(at('dir/b.txt'), at('b-again.txt')); // a link made
      await unlink(at('dir/a-again.txt')); // a link removed
      await overwrite(at('big-again.bin'), 4096, 100); // written through one name
      await writeFile(at('c-new'), 'charlie, a file of its own');
      await rename(at('c-new'), at('dir/c-again.txt')); // one name replaced
      await lchown(at('dir'), 2001, 2002);
      await lchown(at('dir/to-a'), 2003, 2004);
      await lchown(at('big.bin'), 2005, 2006);
      const next = await p.run(name);
      p.t.false(next.full);
      p.t.true(next.bytes < MiB + 256 * 1024, `incremental: ${next.bytes} bytes (a 100-byte change, and no copy of a new name)`);
      await p.expectMirror('src', 'dst', 'after the incremental');
      p.t.deepEqual(await linkSets(dst), await linkSets(dir), 'the same names are one file after the incremental');
      p.t.deepEqual(await linkSets(dst), [
        ['b-again.txt', 'dir/b.txt'],
        ['big-again.bin', 'big.bin'],
      ]);
    },
  },
  {
    title: 'deletes: files, links, whole directory trees, then everything',
    async run(p) {
      const { name } = await mirrored(p);
      const dir = await p.dir('src');
      await rm(path.join(dir, 'docs/deep'), { recursive: true });
      await unlink(path.join(dir, 'one.txt'));
      await unlink(path.join(dir, 'links/dangling'));
      await rm(path.join(dir, 'emptydir'), { recursive: true });
      await unlink(path.join(dir, 'bin/run.sh')); // leaves bin/ empty
      await p.run(name);
      await p.expectMirror('src', 'dst');
      const dst = await p.dir('dst');
      for (const gone of ['docs/deep', 'one.txt', 'links/dangling', 'emptydir', 'bin/run.sh']) p.t.false(existsSync(path.join(dst, gone)), `${gone} is gone`);

      for (const entry of ['docs', 'bin', 'links', 'private', 'media', 'old.txt', 'empty.txt']) await rm(path.join(dir, entry), { recursive: true });
      await p.run(name);
      await p.expectMirror('src', 'dst', '(empty)');
    },
  },
  {
    title: 'renames: files, directories, across directories, swapped names, over an existing file',
    async run(p) {
      const { name } = await mirrored(p);
      const dir = await p.dir('src');
      const at = (rel: string) => path.join(dir, rel);
      await rename(at('one.txt'), at('uno.txt'));
      await rename(at('docs/deep'), at('shallow'));
      await rename(at('media/one-mib.bin'), at('docs/moved.bin'));
      await writeFile(at('a.txt'), 'A');
      await writeFile(at('b.txt'), 'B');
      await p.run(name);
      await p.expectMirror('src', 'dst', 'after the first renames');
      await rename(at('a.txt'), at('tmp.txt'));
      await rename(at('b.txt'), at('a.txt'));
      await rename(at('tmp.txt'), at('b.txt'));
      await rename(at('old.txt'), at('empty.txt')); // replaces it
      await rename(at('docs/readme.md'), at('docs/README.md'));
      await p.run(name);
      await p.expectMirror('src', 'dst', 'after the swaps');
      const dst = await p.dir('dst');
      for (const gone of ['one.txt', 'docs/deep', 'media/one-mib.bin', 'old.txt', 'docs/readme.md', 'tmp.txt']) {
        p.t.false(existsSync(path.join(dst, gone)), `${gone} is not found under its old name`);
      }
    },
  },
  {
    title: 'a large file: 64 MiB arrive intact, and a 1 MiB change in the middle sends about 1 MiB',
    size: 640 * MiB,
    async run(p) {
      await p.folder('src');
      const file = path.join(await p.dir('src'), 'large.bin');
      const sha = await bigFile(file, 64 * MiB);
      const name = await p.service('src', 'dst');
      const full = await p.run(name);
      p.t.true(full.bytes >= 64 * MiB, `${full.bytes} bytes sent`);
      const copy = path.join(await p.dir('dst'), 'large.bin');
      p.t.is(await hashFile(copy), sha);
      await overwrite(file, 32 * MiB + 12345, MiB);
      const delta = await p.run(name);
      p.t.log(`${p.kind}: full ${(full.bytes / MiB).toFixed(1)} MiB, after a 1 MiB change ${(delta.bytes / MiB).toFixed(2)} MiB`);
      p.t.true(delta.bytes < 8 * MiB, `${delta.bytes} bytes for a 1 MiB change`);
      p.t.is(await hashFile(copy), await hashFile(file));
      p.t.is((await stat(copy)).size, 64 * MiB);
    },
  },
  {
    title: 'a volume: its image replicates block for block (zfs-fuse: zvols refused with a sentence)',
    async run(p) {
      if (!p.volumes) {
        await p.t.throwsAsync(p.folder('vol', { volumeSize: 32 * MiB }), { message: /does not implement volumes \(zvols\)/ });
        p.t.false(await p.exists('vol'), 'nothing is left behind');
        return;
      }
      await p.folder('vol', { volumeSize: 32 * MiB });
      const image = p.volumeImage('vol');
      for (const offset of [0, 5 * MiB + 4096, 31 * MiB]) await overwrite(image, offset, 256 * 1024);
      const name = await p.service('vol', 'copy');
      p.t.true((await p.run(name)).full);
      const [info] = await p.services.folders.list(p.ds('copy'));
      p.t.like(info, { kind: 'volume', volsize: 32 * MiB });
      p.t.is(await hashFile(p.volumeImage('copy')), await hashFile(image));
      await overwrite(image, 17 * MiB, MiB);
      const delta = await p.run(name);
      p.t.false(delta.full);
      p.t.true(delta.bytes < 4 * MiB, `${delta.bytes} bytes for a 1 MiB change`);
      p.t.is(await hashFile(p.volumeImage('copy')), await hashFile(image));
      p.t.is((await stat(p.volumeImage('copy'))).size, 32 * MiB);
    },
  },
  {
    title: 'a cut stream leaves the destination as it was, never prunes the last common marker, and the next run succeeds',
    async run(p) {
      await p.folder('src');
      await p.write('src', { 'small.txt': 'v1', 'first.bin': random(4 * MiB) });
      const name = await p.service('src', 'dst', { keepSrc: 1, keepDst: 1 });
      const real = await p.driver();
      const cutter = cuttingDriver(real, MiB);

      p.services.storage.use(cutter);
      await p.t.throwsAsync(p.run(name), { message: /the link was cut after 1048576 bytes/ }, 'a cut full run fails');
      p.t.is(cutter.cuts, 1);
      p.t.false(await p.exists('dst'), 'a cut full receive leaves no destination');
      p.t.deepEqual(await p.markers('src', name), [], "the failed run's marker is dropped");
      p.services.storage.use(real);
      p.t.true((await p.run(name)).full);
      await p.expectMirror('src', 'dst');

      const before = { tree: await p.tree('dst'), chain: await p.chain('dst'), src: await p.chain('src') };
      await p.write('src', { 'small.txt': 'v2', 'second.bin': random(4 * MiB) });
      p.services.storage.use(cutter);
      await p.t.throwsAsync(p.run(name), { message: /the link was cut after 1048576 bytes/ }, 'a cut incremental run fails');
      p.t.is(cutter.cuts, 2);
      await p.expectTree('dst', before.tree, 'the destination holds what it held before the cut run');
      p.t.deepEqual(await p.chain('dst'), before.chain, "the destination's snapshots are what they were");
      p.t.deepEqual(await p.chain('src'), before.src, 'the last common marker is kept on the source, and only it');
      const view = p.services.autoSync.view(name);
      p.t.like(view, { state: 'online' });
      p.t.like(view.run, { lastResult: 'failure', consecutiveFailures: 1 });
      p.t.regex(view.run.lastError ?? '', /link was cut/);

      p.services.storage.use(real);
      const next = await p.run(name);
      p.t.false(next.full, 'the next run is incremental from the kept marker');
      await p.expectMirror('src', 'dst', 'after the run that followed the cut');
      p.t.is((await p.markers('src', name)).length, 1);
      p.t.is((await p.markers('dst', name)).length, 1);
    },
  },
  {
    title: 'every destination snapshot destroyed after a sync: a broken chain (maintenance, resync), never "needs force"',
    async run(p) {
      const { name } = await mirrored(p);
      const driver = await p.driver();
      const dst = p.local('dst');
      for (const s of await p.snapshots('dst')) {
        if (s.held) await driver.holdSnapshot(dst, s.name, false);
        await driver.destroySnapshot(dst, s.name, { recursive: p.recursive });
      }
      const before = await p.tree('dst');
      await p.write('src', { 'later.txt': 'after the snapshots were destroyed' });
      const error = await p.t.throwsAsync(p.run(name));
      p.t.is(
        error!.message,
        `The destination ${p.ds('dst')} has no snapshot left (they were destroyed since the last run), so nothing links it to the source ${p.ds('src')}. Nothing was sent. Run 'setup auto-sync :${name} resync' to start over with a full sync.`,
      );
      p.t.notRegex(error!.message, /force/);
      const view = p.services.autoSync.view(name);
      p.t.is(view.state, 'maintenance');
      p.t.like(view.config.maintenance, { kind: 'broken-chain', fix: `setup auto-sync :${name} resync` });
      p.t.true(
        p.services.autoSync
          .log(name)
          .tail(20)
          .some((l) => l.includes(`ALERT: auto-sync:${name} put in maintenance`)),
      );
      await p.expectTree('dst', before, 'the destination was not touched');
      p.t.true((await p.services.autoSync.run(name, { resync: true })).full);
      await p.expectMirror('src', 'dst', 'after the resync');
      p.t.is(p.services.autoSync.view(name).state, 'online');
    },
  },
  {
    title: 'recursive: a child whose marker was destroyed on the source is a broken chain of that child; a resync moves only that child',
    drivers: ['fs', 'zfs'],
    async run(p) {
      await p.folder('src');
      await p.folder('src/1');
      await p.folder('src/2');
      await p.write('src/1', { 'one.txt': 'one' });
      await p.write('src/2', { 'two.txt': 'two' });
      const name = await p.service('src', 'dst', { recursive: true });
      await p.run(name);
      const driver = await p.driver();
      // An operator releases and destroys the child's marker, as syncoid's force-delete test does.
      for (const s of await p.markers('src/2', name)) {
        if (s.held) await driver.holdSnapshot(p.local('src/2'), s.name, false);
        await driver.destroySnapshot(p.local('src/2'), s.name, { recursive: false });
      }
      await p.write('src/1', { 'one.txt': 'one, changed' });
      await p.write('src/2', { 'two.txt': 'two, changed' });
      const before = { one: await p.tree('dst/1'), two: await p.tree('dst/2') };
      const error = await p.t.throwsAsync(p.run(name));
      p.t.regex(
        error!.message,
        new RegExp(`^The chain of the child 2 \\(missing on the source\\) is broken: it lacks the common snapshot @syncsh-${name}-.*, the rest of ${p.ds('src')} is intact\\. Nothing was sent\\. Run 'setup auto-sync :${name} resync'`),
      );
      p.t.notRegex(error!.message, /force|written to/);
      p.t.like(p.services.autoSync.view(name).config.maintenance, { kind: 'broken-chain' });
      await p.expectTree('dst/1', before.one, 'nothing was sent');
      await p.expectTree('dst/2', before.two, 'nothing was sent');
      const markersOfOne = (await p.markers('dst/1', name)).map((s) => s.name);
      const resync = await p.services.autoSync.run(name, { resync: true });
      p.t.false(resync.full, 'the intact part stays incremental');
      for (const leaf of ['', '/1', '/2']) await p.expectMirror(`src${leaf}`, `dst${leaf}`, `after the resync (${leaf || 'top'})`);
      p.t.true(
        (await p.markers('dst/1', name)).some((s) => markersOfOne.includes(s.name)),
        'the intact child kept its chain',
      );
      const aside = (await p.leaves()).filter((leaf) => /^dst-resync-.*-2$/.test(leaf));
      p.t.is(aside.length, 1, `only the broken child was moved aside, beside the destination (${(await p.leaves()).join(', ')})`);
      await p.expectTree(aside[0]!, before.two, 'and kept as it was');
      p.t.is(p.services.autoSync.view(name).state, 'online');
    },
  },
  {
    title: 'a broken chain fails with a sentence and puts the service in maintenance; a resync moves the destination aside and starts over',
    async run(p) {
      const { name } = await mirrored(p, { keepSrc: 2, keepDst: 1 });
      await p.write('src', { 'second.txt': 'second run' });
      await p.run(name);
      const driver = await p.driver();
      const dst = p.local('dst');
      for (const s of await p.snapshots('dst')) {
        await driver.holdSnapshot(dst, s.name, false);
        await driver.destroySnapshot(dst, s.name, { recursive: p.recursive });
      }
      await driver.createSnapshot(dst, 'by-hand', { recursive: p.recursive });
      const before = { tree: await p.tree('dst'), src: await p.chain('src') };
      await p.write('src', { 'third.txt': 'never sent' });

      await p.t.throwsAsync(p.run(name), {
        message: `The destination ${p.ds('dst')} has 1 snapshot(s) but none in common with the source ${p.ds('src')}. Nothing was sent. Run 'setup auto-sync :${name} resync' to start over with a full sync.`,
      });
      const view = p.services.autoSync.view(name);
      p.t.is(view.state, 'maintenance');
      p.t.regex(view.config.maintenance?.reason ?? '', /Broken chain/);
      p.t.is(view.config.maintenance?.kind, 'broken-chain');
      p.t.true(
        p.services.autoSync
          .log(name)
          .tail(20)
          .some((l) => l.includes(`ALERT: auto-sync:${name} put in maintenance`)),
      );
      await p.t.throwsAsync(p.run(name), { message: new RegExp(`auto-sync:${name} is in maintenance`) }, 'no run while in maintenance');
      await p.expectTree('dst', before.tree, 'the destination was not touched');
      p.t.deepEqual(
        (await p.snapshots('dst')).map((s) => s.name),
        ['by-hand'],
      );
      p.t.deepEqual(await p.chain('src'), before.src, 'no marker was added or pruned on the source');

      // a resync starts over with a full sync, moving the old destination aside, never destroying it
      const resync = await p.services.autoSync.run(name, { resync: true });
      p.t.true(resync.full);
      p.t.is(p.services.autoSync.view(name).state, 'online', 'a successful resync clears maintenance');
      await p.expectMirror('src', 'dst', 'after the resync');
      const aside = (await p.leaves()).filter((leaf) => leaf.startsWith('dst-resync-'));
      p.t.is(aside.length, 1, `the old destination is kept under a new name (${aside.join(', ')})`);
      await p.expectTree(aside[0]!, before.tree, 'what was moved aside is kept as it was');
      p.t.deepEqual(
        (await p.snapshots(aside[0]!)).map((s) => s.name),
        ['by-hand'],
        'with its snapshots',
      );
      p.t.true(
        p.services.autoSync
          .log(name)
          .tail(20)
          .some((l) => l.includes(`is kept as ${p.local(aside[0]!)}`)),
        'and the log says where',
      );
      await p.write('src', { 'fourth.txt': 'after the resync' });
      p.t.false((await p.run(name)).full);
      await p.expectMirror('src', 'dst', 'after the next run');
    },
  },
  {
    title: 'retention: keep_src and keep_dst prune old markers, never the last common one nor other snapshots',
    async run(p) {
      await p.folder('src');
      const name = await p.service('src', 'dst', { keepSrc: 2, keepDst: 3 });
      const driver = await p.driver();
      for (let run = 1; run <= 5; run++) {
        await p.write('src', { [`f${run}.txt`]: `run ${run}` });
        if (run === 2) await driver.createSnapshot(p.local('src'), 'by-hand', { recursive: p.recursive });
        const result = await p.run(name);
        const [src, dst] = [await p.markers('src', name), await p.markers('dst', name)];
        p.t.is(src.length, Math.min(run, 2), `run ${run}: markers on the source`);
        p.t.is(dst.length, Math.min(run, 3), `run ${run}: markers on the destination`);
        p.t.is(src.at(-1)!.name, result.marker);
        p.t.is(dst.at(-1)!.id, src.at(-1)!.id, `run ${run}: the newest marker is the common one`);
        p.t.deepEqual(
          src.map((s) => s.held),
          [...src.slice(1).map(() => false), true],
          `run ${run}: only the common marker is held (source)`,
        );
        p.t.deepEqual(
          dst.map((s) => s.held),
          [...dst.slice(1).map(() => false), true],
          `run ${run}: only the common marker is held (destination)`,
        );
      }
      p.t.true(
        (await p.snapshots('src')).some((s) => s.name === 'by-hand'),
        'a snapshot that is not a marker is never pruned',
      );
      await p.expectMirror('src', 'dst');

      await p.services.autoSync.setProperty(name, 'keep_src', '1');
      await p.services.autoSync.setProperty(name, 'keep_dst', '1');
      await p.write('src', { 'last.txt': 'last' });
      const last = await p.run(name);
      const [src, dst] = [await p.markers('src', name), await p.markers('dst', name)];
      p.t.deepEqual(
        src.map((s) => s.name),
        [last.marker],
        'keep 1: the last common marker stays',
      );
      p.t.deepEqual(
        dst.map((s) => s.id),
        src.map((s) => s.id),
      );
      p.t.false((await p.run(name)).full, 'and the next run is incremental from it');
      await p.expectMirror('src', 'dst');
    },
  },
  {
    title: "retention grid: keep_src '1h' and keep_dst 'all 1d' thin each side as show snapshots says; a grid change takes effect at the next run",
    async run(p) {
      await p.folder('src');
      const name = await p.service('src', 'dst', { keepSrc: '1h', keepDst: 'all 1d' });
      const driver = await p.driver();
      await p.write('src', { 'first.txt': 'first' });
      await driver.createSnapshot(p.local('src'), 'by-hand', { recursive: p.recursive });
      const markers: string[] = [];
      for (let run = 1; run <= 3; run++) {
        await p.write('src', { [`f${run}.txt`]: `run ${run}` });
        markers.push((await p.run(name)).marker);
      }
      p.t.deepEqual(
        (await p.markers('src', name)).map((s) => s.name),
        markers.slice(-1),
        "1h on the source: only the newest of this hour (all three runs' hour) stays",
      );
      p.t.deepEqual(
        (await p.markers('dst', name)).map((s) => s.name),
        markers,
        'all 1d on the destination: every marker of the last day stays',
      );
      p.t.true(
        (await p.snapshots('src')).some((s) => s.name === 'by-hand'),
        "the operator's snapshot is never pruned",
      );
      const plans = await p.services.autoSync.retention(name);
      p.t.is(plans.source.keep, '1h');
      p.t.deepEqual(
        plans.source.plan.map((m) => [m.name, m.keep, m.rules]),
        [[markers[2], true, ['last common', '1h']]],
      );
      p.t.true(plans.source.others.includes('by-hand'));
      p.t.deepEqual(
        plans.destination.plan.map((m) => [m.name, m.rules]),
        [
          [markers[0], ['all 1d']],
          [markers[1], ['all 1d']],
          [markers[2], ['last common', 'all 1d']],
        ],
      );

      await p.services.autoSync.setProperty(name, 'keep_dst', '1h');
      const dry = await p.services.autoSync.prune(name, { dryRun: true });
      p.t.deepEqual(
        dry.destination.plan.map((m) => [m.name, m.keep]),
        [
          [markers[0], false],
          [markers[1], false],
          [markers[2], true],
        ],
        'the dry run says the two older go',
      );
      p.t.deepEqual(dry.pruned, []);
      p.t.is((await p.markers('dst', name)).length, 3, 'and the dry run removes nothing');
      await p.write('src', { 'last.txt': 'last' });
      const last = await p.run(name);
      p.t.deepEqual(
        (await p.markers('dst', name)).map((s) => s.name),
        [last.marker],
        'the next run thins the destination by the new grid',
      );
      p.t.deepEqual(
        (await p.markers('src', name)).map((s) => s.name),
        [last.marker],
      );
      p.t.false((await p.run(name)).full, 'and the next run is incremental from the one kept');
      await p.expectMirror('src', 'dst');
    },
  },
  {
    title: 'exclude patterns (nested, negated, anchored): fs leaves them out of snapshots and sends, and a newly excluded path leaves the destination; zfs and btrfs refuse them',
    async run(p) {
      await p.folder('src');
      await p.write('src', {
        'keep.txt': 'kept',
        'a.tmp': 'scratch',
        'docs/readme.md': 'doc',
        'docs/b.tmp': 'scratch',
        'docs/keep.tmp': 'kept by !keep.tmp',
        'docs/cache/y.bin': random(2 * MiB),
        'cache/x': 'cached',
        'build/out/z.o': 'object',
        'sub/build/w.o': 'not under /build',
        'deep/one/two/secret': 'hidden',
        'deep/public': 'shown',
      });
      const patterns = ['*.tmp', '!keep.tmp', 'cache/', '/build/**', 'deep/**/secret'];
      if (p.kind !== 'fs') {
        await p.t.throwsAsync(p.service('src', 'dst', { exclude: patterns }), {
          message: new RegExp(`A ${p.kind} service replicates whole datasets: exclude patterns \\(\\*\\.tmp, !keep\\.tmp, cache/, /build/\\*\\*, deep/\\*\\*/secret\\) work only with the fs driver\\.`),
        });
        p.t.deepEqual(p.services.autoSync.names(), [], 'and no service is created');
        const name = await p.service('src', 'dst');
        await p.t.throwsAsync(p.services.autoSync.setProperty(name, 'exclude', '*.tmp'), { message: /replicates whole datasets: exclude patterns \(\*\.tmp\) work only with the fs driver/ });
        await p.t.throwsAsync((await p.driver()).createSnapshot(p.local('src'), 'ex', { recursive: false, exclude: ['*.tmp'] }), { message: /holds the whole dataset: exclude patterns work only with the fs driver/ });
        p.t.is(p.services.autoSync.getProperty(name, 'exclude')[0].value, 'none');
        return;
      }
      const name = await p.service('src', 'dst', { exclude: patterns });
      const first = await p.run(name);
      p.t.true(first.bytes < MiB, `the excluded 2 MiB file is not sent (${first.bytes} bytes)`);
      const files = async (leaf: string) => [...(await p.tree(leaf)).keys()].filter(Boolean).sort();
      const shown = ['build', 'deep', 'deep/one', 'deep/one/two', 'deep/public', 'docs', 'docs/keep.tmp', 'docs/readme.md', 'keep.txt', 'sub', 'sub/build', 'sub/build/w.o'];
      p.t.deepEqual(await files('dst'), shown);
      const dir = await p.dir('src');
      await writeFile(path.join(dir, 'a.tmp'), 'scratch, changed');
      p.t.false(await (await p.driver()).changedSince(p.local('src'), first.marker), 'a change to an excluded file is not a change of the snapshot');
      await writeFile(path.join(dir, 'keep.txt'), 'kept, changed');
      p.t.true(await (await p.driver()).changedSince(p.local('src'), first.marker));

      await p.services.autoSync.setProperty(name, 'exclude', '*.tmp, !keep.tmp, /docs/, /build/**');
      p.t.is(p.services.autoSync.getProperty(name, 'exclude')[0].value, '*.tmp, !keep.tmp, /docs/, /build/**');
      await p.run(name);
      p.t.deepEqual(
        await files('dst'),
        ['build', 'cache', 'cache/x', 'deep', 'deep/one', 'deep/one/two', 'deep/one/two/secret', 'deep/public', 'keep.txt', 'sub', 'sub/build', 'sub/build/w.o'],
        'docs/ newly excluded leaves the destination; cache/ and the secret, no longer excluded, arrive',
      );
      p.t.is(await readFile(path.join(await p.dir('dst'), 'keep.txt'), 'utf8'), 'kept, changed');
      p.t.true(existsSync(path.join(dir, 'docs', 'readme.md')), 'the source keeps its excluded files');

      for (const [bad, message] of [
        ['*', /"\*" would leave everything out/],
        ['../etc', /must not name "\.\."/],
        ['#tmp', /starts with #/],
        ['a.tmp,,b', /must not be empty/],
        ['["a", 1]', /not a JSON array of strings/],
      ] as const) {
        await p.t.throwsAsync(p.services.autoSync.setProperty(name, 'exclude', bad), { message }, bad);
      }
      p.t.is(p.services.autoSync.getProperty(name, 'exclude')[0].value, '*.tmp, !keep.tmp, /docs/, /build/**', 'a refused list changes nothing');
      await p.services.autoSync.setProperty(name, 'exclude', 'none');
      await p.run(name);
      await p.expectMirror('src', 'dst', 'with no patterns the whole tree is sent again');
    },
  },
  {
    title: 'two services from one source to two destinations both stay correct',
    async run(p) {
      await p.folder('src');
      await p.write('src', { 'base.txt': 'base', 'data.bin': random(300_000) });
      const one = await p.service('src', 'one', { keepSrc: 2, keepDst: 2 });
      const two = await p.service('src', 'two', { keepSrc: 2, keepDst: 2 });
      const dir = await p.dir('src');
      const steps: Array<[string, string]> = [
        [one, 'one'],
        [two, 'two'],
        [one, 'one'],
        [one, 'one'],
        [two, 'two'],
        [two, 'two'],
        [one, 'one'],
        [two, 'two'],
      ];
      let i = 0;
      for (const [service, leaf] of steps) {
        i++;
        await writeFile(path.join(dir, 'base.txt'), `base, step ${i}`);
        await writeFile(path.join(dir, `step-${i}.txt`), `step ${i}`);
        if (i % 3 === 0) await rm(path.join(dir, `step-${i - 1}.txt`));
        await p.run(service);
        await p.expectMirror('src', leaf, `after step ${i} (${service})`);
      }
      for (const [service, leaf] of [
        [one, 'one'],
        [two, 'two'],
      ] as const) {
        p.t.is((await p.markers('src', service)).length, 2, `${service} keeps its own markers on the source`);
        p.t.true((await p.markers(leaf, service)).length <= 2, `${service} prunes its own markers on ${leaf}`);
        p.t.like(p.services.autoSync.view(service).run, { lastResult: 'success', consecutiveFailures: 0 });
      }
      const foreign = (await p.snapshots('two')).filter((s) => s.name.startsWith(`syncsh-${one}-`)).length;
      if (foreign) p.t.log(`${p.kind}: ${foreign} marker(s) of ${one} travelled to 'two' with -I and are pruned by no one`);
    },
  },
];

// ---- the matrix -----------------------------------------------------------------

const DRIVERS: DriverName[] = ['fs', 'zfs', 'btrfs'];
/** scenarios at once per driver: zfs-fuse is one daemon, and two cores are shared with the other files */
const LIMITS: Record<DriverName, number> = { fs: 3, zfs: 2, btrfs: 2 };
const gates = {} as Record<DriverName, GatedTest>;
for (const kind of DRIVERS) gates[kind] = await gatedTest(FIXTURES[kind].what, FIXTURES[kind].missing);

for (const kind of DRIVERS) {
  const limit = limiter(LIMITS[kind]);
  for (const scenario of SCENARIOS) {
    if (scenario.drivers && !scenario.drivers.includes(kind)) continue;
    gates[kind](`${kind} › ${scenario.title}`, (t) =>
      limit(async () => {
        const p = await FIXTURES[kind].setup(t, scenario.size ? { size: scenario.size } : {});
        await scenario.run(p);
      }),
    );
  }
}

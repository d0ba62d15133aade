/**
 * What the fs driver keeps beyond contents, modes and times: the owner
 * (uid, gid) of files, directories and symlinks, and hard links (one file
 * with several names stays one file with those names), through snapshots,
 * rollbacks, full and incremental streams and crashes. Also: streams of
 * the previous version (no owners, no links) are still received.
 * Runs as root, like the appliance (owners other than our own need it).
 */
import test from 'ava';
import { chmodSync, lchownSync, linkSync, lstatSync, mkdirSync, readFileSync, readlinkSync, readdirSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createFsDriver } from '../../../src/services/storage/fs/index.js';
import { Layout } from '../../../src/services/storage/fs/layout.js';
import { tempDir, writeTree } from '../../helpers/fs-tree.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url));
const opts = { force: false, recursive: false };

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/**
 * Every entry under root as one line: type, owner, mode, content (or
 * target), mtime in whole seconds (times travel through a double), and for
 * a file with other names in the tree "= <its first name>".
 */
function shape(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const firstName = new Map<number, string>();
  const walk = (rel: string) => {
    for (const name of readdirSync(rel ? path.join(root, rel) : root).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const full = path.join(root, p);
      const st = lstatSync(full);
      const owner = `${st.uid}:${st.gid}`;
      if (st.isDirectory()) {
        out[p] = `dir ${owner} ${(st.mode & 0o7777).toString(8)}`;
        walk(p);
      } else if (st.isSymbolicLink()) {
        out[p] = `symlink ${owner} -> ${readlinkSync(full)}`;
      } else {
        const sha = createHash('sha256').update(readFileSync(full)).digest('hex').slice(0, 12);
        let line = `file ${owner} ${(st.mode & 0o7777).toString(8)} ${sha} mtime ${Math.floor(st.mtimeMs / 1000)}`;
        if (st.nlink > 1) {
          const first = firstName.get(st.ino);
          if (first === undefined) firstName.set(st.ino, p);
          else line += ` = ${first}`;
        }
        out[p] = line;
      }
    }
  };
  walk('');
  const top = statSync(root); // the mountpoint: a link to the tree's live version
  out['.'] = `root ${top.uid}:${top.gid} ${(top.mode & 0o7777).toString(8)}`;
  return out;
}

function sameFile(a: string, b: string): boolean {
  const [x, y] = [lstatSync(a), lstatSync(b)];
  return x.ino === y.ino && x.dev === y.dev;
}

/** The names `file` has inside the tree at `root` (its nlink also counts the names in the dataset's spare version: fs/versions.ts). */
function namesIn(root: string, file: string): string[] {
  const { ino } = lstatSync(file);
  return (readdirSync(root, { recursive: true }) as string[]).filter((p) => lstatSync(path.join(root, p)).ino === ino).sort();
}

async function twoAppliances(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t);
  const mk = (name: string) => {
    const root = path.join(dir, name);
    return { root, driver: createFsDriver(root), layout: new Layout(root), live: (ds: string) => path.join(root, ...ds.split('/')) };
  };
  const a = mk('a');
  const b = mk('b');
  await a.driver.createDataset('tank');
  await b.driver.createDataset('tank');
  await a.driver.createDataset('tank/src');
  return { dir, a, b, src: a.live('tank/src'), dst: b.live('tank/dst') };
}

/** Owners on files, directories and symlinks (the root too), and files with several names. */
async function richTree(src: string): Promise<void> {
  await writeTree(src, {
    'plain.txt': 'plain, owned by root',
    'users/alice/notes.txt': { content: 'alice', mode: 0o640 },
    'users/alice/tool': { content: '#!/bin/sh\n', mode: 0o4755 },
    'users/bob/data.bin': randomBytes(3 << 20),
    'shared/report.txt': 'one file, three names',
    'shared/lonely': 'one name',
    'links/to-notes': { symlink: '../users/alice/notes.txt' },
  });
  const at = (p: string) => path.join(src, p);
  lchownSync(at('users/alice'), 1001, 1001);
  lchownSync(at('users/alice/notes.txt'), 1001, 100);
  lchownSync(at('users/alice/tool'), 1001, 1001);
  chmodSync(at('users/alice/tool'), 0o4755); // chown cleared the set-user-ID bit
  lchownSync(at('users/bob'), 1002, 1002);
  lchownSync(at('users/bob/data.bin'), 1002, 50);
  lchownSync(at('links/to-notes'), 1001, 1001);
  lchownSync(at('links'), 0, 1001);
  lchownSync(src, 4242, 4343);
  linkSync(at('shared/report.txt'), at('users/alice/report.txt'));
  linkSync(at('shared/report.txt'), at('users/bob/report-copy.txt'));
  linkSync(at('users/bob/data.bin'), at('users/bob/data-again.bin'));
  lchownSync(at('shared/report.txt'), 1001, 1002);
}

test('a snapshot sent in full arrives with its owners and its hard links', async (t) => {
  const { a, b, src, dst } = await twoAppliances(t);
  await richTree(src);
  const want = shape(src);
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  const stream = await collect(a.driver.send('tank/src', 's1', { recursive: false }));
  t.true(stream.length < (3 << 20) + 64 * 1024, `a file with two names travels once: ${stream.length} bytes`);
  await b.driver.receive('tank/dst', Readable.from([stream]), opts);
  t.deepEqual(shape(dst), want);
  t.true(sameFile(path.join(dst, 'shared/report.txt'), path.join(dst, 'users/bob/report-copy.txt')));
  t.is(lstatSync(path.join(dst, 'shared/report.txt')).nlink, 3);
  t.is(lstatSync(path.join(dst, 'users/bob/data.bin')).nlink, 2);
  t.is(lstatSync(path.join(dst, 'users/alice/tool')).mode & 0o7777, 0o4755, 'the set-user-ID bit survives the change of owner');
  t.false(await b.driver.changedSince('tank/dst', 's1'));
  t.false(await a.driver.changedSince('tank/src', 's1'));
  // Only the file's bytes count, once.
  const [snap] = await b.driver.listSnapshots('tank/dst');
  t.true(snap.size! < (3 << 20) + 1000, `referenced ${snap.size} bytes`);
});

test('incremental streams follow changes of owner on files, directories and symlinks', async (t) => {
  const { a, b, src, dst } = await twoAppliances(t);
  await richTree(src);
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's1', { recursive: false }), opts);
  const at = (p: string) => path.join(src, p);
  lchownSync(at('plain.txt'), 2001, 2002);
  lchownSync(at('users/bob'), 2001, 2001);
  lchownSync(at('links/to-notes'), 0, 0);
  lchownSync(src, 0, 0);
  lchownSync(at('users/alice/report.txt'), 3000, 3000); // one name of three: the file has one owner
  lchownSync(at('users/bob/data.bin'), 2001, 50);
  t.true(await a.driver.changedSince('tank/src', 's1'), 'a change of owner is a change');
  await a.driver.createSnapshot('tank/src', 's2', { recursive: false });
  const delta = await collect(a.driver.send('tank/src', 's2', { from: 's1', recursive: false }));
  t.true(delta.length < 16 * 1024, `no content travels for a change of owner: ${delta.length} bytes`);
  await b.driver.receive('tank/dst', Readable.from([delta]), opts);
  t.deepEqual(shape(dst), shape(src));
  t.is(lstatSync(path.join(dst, 'shared/report.txt')).uid, 3000);
  t.false(await b.driver.changedSince('tank/dst', 's2'));

  // New files, directories and symlinks with owners.
  await writeTree(src, { 'new/dir/file.txt': 'new', 'new/link': { symlink: 'dir/file.txt' } });
  lchownSync(at('new'), 5000, 5001);
  lchownSync(at('new/dir/file.txt'), 5002, 5003);
  lchownSync(at('new/link'), 5004, 5005);
  await a.driver.createSnapshot('tank/src', 's3', { recursive: false });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's3', { from: 's2', recursive: false }), opts);
  t.deepEqual(shape(dst), shape(src));
});

test('incremental streams follow hard links made, removed, written through and broken', async (t) => {
  const { a, b, src, dst } = await twoAppliances(t);
  const at = (p: string) => path.join(src, p);
  const big = randomBytes(2 << 20);
  await writeTree(src, { 'a.txt': 'alpha', 'b.txt': 'bravo', 'big.bin': big, 'sub/x.txt': 'xray', 'sub/y.txt': 'xray' });
  linkSync(at('a.txt'), at('a2.txt'));
  await a.driver.createSnapshot('tank/src', 's0', { recursive: false });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's0', { recursive: false }), opts);
  t.deepEqual(shape(dst), shape(src));
  let n = 0;
  const step = async (what: string, maxBytes: number) => {
    const from = `s${n}`;
    const to = `s${++n}`;
    await a.driver.createSnapshot('tank/src', to, { recursive: false });
    const delta = await collect(a.driver.send('tank/src', to, { from, recursive: false }));
    t.true(delta.length <= maxBytes, `${what}: ${delta.length} bytes`);
    await b.driver.receive('tank/dst', Readable.from([delta]), opts);
    t.deepEqual(shape(dst), shape(src), what);
    t.false(await b.driver.changedSince('tank/dst', to), `${what}: the destination matches its snapshot`);
    t.false(await a.driver.changedSince('tank/src', to), `${what}: the source matches its snapshot`);
  };

  linkSync(at('big.bin'), at('sub/big-link.bin'));
  linkSync(at('big.bin'), at('zz-last-name.bin'));
  await step('links made to a large file', 64 * 1024);
  t.true(sameFile(path.join(dst, 'big.bin'), path.join(dst, 'sub/big-link.bin')));

  unlinkSync(at('a2.txt'));
  await step('a link removed', 64 * 1024);
  t.deepEqual(namesIn(dst, path.join(dst, 'a.txt')), ['a.txt']);

  // Written through one name: every name sees it.
  const changed = Buffer.from(big);
  changed[12345] ^= 0xff;
  writeFileSync(at('sub/big-link.bin'), changed);
  await step('content changed through one name', (1 << 20) + 64 * 1024);
  t.true(sameFile(path.join(dst, 'big.bin'), path.join(dst, 'zz-last-name.bin')));
  t.true(readFileSync(path.join(dst, 'big.bin')).equals(changed));

  // Replaced under one name (a new file renamed over it): that name is a file of its own now.
  writeFileSync(at('zz-new'), 'a new file');
  renameSync(at('zz-new'), at('zz-last-name.bin'));
  await step('one name replaced by another file', 64 * 1024);
  t.false(sameFile(path.join(dst, 'big.bin'), path.join(dst, 'zz-last-name.bin')));
  t.true(sameFile(path.join(dst, 'big.bin'), path.join(dst, 'sub/big-link.bin')));

  // Two files with the same content become one (the first name is the one that goes).
  unlinkSync(at('sub/x.txt'));
  linkSync(at('sub/y.txt'), at('sub/x.txt'));
  await step('two files of the same content made one', 64 * 1024);
  t.true(sameFile(path.join(dst, 'sub/x.txt'), path.join(dst, 'sub/y.txt')));

  // And split again, with the same content: the names must stop being one file.
  unlinkSync(at('sub/y.txt'));
  writeFileSync(at('sub/y.txt'), 'xray');
  await step('one file split into two of the same content', 64 * 1024);
  t.false(sameFile(path.join(dst, 'sub/x.txt'), path.join(dst, 'sub/y.txt')));

  // The first name removed: the file goes on under its other names.
  unlinkSync(at('big.bin'));
  await step('the first name of a file removed', 64 * 1024);
  t.deepEqual(namesIn(dst, path.join(dst, 'sub/big-link.bin')), ['sub/big-link.bin']);

  // A link to a file in another directory, with a change of owner and mode at once.
  linkSync(at('b.txt'), at('sub/b-too.txt'));
  lchownSync(at('b.txt'), 7, 8);
  chmodSync(at('b.txt'), 0o600);
  await step('a link made while the file changes owner and mode', 64 * 1024);
});

test('a destination whose owners or links were changed is refused, and rolled back with force', async (t) => {
  const { a, b, src, dst } = await twoAppliances(t);
  await richTree(src);
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  await b.driver.receive('tank/dst', a.driver.send('tank/src', 's1', { recursive: false }), opts);
  writeFileSync(path.join(src, 'plain.txt'), 'changed at the source');
  await a.driver.createSnapshot('tank/src', 's2', { recursive: false });
  const delta = await collect(a.driver.send('tank/src', 's2', { from: 's1', recursive: false }));

  const cases: [string, () => void, RegExp][] = [
    ['a file given away', () => lchownSync(path.join(dst, 'users/alice/notes.txt'), 0, 0), /users\/alice\/notes\.txt changed owner/],
    ['a directory given away', () => lchownSync(path.join(dst, 'users/bob'), 0, 0), /users\/bob changed owner/],
    ['a symlink given away', () => lchownSync(path.join(dst, 'links/to-notes'), 0, 0), /links\/to-notes changed owner/],
    [
      'a link broken',
      () => {
        const f = path.join(dst, 'users/alice/report.txt');
        const st = lstatSync(f);
        unlinkSync(f);
        writeFileSync(f, readFileSync(path.join(dst, 'shared/report.txt')));
        lchownSync(f, st.uid, st.gid);
        utimesSync(f, st.atime, st.mtime);
      },
      /users\/alice\/report\.txt is no longer a hard link of shared\/report\.txt/,
    ],
    [
      'a link made',
      () => {
        const f = path.join(dst, 'shared/lonely');
        unlinkSync(f);
        linkSync(path.join(dst, 'plain.txt'), f);
      },
      /became a hard link of plain\.txt/,
    ],
  ];
  for (const [what, change, message] of cases) {
    change();
    await t.throwsAsync(b.driver.receive('tank/dst', Readable.from([delta]), opts), { message }, what);
    t.true(await b.driver.changedSince('tank/dst', 's1'), what);
    await b.driver.rollback('tank/dst', 's1');
    t.false(await b.driver.changedSince('tank/dst', 's1'), `${what}: rolled back`);
  }
  lchownSync(path.join(dst, 'users/bob/data.bin'), 9, 9);
  unlinkSync(path.join(dst, 'users/bob/data-again.bin'));
  await b.driver.receive('tank/dst', Readable.from([delta]), { force: true, recursive: false });
  t.deepEqual(shape(dst), shape(src));
});

test('a rollback puts owners and hard links back', async (t) => {
  const { a, src } = await twoAppliances(t);
  await richTree(src);
  const before = shape(src);
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  const at = (p: string) => path.join(src, p);
  lchownSync(at('users/alice/notes.txt'), 0, 0);
  lchownSync(at('users/alice'), 0, 0);
  lchownSync(at('links/to-notes'), 0, 0);
  unlinkSync(at('users/bob/report-copy.txt'));
  writeFileSync(at('users/bob/report-copy.txt'), 'a file of its own');
  unlinkSync(at('users/bob/data-again.bin'));
  linkSync(at('plain.txt'), at('shared/plain-too.txt'));
  writeFileSync(at('users/alice/report.txt'), 'written through one name of three');
  t.true(await a.driver.changedSince('tank/src', 's1'));
  await a.driver.rollback('tank/src', 's1');
  t.deepEqual(shape(src), before);
  t.false(await a.driver.changedSince('tank/src', 's1'));
});

test('a receive with hard links and owners stopped after any journal step is finished by recover', async (t) => {
  const { dir, a, src } = await twoAppliances(t);
  await richTree(src);
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  const full = await collect(a.driver.send('tank/src', 's1', { recursive: false }));
  const at = (p: string) => path.join(src, p);
  linkSync(at('plain.txt'), at('users/plain-link.txt'));
  unlinkSync(at('users/bob/data-again.bin'));
  writeFileSync(at('shared/report.txt'), 'written through one of three names');
  lchownSync(at('users/bob'), 77, 77);
  mkdirSync(at('made'));
  lchownSync(at('made'), 88, 88);
  linkSync(at('users/alice/notes.txt'), at('made/notes-link.txt'));
  await a.driver.createSnapshot('tank/src', 's2', { recursive: false });
  const delta = await collect(a.driver.send('tank/src', 's2', { from: 's1', recursive: false }));
  const want = shape(src);
  let crashes = 0;
  for (let n = 0; ; n++) {
    const root = path.join(dir, `run-${n}`);
    const b = createFsDriver(root);
    await b.createDataset('tank');
    await b.receive('tank/dst', Readable.from([full]), opts);
    let completed = false;
    try {
      await createFsDriver(root, { faults: { crashAfterJournalSteps: n } }).receive('tank/dst', Readable.from([delta]), opts);
      completed = true;
    } catch (error) {
      t.is((error as Error).name, 'SimulatedCrash', (error as Error).message);
      crashes++;
      await b.recover('tank/dst');
    }
    t.deepEqual(shape(path.join(root, 'tank', 'dst')), want, `crash after step ${n}`);
    t.false(await b.changedSince('tank/dst', 's2'));
    if (completed) break;
  }
  t.true(crashes > 5, `${crashes} crash points`);
});

test('streams of the previous version (2) are still received: their files come without owners or links', async (t) => {
  const { b, dst } = await twoAppliances(t);
  const full = readFileSync(path.join(FIXTURES, 'fs-stream-v2-full.bin'));
  const incremental = readFileSync(path.join(FIXTURES, 'fs-stream-v2-incremental.bin'));
  t.is(full.readUInt32BE(8), 2, 'the fixture is a version 2 stream');
  await b.driver.receive('tank/dst', Readable.from([full]), opts);
  await b.driver.receive('tank/dst', Readable.from([incremental]), opts);
  // Made by syncsh at 03f527c from a tree where a-link.txt was a.txt under another name and dir/b.txt belonged to 1234:5678.
  t.is(readFileSync(path.join(dst, 'a.txt'), 'utf8'), 'alpha\n');
  t.is(readFileSync(path.join(dst, 'a-link.txt'), 'utf8'), 'alpha\n');
  t.false(sameFile(path.join(dst, 'a.txt'), path.join(dst, 'a-link.txt')), 'version 2 did not know hard links');
  t.is(readFileSync(path.join(dst, 'dir/c.txt'), 'utf8'), 'charlie\n');
  t.is(lstatSync(path.join(dst, 'dir/b.txt')).uid, 0, 'version 2 did not know owners');
  t.is(lstatSync(path.join(dst, 'dir/c.txt')).mtimeMs, 1_600_000_100_000);
  t.false(await b.driver.changedSince('tank/dst', 's2'));

  // A snapshot of this format 1 base taken now records owners and links, and sends them incrementally.
  const c = createFsDriver(path.join(b.root, '..', 'c'));
  await c.createDataset('tank');
  await c.receive('tank/copy', Readable.from([full]), opts);
  await c.receive('tank/copy', Readable.from([incremental]), opts);
  unlinkSync(path.join(dst, 'a-link.txt'));
  linkSync(path.join(dst, 'a.txt'), path.join(dst, 'a-link.txt'));
  lchownSync(path.join(dst, 'dir/b.txt'), 1234, 5678);
  await b.driver.createSnapshot('tank/dst', 's3', { recursive: false });
  await c.receive('tank/copy', b.driver.send('tank/dst', 's3', { from: 's2', recursive: false }), opts);
  const copy = path.join(b.root, '..', 'c', 'tank', 'copy');
  t.deepEqual(shape(copy), shape(dst));
  t.true(sameFile(path.join(copy, 'a.txt'), path.join(copy, 'a-link.txt')));
  t.is(lstatSync(path.join(copy, 'dir/b.txt')).uid, 1234);
});

test('a stream of a newer version than this syncsh reads is refused before anything happens', async (t) => {
  const { a, b, src } = await twoAppliances(t);
  await writeTree(src, { f: 'one' });
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  const full = await collect(a.driver.send('tank/src', 's1', { recursive: false }));
  t.is(full.readUInt32BE(8), 5, 'this syncsh sends version 5');
  for (const version of [1, 6]) {
    const other = Buffer.from(full);
    other.writeUInt32BE(version, 8);
    await t.throwsAsync(b.driver.receive('tank/dst', Readable.from([other]), opts), {
      message: `The stream has format version ${version}, but this syncsh reads versions 2 to 5 only; run the same syncsh version on both appliances. Nothing was changed on fs dataset tank/dst.`,
    });
  }
  t.is(await b.driver.getDataset('tank/dst'), null);
});

test('a manifest of a newer format than this syncsh reads is refused with a sentence', async (t) => {
  const { a, src } = await twoAppliances(t);
  await writeTree(src, { f: 'one' });
  const s1 = await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  const file = a.layout.manifestFile('tank/src', s1.id);
  const stored = JSON.parse(readFileSync(file, 'utf8')) as { format: number };
  t.is(stored.format, 2);
  writeFileSync(file, JSON.stringify({ ...stored, format: 3 }));
  await t.throwsAsync(createFsDriver(a.root).rollback('tank/src', 's1'), { message: /has format 3, but this syncsh reads formats up to 2; it was written by a newer syncsh\./ });
});

test('a stream whose hard link does not describe its file is refused', async (t) => {
  const { a, b, src } = await twoAppliances(t);
  await writeTree(src, { 'a.txt': 'alpha' });
  linkSync(path.join(src, 'a.txt'), path.join(src, 'b.txt'));
  await a.driver.createSnapshot('tank/src', 's1', { recursive: false });
  // Give the second name another owner in the snapshot, as a damaged or forged stream would.
  const s1 = (await a.driver.listSnapshots('tank/src'))[0];
  const file = a.layout.manifestFile('tank/src', s1.id);
  const stored = JSON.parse(readFileSync(file, 'utf8')) as { rows: unknown[][] };
  const row = stored.rows.find((r) => r[0] === 'b.txt')!;
  t.is(row[9], 'a.txt');
  row[7] = 999;
  writeFileSync(file, JSON.stringify(stored));
  await t.throwsAsync(b.driver.receive('tank/dst', createFsDriver(a.root).send('tank/src', 's1', { recursive: false }), opts), {
    message: /"b\.txt" is a hard link of "a\.txt" but does not describe the same file/,
  });
  t.is(await b.driver.getDataset('tank/dst'), null);
});

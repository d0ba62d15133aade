/**
 * Resumable transfers between appliances (issue 13): a 400 MB first sync
 * is cut at about half (kill -9 of the receiving agent; the link dropped),
 * and the next run sends only what the receiver does not hold yet (it says
 * which, over the control channel) — at most 55% of the bytes — and the
 * copy is byte-identical.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { gatedTest } from '../helpers/system.js';
import { netnsMissing } from '../helpers/netns.js';
import { sshdMissing } from '../helpers/sshd.js';
import { diffTrees, readTree } from '../helpers/fs-tree.js';
import { Layout } from '../../src/services/storage/fs/layout.js';
import { Fixture, folderWith, sshPair, until, type Appliance, type SshPair } from './_fixture.js';

const sshTest = await gatedTest(['sshd', 'network namespaces', 'tc'], async () => (await sshdMissing()) ?? (await netnsMissing()));

const SIZE = 400 << 20;
const fixture = new Fixture();
let pair: SshPair;
test.after.always(() => fixture.close());

/** bytes of sealed packs a receive into `dataset` on `x` kept so far */
function kept(x: Appliance, dataset: string): number {
  const layout = new Layout(path.join(x.home, 'fs'));
  if (!existsSync(layout.partialFile(dataset))) return 0;
  let packs: string[];
  try {
    packs = (JSON.parse(readFileSync(layout.partialFile(dataset), 'utf8')) as { packs: string[] }).packs;
  } catch {
    return 0; // being replaced
  }
  const dir = layout.blocksDir(dataset);
  return packs.filter((id) => existsSync(path.join(dir, `${id}.idx`))).reduce((n, id) => n + (statSync(path.join(dir, `${id}.pack`), { throwIfNoEntry: false })?.size ?? 0), 0);
}

/** the run after the cut: at most 55% of the bytes, the copy identical, the log says how many chunks went */
async function resumed(t: ExecutionContext, name: string, src: string, dst: string) {
  const r = await pair.a.services.autoSync.run(name);
  t.true(r.bytes <= 0.55 * SIZE, `the next run sent ${r.bytes} bytes of ${SIZE}`);
  t.log(`the next run sent ${r.bytes} bytes (${(r.bytes / SIZE).toFixed(3)} of ${SIZE})`);
  t.deepEqual(diffTrees(await readTree(src), await readTree(dst)), []);
  const line = pair.a.services.autoSync
    .log(name)
    .tail(20)
    .find((l) => /sent \d+ of \d+ chunks/.test(l));
  t.truthy(line, 'the run logs how many chunks it sent');
  const [, sent, of] = /sent (\d+) of (\d+) chunks \(([\d.]+) MB\)/.exec(line!)!;
  t.is(Number(of), 401, '400 chunks of the big file and the small one');
  t.true(Number(sent) <= 0.55 * 401, line);
}

sshTest.serial('setup: bound appliances behind a link that can be cut', async (t) => {
  pair = await sshPair(fixture);
  const r = await pair.a.cli(`${pair.bindLine} -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  await folderWith(pair.b, 'tank', {});
  await folderWith(pair.a, 'tank', {});
});

sshTest.serial('local-to-remote: the receiving agent killed (SIGKILL) halfway through a 400 MB first sync; the next run sends only the rest', async (t) => {
  const { a, b } = pair;
  const src = await folderWith(a, 'tank/kill', { 'big.bin': randomBytes(SIZE), 'small.txt': 'small\n' });
  const { name } = await a.services.autoSync.create({ fromFs: 'fs:tank/kill', toHost: 'beta', toFs: 'fs:tank/kill-copy', recursive: false });
  const lockFile = new Layout(path.join(b.home, 'fs')).lockFile('tank/kill-copy');
  let killed = 0;
  const run = a.services.autoSync.run(name);
  run.catch(() => undefined);
  await until('half of the data to be kept on beta', () => kept(b, 'tank/kill-copy') >= SIZE / 2, 120_000);
  killed = (JSON.parse(readFileSync(lockFile, 'utf8')) as { pid: number }).pid;
  process.kill(killed, 'SIGKILL');
  await t.throwsAsync(run);
  t.true(killed > 0);
  t.is(await (await b.services.storage.usable('fs')).getDataset('tank/kill-copy'), null, 'nothing was created on beta');
  await resumed(t, name, src, b.live('tank/kill-copy'));
});

sshTest.serial('remote-to-local: the link drops halfway through a 400 MB first sync; the next run sends only the rest', async (t) => {
  const { a, b } = pair;
  const src = await folderWith(b, 'tank/cut', { 'big.bin': randomBytes(SIZE), 'small.txt': 'small\n' });
  const { name } = await a.services.autoSync.create({ fromHost: 'beta', fromFs: 'fs:tank/cut', toFs: 'fs:tank/cut-copy', recursive: false });
  const run = a.services.autoSync.run(name);
  run.catch(() => undefined);
  await until('half of the data to be kept here', () => kept(a, 'tank/cut-copy') >= SIZE / 2, 120_000);
  await pair.link.down();
  const error = await t.throwsAsync(run);
  t.regex(error!.message, /lost|link|No data|took no data/);
  await pair.link.up();
  await resumed(t, name, src, a.live('tank/cut-copy'));
});

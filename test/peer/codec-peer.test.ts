/**
 * A peer bound over SSH whose end of the wire lacks zstd (issue 13): its
 * sshd gives sessions a PATH without the zstd program, so beta's agent
 * cannot run it while alpha can. Asked for, zstd is refused at create (and
 * as a property), naming beta, and nothing changes; by default the service
 * falls back to none, create and the service's log say why, and the first
 * run goes through (before, it was created with zstd and failed at the run).
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { diffTrees, readTree } from '../helpers/fs-tree.js';
import { gatedTest } from '../helpers/system.js';
import { netnsMissing } from '../helpers/netns.js';
import { sshdMissing } from '../helpers/sshd.js';
import { codecUnavailable } from '../../src/services/wire/codecs.js';
import { Fixture, folderWith, sshPair, type SshPair } from './_fixture.js';

const sshTest = await gatedTest(['sshd', 'network namespaces', 'zstd'], async () => (await sshdMissing()) ?? (await netnsMissing()) ?? (await codecUnavailable('zstd')));

const fixture = new Fixture();
let pair: SshPair;
let bin: string;
test.after.always(() => {
  fixture.close();
  if (bin) rmSync(bin, { recursive: true, force: true });
});

/** a directory with every program of /usr/bin and /bin but zstd (a PATH for beta's sessions) */
function binWithoutZstd(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-nozstd-'));
  const out = path.join(dir, 'bin');
  mkdirSync(out);
  for (const from of ['/usr/bin', '/bin'])
    for (const name of readdirSync(from)) {
      if (name.startsWith('zstd') || name.startsWith('unzstd')) continue;
      try {
        symlinkSync(path.join(from, name), path.join(out, name));
      } catch {
        /* the same name in both (a merged /usr): the first is kept */
      }
    }
  return dir;
}

const NOT_ON_BETA = 'zstd is not available on beta: the zstd program was not found; install the zstd package, or use gzip or none.';

if (!sshTest.missing) {
  test.before(async () => {
    bin = binWithoutZstd();
    pair = await sshPair(fixture, { sshdEnv: { PATH: path.join(bin, 'bin') } });
    await folderWith(pair.b, 'tank', {});
    const r = await pair.a.cli(`${pair.bindLine} -y`);
    if (r.exitCode !== 0) throw new Error(String(r.stderr));
    await folderWith(pair.a, 'tank/docs', { 'readme.txt': 'hello\n' });
  });
}

sshTest.serial('compress zstd asked for at create is refused, naming the peer that lacks it; nothing is created', async (t) => {
  const before = pair.a.services.autoSync.store.names();
  const r = await pair.a.cli('create auto-sync --from-fs fs:tank/docs --to-host beta --to-fs fs:tank/asked --compress zstd --recursive no');
  t.is(r.exitCode, 1, String(r.stdout));
  t.true(String(r.stderr).includes(`compress zstd needs zstd at both ends of the wire: ${NOT_ON_BETA}`), String(r.stderr));
  t.deepEqual(pair.a.services.autoSync.store.names(), before);
});

sshTest.serial('by default the service falls back to compress none, says why at create and in its log, and its run goes through', async (t) => {
  const r = await pair.a.cli('create auto-sync --from-fs fs:tank/docs --to-host beta --to-fs fs:tank/copy --recursive no');
  t.is(r.exitCode, 0, String(r.stderr));
  const out = String(r.stdout);
  t.true(out.includes(`The wire is not compressed (compress none): ${NOT_ON_BETA}`), out);
  const name = /Created auto-sync:(\S+):/.exec(out)![1];
  t.is(pair.a.services.autoSync.config(name).compress, 'none');
  const log = String((await pair.a.cli(`show auto-sync :${name} log`)).stdout);
  t.true(log.includes(`The wire is not compressed (compress none): ${NOT_ON_BETA}`), log);
  const result = await pair.a.services.autoSync.run(name);
  t.true(result.full);
  t.deepEqual(diffTrees(await readTree(pair.a.live('tank/docs')), await readTree(pair.b.live('tank/copy'))), []);

  // the property: zstd refused the same way, gzip (Node's own at both ends) taken
  const set = await pair.a.cli(`setup auto-sync :${name} property compress zstd`);
  t.is(set.exitCode, 1);
  t.true(String(set.stderr).includes(`compress zstd needs zstd at both ends of the wire: ${NOT_ON_BETA}`), String(set.stderr));
  t.is(pair.a.services.autoSync.config(name).compress, 'none', 'nothing changed');
  t.is((await pair.a.cli(`setup auto-sync :${name} property compress gzip`)).exitCode, 0);
  t.is(pair.a.services.autoSync.config(name).compress, 'gzip');
});

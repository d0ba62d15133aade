/**
 * What local-bind (and the agent it starts) may make an appliance home of,
 * through the real CLI: a directory that is not a home is refused with
 * nothing written in it (a `../../..` path to a system-like directory, one
 * holding an unrelated services.json); an empty one only with --create; two
 * homes with the same id are told how to fix it, and `setup appliance id`
 * does (refused once bound). A local-bind peer's home gone since the
 * connection (its disk unmounted) is unreachable at the next agent started,
 * not made anew by it.
 */
import test from 'ava';
import { execa } from 'execa';
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { BIN, syncsh } from '../helpers/cli.js';
import { diffTrees, readTree, tempDir } from '../helpers/fs-tree.js';
import { createServices } from '../../src/services/index.js';
import { defaultApplianceId } from '../../src/services/appliance.js';
import { LocalTransport, PeerError } from '../../src/services/peer/transport.js';

const out = (r: { stdout?: unknown; stderr?: unknown }) => `${String(r.stdout ?? '')}${String(r.stderr ?? '')}`;

/** a directory that is not an appliance home: an /etc of its own, and one with someone else's services.json */
function victims(t: Parameters<typeof tempDir>[0]) {
  const etc = path.join(tempDir(t, 'syncsh-victim-'), 'etc');
  mkdirSync(path.join(etc, 'cron.d'), { recursive: true });
  writeFileSync(path.join(etc, 'passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  writeFileSync(path.join(etc, 'cron.d', 'job'), '* * * * * root true\n');
  const other = tempDir(t, 'syncsh-other-');
  writeFileSync(path.join(other, 'services.json'), '{"web": {"port": 80}}\n');
  return { etc, other };
}

test('local-bind to a directory that is not an appliance home is refused, nothing written there, no stack trace', async (t) => {
  const { home, env } = makeAppliance(t, 'node1');
  const { etc, other } = victims(t);
  // typed as an attacker types it: up and out of wherever the shell is
  const cwd = path.join(home, 'a', 'b', 'c');
  mkdirSync(cwd, { recursive: true });
  const climbing = path.join(path.relative(cwd, '/'), path.relative('/', etc));
  t.regex(climbing, /^(\.\.\/){4,}/);
  for (const [dir, holds] of [
    [climbing, /it holds cron\.d, passwd/],
    [other, /it holds services\.json/],
  ] as const) {
    const target = path.resolve(cwd, dir);
    const before = await readTree(target);
    const r = await syncsh(['-c', `setup network local-bind ${dir} -y`], env, { cwd });
    t.is(r.exitCode, 1, out(r));
    t.regex(String(r.stderr), /^Error: \S+ is not an appliance home: it has no appliance\.json and is not empty/);
    t.regex(String(r.stderr), holds);
    t.regex(String(r.stderr), /Nothing was written there\./);
    t.notRegex(out(r), /\n\s+at /, 'no stack trace');
    t.deepEqual(diffTrees(before, await readTree(target), { mtimes: true }), [], `${target} is byte for byte as it was`);
  }
  // nor does the agent make a home of it when started on it directly
  const before = await readTree(other);
  const agent = await execa('node', [BIN, 'agent', '--home', other], { reject: false, input: '' });
  t.is(agent.exitCode, 2);
  t.regex(agent.stdout, /is not an appliance home: it has no appliance\.json and is not empty/);
  t.deepEqual(diffTrees(before, await readTree(other), { mtimes: true }), []);
});

test('an empty directory becomes an appliance home only with --create, and gets an id of its own', async (t) => {
  // this appliance has the host name as its id, as every new home does
  const { env } = makeAppliance(t, defaultApplianceId());
  const empty = tempDir(t, 'syncsh-empty-');
  const refused = await syncsh(['-c', `setup network local-bind ${empty}`], env);
  t.is(refused.exitCode, 1);
  t.regex(String(refused.stderr), /is not an appliance home: it is empty; add --create to make a new appliance there\. Nothing was written there\./);
  t.deepEqual(readdirSync(empty), []);
  const missing = path.join(empty, 'new');
  const r = await syncsh(['-c', `setup network local-bind ${missing} --create`], env);
  t.is(r.exitCode, 0, out(r));
  const made = createServices({ ...process.env, SYNCSH_HOME: missing, SYNCSH_APPLIANCE_ID: '' });
  t.teardown(() => made.peers.close());
  t.not(made.appliance.id, defaultApplianceId());
  t.regex(String(r.stdout), new RegExp(`Bound to the appliance ${made.appliance.id} at ${missing}`));
});

test('two homes with the same id: local-bind says how to fix it; setup appliance id does, and is refused once bound', async (t) => {
  const a = makeAppliance(t, 'twin');
  const b = makeAppliance(t, 'twin');
  const same = await syncsh(['-c', `setup network local-bind ${b.home}`], a.env);
  t.is(same.exitCode, 1);
  t.regex(String(same.stderr), new RegExp(`The appliance at ${b.home} has the same id as this one \\(twin\\): .*"setup appliance id twin-2".*Nothing was changed\\.`));
  t.deepEqual(b.services.peers.store.inbound(), []);

  const bad = await syncsh(['-c', 'setup appliance id -twin'], b.env);
  t.is(bad.exitCode, 2);
  const bad2 = await syncsh(['-c', 'setup appliance id tw/in'], b.env);
  t.is(bad2.exitCode, 2);
  t.regex(String(bad2.stderr), /"tw\/in" is not a valid appliance id: 1 to 63 letters/);
  const renamed = await syncsh(['-c', 'setup appliance id twin-2'], b.env);
  t.is(renamed.exitCode, 0, out(renamed));
  t.regex(String(renamed.stdout), /The appliance id is now twin-2 \(was twin\)\./);

  const bound = await syncsh(['-c', `setup network local-bind ${b.home}`], a.env);
  t.is(bound.exitCode, 0, out(bound));
  t.regex(String(bound.stdout), /Bound to the appliance twin-2 /);
  for (const [x, other] of [
    [a, 'twin-2'],
    [b, 'twin'],
  ] as const) {
    const r = await syncsh(['-c', 'setup appliance id fresh'], x.env);
    t.is(r.exitCode, 1);
    t.regex(String(r.stderr), new RegExp(`The appliance id cannot change while this appliance is bound to ${other}: they know it as \\S+\\. Unbind them first`));
  }
  const shown = await syncsh(['-c', 'show appliance --json'], b.env);
  t.is(JSON.parse(String(shown.stdout)).id, 'twin-2');
});

test("a local-bind peer's home gone after the connection (its disk unmounted) is unreachable: the next agent does not make a new appliance there", async (t) => {
  const b = makeAppliance(t, 'beta');
  const transport = new LocalTransport({ node: process.execPath, script: BIN, home: b.home });
  t.teardown(() => transport.close());
  const first = await transport.exec('control');
  first.stdin.end();
  await first.done;
  // the disk under it unmounted: the mount point left, the home in it gone
  renameSync(b.home, `${b.home}-away`);
  t.teardown(() => renameSync(`${b.home}-away`, b.home));
  const error = await t.throwsAsync(transport.exec('control'), { instanceOf: PeerError });
  t.is(error?.code, 'unreachable');
  t.regex(error?.message ?? '', /its home is gone/);
  t.false(existsSync(b.home), 'nothing made where the home was');
});

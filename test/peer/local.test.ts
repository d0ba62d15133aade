/**
 * The agent protocol over a child process (two appliances on one machine,
 * `syncsh agent` with the other's home): binding, both directions, trails
 * and state on both sides, refusal of an unbound appliance, protocol
 * versions, and the agent's own checks of what it is asked to run.
 */
import test from 'ava';
import { execa } from 'execa';
import { diffTrees, readTree } from '../helpers/fs-tree.js';
import { BIN } from '../helpers/cli.js';
import { createServices } from '../../src/services/index.js';
import type { PeerError } from '../../src/services/peer/index.js';
import { Fixture, folderWith, makeAppliance, type Appliance } from './_fixture.js';

async function pairOf(t: { teardown(fn: () => unknown): void }): Promise<{ a: Appliance; b: Appliance }> {
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha');
  const b = makeAppliance(f, '7beta'); // an appliance id may start with a digit
  await folderWith(a, 'tank', {});
  await folderWith(b, 'tank', {});
  const r = await a.cli(`setup network local-bind ${b.home}`);
  if (r.exitCode !== 0) throw new Error(String(r.stderr));
  return { a, b };
}

test('local-bind records both sides; runs both ways keep trails and state on both', async (t) => {
  const { a, b } = await pairOf(t);
  t.like(a.services.peers.store.outboundPeer('7beta'), { transport: 'local', address: 'local' });
  t.like(b.services.peers.store.inboundPeer('alpha'), { transport: 'local', address: 'local' });

  const src = await folderWith(a, 'tank/docs', { 'x.txt': 'x\n', 'd/y.bin': Buffer.alloc(70_000, 7) });
  const l2r = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: '7beta', toFs: 'fs:tank/docs', recursive: false });
  const r1 = await a.services.autoSync.run(l2r.name);
  t.deepEqual(diffTrees(await readTree(src), await readTree(b.live('tank/docs'))), []);
  t.is(b.services.autoSync.store.runState(l2r.name).lastMarker, r1.marker);
  t.like(b.services.autoSync.history(l2r.name, 'receive').list()[0], { result: 'success', peer: 'alpha', snapshot: r1.marker });

  const bsrc = await folderWith(b, 'tank/src', { 'z.txt': 'from 7beta\n' });
  const r2l = await a.services.autoSync.create({ fromHost: '7beta', fromFs: 'fs:tank/src', toFs: 'fs:tank/src-copy', recursive: false });
  const r2 = await a.services.autoSync.run(r2l.name);
  t.deepEqual(diffTrees(await readTree(bsrc), await readTree(a.live('tank/src-copy'))), []);
  t.like(b.services.autoSync.history(r2l.name, 'send').list()[0], { result: 'success', peer: 'alpha', snapshot: r2.marker });
  t.is(b.services.autoSync.store.runState(r2l.name).lastMarker, r2.marker);

  const shown = JSON.parse(String((await a.cli('show network ssh-bindings --json')).stdout));
  t.like(shown[0], { id: '7beta', direction: 'outbound', transport: 'local', reachable: true });
});

test('a peer that forgot this appliance refuses it, and records the refusal in its receive trail', async (t) => {
  const { a, b } = await pairOf(t);
  await folderWith(a, 'tank/docs', { 'x.txt': 'x\n' });
  const { name } = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: '7beta', toFs: 'fs:tank/docs', recursive: false });
  // 7beta unbinds alpha on its side only (it cannot reach alpha)
  const r = await b.cli('setup network ssh-unbind alpha -y');
  t.is(r.exitCode, 0, String(r.stderr));
  t.is(b.services.peers.store.inboundPeer('alpha'), null);

  const error = await t.throwsAsync(a.services.autoSync.run(name));
  t.is((error as PeerError).code, 'unbound');
  t.regex(error!.message, /7beta refused this one: the appliance alpha is not bound to 7beta/);
  t.like(b.services.autoSync.history(name, 'receive').list()[0], { result: 'refused', peer: 'alpha', service: name, direction: 'receive' });
  t.is(await (await b.services.storage.usable('fs')).getDataset('tank/docs'), null, 'nothing was received');
  t.like(a.services.autoSync.history(name, 'send').list()[0], { result: 'failure' });

  // bound again, it goes through
  const again = await a.cli(`setup network local-bind ${b.home}`);
  t.is(again.exitCode, 0, String(again.stderr));
  await a.services.autoSync.run(name);
  t.like(b.services.autoSync.history(name, 'receive').list()[0], { result: 'success' });
});

test('an incompatible protocol version is refused with a specific error', async (t) => {
  const { a } = await pairOf(t);
  await folderWith(a, 'tank/docs', {});
  const { name } = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: '7beta', toFs: 'fs:tank/docs', recursive: false });
  const old = createServices({ ...a.env, SYNCSH_PEER_PROTOCOL: '0' });
  t.teardown(() => old.peers.close());
  const error = await t.throwsAsync(old.autoSync.run(name));
  t.is((error as PeerError).code, 'protocol');
  t.regex(error!.message, /7beta speaks syncsh agent protocol version 1, alpha speaks version 0: upgrade syncsh on the older appliance/);
});

test('unbind: both sides forget; the service then fails with "not bound"', async (t) => {
  const { a, b } = await pairOf(t);
  await folderWith(a, 'tank/docs', {});
  const { name } = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: '7beta', toFs: 'fs:tank/docs', recursive: false });
  const r = await a.cli('setup network ssh-unbind 7beta -y');
  t.is(r.exitCode, 0, String(r.stderr));
  t.is(a.services.peers.store.outboundPeer('7beta'), null);
  t.is(b.services.peers.store.inboundPeer('alpha'), null);
  await t.throwsAsync(a.services.autoSync.run(name), { message: /"7beta" is not bound to this one/ });
  const create = await a.cli('create auto-sync --from-fs fs:tank/docs --to-host 7beta --to-fs fs:tank/other -y');
  t.regex(String(create.stderr), /not a bound appliance/);
});

test('the agent runs only agent sub-commands under a forced key, and only for the appliance the key belongs to', async (t) => {
  const f = new Fixture();
  t.teardown(() => f.close());
  const b = makeAppliance(f, 'beta');
  await b.services.peers.store.putInbound({ id: 'alpha', transport: 'ssh', address: '10.0.0.1', publicKey: null, keyFingerprint: null, authorizedKeys: null, boundAt: new Date().toISOString() });
  const agent = (original: string, input: string) => execa('node', [BIN, 'agent', '--home', b.home, '--peer', 'alpha'], { env: { ...b.env, SSH_ORIGINAL_COMMAND: original }, input, reject: false });

  const shell = await agent('cat /etc/shadow', '');
  t.is(shell.exitCode, 2);
  t.regex(String(shell.stdout), /"code":"bad-request".*only runs the syncsh agent/);

  const hello = (from: string, protocol = 1) => `${JSON.stringify({ id: 1, method: 'hello', params: { protocol, from, version: 'test' } })}\n`;
  const ok = await agent('/usr/bin/node /x/bin/syncsh.js agent', `${hello('alpha')}${JSON.stringify({ id: 2, method: 'ping' })}\n`);
  t.deepEqual(
    String(ok.stdout)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)),
    [
      { id: 1, result: { protocol: 1, id: 'beta', hostname: b.services.appliance.hostname, version: b.services.appliance.version } },
      { id: 2, result: {} },
    ],
  );

  const stolen = await agent('syncsh agent', hello('gamma'));
  t.like(JSON.parse(String(stolen.stdout)), { id: 1, error: { code: 'identity' } });

  // a data channel is checked the same way: a receive header from the wrong appliance writes nothing
  const receive = await agent('syncsh agent receive', `${JSON.stringify({ protocol: 1, from: 'gamma', version: 't', driver: 'fs', dataset: 'tank/x', force: false, recursive: false })}\nJUNK`);
  t.is(receive.exitCode, 2);
  t.like(JSON.parse(String(receive.stdout)), { ok: false, error: { code: 'identity' } });

  const unknown = await agent('syncsh agent', `${hello('alpha')}${JSON.stringify({ id: 2, method: 'driver', params: { driver: 'fs', method: 'constructor', args: [] } })}\n`);
  t.like(JSON.parse(String(unknown.stdout).trim().split('\n')[1]), { id: 2, error: { code: 'bad-request' } });
});

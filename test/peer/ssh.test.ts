/**
 * Two appliances over real SSH (OpenSSH sshd in a network namespace, the
 * agent as the forced command of A's key): binding, both directions of
 * replication on the fs driver, and every way a peer is refused or down.
 * The tests share one pair and run in order.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import type { ExecutionContext } from 'ava';
import { gatedTest } from '../helpers/system.js';
import { netnsMissing } from '../helpers/netns.js';
import { sshdMissing } from '../helpers/sshd.js';
import { diffTrees, readTree } from '../helpers/fs-tree.js';
import { type PeerError, SYNCSH_SCRIPT } from '../../src/services/peer/index.js';
import { keyFiles } from '../../src/services/peer/keys.js';
import { createServices } from '../../src/services/index.js';
import { Fixture, folderWith, sshPair, type SshPair } from './_fixture.js';
import test from 'ava';

/** B's address as a pattern: its subnet is claimed at setup */
const beta = () => `${pair.link.nsAddr.replaceAll('.', '\\.')}:2222`;
const sshTest = await gatedTest(['sshd', 'network namespaces'], async () => (await sshdMissing()) ?? (await netnsMissing()));

const fixture = new Fixture();
let pair: SshPair;
test.after.always(() => fixture.close());

async function sameTree(t: ExecutionContext, a: string, b: string) {
  t.deepEqual(diffTrees(await readTree(a), await readTree(b)), []);
}

async function runFails(t: ExecutionContext, name: string, code: PeerError['code'], message: RegExp, services = pair.a.services) {
  services.peers.close(); // no connection left over from the test before: this run connects
  const error = await t.throwsAsync(services.autoSync.run(name));
  t.regex(error!.message, message);
  t.is((error as PeerError).code, code, error!.message);
  return error!;
}

const L2R = 'tank-docs-000';
const R2L = 'tank-src-000';

// two appliances, B behind sshd in its own namespace, shared by the tests below
if (!sshTest.missing) {
  test.before(async () => {
    pair = await sshPair(fixture);
    await folderWith(pair.b, 'tank', {});
  });
}

sshTest.serial('binding shows the host key and, with no terminal and no -y, refuses and changes nothing', async (t) => {
  const { a, sshd } = pair;
  const before = readFileSync(sshd.authorizedKeys, 'utf8');
  const r = await a.cli(pair.bindLine);
  t.is(r.exitCode, 1, String(r.stderr));
  t.true(String(r.stdout).includes(await sshd.fingerprint()), String(r.stdout));
  t.regex(String(r.stderr), /Trust this host key.*-y/s);
  t.deepEqual(a.services.peers.store.outbound(), []);
  t.is(readFileSync(sshd.authorizedKeys, 'utf8'), before);
});

sshTest.serial('ssh-bind with an existing key: trusted fingerprint, key installed restricted to the agent, both sides recorded', async (t) => {
  const { a, b, sshd, link } = pair;
  const r = await a.cli(`${pair.bindLine} -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  const fp = await sshd.fingerprint();
  t.true(String(r.stdout).includes(fp));
  t.regex(String(r.stdout), /Bound to the appliance beta/);

  const lines = readFileSync(sshd.authorizedKeys, 'utf8').trim().split('\n');
  t.is(lines.length, 1, 'the unrestricted line was replaced by the restricted one');
  const publicKey = a.services.peers.publicKey().split(' ').slice(0, 2).join(' ');
  t.is(lines[0], `command="${process.execPath} ${SYNCSH_SCRIPT} agent --home ${b.home} --peer alpha",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding ${publicKey} syncsh:alpha`);

  const out = a.services.peers.store.outboundPeer('beta')!;
  t.like(out, { id: 'beta', transport: 'ssh', address: link.nsAddr, port: 2222, user: 'root', fingerprint: fp });
  const inb = b.services.peers.store.inboundPeer('alpha')!;
  t.like(inb, { id: 'alpha', transport: 'ssh', address: link.hostAddr, authorizedKeys: sshd.authorizedKeys });

  // show appliance carries the public key that was installed
  const shown = await a.cli('show appliance --json');
  t.is(JSON.parse(String(shown.stdout)).sshPublicKey.split(' ').slice(0, 2).join(' '), publicKey);

  // the key runs nothing but the agent: a plain ssh command gets the agent's refusal
  const ssh = await execa(
    'ssh',
    ['-i', keyFiles(a.services.home).privateKeyFile, '-p', '2222', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', `root@${link.nsAddr}`, 'echo', 'a-shell'],
    { reject: false },
  );
  t.notRegex(String(ssh.stdout), /^a-shell$/m);
  t.regex(String(ssh.stdout), /"code":"bad-request".*only runs the syncsh agent/);

  const bindings = await a.cli('show network ssh-bindings --json');
  t.like(JSON.parse(String(bindings.stdout))[0], { id: 'beta', direction: 'outbound', reachable: true });
});

sshTest.serial('local-to-remote over SSH: files arrive, state and trails are written on both sides', async (t) => {
  const { a, b } = pair;
  const src = await folderWith(a, 'tank/docs', {
    'readme.txt': 'hello from alpha\n',
    'sub/deep/data.bin': randomBytes(300_000),
    'sub/empty': { dir: true },
    link: { symlink: 'readme.txt' },
  });
  const config = await a.services.autoSync.create({ fromFs: 'fs:tank/docs', toHost: 'beta', toFs: 'fs:tank/docs-copy', recursive: false });
  t.is(config.name, L2R);
  t.is(config.direction, 'local-to-remote');
  t.is(config.compress, 'zstd', 'compressed by default over SSH');
  const first = await a.services.autoSync.run(L2R);
  t.true(first.full);
  await sameTree(t, src, b.live('tank/docs-copy'));

  writeFileSync(path.join(src, 'readme.txt'), 'changed on alpha\n');
  writeFileSync(path.join(src, 'new.txt'), 'new\n');
  const second = await a.services.autoSync.run(L2R);
  t.false(second.full);
  await sameTree(t, src, b.live('tank/docs-copy'));

  const mine = a.services.autoSync.store.runState(L2R);
  const theirs = b.services.autoSync.store.runState(L2R);
  t.is(mine.lastMarker, second.marker);
  t.is(theirs.lastMarker, second.marker, 'the state is recorded on the peer too');
  t.is(theirs.lastSuccessAt, mine.lastSuccessAt);
  const sent = a.services.autoSync.history(L2R, 'send').list();
  const received = b.services.autoSync.history(L2R, 'receive').list();
  t.deepEqual(
    sent.map((e) => [e.result, e.peer]),
    [
      ['success', 'beta'],
      ['success', 'beta'],
    ],
  );
  t.deepEqual(
    received.map((e) => [e.result, e.peer, e.snapshot]),
    [
      ['success', 'alpha', second.marker],
      ['success', 'alpha', first.marker],
    ],
  );
  t.deepEqual(a.services.autoSync.history(L2R, 'receive').list(), [], 'the receive trail is kept where the destination is');
});

sshTest.serial('remote-to-local over SSH: files come back, the sender keeps its trail and state', async (t) => {
  const { a, b } = pair;
  const src = await folderWith(b, 'tank/src', { 'b.txt': 'written on beta\n', 'dir/x.bin': randomBytes(100_000) });
  const config = await a.services.autoSync.create({ fromHost: 'beta', fromFs: 'fs:tank/src', toFs: 'fs:tank/from-beta', recursive: false });
  t.is(config.name, R2L);
  t.is(config.direction, 'remote-to-local');
  t.is(config.compress, 'zstd', 'compressed by default over SSH');
  await folderWith(a, 'tank', {});
  const r = await a.services.autoSync.run(R2L);
  await sameTree(t, src, a.live('tank/from-beta'));
  writeFileSync(path.join(src, 'b.txt'), 'again\n');
  const r2 = await a.services.autoSync.run(R2L);
  t.false(r2.full);
  await sameTree(t, src, a.live('tank/from-beta'));
  t.deepEqual(
    b.services.autoSync
      .history(R2L, 'send')
      .list()
      .map((e) => [e.result, e.peer, e.snapshot]),
    [
      ['success', 'alpha', r2.marker],
      ['success', 'alpha', r.marker],
    ],
  );
  t.is(a.services.autoSync.history(R2L, 'receive').list()[0].result, 'success');
  t.is(b.services.autoSync.store.runState(R2L).lastMarker, r2.marker);
  // the marker snapshots live on beta, held as the common one
  const snaps = await (await b.services.storage.usable('fs')).listSnapshots('tank/src');
  t.true(snaps.some((s) => s.name === r2.marker && s.held));
});

sshTest.serial('an appliance that is not bound is refused by the receiver, and the refusal is in its receive trail', async (t) => {
  const { a, b } = pair;
  // beta lost its record of alpha (say, its home was restored from an old backup) while the key stayed
  await b.services.peers.store.removeInbound('alpha');
  const before = await readTree(b.live('tank/docs-copy'));
  writeFileSync(path.join(a.live('tank/docs'), 'refused.txt'), 'x');
  await runFails(t, L2R, 'unbound', /beta refused this one: the appliance alpha is not bound to beta/);
  const trail = b.services.autoSync.history(L2R, 'receive').list();
  t.like(trail[0], { result: 'refused', peer: 'alpha', direction: 'receive', service: L2R });
  t.deepEqual(diffTrees(before, await readTree(b.live('tank/docs-copy'))), []);
  t.is(a.services.autoSync.history(L2R, 'send').list()[0].result, 'failure');

  // binding again (the key is still accepted there) lets it through
  const r = await a.cli(`${pair.bindLine} -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /Bound again/);
  await a.services.autoSync.run(L2R);
  await sameTree(t, a.live('tank/docs'), b.live('tank/docs-copy'));
});

sshTest.serial('an incompatible protocol version is a specific error', async (t) => {
  const newer = createServices({ ...pair.a.env, SYNCSH_PEER_PROTOCOL: '99' });
  t.teardown(() => newer.peers.close());
  await runFails(t, L2R, 'protocol', /beta cannot talk with this one: beta speaks syncsh agent protocol version 1, alpha speaks version 99/, newer);
});

sshTest.serial('a changed host key is refused with a clear message until bound again', async (t) => {
  const { a, b, sshd } = pair;
  const old = a.services.peers.store.outboundPeer('beta')!.fingerprint;
  await sshd.rekey();
  const now = await sshd.fingerprint();
  t.not(now, old);
  const before = await readTree(b.live('tank/docs-copy'));
  writeFileSync(path.join(a.live('tank/docs'), 'rekeyed.txt'), 'y');
  const error = await runFails(t, L2R, 'host-key', new RegExp(`host key of the appliance beta at ${beta()} has changed`));
  t.true(error.message.includes(old!) && error.message.includes(now), error.message);
  t.deepEqual(diffTrees(before, await readTree(b.live('tank/docs-copy'))), []);
  const shown = JSON.parse(String((await a.cli('show network ssh-bindings --json')).stdout));
  t.like(shown[0], { id: 'beta', reachable: false });
  t.regex(shown[0].reason, /has changed/);

  const r = await a.cli(`${pair.bindLine} -y`);
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /CHANGED/);
  t.is(a.services.peers.store.outboundPeer('beta')!.fingerprint, now);
  await a.services.autoSync.run(L2R);
  await sameTree(t, a.live('tank/docs'), b.live('tank/docs-copy'));
});

sshTest.serial('a missing or wrong key is a specific error', async (t) => {
  const { a } = pair;
  const files = keyFiles(a.services.home);
  renameSync(files.privateKeyFile, `${files.privateKeyFile}.away`);
  try {
    await runFails(t, L2R, 'no-key', /has no SSH key/);
  } finally {
    renameSync(`${files.privateKeyFile}.away`, files.privateKeyFile);
  }
  const saved = { priv: readFileSync(files.privateKeyFile), pub: readFileSync(files.publicKeyFile) };
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', `${files.privateKeyFile}.other`]);
  renameSync(`${files.privateKeyFile}.other`, files.privateKeyFile);
  try {
    await runFails(t, L2R, 'auth', new RegExp(`beta at ${beta()} did not accept this appliance's key for user root`));
  } finally {
    writeFileSync(files.privateKeyFile, saved.priv, { mode: 0o600 });
    writeFileSync(files.publicKeyFile, saved.pub);
  }
  await a.services.autoSync.run(L2R);
});

sshTest.serial('a peer that is down: refused and timeout, each naming the peer and the cause', async (t) => {
  const { a, sshd } = pair;
  await sshd.stop();
  try {
    await runFails(t, L2R, 'refused', new RegExp(`Cannot reach the appliance beta at ${beta()}: the connection was refused`));
    t.regex(a.services.autoSync.store.runState(L2R).lastError!, /refused/);
  } finally {
    await sshd.start();
  }
  sshd.pause();
  try {
    const started = Date.now();
    await runFails(t, L2R, 'timeout', new RegExp(String.raw`Cannot reach the appliance beta at ${beta()}: no SSH handshake within 3 s \(timeout`));
    t.true(Date.now() - started < 15_000);
  } finally {
    sshd.resume();
  }
  await a.services.autoSync.run(L2R);
});

sshTest.serial('ssh-unbind removes the pairing on both sides and the key line on the peer', async (t) => {
  const { a, b, sshd } = pair;
  const r = await a.cli('setup network ssh-unbind beta -y');
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /Unbound beta: it forgot this appliance and removed its key/);
  t.is(a.services.peers.store.outboundPeer('beta'), null);
  t.is(b.services.peers.store.inboundPeer('alpha'), null);
  t.false(readFileSync(sshd.authorizedKeys, 'utf8').includes('syncsh:alpha'));
  const error = await t.throwsAsync(a.services.autoSync.run(L2R));
  t.regex(error!.message, /"beta" is not bound to this one/);
});

/**
 * The doers around the role decisions (src/services/cdp/peer-loss.ts): a
 * write while the peer is lost, with the real fencing service running real
 * fence scripts; and the return of an old master, with a real fs zvol.
 */
import test, { type ExecutionContext } from 'ava';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeAppliance } from '../helpers/appliance.js';
import { PeerLoss, meetPeer, type MirrorRoles } from '../../src/services/cdp/peer-loss.js';
import type { RoleState } from '../../src/services/cdp/roles.js';
import type { OutboundPeer } from '../../src/services/peer/store.js';

/** roles kept in a map, each change recorded in order */
function mapRoles(initial: RoleState) {
  let current = initial;
  const changes: [RoleState, string][] = [];
  const roles: MirrorRoles = {
    state: () => current,
    async setState(_mirror, next, why) {
      changes.push([next, why]);
      current = next;
    },
  };
  return { roles, changes, set: (s: RoleState) => (current = s), get: () => current };
}

async function appliance(t: ExecutionContext) {
  const a = makeAppliance(t, 'alpha');
  const beta: OutboundPeer = {
    id: 'beta',
    transport: 'ssh',
    address: '10.0.0.2',
    port: 22,
    user: 'root',
    fingerprint: 'SHA256:x',
    hostKeyType: 'ssh-ed25519',
    agent: { node: process.execPath, script: '/x/bin/syncsh.js', home: '/var/lib/syncsh' },
    boundAt: new Date().toISOString(),
  };
  await a.services.peers.store.putOutbound(beta);
  const script = (name: string, body: string) => {
    const file = path.join(a.home, name);
    writeFileSync(file, `#!/bin/sh\n${body}\n`);
    chmodSync(file, 0o755);
    return file;
  };
  return { ...a, script };
}

test('a write while the peer is lost: each policy, with real fence scripts, stores the new role before the write is let through', async (t) => {
  const a = await appliance(t);
  const runs = path.join(a.home, 'runs');
  const fences = a.script('fence-ok', `echo run >> ${runs}`);
  const failing = a.script('fence-fails', 'echo "bmc unreachable" >&2; exit 2');
  // role, policy → write, state after, fence ran
  const table: [RoleState, () => Promise<unknown>, 'fail' | 'succeed', RoleState][] = [
    [{ role: 'slave', epoch: 1 }, () => a.services.fencing.clear('beta'), 'fail', { role: 'slave', epoch: 1 }],
    [{ role: 'slave', epoch: 1 }, () => a.services.fencing.setSimple('beta', 'ignore'), 'succeed', { role: 'master', epoch: 2 }],
    [{ role: 'slave', epoch: 1 }, () => a.services.fencing.setSimple('beta', 'manual'), 'fail', { role: 'slave', epoch: 1 }],
    [{ role: 'master', epoch: 1 }, () => a.services.fencing.clear('beta'), 'fail', { role: 'slave', epoch: 1 }],
    [{ role: 'master', epoch: 1 }, () => a.services.fencing.setSimple('beta', 'ignore'), 'succeed', { role: 'master', epoch: 1 }],
    [{ role: 'master', epoch: 1 }, () => a.services.fencing.setSimple('beta', 'manual'), 'succeed', { role: 'master', epoch: 1 }],
    [{ role: 'slave', epoch: 1 }, () => a.services.fencing.setFence('beta', fences), 'succeed', { role: 'master', epoch: 2 }],
    [{ role: 'slave', epoch: 1 }, () => a.services.fencing.setFence('beta', failing), 'fail', { role: 'slave', epoch: 1 }],
  ];
  for (const [start, policy, write, after] of table) {
    await policy();
    const r = mapRoles(start);
    const lines: string[] = [];
    const loss = new PeerLoss({ fencing: a.services.fencing, roles: r.roles, log: (_m, l) => lines.push(l) });
    const label = `${start.role} + ${a.services.fencing.kindOf('beta')}`;
    const v = await loss.onPeerLost('vm1', 'beta');
    t.is(v.write, write, label);
    t.deepEqual(v.state, after, label);
    t.deepEqual(r.get(), after, `${label}: stored`);
    t.is(r.changes.length, start.role === after.role ? 0 : 1, label);
    t.regex(lines.at(-1)!, /^Peer beta lost \(fencing policy \w+, this copy (master|slave) at epoch 1\): /, label);
    t.notRegex(lines.at(-1)!, /:NAME/, `${label}: the mirror is named`);
  }
  t.is(readFileSync(runs, 'utf8'), 'run\n', 'the fence command ran for the fence case only');
});

test('one decision per loss: concurrent writes share one fence run; back or a manual switch decide again', async (t) => {
  const a = await appliance(t);
  const runs = path.join(a.home, 'runs');
  const gate = path.join(a.home, 'gate');
  // the fence takes until the test opens the gate, so the writes are concurrent for sure
  const fence = a.script('fence-slow', `echo run >> ${runs}; while [ ! -e ${gate} ]; do sleep 0.05; done`);
  await a.services.fencing.setFence('beta', fence);
  const r = mapRoles({ role: 'slave', epoch: 5 });
  const loss = new PeerLoss({ fencing: a.services.fencing, roles: r.roles, log: () => undefined });
  const writes = Array.from({ length: 5 }, () => loss.onPeerLost('vm1', 'beta'));
  while (!existsSync(runs)) await new Promise((resolve) => setTimeout(resolve, 20)); // the fence started: a file is the signal
  writeFileSync(gate, '');
  const verdicts = await Promise.all(writes);
  t.deepEqual(
    verdicts.map((v) => v.write),
    ['succeed', 'succeed', 'succeed', 'succeed', 'succeed'],
  );
  t.is(readFileSync(runs, 'utf8'), 'run\n', 'fenced once');
  t.deepEqual(
    r.changes.map(([s]) => s),
    [{ role: 'master', epoch: 6 }],
  );
  t.is((await loss.onPeerLost('vm1', 'beta')).write, 'succeed', 'later writes of the same loss');
  t.is(readFileSync(runs, 'utf8'), 'run\n');

  // slave + manual: refused until switched by hand; then it is master (003 case 6)
  await a.services.fencing.setSimple('beta', 'manual');
  loss.onPeerBack('vm1');
  r.set({ role: 'slave', epoch: 6 });
  const waiting = await loss.onPeerLost('vm1', 'beta');
  t.like(waiting, { write: 'fail', outcome: { case: '3', untilSwitchedOrBack: true } });
  t.is((await loss.onPeerLost('vm1', 'beta')).write, 'fail');
  r.set({ role: 'master', epoch: 7 }); // setup auto-cdp :vm1 role master
  loss.onRoleSwitched('vm1');
  t.like(await loss.onPeerLost('vm1', 'beta'), { write: 'succeed', outcome: { case: '6' } });
});

test('storing the new role fails: the write fails too and the next write decides again', async (t) => {
  const a = await appliance(t);
  await a.services.fencing.setSimple('beta', 'ignore');
  let fail = true;
  const roles: MirrorRoles = {
    state: () => ({ role: 'slave', epoch: 1 }),
    async setState() {
      if (fail) throw new Error('cdp.json is damaged');
    },
  };
  const loss = new PeerLoss({ fencing: a.services.fencing, roles, log: () => undefined });
  await t.throwsAsync(loss.onPeerLost('vm1', 'beta'), { message: 'cdp.json is damaged' });
  fail = false;
  t.is((await loss.onPeerLost('vm1', 'beta')).write, 'succeed');
});

test('an old master meets the newer epoch: its writes while cut off are kept as a held orphan snapshot of its zvol, it becomes slave, a partial resync is asked', async (t) => {
  const a = await appliance(t);
  await a.services.folders.create('fs:tank');
  await a.services.zvols.create('fs:tank/vm1', { size: 16 << 20 });
  const driver = await a.services.storage.usable('fs');
  const vol = await driver.openVolume!('tank/vm1');
  await vol.write(0, Buffer.alloc(65536, 7), { fua: true });
  await vol.close();
  const r = mapRoles({ role: 'master', epoch: 3 });
  const resyncs: string[] = [];
  const lines: string[] = [];
  const deps = {
    roles: r.roles,
    wroteWhileCut: async () => true,
    zvol: async () => ({ driver, dataset: 'tank/vm1' }),
    resync: async (m: string) => void resyncs.push(m),
    log: (_m: string, l: string) => lines.push(l),
    now: () => new Date('2026-12-06T23:00:00Z'),
  };
  const plan = await meetPeer('vm1', 'beta', { role: 'master', epoch: 4 }, deps);
  t.is(plan.kind, 'demote');
  const orphan = (await driver.listSnapshots('tank/vm1')).find((s) => s.name === 'orphan-vm1-20261206T230000Z');
  t.truthy(orphan, 'the orphan snapshot is on the zvol');
  t.true(orphan?.held, 'held: no retention or prune destroys it');
  t.deepEqual(r.get(), { role: 'slave', epoch: 4 });
  t.deepEqual(resyncs, ['vm1']);
  t.regex(lines[0], /kept as the snapshot @orphan-vm1-20261206T230000Z; this copy becomes slave and resyncs/);

  // a retry after a crash between the snapshot and the role change keeps the one orphan
  r.set({ role: 'master', epoch: 3 });
  await meetPeer('vm1', 'beta', { role: 'master', epoch: 4 }, deps);
  t.is((await driver.listSnapshots('tank/vm1')).filter((s) => s.name.startsWith('orphan-')).length, 1);

  // met again at the same epoch: nothing more happens
  t.is((await meetPeer('vm1', 'beta', { role: 'master', epoch: 4 }, deps)).kind, 'resume');
  t.deepEqual(resyncs, ['vm1', 'vm1']);
});

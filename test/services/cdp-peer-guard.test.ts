/** PeerGuard (src/services/cdp/peer-guard.ts) with a ManualClock: a blip, a loss, a paused target. */
import test from 'ava';
import { ManualClock } from '../../src/services/clock.js';
import { PeerGuard } from '../../src/services/cdp/peer-guard.js';
import type { FenceKind, FenceOutcome } from '../../src/services/fencing.js';
import type { RoleState } from '../../src/services/cdp/roles.js';

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function guard(policy: FenceKind, start: RoleState = { role: 'master', epoch: 1 }) {
  const clock = new ManualClock(0);
  const link = { up: true, paused: false };
  let state = start;
  const lines: string[] = [];
  const g = new PeerGuard('vm1', {
    fencing: { kindOf: () => policy, fence: async () => ({ ok: false }) as FenceOutcome },
    roles: { state: () => state, setState: async (_m, next) => void (state = next) },
    log: (_m, l) => lines.push(l),
    linkUp: () => link.up,
    linkError: () => 'connection refused',
    paused: () => link.paused,
    peerTimeoutMs: 2000,
    clock,
  });
  g.watch(['beta']);
  return { g, clock, link, lines, state: () => state };
}

test('a link back within the peer timeout was a blip: the write goes on', async (t) => {
  const { g, clock, link, state } = guard('none');
  t.teardown(() => g.close());
  await settle();
  link.up = false;
  let done = false;
  const write = g.away('beta').then(() => (done = true));
  await clock.advance(1000);
  t.false(done, 'the write waits for the heartbeat to decide');
  link.up = true;
  await clock.advance(500);
  await write;
  t.true(done);
  t.deepEqual(state(), { role: 'master', epoch: 1 });
});

test('a link down for the peer timeout is a loss: master + none fails the write with EIO and steps down', async (t) => {
  const { g, clock, link, lines, state } = guard('none');
  t.teardown(() => g.close());
  await settle();
  link.up = false;
  const write = g.away('beta');
  write.catch(() => undefined);
  await clock.advance(2000);
  await t.throwsAsync(write, { name: 'VolumeError', message: /^auto-cdp:vm1: the peer is lost and no fencing is set for it: the write is refused \(EIO\)/ });
  t.deepEqual(state(), { role: 'slave', epoch: 1 });
  t.regex(lines[0], /Peer beta lost: connection refused \(peer timeout 2 sec\)/);
  await t.throwsAsync(g.away('beta'), { message: /EIO/ }, 'later writes of the loss fail at once');
});

test('a paused target counts as answering: after a resume its link has the whole timeout to come back', async (t) => {
  const { g, clock, link, state } = guard('none');
  t.teardown(() => g.close());
  await settle();
  link.up = false;
  link.paused = true;
  await clock.advance(10_000);
  link.paused = false; // resumed; the engine is reconnecting
  const write = g.away('beta');
  write.catch(() => undefined);
  await clock.advance(1500);
  link.up = true;
  await clock.advance(500);
  await write;
  t.deepEqual(state(), { role: 'master', epoch: 1 });
});

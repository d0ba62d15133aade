/**
 * A role switch waits for the peer's answer as long as the mirror's own
 * --peer-timeout says, not a fixed time: on a loaded pair a peer that answers
 * in six seconds is there, and one that is gone is called gone as soon as the
 * heartbeat would.
 */
import test, { type ExecutionContext } from 'ava';
import { CdpRoleSwitch } from '../../src/services/cdp/role-switch.js';
import type { CdpService } from '../../src/services/cdp/index.js';
import type { MirrorConfig } from '../../src/services/cdp/model.js';
import type { PeerService } from '../../src/services/peer/index.js';

const mirror = (peerTimeoutMs?: number): MirrorConfig => ({
  name: 'tank-vm1-000',
  zvol: 'fs:tank/vm1',
  size: 16 << 20,
  mode: 'sync',
  role: 'master',
  epoch: 1,
  master: null,
  targets: [{ host: 'beta', zvol: 'fs:tank/vm1' }] as MirrorConfig['targets'],
  description: '',
  createdAt: '2026-12-07T00:00:00.000Z',
  ...(peerTimeoutMs === undefined ? {} : { peerTimeoutMs }),
});

/** a peer whose answers come after `delayMs` (its timers cleared when the test ends) */
const slowPeer = (t: ExecutionContext, delayMs: number) =>
  ({
    call: async (_host: string, method: string) =>
      new Promise((resolve) => {
        const answer = method === 'cdp.owed' ? { chunks: 0 } : { ...mirror(), role: 'slave', master: { host: 'alpha', zvol: 'fs:tank/vm1' }, targets: [] };
        const timer = setTimeout(() => resolve(answer), delayMs);
        t.teardown(() => clearTimeout(timer));
      }),
  }) as unknown as PeerService;

test('a peer that has not answered within the mirror’s --peer-timeout does not answer', async (t) => {
  t.timeout(20_000);
  const switcher = new CdpRoleSwitch({} as CdpService, slowPeer(t, 600_000), 'alpha', 600_000);
  const view = await switcher.peerView(mirror(300), 'beta');
  t.false(view.reachable);
  t.regex(view.reachable ? '' : view.why, /beta/);
});

test('a peer slower than the default but within the mirror’s --peer-timeout answers', async (t) => {
  const switcher = new CdpRoleSwitch({} as CdpService, slowPeer(t, 200), 'alpha', 50);
  t.like(await switcher.peerView(mirror(5_000), 'beta'), { reachable: true, state: { role: 'slave', epoch: 1 }, owes: 0 });
  t.false((await switcher.peerView(mirror(), 'beta')).reachable, 'with no --peer-timeout, the default decides');
});

/** Heartbeats on a mirror's peer link (src/services/cdp/heartbeat.ts): ManualClock cases, then a real local-bind peer. */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { ManualClock } from '../../src/services/clock.js';
import { Heartbeat, type HeartbeatEvent } from '../../src/services/cdp/heartbeat.js';
import { PeerError } from '../../src/services/peer/transport.js';
import { Fixture, makeAppliance } from '../peer/_fixture.js';

/** a peer the test answers for: 'answer', 'hang' (until released), 'fail' (fast), 'refuse' (answers, not bound) */
function fakePeer() {
  let mode: 'answer' | 'hang' | 'fail' | 'refuse' = 'answer';
  let release: (() => void) | null = null;
  let calls = 0;
  const ping = () => {
    calls++;
    if (mode === 'hang') return new Promise<void>((resolve) => (release = resolve));
    if (mode === 'fail') return Promise.reject(new PeerError('refused', 'connection refused'));
    if (mode === 'refuse') return Promise.reject(new PeerError('unbound', 'beta does not know this appliance'));
    return Promise.resolve();
  };
  return {
    ping,
    set: (m: typeof mode) => (mode = m),
    release: () => release?.(),
    get calls() {
      return calls;
    },
  };
}

/** let woken code run (ManualClock.advance(0) returns at once) */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function record(hb: Heartbeat) {
  const events: [string, HeartbeatEvent][] = [];
  hb.on('lost', (e) => events.push(['lost', e]));
  hb.on('back', (e) => events.push(['back', e]));
  return events;
}

test('a hanging peer is lost exactly at the peer timeout after its last answer, and back when it answers', async (t) => {
  const clock = new ManualClock(10_000);
  const peer = fakePeer();
  const hb = new Heartbeat(peer.ping, { peerTimeoutMs: 4000, intervalMs: 1000, clock }).start();
  t.teardown(() => hb.close());
  const events = record(hb);
  await settle();
  await clock.advance(1000);
  t.is(peer.calls, 2, 'one ping per interval');
  peer.set('hang');
  await clock.advance(1000); // pings at 12000 and hangs; last answer 11000
  await clock.advance(2999);
  t.deepEqual(events, [], 'not lost one millisecond before the timeout');
  t.false(hb.lost);
  await clock.advance(1);
  t.deepEqual(events, [['lost', { at: 15_000, lastAnswer: 11_000, why: 'no answer for 4 sec' }]]);
  t.true(hb.lost);
  await clock.advance(5000);
  t.is(peer.calls, 3, 'no second ping while one hangs');
  peer.set('answer');
  peer.release();
  await settle();
  t.deepEqual(events.at(-1), ['back', { at: 20_000, lastAnswer: 20_000 }]);
  t.false(hb.lost);
  t.is(events.length, 2);
});

test('a peer that fails fast is lost at the timeout too; one that answers and refuses is not lost', async (t) => {
  const clock = new ManualClock(0);
  const peer = fakePeer();
  const hb = new Heartbeat(peer.ping, { peerTimeoutMs: 3000, intervalMs: 2000, clock }).start();
  t.teardown(() => hb.close());
  const events = record(hb);
  await settle(); // answered at 0
  peer.set('fail');
  await clock.advance(2000); // fails at 2000; next beat at the deadline, 3000, not at 4000
  t.deepEqual(events, []);
  await clock.advance(1000);
  t.deepEqual(events, [['lost', { at: 3000, lastAnswer: 0, why: 'connection refused' }]]);
  peer.set('refuse');
  await clock.advance(2000);
  t.deepEqual(events.at(-1), ['back', { at: 5000, lastAnswer: 5000 }], 'refusing is answering: it is there');
  await clock.advance(20_000);
  t.is(events.length, 2);
  t.false(hb.lost);
});

test('close stops the beats and leaves no timer behind; a bad peer timeout is refused', async (t) => {
  const clock = new ManualClock(0);
  const peer = fakePeer();
  const hb = new Heartbeat(peer.ping, { peerTimeoutMs: 1000, clock }).start();
  await clock.advance(250);
  t.is(hb.intervalMs, 250);
  await hb.close();
  t.is(clock.pending, 0);
  const calls = peer.calls;
  await clock.advance(10_000);
  t.is(peer.calls, calls);
  t.throws(() => new Heartbeat(peer.ping, { peerTimeoutMs: 0 }), { message: 'The peer timeout must be a positive number of milliseconds, not 0.' });
});

/** the pids of this process's children running `syncsh agent --home HOME` */
function agentPids(home: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const ppid = Number(/^\d+ \(.*\) \S (\d+)/.exec(readFileSync(`/proc/${name}/stat`, 'utf8'))?.[1]);
      if (ppid === process.pid && cmd.includes('agent') && cmd.includes(home)) pids.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

test('a real local-bind peer: its agent stopped (SIGSTOP) is lost within the peer timeout; killed (SIGKILL), the link is made again and it is back', async (t) => {
  t.timeout(3 * 60_000);
  const f = new Fixture();
  t.teardown(() => f.close());
  const a = makeAppliance(f, 'alpha', { SYNCSH_DRIVERS: 'fs', SYNCSH_PEER_LINGER_MS: '60000' });
  const b = makeAppliance(f, 'beta', { SYNCSH_DRIVERS: 'fs' });
  t.is((await a.cli(`setup network local-bind ${b.home}`)).exitCode, 0);
  const hb = new Heartbeat(() => a.services.peers.ping('beta'), { peerTimeoutMs: 2000, intervalMs: 250 }).start();
  t.teardown(() => hb.close());
  await once(hb, 'beat');
  const [agent] = agentPids(b.home);
  t.truthy(agent, 'the agent of the held link runs');
  f.teardown(() => {
    try {
      process.kill(agent, 'SIGKILL');
    } catch {
      /* gone */
    }
  });
  process.kill(agent, 'SIGSTOP');
  const stoppedAt = Date.now();
  const [lost] = (await once(hb, 'lost')) as [HeartbeatEvent];
  const took = Date.now() - stoppedAt;
  t.log(`lost after ${took} ms (peer timeout 2000 ms): ${lost.why}`);
  t.true(took <= 2000 + 1000, `lost within the peer timeout (${took} ms)`);
  t.true(lost.at - lost.lastAnswer >= 2000);
  process.kill(agent, 'SIGKILL');
  await once(hb, 'back');
  t.false(hb.lost);
  t.false(agentPids(b.home).includes(agent));
});

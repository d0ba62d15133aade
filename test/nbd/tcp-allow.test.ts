/**
 * TCP with an allow-list: a client from outside it is closed before a byte
 * of the handshake (it never sees the greeting) and logged; one inside is
 * served. The second address is a real one: 127.0.0.2, bound as the
 * client's source address (all of 127/8 is loopback on Linux).
 */
import path from 'node:path';
import { execa } from 'execa';
import { gatedTest } from '../helpers/system.js';
import { RawClient, makeImage, nbdClientsMissing, nbdTempDir, startFileServer } from '../helpers/nbd.js';
import { allowList } from '../../src/services/nbd/server.js';

const test = await gatedTest(['libnbd-bin'], nbdClientsMissing('nbdinfo'));

test('a TCP client outside nbd-allow is refused before the handshake; one inside is served', async (t) => {
  const dir = nbdTempDir(t);
  const s = await startFileServer(t, { vol: { path: await makeImage(path.join(dir, 'a.img'), 1024 * 1024) } }, { tcp: { host: '0.0.0.0', port: 0, allow: ['127.0.0.1/32'] } });
  const { port } = s.server.tcpAddress!;

  const outsider = await RawClient.connect(t, { host: '127.0.0.1', port, localAddress: '127.0.0.2' });
  let received = 0;
  outsider.socket.on('data', (d: Buffer) => (received += d.length));
  await outsider.closed();
  t.is(received, 0, 'not even the greeting');
  t.true(
    s.logs.some((l) => /refused NBD client 127\.0\.0\.2:\d+: not in the allow-list \(127\.0\.0\.1\/32\)/.test(l)),
    s.logs.join('\n'),
  );
  t.deepEqual(s.server.clients(), []);

  const r = await execa('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/vol`]);
  t.is(r.stdout.trim(), String(1024 * 1024));
});

test('allowList takes IPv4 and IPv6 ranges and names a bad one', (t) => {
  const list = allowList(['10.0.0.0/8', '::1', '192.168.1.7']);
  t.true(list.check('10.2.3.4', 'ipv4'));
  t.true(list.check('::1', 'ipv6'));
  t.true(list.check('192.168.1.7', 'ipv4'));
  t.false(list.check('192.168.1.8', 'ipv4'));
  for (const bad of ['10.0.0.0/33', 'tank', '1.2.3.4/x', '::1/129']) t.throws(() => allowList([bad]), { message: new RegExp(`"${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}" is not an address range`) });
});

/** owed.ts: what a copy's dirty map for its peer says the peer may lack (a hand role switch asks it through cdp.owed). */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { LiveDirtyMap } from '../../src/services/storage/fs/dirty-map.js';
import type { MirrorConfig } from '../../src/services/cdp/model.js';
import { hasMap, MAP_BASE, mapFileOf, owedTo } from '../../src/services/cdp/owed.js';
import { CHUNK } from '../../src/services/cdp/receiver.js';

const config = (over: Partial<MirrorConfig>): MirrorConfig => ({
  name: 'tank-vm1-000',
  zvol: 'fs:tank/vm1',
  size: 16 * 1024 * 1024,
  mode: 'sync',
  role: 'slave',
  epoch: 2,
  master: { host: 'beta', zvol: 'fs:tank/vm1' },
  targets: [],
  description: '',
  createdAt: '2026-12-07T00:00:00.000Z',
  ...over,
});

test('owedTo: the set bits of the map for the caller; no map: none from a slave that never mirrored to it, unknown from a master', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'syncsh-owed-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const slave = config({});
  const master = config({ role: 'master', master: null, targets: [{ host: 'beta', zvol: 'fs:tank/vm1', state: 'mirroring', reason: null, paused: false, fullSync: 'none', addedAt: '' }] });
  t.is(owedTo(root, slave, 'beta'), 0, 'a slave with no map for beta holds nothing beta lacks');
  t.is(owedTo(root, master, 'beta'), null, 'a master with no map cannot tell');
  t.false(hasMap(root, slave, 'beta'));

  const file = mapFileOf(root, slave.name, 'beta');
  mkdirSync(path.dirname(file), { recursive: true });
  const map = await LiveDirtyMap.open(file, CHUNK, slave.size / CHUNK, MAP_BASE);
  t.is(owedTo(root, slave, 'beta'), slave.size / CHUNK, 'a fresh map: every chunk');
  await map.clean(Array.from({ length: slave.size / CHUNK }, (_, i) => i));
  await map.mark(3, 5);
  await map.close();
  t.is(owedTo(root, slave, 'beta'), 3);
  t.is(owedTo(root, master, 'beta'), 3);
  t.true(hasMap(root, slave, 'beta'));
  t.is(owedTo(root, config({ size: 32 * 1024 * 1024 }), 'beta'), 0, 'a map of another geometry is no map');
  t.is(owedTo(root, slave, 'gamma'), 0);

  const other = await LiveDirtyMap.open(file, CHUNK, slave.size / CHUNK, 'another-base');
  await other.close();
  t.is(owedTo(root, master, 'beta'), null, 'a map of another base is no map');
});

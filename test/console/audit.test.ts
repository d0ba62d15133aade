import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AuditLog } from '../../src/console/audit.js';

test('one line per event: time, event, user, address, connection, the command quoted', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const audit = AuditLog.inHome(path.join(dir, 'log'));
  const who = { user: 'alice', from: '10.0.0.7:51234', conn: 3 };
  const at = new Date('2026-11-21T04:44:52.120Z');
  audit.record('login', who, undefined, { key: 'SHA256:abc' }, at);
  audit.record('command', who, 'show auto-sync', {}, at);
  // nothing typed can forge a line of its own
  audit.record('command', { ...who, user: 'eve"\nx' }, 'show auto-sync\n2026-11-21T00:00:00.000Z login user="root"', {}, at);
  const lines = readFileSync(audit.file, 'utf8').trimEnd().split('\n');
  t.deepEqual(lines, [
    '2026-11-21T04:44:52.120Z login user="alice" from=10.0.0.7:51234 conn=3 key="SHA256:abc"',
    '2026-11-21T04:44:52.120Z command user="alice" from=10.0.0.7:51234 conn=3 "show auto-sync"',
    '2026-11-21T04:44:52.120Z command user="eve\\"\\nx" from=10.0.0.7:51234 conn=3 "show auto-sync\\n2026-11-21T00:00:00.000Z login user=\\"root\\""',
  ]);
  t.is(audit.file, path.join(dir, 'log', 'audit.log'));
  t.is(statSync(audit.file).mode & 0o077, 0, 'private to the appliance');
});

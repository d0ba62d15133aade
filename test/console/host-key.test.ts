import test from 'ava';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import { loadOrCreateHostKey } from '../../src/console/host-key.js';
import { generateEd25519 } from '../../src/services/peer/keys.js';

const { utils } = ssh2;

function home(t: { teardown(fn: () => void): void }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-hostkey-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('the host key is generated once, private to its owner, and the same key afterwards', (t) => {
  const root = home(t);
  const first = loadOrCreateHostKey(root);
  t.true(first.created);
  t.is(first.file, path.join(root, 'ssh_host_key'));
  t.is(statSync(first.file).mode & 0o777, 0o600);
  t.is(first.type, 'ssh-ed25519');
  t.regex(first.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  t.is(readFileSync(`${first.file}.pub`, 'utf8'), `${first.publicLine}\n`);

  const again = loadOrCreateHostKey(root);
  t.false(again.created);
  t.is(again.fingerprint, first.fingerprint);
});

test('a host key others may read is refused, as sshd refuses it', (t) => {
  const root = home(t);
  const { file } = loadOrCreateHostKey(root);
  chmodSync(file, 0o644);
  t.throws(() => loadOrCreateHostKey(root), { message: /may be read by others \(mode 644\); chmod 600 it/ });
});

test('every generated key can be read back (ssh2 writes a broken one in 256)', (t) => {
  for (let i = 0; i < 1500; i++) {
    const pair = generateEd25519('syncsh-console');
    if (utils.parseKey(pair.private) instanceof Error || utils.parseKey(pair.public) instanceof Error) t.fail(`pair ${i} cannot be read`);
  }
  t.pass();
});

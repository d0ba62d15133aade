import test from 'ava';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import { checkAuthorizedKey, fingerprint, matchKey, parseAuthorizedKeys, type KeyOffer } from '../../src/console/authorized-keys.js';
import { generateEd25519 } from '../../src/services/peer/keys.js';

const { utils } = ssh2;

function keyPair(type: 'ed25519' | 'ecdsa' = 'ed25519') {
  const pair = type === 'ecdsa' ? utils.generateKeyPairSync('ecdsa', { bits: 256, comment: 'op@test' }) : generateEd25519('op@test');
  const priv = utils.parseKey(pair.private);
  if (priv instanceof Error || Array.isArray(priv)) throw new Error('no key');
  return { line: pair.public, blob: priv.getPublicSSH(), priv };
}

/** what an OpenSSH client sends: the key, and (when it means it) a signature over the session data */
function offer(pair: ReturnType<typeof keyPair>, signed = true, data = Buffer.from('session-id and request')): KeyOffer {
  return { key: { algo: pair.priv.type, data: pair.blob }, ...(signed ? { blob: data, signature: pair.priv.sign(data) } : {}) };
}

function tempDir(t: { teardown(fn: () => void): void }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-keys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('comments, blank lines, options and broken lines are skipped; keys are found after options', (t) => {
  const a = keyPair();
  const b = keyPair('ecdsa');
  const [type, base64] = a.line.split(' ');
  const text = [
    '# the operators',
    '',
    `   ${a.line}`,
    `restrict,command="echo a b",from="10.0.0.0/8" ${b.line.split(' ').slice(0, 2).join(' ')} second key with spaces`,
    'ssh-ed25519 not-base64!! nope',
    `ssh-rsa ${base64} type and blob disagree`,
    'garbage',
  ].join('\n');
  const keys = parseAuthorizedKeys(text);
  t.deepEqual(
    keys.map((k) => [k.type, k.line, k.comment]),
    [
      [type, 3, 'op@test'],
      ['ecdsa-sha2-nistp256', 4, 'second key with spaces'],
    ],
  );
  t.true(keys[0].blob.equals(a.blob));
  t.true(keys[1].blob.equals(b.blob));
});

test('a listed key with a good signature is accepted; a query without one is answered yes', (t) => {
  const a = keyPair();
  const keys = parseAuthorizedKeys(a.line);
  const signed = matchKey(keys, offer(a));
  t.true(signed.ok);
  t.true(matchKey(keys, offer(a, false)).ok);
});

test('an unlisted key and a bad signature are refused, with the reason', (t) => {
  const a = keyPair();
  const b = keyPair();
  const keys = parseAuthorizedKeys(a.line);
  const other = matchKey(keys, offer(b));
  t.false(other.ok);
  t.regex(!other.ok ? other.reason : '', new RegExp(`the key ${fingerprint(b.blob).replace(/[+/]/g, '\\$&')} is not in the authorized keys`));
  // a's key, signed by b: someone holding a's public key only
  const forged: KeyOffer = { ...offer(a), signature: b.priv.sign(Buffer.from('session-id and request')) };
  const bad = matchKey(keys, forged);
  t.false(bad.ok);
  t.regex(!bad.ok ? bad.reason : '', /does not verify/);
});

test('the file is read on every attempt; a missing or group-writable file lets nobody in', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'authorized_keys');
  const a = keyPair();
  const missing = checkAuthorizedKey(file, offer(a));
  t.false(missing.ok);
  t.regex(!missing.ok ? missing.reason : '', /there is no authorized keys file at/);

  writeFileSync(file, '# nobody yet\n', { mode: 0o600 });
  t.false(checkAuthorizedKey(file, offer(a)).ok);
  writeFileSync(file, `${a.line}\n`);
  t.true(checkAuthorizedKey(file, offer(a)).ok, 'a key added while the server runs counts at once');

  chmodSync(file, 0o620);
  const loose = checkAuthorizedKey(file, offer(a));
  t.false(loose.ok);
  t.regex(!loose.ok ? loose.reason : '', /may be written by others \(mode 620\)/);
  chmodSync(file, 0o600);
  writeFileSync(file, '');
  t.false(checkAuthorizedKey(file, offer(a)).ok, 'a key removed no longer counts');
});

test('fingerprints are what ssh-keygen -l shows', (t) => {
  // SHA256 over the blob, base64 without padding
  const blob = Buffer.from('AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl', 'base64');
  t.regex(fingerprint(blob), /^SHA256:[A-Za-z0-9+/]{43}$/);
});

/**
 * Public-key login against an OpenSSH authorized_keys file, read again on
 * every attempt so that a key added or removed counts at once. Comments and
 * blank lines are skipped, and so are a line's options (`from=`, `command=`,
 * `restrict`…): the console honours none of them. Keys are compared with
 * timingSafeEqual, and the signature is verified whenever the client sends one.
 */
import { readFileSync, statSync } from 'node:fs';
import { createHash, timingSafeEqual } from 'node:crypto';
import ssh2 from 'ssh2';

const { utils } = ssh2;

export interface AuthorizedKey {
  /** e.g. ssh-ed25519 */
  type: string;
  /** the key in SSH wire format (what the client sends) */
  blob: Buffer;
  comment: string;
  /** 1-based line in the file */
  line: number;
}

/** what a client offers: ssh2's PublicKeyAuthContext has these fields */
export interface KeyOffer {
  key: { algo: string; data: Buffer };
  signature?: Buffer;
  blob?: Buffer;
  hashAlgo?: string;
}

export type KeyCheck = { ok: true; key: AuthorizedKey } | { ok: false; reason: string };

const KEY_TYPE = /^(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$/;

/** splits at whitespace outside double quotes (options such as command="a b") */
function fields(line: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (ch === '\\' && quoted && i + 1 < line.length) {
      current += ch + line[++i];
    } else if (ch === '"') {
      quoted = !quoted;
      current += ch;
    } else if (!quoted && (ch === ' ' || ch === '\t')) {
      if (current) out.push(current);
      current = '';
    } else current += ch;
  }
  if (current) out.push(current);
  return out;
}

/** The keys of an authorized_keys text; lines that hold no key are left out. */
export function parseAuthorizedKeys(text: string): AuthorizedKey[] {
  const keys: AuthorizedKey[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const parts = fields(line);
    // the key type is the first field, or the second after the options
    const at = KEY_TYPE.test(parts[0] ?? '') ? 0 : KEY_TYPE.test(parts[1] ?? '') ? 1 : -1;
    if (at < 0 || !parts[at + 1]) return;
    if (!/^[A-Za-z0-9+/]+=*$/.test(parts[at + 1])) return;
    const blob = Buffer.from(parts[at + 1], 'base64');
    // the blob names its own type first; a line whose type and blob disagree is no key
    const named = blob.length > 4 ? blob.subarray(4, 4 + blob.readUInt32BE(0)).toString('latin1') : '';
    if (named !== parts[at]) return;
    keys.push({ type: parts[at], blob, comment: parts.slice(at + 2).join(' '), line: index + 1 });
  });
  return keys;
}

/** OpenSSH's fingerprint of a key blob: SHA256:base64 without padding */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** the offered key among `keys`, compared in constant time, its signature checked when there is one */
export function matchKey(keys: AuthorizedKey[], offer: KeyOffer): KeyCheck {
  let found: AuthorizedKey | null = null;
  for (const k of keys) {
    const same = k.blob.length === offer.key.data.length && timingSafeEqual(k.blob, offer.key.data);
    if (same && !found) found = k;
  }
  if (!found) return { ok: false, reason: `the key ${fingerprint(offer.key.data)} is not in the authorized keys` };
  if (offer.signature) {
    const parsed = utils.parseKey(found.blob);
    if (parsed instanceof Error) return { ok: false, reason: `the authorized key on line ${found.line} cannot be used: ${parsed.message}` };
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (!offer.blob || key.verify(offer.blob, offer.signature, offer.hashAlgo) !== true) {
      return { ok: false, reason: `the signature made with ${fingerprint(found.blob)} does not verify` };
    }
  }
  return { ok: true, key: found };
}

/**
 * Checks an offer against the file as it is now. A missing file, or one that
 * others may write to (as sshd's StrictModes), lets nobody in, with the reason.
 */
export function checkAuthorizedKey(file: string, offer: KeyOffer): KeyCheck {
  let text: string;
  try {
    const st = statSync(file);
    if (st.mode & 0o022) return { ok: false, reason: `${file} may be written by others (mode ${(st.mode & 0o777).toString(8)}); chmod go-w it` };
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? `there is no authorized keys file at ${file}` : `${file} cannot be read: ${(error as Error).message}` };
  }
  return matchKey(parseAuthorizedKeys(text), offer);
}

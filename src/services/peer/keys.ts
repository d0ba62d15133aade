/**
 * This appliance's SSH identity (an ed25519 key pair made once in the home),
 * host-key fingerprints as OpenSSH prints them, and the authorized_keys lines
 * that let a bound peer run nothing but the syncsh agent.
 */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ssh2 } from '../lazy.js';
import type { Home } from '../home.js';
import { withLock } from '../lock.js';
import { shellQuote } from './protocol.js';

export interface KeyPair {
  privateKeyFile: string;
  publicKeyFile: string;
  privateKey: string;
  /** one line: `ssh-ed25519 AAAA… syncsh:ID` */
  publicKey: string;
}

export function keyFiles(home: Home): { dir: string; privateKeyFile: string; publicKeyFile: string } {
  const dir = path.join(home.root, 'ssh');
  return { dir, privateKeyFile: path.join(dir, 'id_ed25519'), publicKeyFile: path.join(dir, 'id_ed25519.pub') };
}

/**
 * An ed25519 key pair that reads back: ssh2's generator writes a broken key
 * about once in 256 (mscdex/ssh2#1390), so draw again until both halves parse.
 */
export function generateEd25519(comment: string): { private: string; public: string } {
  for (;;) {
    const pair = ssh2().utils.generateKeyPairSync('ed25519', { comment });
    if (!(ssh2().utils.parseKey(pair.private) instanceof Error) && !(ssh2().utils.parseKey(pair.public) instanceof Error)) return pair;
  }
}

/** The key pair, made the first time it is asked for. */
export function ensureKeyPair(home: Home, applianceId: string): KeyPair {
  const files = keyFiles(home);
  if (!existsSync(files.privateKeyFile) || !existsSync(files.publicKeyFile)) {
    // Made in a directory of its own and moved in with one rename: two processes
    // making it at once cannot mix one's private key with the other's public key.
    const made = generateEd25519(`syncsh:${applianceId}`);
    const staging = `${files.dir}.new-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { mode: 0o700 });
    writeFileSync(path.join(staging, path.basename(files.privateKeyFile)), made.private, { mode: 0o600 });
    writeFileSync(path.join(staging, path.basename(files.publicKeyFile)), `${made.public.trim()}\n`, { mode: 0o644 });
    try {
      if (existsSync(files.dir) && !(existsSync(files.privateKeyFile) && existsSync(files.publicKeyFile))) rmSync(files.dir, { recursive: true, force: true }); // half a pair
      renameSync(staging, files.dir);
    } catch {
      rmSync(staging, { recursive: true, force: true }); // another process made it first: keep theirs
    }
  }
  return readKeyPair(home) as KeyPair;
}

/** The key pair if it exists, else null (never makes one). */
export function readKeyPair(home: Home): KeyPair | null {
  const files = keyFiles(home);
  try {
    const privateKey = readFileSync(files.privateKeyFile, 'utf8');
    const publicKey = readFileSync(files.publicKeyFile, 'utf8').trim();
    return { ...files, privateKey, publicKey };
  } catch {
    return null;
  }
}

/** `SHA256:…` of a public key blob, as `ssh-keygen -l` prints it. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** the key type named inside a public key blob (ssh-ed25519, ecdsa-sha2-nistp256, …) */
export function keyType(blob: Buffer): string {
  try {
    const len = blob.readUInt32BE(0);
    return blob.subarray(4, 4 + len).toString('latin1');
  } catch {
    return 'unknown';
  }
}

/** fingerprint of a one-line OpenSSH public key (`type base64 [comment]`) */
export function publicKeyFingerprint(line: string): string {
  const blob = publicKeyBlob(line);
  if (!blob) throw new Error('Not an OpenSSH public key line.');
  return fingerprint(blob);
}

export function publicKeyBlob(line: string): Buffer | null {
  const parts = line.trim().split(/\s+/);
  for (let i = 0; i + 1 < parts.length; i++) {
    if (/^(ssh-|ecdsa-|sk-)/.test(parts[i]) && /^[A-Za-z0-9+/]+=*$/.test(parts[i + 1])) return Buffer.from(parts[i + 1], 'base64');
  }
  return null;
}

export function checkPublicKey(line: unknown): string {
  if (typeof line !== 'string' || line.includes('\n') || !publicKeyBlob(line)) throw new Error('The public key must be one OpenSSH public key line.');
  const parsed = ssh2().utils.parseKey(line);
  if (parsed instanceof Error) throw new Error(`The public key is not usable: ${parsed.message}`);
  return line.trim();
}

/** Where the agent command runs from: the program, its script and the home it serves. */
export interface AgentCommand {
  node: string;
  script: string;
  home: string;
}

const RESTRICTIONS = 'no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding';

/** The comment that marks a line as syncsh's key for `peerId`. */
export const keyComment = (peerId: string) => `syncsh:${peerId}`;

/**
 * `command="NODE SCRIPT agent --home HOME --peer ID",no-pty,… ssh-ed25519 AAAA… syncsh:ID`:
 * whatever the peer asks to run, sshd runs the agent, which reads
 * SSH_ORIGINAL_COMMAND for the sub-command and knows from --peer whose key it was.
 */
export function authorizedKeysLine(cmd: AgentCommand, peerId: string, publicKey: string): string {
  const command = [cmd.node, cmd.script, 'agent', '--home', cmd.home, '--peer', peerId].map(shellQuote).join(' ');
  const parts = publicKey.trim().split(/\s+/);
  return `command="${command.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}",${RESTRICTIONS} ${parts[0]} ${parts[1]} ${keyComment(peerId)}`;
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l, i, all) => l !== '' || i < all.length - 1);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

function writeLines(file: string, lines: string[]): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.syncsh-${process.pid}`;
  writeFileSync(tmp, lines.length ? `${lines.join('\n')}\n` : '', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/** whether an authorized_keys line carries this key blob or syncsh's comment for peerId */
function lineMatches(line: string, blob: Buffer | null, peerId: string | null): boolean {
  if (line.trim().startsWith('#') || !line.trim()) return false;
  const lb = publicKeyBlob(line);
  if (blob && lb?.equals(blob)) return true;
  if (peerId && line.trim().endsWith(` ${keyComment(peerId)}`) && line.includes('agent')) return true;
  return false;
}

/**
 * Put the restricted line for `peerId` in `file`, replacing any line with the
 * same key (an unrestricted one an operator added, or an older binding) and
 * any older syncsh line of that peer: sshd uses the first line that matches a
 * key, so the restricted one must be the only one.
 */
export async function installAuthorizedKey(file: string, line: string, peerId: string): Promise<void> {
  const blob = publicKeyBlob(line);
  await withLock(`${file}.lock`, `The file ${file}`, 'adding a key', () => {
    const kept = readLines(file).filter((l) => !lineMatches(l, blob, peerId));
    writeLines(file, [...kept, line]);
  });
}

/** Remove the lines of `peerId` (its key or syncsh's comment for it); returns how many went. */
export async function removeAuthorizedKey(file: string, peerId: string, publicKey: string | null): Promise<number> {
  const blob = publicKey ? publicKeyBlob(publicKey) : null;
  return withLock(`${file}.lock`, `The file ${file}`, 'removing a key', () => {
    const lines = readLines(file);
    const kept = lines.filter((l) => !lineMatches(l, blob, peerId));
    if (kept.length !== lines.length) writeLines(file, kept);
    return lines.length - kept.length;
  });
}

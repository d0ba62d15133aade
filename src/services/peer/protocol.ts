/**
 * The agent protocol, version 1: what one appliance says to another's
 * `syncsh agent`, over an SSH exec channel or a local child process.
 *
 * Control channel (`syncsh agent`): newline-delimited JSON both ways.
 *   request   {"id": 1, "method": "hello", "params": {...}}
 *   response  {"id": 1, "result": ...}  or  {"id": 1, "error": {"code": "...", "message": "..."}}
 * The first request must be `hello` {protocol, from, version, purpose?}; the
 * answer names the agent's appliance. An incompatible version is the error
 * code 'protocol'; an appliance the agent does not know is 'unbound' (the
 * session then accepts only `trail.refused`, so the refusal lands in the
 * receiver's trail).
 *
 * Data channels (`syncsh agent send` / `syncsh agent receive`): the first
 * line of stdin is a JSON header carrying the same hello fields plus the
 * operation; then the bytes flow (send: on stdout; receive: on stdin). The
 * outcome is the last JSON line (send: on stderr; receive: on stdout) and
 * the exit status (0 ok, 1 failed, 2 refused).
 */
import type { ChunkAnswer } from '../storage/driver.js';
import type { Codec } from '../wire/codec-names.js';
export const PROTOCOL_VERSION = 1;
/** versions this build's agent answers */
export const PROTOCOL_MIN = 1;
export const PROTOCOL_MAX = 1;

export type ErrorCode =
  /** incompatible protocol versions */
  | 'protocol'
  /** the calling appliance is not bound to the agent's */
  | 'unbound'
  /** the key used belongs to another appliance than the one saying hello */
  | 'identity'
  /** a malformed or unknown request */
  | 'bad-request'
  /** the operation ran and failed (a driver error, a missing dataset, ...) */
  | 'failed';

export interface WireError {
  code: ErrorCode;
  message: string;
}

export interface Hello {
  protocol: number;
  /** the calling appliance's id */
  from: string;
  version: string;
  /** 'bind' while pairing: the agent then accepts the caller before it is bound */
  purpose?: 'bind';
}

export interface HelloReply {
  protocol: number;
  id: string;
  hostname: string;
  version: string;
}

export interface Request {
  id: number;
  method: string;
  params?: unknown;
}

export interface Response {
  id: number;
  result?: unknown;
  error?: WireError;
}

/** the header line of a data channel */
export interface SendHeader extends Hello {
  driver: string;
  dataset: string;
  snapshot: string;
  from_snapshot?: string;
  recursive: boolean;
  /** fs: the receiver's answer to the chunk offer: the chunks it holds are not sent */
  held?: ChunkAnswer;
  /** zfs: send from this resume token (`zfs send -t`) */
  resume_token?: string;
  /** the codec the stream is compressed with on the channel; absent: none */
  compress?: Codec;
  /** give up when the reader takes nothing for this long */
  idleTimeoutMs?: number;
}

export interface ReceiveHeader extends Hello {
  driver: string;
  dataset: string;
  force: boolean;
  recursive: boolean;
  /** the codec the stream is compressed with on the channel; absent: none */
  compress?: Codec;
  /** give up when no byte arrives for this long (a dead link) */
  idleTimeoutMs?: number;
}

/** the last line of a data channel */
export type Outcome = { ok: true; result: unknown } | { ok: false; error: WireError };

/** Driver methods a peer may call, with how many arguments each takes. */
export const DRIVER_METHODS = {
  unavailableReason: 0,
  listDatasets: 1,
  getDataset: 1,
  createDataset: 2,
  destroyDataset: 2,
  renameDataset: 2,
  listSnapshots: 1,
  createSnapshot: 3,
  destroySnapshot: 3,
  holdSnapshot: 3,
  rollback: 2,
  changedSince: 2,
  recover: 1,
  offerChunks: 3,
  heldChunks: 2,
  receiveResume: 1,
  volumeStats: 1,
  mount: 1,
  unmount: 1,
} as const;
export type DriverMethod = keyof typeof DRIVER_METHODS;

/** What an agent answers when the protocol cannot even start (wrong sub-command over a forced key). */
export const AGENT_TAG = 'syncsh-agent';

export function compatible(version: unknown): boolean {
  return typeof version === 'number' && Number.isInteger(version) && version >= PROTOCOL_MIN && version <= PROTOCOL_MAX;
}

/** A service name as it may appear in file names: what the service schema allows. */
export function validServiceName(name: unknown): name is string {
  return typeof name === 'string' && /^[A-Za-z0-9_-]{1,200}$/.test(name);
}

/** Quote one word for a POSIX shell (an SSH exec command is read by the remote shell). */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Split a command line the way a shell would for plain words and simple quotes (enough for SSH_ORIGINAL_COMMAND). */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < line.length) cur += line[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

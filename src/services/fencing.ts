/**
 * Fencing policy per peer (QUADStor's qmirrorcheck, 003_… "Fencing
 * Failures"): what a mirror does with a write when that peer stopped
 * answering. `fence` runs a command that cuts the peer off (power it down,
 * take its port away) and its exit status decides; `ignore` carries on
 * regardless; `manual` waits for the operator; no policy (`none`) fails the
 * write. The decision itself is cdp/roles.ts; this module keeps the
 * policies (fencing.json in the home, through config-file.ts) and runs
 * fence commands.
 *
 * A fence command is a program the appliance runs as root: it must be an
 * absolute path to an executable, and over the SSH console it follows the
 * alert command's rule (`access.program`: only from allowed directories).
 */
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import parseArgsStringToArgv from 'string-argv';
import { ConfigFile } from './config-file.js';
import type { Home } from './home.js';
import { LOCAL_ACCESS, type Access } from './access.js';
import { withLock } from './lock.js';
import { runProgram, type ProgramResult } from './run-program.js';
import { ServiceLog } from './service-log.js';
import type { PeerStore } from './peer/store.js';

export type FencePolicy = { kind: 'fence'; command: string[]; timeoutMs: number; setAt: string } | { kind: 'ignore'; setAt: string } | { kind: 'manual'; setAt: string };

/** what a peer's policy is, `none` when nothing is set */
export type FenceKind = FencePolicy['kind'] | 'none';

export const FENCE_KINDS: readonly Exclude<FenceKind, 'none'>[] = ['fence', 'ignore', 'manual'];

export const DEFAULT_FENCE_TIMEOUT_MS = 30_000;
export const MAX_FENCE_TIMEOUT_MS = 3_600_000;

type FencingFile = { peers: Record<string, FencePolicy> };

const policySchema = {
  type: 'object',
  required: ['kind', 'setAt'],
  properties: {
    kind: { enum: FENCE_KINDS },
    setAt: { type: 'string' },
    command: { type: 'array', minItems: 1, items: { type: 'string' } },
    timeoutMs: { type: 'integer', minimum: 1 },
  },
  if: { properties: { kind: { const: 'fence' } } },
  // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then, not a thenable
  then: { required: ['command', 'timeoutMs'] },
};

/**
 * Split a typed command line into argv, quotes as a shell would read them,
 * but nothing else of a shell: no variables, globs, pipes or redirections
 * (those words reach the program as they are). An unclosed quote is refused
 * rather than guessed at.
 */
export function splitCommand(line: string): string[] {
  let quote: string | null = null;
  for (const c of line) {
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
  }
  if (quote) throw new Error(`The fence command ${JSON.stringify(line)} has an unclosed ${quote === '"' ? 'double' : 'single'} quote. Nothing was changed.`);
  const argv = parseArgsStringToArgv(line);
  if (!argv.length) throw new Error("The fence command is empty: give the program (an absolute path) and its arguments, e.g. --command '/etc/syncsh/alert.d/fence-ipmi --host bmc-b'. Nothing was changed.");
  return argv;
}

/** the program of a fence command, checked: absolute, allowed to this session, an executable file; returns the path to run */
export function checkFenceProgram(program: string, access: Access): string {
  if (!path.isAbsolute(program)) throw new Error(`The fence command must start with the absolute path of its program, not "${program}": the daemon runs it, whose PATH may differ. Nothing was changed.`);
  const resolved = access.program(program);
  let st;
  try {
    st = statSync(resolved);
  } catch {
    throw new Error(`The fence program ${program} does not exist. Nothing was changed.`);
  }
  if (!st.isFile()) throw new Error(`The fence program ${program} is not a file. Nothing was changed.`);
  try {
    accessSync(resolved, constants.X_OK);
  } catch {
    throw new Error(`The fence program ${program} is not executable (chmod +x it first). Nothing was changed.`);
  }
  return resolved;
}

export interface FenceRow {
  peer: string;
  /** 'outbound', 'inbound', 'both', or 'unbound' for a policy left over from a peer that is gone */
  bound: 'outbound' | 'inbound' | 'both' | 'unbound';
  kind: FenceKind;
  command: string[] | null;
  timeoutMs: number | null;
  setAt: string | null;
}

export interface FenceOutcome {
  peer: string;
  /** the peer is fenced: it can no longer write */
  ok: boolean;
  command: string[];
  durationMs: number;
  /** a sentence saying what happened */
  message: string;
  result: ProgramResult;
}

export class FencingService {
  private readonly conf: ConfigFile<FencingFile>;
  private readonly lockFile: string;
  /** the fencing log: every set, clear and fence run with its output and outcome */
  readonly log: ServiceLog;

  constructor(
    home: Home,
    private readonly peers: PeerStore,
  ) {
    this.conf = new ConfigFile<FencingFile>({
      cwd: home.config,
      configName: 'fencing',
      projectName: 'syncsh',
      schema: { peers: { type: 'object', additionalProperties: policySchema, default: {} } } as never,
      defaults: { peers: {} },
    });
    this.lockFile = path.join(home.locks, 'fencing.lock');
    this.log = new ServiceLog(path.join(home.logs, 'fencing.log'));
  }

  /** the bound peer `host` names (id or address, either direction), by its id; else a sentence naming it */
  peerId(host: string): string {
    const id = this.peers.find(host)?.id ?? this.peers.findInbound(host)?.id;
    if (id) return id;
    const bound = [...new Set([...this.peers.outbound(), ...this.peers.inbound()].map((p) => p.id))];
    throw new Error(`No appliance "${host}" is bound to this one, so it has no fencing policy${bound.length ? ` (the bound appliances are ${bound.join(', ')})` : ''}. Nothing was changed.`);
  }

  policy(host: string): FencePolicy | null {
    return this.conf.get('peers')[host] ?? null;
  }

  kindOf(host: string): FenceKind {
    return this.policy(host)?.kind ?? 'none';
  }

  /** every bound peer (none where nothing is set), and any policy left from a peer no longer bound */
  list(): FenceRow[] {
    const set = this.conf.get('peers');
    const out = new Set(this.peers.outbound().map((p) => p.id));
    const inb = new Set(this.peers.inbound().map((p) => p.id));
    const ids = [...new Set([...out, ...inb, ...Object.keys(set)])].sort((a, b) => a.localeCompare(b));
    return ids.map((peer) => {
      const p = set[peer];
      return {
        peer,
        bound: out.has(peer) && inb.has(peer) ? 'both' : out.has(peer) ? 'outbound' : inb.has(peer) ? 'inbound' : 'unbound',
        kind: p?.kind ?? 'none',
        command: p?.kind === 'fence' ? p.command : null,
        timeoutMs: p?.kind === 'fence' ? p.timeoutMs : null,
        setAt: p?.setAt ?? null,
      };
    });
  }

  /** `setup network fencing PEER fence --command '…'`: the command line is split and checked before anything is kept */
  async setFence(host: string, line: string, opts: { timeoutMs?: number; access?: Access } = {}): Promise<FencePolicy & { peer: string }> {
    const peer = this.peerId(host);
    const argv = splitCommand(line);
    const program = checkFenceProgram(argv[0], opts.access ?? LOCAL_ACCESS);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_FENCE_TIMEOUT_MS;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1000 || timeoutMs > MAX_FENCE_TIMEOUT_MS) throw new Error(`The fence timeout must be 1 to ${MAX_FENCE_TIMEOUT_MS / 1000} seconds, not ${timeoutMs / 1000}. Nothing was changed.`);
    return this.put(peer, { kind: 'fence', command: [program, ...argv.slice(1)], timeoutMs, setAt: new Date().toISOString() });
  }

  async setSimple(host: string, kind: 'ignore' | 'manual'): Promise<FencePolicy & { peer: string }> {
    return this.put(this.peerId(host), { kind, setAt: new Date().toISOString() });
  }

  /** back to no policy; a policy of a peer no longer bound can be cleared too */
  async clear(host: string): Promise<{ peer: string; was: FencePolicy | null }> {
    const peer = this.policy(host) ? host : this.peerId(host);
    return withLock(this.lockFile, 'The fencing policies', 'clearing a fencing policy', () => {
      const all = { ...this.conf.get('peers') };
      const was = all[peer] ?? null;
      delete all[peer];
      this.conf.set('peers', all);
      if (was) this.log.write(`Fencing policy of ${peer} cleared (was ${describePolicy(was)})`);
      return { peer, was };
    });
  }

  /**
   * Run the peer's fence command now (a mirror lost it). Never throws: the
   * outcome says whether the peer is fenced, and the log keeps the command,
   * its output and the outcome. The command gets SYNCSH_FENCE_PEER (the
   * peer's id) and SYNCSH_FENCE_ADDRESS in its environment.
   */
  async fence(host: string, why: string): Promise<FenceOutcome> {
    const policy = this.policy(host);
    const peer = host;
    if (policy?.kind !== 'fence') {
      const message = `No fence command is set for ${peer}, so it was not fenced.`;
      this.log.write(`Fence of ${peer} (${why}): ${message}`);
      return { peer, ok: false, command: [], durationMs: 0, message, result: { ok: false, error: message, exitCode: null, signal: null, timedOut: false, output: '' } };
    }
    const address = this.peers.find(peer)?.address ?? this.peers.inboundPeer(peer)?.address ?? '';
    this.log.write(`Fence of ${peer} (${why}): running ${showCommand(policy.command)} (timeout ${policy.timeoutMs / 1000} sec)`);
    const started = Date.now();
    const result = await runProgram(policy.command, {
      what: 'fence command',
      timeoutMs: policy.timeoutMs,
      shown: showCommand(policy.command),
      output: 'both',
      lines: 5,
      env: { SYNCSH_FENCE_PEER: peer, SYNCSH_FENCE_ADDRESS: address },
    });
    const durationMs = Date.now() - started;
    const message = result.ok ? `${peer} was fenced: ${showCommand(policy.command)} exited with code 0 in ${(durationMs / 1000).toFixed(1)} sec${result.output ? ` (${result.output})` : ''}.` : `${peer} was NOT fenced: ${result.error}`;
    this.log.write(`Fence of ${peer}: ${result.ok ? 'SUCCESS' : 'FAILED'}: ${message}`);
    return { peer, ok: result.ok, command: policy.command, durationMs, message, result };
  }

  private put(peer: string, policy: FencePolicy): Promise<FencePolicy & { peer: string }> {
    return withLock(this.lockFile, 'The fencing policies', 'setting a fencing policy', () => {
      this.conf.set('peers', { ...this.conf.get('peers'), [peer]: policy });
      this.log.write(`Fencing policy of ${peer} set: ${describePolicy(policy)}`);
      return { ...policy, peer };
    });
  }
}

/** argv as it could be typed again: words with spaces or quotes in single quotes */
export function showCommand(argv: string[]): string {
  return argv.map((a) => (a === '' || /[\s'"\\]/.test(a) ? `'${a.replace(/'/g, `'"'"'`)}'` : a)).join(' ');
}

/** one phrase for a policy, as show and the log say it */
export function describePolicy(policy: FencePolicy | null): string {
  if (!policy) return 'none (a write to a mirror that lost this peer fails)';
  if (policy.kind === 'fence') return `fence with ${showCommand(policy.command)} (timeout ${policy.timeoutMs / 1000} sec)`;
  return policy.kind;
}

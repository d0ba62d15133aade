/**
 * How the agent of another appliance is reached: an exec channel on one SSH
 * connection (ssh2), or a child process for an appliance on this machine.
 * Both give channels with stdin, stdout, stderr and an exit status; what
 * flows on them is the agent protocol (protocol.ts).
 */
import { existsSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { Client, ClientChannel, ConnectConfig } from 'ssh2';
import { loadExeca, ssh2 } from '../lazy.js';
import type { AgentCommand } from './keys.js';
import { fingerprint, keyType } from './keys.js';
import { shellQuote } from './protocol.js';

export type PeerErrorCode = 'not-bound' | 'refused' | 'timeout' | 'unreachable' | 'auth' | 'host-key' | 'no-key' | 'link' | 'protocol' | 'unbound' | 'identity' | 'agent';

/** A failure to reach or talk to a peer, with a code tests and callers can tell apart. */
export class PeerError extends Error {
  constructor(
    readonly code: PeerErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PeerError';
  }
}

export type SubCommand = 'control' | 'send' | 'receive' | 'mirror';

export interface ExitStatus {
  code: number | null;
  signal: string | null;
  /** set when the channel went away without the command ending (the connection broke) */
  lost: Error | null;
}

export interface Channel {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** when the command has ended (or the channel is gone) */
  done: Promise<ExitStatus>;
  /** end it now (abort) */
  close(): void;
}

export interface Transport {
  /** e.g. `root@10.0.0.2:22` or `local /var/lib/other` */
  readonly label: string;
  exec(sub: SubCommand): Promise<Channel>;
  /** called once when the transport is gone (closed, or the connection broke) */
  onClose(listener: (error: Error | null) => void): void;
  readonly closed: boolean;
  close(): void;
}

/** the agent's command line for a sub-command */
export function agentArgv(cmd: AgentCommand, sub: SubCommand): string[] {
  return [cmd.node, cmd.script, 'agent', ...(sub === 'control' ? [] : [sub]), ...(cmd.home ? ['--home', cmd.home] : [])];
}

const noop = () => undefined;

// ---- a child process (two appliances on one machine) ----------------------

export class LocalTransport implements Transport {
  readonly label: string;
  private readonly children = new Set<{ kill(): boolean }>();
  private listeners: ((error: Error | null) => void)[] = [];
  closed = false;

  constructor(private readonly cmd: AgentCommand) {
    this.label = `local ${cmd.home}`;
  }

  async exec(sub: SubCommand): Promise<Channel> {
    if (this.closed) throw new PeerError('link', `The connection to ${this.label} is closed.`);
    // Checked at each agent started, not only at connect: a home gone since (its disk unmounted, a machine's power off)
    // must not be made anew by the agent, a fresh appliance in the mount point, hidden once the disk is back.
    if (this.cmd.home && !existsSync(this.cmd.home)) throw new PeerError('unreachable', `Cannot reach the appliance at ${this.cmd.home}: its home is gone.`);
    // The other appliance's environment: its home, none of this one's settings.
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SYNCSH_') && k !== 'SSH_ORIGINAL_COMMAND') env[k] = v;
    env.SYNCSH_HOME = this.cmd.home;
    const [file, ...args] = agentArgv(this.cmd, sub);
    const { execa } = await loadExeca();
    const child = execa(file, args, { env, extendEnv: false, stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', buffer: false, reject: false, stripFinalNewline: false });
    this.children.add(child);
    child.stdin!.on('error', noop);
    child.stdout!.on('error', noop);
    const done = child
      .then(
        (r) => ({ code: r.exitCode ?? null, signal: r.signal ?? null, lost: r.failed && r.exitCode === undefined && !r.signal ? new Error(r.message) : null }),
        (e: Error) => ({ code: null, signal: null, lost: e }),
      )
      .finally(() => this.children.delete(child));
    return { stdin: child.stdin!, stdout: child.stdout!, stderr: child.stderr!, done, close: () => void child.kill() };
  }

  onClose(listener: (error: Error | null) => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.children) c.kill();
    for (const l of this.listeners.splice(0)) l(null);
  }
}

// ---- SSH -------------------------------------------------------------------

export interface SshTarget {
  /** the appliance's id when known, else the address: how messages name it */
  name: string;
  host: string;
  port: number;
  user: string;
}

export interface HostKeySeen {
  fingerprint: string;
  type: string;
}

export interface SshOptions {
  /**
   * Decide on the host key: true to go on; a PeerError to refuse (its
   * message is what the caller sees).
   */
  verify(key: HostKeySeen): true | PeerError;
  auth: { privateKey: string } | { password: string };
  /** how the agent is started when the key is not restricted to it */
  agent: AgentCommand;
  connectTimeoutMs: number;
  keepaliveMs: number;
  keepaliveCount: number;
}

const where = (t: SshTarget) => `${t.host}:${t.port}`;

/** Turn what ssh2 or the socket reports into a sentence naming the peer and the cause. */
export function describeConnectError(target: SshTarget, error: Error & { code?: string; level?: string }, opts: { connectTimeoutMs: number; keyAuth: boolean; ready: boolean; keepaliveMs: number; keepaliveCount: number }): PeerError {
  if (error instanceof PeerError) return error;
  const who = target.name === target.host ? `the appliance at ${where(target)}` : `the appliance ${target.name} at ${where(target)}`;
  const msg = error.message ?? String(error);
  if (opts.ready || (error.level === 'client-timeout' && msg === 'Keepalive timeout')) {
    if (msg === 'Keepalive timeout') {
      return new PeerError('link', `The connection to ${who} was lost: no answer to ${opts.keepaliveCount} keepalives ${opts.keepaliveMs / 1000} s apart (is the link down?).`);
    }
    return new PeerError('link', `The connection to ${who} was lost: ${msg}.`);
  }
  switch (error.code) {
    case 'ECONNREFUSED':
      return new PeerError('refused', `Cannot reach ${who}: the connection was refused (is sshd running there, on port ${target.port}?).`);
    case 'ETIMEDOUT':
      return new PeerError('timeout', `Cannot reach ${who}: no answer (timeout).`);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'ENETDOWN':
      return new PeerError('unreachable', `Cannot reach ${who}: the host or its network is unreachable (${error.code}).`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new PeerError('unreachable', `Cannot reach ${who}: the name ${target.host} does not resolve (${error.code}).`);
    case 'ECONNRESET':
      return new PeerError('link', `Cannot reach ${who}: the connection was reset during the SSH handshake.`);
  }
  if (error.level === 'client-timeout') {
    return new PeerError('timeout', `Cannot reach ${who}: no SSH handshake within ${Math.round(opts.connectTimeoutMs / 100) / 10} s (timeout; is the host up and sshd answering?).`);
  }
  if (error.level === 'client-authentication') {
    return opts.keyAuth
      ? new PeerError(
          'auth',
          `${who[0].toUpperCase()}${who.slice(1)} did not accept this appliance's key for user ${target.user}: the binding was removed there, or its authorized_keys file changed. Bind it again with 'setup network ssh-bind ${target.host}${target.port === 22 ? '' : ` --port ${target.port}`}'.`,
        )
      : new PeerError('auth', `${who[0].toUpperCase()}${who.slice(1)} did not accept the password for user ${target.user}.`);
  }
  return new PeerError('unreachable', `Cannot reach ${who}: ${msg}.`);
}

/** One SSH connection to a peer; each exec is a channel to its agent. */
export class SshTransport implements Transport {
  readonly label: string;
  private client: Client | null = null;
  private listeners: ((error: Error | null) => void)[] = [];
  private lastError: Error | null = null;
  closed = false;
  /** the host key the server showed, once connected */
  hostKey: HostKeySeen | null = null;

  private constructor(
    readonly target: SshTarget,
    private readonly opts: SshOptions,
  ) {
    this.label = `${target.user}@${where(target)}`;
  }

  /** Connect and authenticate; rejects with a PeerError naming the cause. */
  static connect(target: SshTarget, opts: SshOptions): Promise<SshTransport> {
    const t = new SshTransport(target, opts);
    return t.start().then(() => t);
  }

  private start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const client = new (ssh2().Client)();
      this.client = client;
      let ready = false;
      let refusal: PeerError | null = null;
      const describe = (e: Error) =>
        describeConnectError(this.target, e, { connectTimeoutMs: this.opts.connectTimeoutMs, keyAuth: 'privateKey' in this.opts.auth, ready, keepaliveMs: this.opts.keepaliveMs, keepaliveCount: this.opts.keepaliveCount });
      client.on('ready', () => {
        ready = true;
        resolve();
      });
      client.on('error', (error: Error) => {
        const described = refusal ?? describe(error);
        if (!ready) {
          reject(described);
          this.finish(described);
        } else {
          this.lastError = described;
        }
      });
      client.on('close', () => {
        if (!ready) reject(refusal ?? this.lastError ?? new PeerError('link', `The connection to ${this.label} closed during the SSH handshake.`));
        this.finish(this.lastError);
      });
      const config: ConnectConfig = {
        host: this.target.host,
        port: this.target.port,
        username: this.target.user,
        readyTimeout: this.opts.connectTimeoutMs,
        keepaliveInterval: this.opts.keepaliveMs,
        keepaliveCountMax: this.opts.keepaliveCount,
        hostVerifier: (key: Buffer) => {
          this.hostKey = { fingerprint: fingerprint(key), type: keyType(key) };
          const verdict = this.opts.verify(this.hostKey);
          if (verdict === true) return true;
          refusal = verdict;
          return false;
        },
        ...('privateKey' in this.opts.auth ? { privateKey: this.opts.auth.privateKey, authHandler: ['publickey'] } : { password: this.opts.auth.password, authHandler: ['password'] }),
      } as ConnectConfig;
      try {
        client.connect(config);
      } catch (error) {
        reject(describe(error as Error));
      }
    });
  }

  private finish(error: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.listeners.splice(0)) l(error);
  }

  onClose(listener: (error: Error | null) => void): void {
    if (this.closed) listener(this.lastError);
    else this.listeners.push(listener);
  }

  exec(sub: SubCommand): Promise<Channel> {
    const client = this.client;
    if (!client || this.closed) return Promise.reject(this.lastError ?? new PeerError('link', `The connection to ${this.label} is closed.`));
    // Over a restricted key sshd runs the agent whatever is asked and the
    // agent reads the sub-command from SSH_ORIGINAL_COMMAND; over an
    // unrestricted one this command line starts it.
    const command = agentArgv(this.opts.agent, sub).map(shellQuote).join(' ');
    return new Promise((resolve, reject) => {
      client.exec(command, (error: Error | undefined, stream: ClientChannel) => {
        if (error) {
          reject(this.lastError ?? new PeerError('link', `Could not open a channel to ${this.label}: ${error.message}.`));
          return;
        }
        stream.on('error', noop);
        stream.stderr.on('error', noop);
        let status: { code: number | null; signal: string | null } | null = null;
        stream.on('exit', (code: number | null, signal?: string) => {
          status = { code: typeof code === 'number' ? code : null, signal: signal ?? null };
        });
        const done = new Promise<ExitStatus>((res) => {
          const closed = () => res({ code: status?.code ?? null, signal: status?.signal ?? null, lost: status ? null : (this.lastError ?? new PeerError('link', `The channel to ${this.label} closed before the agent ended.`)) });
          stream.once('close', closed);
          // when the whole connection goes, the channel goes with it
          this.onClose(() => setImmediate(closed));
        });
        resolve({ stdin: stream, stdout: stream, stderr: stream.stderr, done, close: () => stream.close() });
      });
    });
  }

  close(): void {
    this.client?.end();
    this.finish(null);
  }
}

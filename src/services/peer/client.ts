/**
 * This appliance's end of the agent protocol: a control session (requests
 * and answers, one JSON line each) and data channels for send and receive
 * streams, over any Transport. RemoteDriver is the Driver a run uses for a
 * dataset on another appliance.
 */
import { codecStream, type Codec } from '../wire/codecs.js';
import { type Duplex, PassThrough, type Readable } from 'node:stream';
import type { HistoryEntry } from '../history.js';
import type { RunState } from '../auto-sync/model.js';
import type { AutoSyncConfig, Role } from '../auto-sync/model.js';
import type { Tombstone } from '../auto-sync/tombstones.js';
import type { ChunkAnswer, ChunkOffer, CreateDatasetOptions, DatasetInfo, Driver, DriverName, ReceiveOptions, ReceiveResult, SendOptions, SnapshotInfo, VolumeStats } from '../storage/driver.js';
import type { PeerSide } from '../auto-sync/run.js';
import { PeerError, type Channel, type ExitStatus, type SubCommand, type Transport } from './transport.js';
import type { DriverMethod, Hello, HelloReply, Outcome, ReceiveHeader, Response, SendHeader, WireError } from './protocol.js';

/** the last `max` characters of a stream, for error messages */
function tail(stream: Readable, max = 4000): () => string {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    text = (text + chunk).slice(-max);
  });
  stream.on('error', () => undefined);
  return () => text;
}

/** the last JSON object line of some text */
function lastJson(text: string): unknown {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!lines[i].startsWith('{')) continue;
    try {
      return JSON.parse(lines[i]);
    } catch {
      /* not this one */
    }
  }
  return null;
}

function reviveSnapshot(s: SnapshotInfo): SnapshotInfo {
  return { ...s, createdAt: new Date(s.createdAt as unknown as string) };
}

export interface LinkOptions {
  /** the appliance id we expect to answer (null while binding: whoever it is) */
  expectId: string | null;
  /** what messages call the peer */
  name: string;
  hello: Hello;
  /** data channels give up after this long without a byte */
  idleTimeoutMs: number;
  /** how to bind the peer again, quoted (PeerStore.bindHint): named in a refusal */
  rebind?: string;
  /**
   * keep a send or receive channel started ahead once one was used, its agent
   * waiting for a header, so that the next run does not wait for an agent to
   * start (a long-lived process: PeerService.keepWarm)
   */
  spareChannels?: boolean;
}

type DataSub = Exclude<SubCommand, 'control'>;

/** a data channel started ahead; `ended` once its agent is gone (the connection broke, or it was closed) */
interface Spare {
  channel: Promise<Channel>;
  ended: boolean;
}

/**
 * One conversation with one peer's agent: the transport, the control session
 * (opened on first use, with hello) and data channels.
 */
export class AgentLink {
  private control: Promise<ControlSession> | null = null;
  /** set when the agent refused this appliance at hello (unbound): then only the refusal may be recorded */
  refused: PeerError | null = null;
  reply: HelloReply | null = null;
  private current: ControlSession | null = null;

  constructor(
    readonly transport: Transport,
    readonly opts: LinkOptions,
  ) {}

  get closed(): boolean {
    return this.transport.closed;
  }

  /** the control session, hello done; a refusal (unbound) is kept, not thrown */
  session(): Promise<ControlSession> {
    // the agent behind a finished session ended (or was closed): start another on the same connection
    if (this.current?.finished && !this.refused) this.control = null;
    this.control ??= (async () => {
      const channel = await this.transport.exec('control');
      const session = new ControlSession(channel, this.opts.name);
      this.current = session;
      try {
        this.reply = (await session.request('hello', this.opts.hello)) as HelloReply;
      } catch (error) {
        if (error instanceof RemoteError && error.code === 'unbound') {
          this.refused = new PeerError('unbound', `The appliance ${this.opts.name} refused this one: ${error.remoteMessage} Bind it again with ${this.opts.rebind ?? "'setup network ssh-bind' or 'setup network local-bind'"}.`);
          return session;
        }
        session.close();
        throw toPeerError(error, this.opts.name);
      }
      if (this.opts.expectId && this.reply.id !== this.opts.expectId) {
        session.close();
        throw new PeerError(
          'identity',
          `The appliance at ${this.transport.label} answers as ${this.reply.id}, not ${this.opts.expectId}: another appliance took its address. Unbind ${this.opts.expectId} and bind the one there now, if that is intended.`,
        );
      }
      return session;
    })();
    this.control.catch(() => {
      this.control = null;
    });
    return this.control;
  }

  async call<T = unknown>(method: string, params?: unknown): Promise<T> {
    const session = await this.session();
    if (this.refused && method !== 'trail.refused') throw this.refused;
    try {
      return (await session.request(method, params)) as T;
    } catch (error) {
      throw toPeerError(error, this.opts.name);
    }
  }

  /** a data channel with its header sent */
  async data(sub: DataSub, header: SendHeader | ReceiveHeader): Promise<Channel> {
    if (this.refused) throw this.refused;
    const channel = (await this.takeSpare(sub)) ?? (await this.transport.exec(sub));
    channel.stdin.write(`${JSON.stringify(header)}\n`);
    // the next one starts once this one is done, not beside the transfer it carries
    if (this.opts.spareChannels && sub !== 'mirror') void channel.done.then(() => this.startSpare(sub));
    return channel;
  }

  private readonly spares = new Map<DataSub, Spare>();

  private async takeSpare(sub: DataSub): Promise<Channel | null> {
    const spare = this.spares.get(sub);
    if (!spare) return null;
    this.spares.delete(sub);
    const channel = await spare.channel.catch(() => null);
    return channel && !spare.ended && !this.closed ? channel : null;
  }

  private startSpare(sub: DataSub): void {
    if (this.closed || this.spares.has(sub)) return;
    const spare: Spare = { channel: this.transport.exec(sub), ended: false };
    this.spares.set(sub, spare);
    const gone = () => {
      spare.ended = true;
      if (this.spares.get(sub) === spare) this.spares.delete(sub);
    };
    spare.channel.then((ch) => void ch.done.then(gone), gone);
  }

  close(): void {
    this.transport.close();
  }
}

/** an error the agent answered with */
export class RemoteError extends Error {
  constructor(
    readonly code: WireError['code'],
    readonly remoteMessage: string,
    peer: string,
  ) {
    super(code === 'failed' ? `On ${peer}: ${remoteMessage}` : remoteMessage);
    this.name = 'RemoteError';
  }
}

function toPeerError(error: unknown, peer: string): Error {
  if (error instanceof RemoteError) {
    if (error.code === 'protocol') return new PeerError('protocol', `The appliance ${peer} cannot talk with this one: ${error.remoteMessage}`);
    if (error.code === 'unbound') return new PeerError('unbound', `The appliance ${peer} refused this one: ${error.remoteMessage}`);
    if (error.code === 'identity') return new PeerError('identity', `The appliance ${peer} refused this one: ${error.remoteMessage}`);
  }
  return error as Error;
}

/** requests and answers on the control channel */
export class ControlSession {
  private next = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private buffered = '';
  private ended: Error | null = null;
  private readonly stderr: () => string;

  constructor(
    private readonly channel: Channel,
    private readonly peer: string,
  ) {
    this.stderr = tail(channel.stderr);
    channel.stdout.setEncoding('utf8');
    channel.stdout.on('data', (chunk: string) => this.onData(chunk));
    channel.stdout.on('error', () => undefined);
    void channel.done.then((status) => {
      const last = lastJson(this.buffered) as { error?: WireError } | null;
      const why =
        status.lost ??
        (last?.error
          ? new RemoteError(last.error.code, last.error.message, peer)
          : new PeerError(
              'agent',
              `The syncsh agent on ${peer} ended${status.code !== null ? ` with status ${status.code}` : status.signal ? ` by ${status.signal}` : ''}${this.stderr().trim() ? `: ${this.stderr().trim().split('\n').slice(-3).join(' ')}` : '.'}`,
            ));
      this.fail(why);
    });
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      if (!line.trim()) continue;
      let msg: Response & { agent?: string; error?: WireError };
      try {
        msg = JSON.parse(line);
      } catch {
        this.fail(new PeerError('agent', `The peer ${this.peer} did not answer as a syncsh agent: "${line.slice(0, 200)}".`));
        return;
      }
      const waiter = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
      if (!waiter) {
        // an answer to nothing: the agent refusing to start at all
        if (msg.error) this.fail(new RemoteError(msg.error.code, msg.error.message, this.peer));
        continue;
      }
      this.pending.delete(msg.id);
      if (msg.error) waiter.reject(new RemoteError(msg.error.code, msg.error.message, this.peer));
      else waiter.resolve(msg.result ?? null);
    }
  }

  get finished(): boolean {
    return this.ended !== null;
  }

  private fail(error: Error): void {
    this.ended ??= error;
    for (const [, w] of this.pending) w.reject(this.ended);
    this.pending.clear();
  }

  request(method: string, params?: unknown): Promise<unknown> {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.channel.stdin.write(`${JSON.stringify({ id, method, params })}\n`);
    });
  }

  close(): void {
    this.channel.stdin.end();
  }
}

/** how a RemoteDriver gets a link for each operation, and gives it back */
export interface LinkLease {
  acquire(): Promise<AgentLink>;
  release(link: AgentLink): void;
}

/** The Driver of a dataset on another appliance: every call goes over the agent protocol. */
export class RemoteDriver implements Driver {
  constructor(
    readonly name: DriverName,
    private readonly lease: LinkLease,
    private readonly peerName: string,
    private readonly idleTimeoutMs: number,
  ) {}

  private async call<T>(method: DriverMethod, ...args: unknown[]): Promise<T> {
    const link = await this.lease.acquire();
    try {
      return await link.call<T>('driver', { driver: this.name, method, args });
    } finally {
      this.lease.release(link);
    }
  }

  unavailableReason(): Promise<string | null> {
    return this.call('unavailableReason');
  }
  listDatasets(under?: string): Promise<DatasetInfo[]> {
    return this.call('listDatasets', under);
  }
  getDataset(name: string): Promise<DatasetInfo | null> {
    return this.call('getDataset', name);
  }
  createDataset(name: string, opts?: CreateDatasetOptions): Promise<DatasetInfo> {
    return this.call('createDataset', name, opts);
  }
  destroyDataset(name: string, opts?: { recursive?: boolean }): Promise<void> {
    return this.call('destroyDataset', name, opts);
  }
  renameDataset(from: string, to: string): Promise<void> {
    return this.call('renameDataset', from, to);
  }
  async listSnapshots(dataset: string): Promise<SnapshotInfo[]> {
    return (await this.call<SnapshotInfo[]>('listSnapshots', dataset)).map(reviveSnapshot);
  }
  async createSnapshot(dataset: string, name: string, opts: { recursive: boolean }): Promise<SnapshotInfo> {
    return reviveSnapshot(await this.call<SnapshotInfo>('createSnapshot', dataset, name, opts));
  }
  destroySnapshot(dataset: string, name: string, opts: { recursive: boolean }): Promise<void> {
    return this.call('destroySnapshot', dataset, name, opts);
  }
  holdSnapshot(dataset: string, name: string, held: boolean): Promise<void> {
    return this.call('holdSnapshot', dataset, name, held);
  }
  rollback(dataset: string, name: string): Promise<void> {
    return this.call('rollback', dataset, name);
  }
  changedSince(dataset: string, name: string): Promise<boolean> {
    return this.call('changedSince', dataset, name);
  }
  recover(dataset: string): Promise<string[]> {
    return this.call('recover', dataset);
  }
  /** asked on the control channel before a send: the back-channel of the chunk negotiation (README) */
  offerChunks(dataset: string, snapshot: string, opts: { from?: string; recursive: boolean }): Promise<ChunkOffer> {
    return this.call('offerChunks', dataset, snapshot, opts);
  }
  heldChunks(dataset: string, offer: ChunkOffer): Promise<ChunkAnswer> {
    return this.call('heldChunks', dataset, offer);
  }
  receiveResume(dataset: string): Promise<{ supported: boolean; token: string | null }> {
    return this.call('receiveResume', dataset);
  }
  volumeStats(dataset: string): Promise<VolumeStats> {
    return this.call('volumeStats', dataset);
  }
  mount(dataset: string): Promise<void> {
    return this.call('mount', dataset);
  }
  unmount(dataset: string): Promise<void> {
    return this.call('unmount', dataset);
  }

  /**
   * The peer's `agent send` writes the stream on its stdout; it ends here
   * only once the agent said it finished, so a cut stream is an error, never
   * a short but "complete" one.
   */
  send(dataset: string, snapshot: string, opts: SendOptions): Readable {
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    let channel: Channel | null = null;
    const abort = () => channel?.close();
    opts.signal?.addEventListener('abort', abort, { once: true });
    out.on('close', () => {
      if (!out.writableFinished) abort();
    });
    void (async () => {
      const link = await this.lease.acquire();
      let inflate: Duplex | null = null;
      try {
        const codec = wireCodec(opts.compress);
        const ch = await link.data('send', {
          ...link.opts.hello,
          driver: this.name,
          dataset,
          snapshot,
          from_snapshot: opts.from,
          recursive: opts.recursive,
          ...(opts.held ? { held: opts.held } : {}),
          ...(opts.resumeToken ? { resume_token: opts.resumeToken } : {}),
          idleTimeoutMs: this.idleTimeoutMs,
          ...(codec ? { compress: codec } : {}),
        });
        channel = ch;
        ch.stdin.end();
        if (out.destroyed) ch.close();
        const errors = tail(ch.stderr, 16_000);
        // the agent compressed it: what comes off the channel is decompressed on its way to `out`
        inflate = codec ? await codecStream(codec, 'decompress') : null;
        const arriving = inflate ? ch.stdout.pipe(inflate) : ch.stdout;
        // A cut link ends the channel's output early, and the decompressor says "premature end" at
        // about the moment the channel says it was lost: the lost link is the cause, so it wins.
        let inflateError: Error | null = null;
        const inflateFailed = new Promise<Error>((resolve) => inflate?.once('error', (error: Error) => resolve((inflateError = error))));
        const ended = new Promise<void>((resolve) => {
          arriving.once('end', resolve);
          arriving.once('close', resolve);
          out.once('close', resolve); // the reader went away: nothing more is taken
        });
        arriving.pipe(out, { end: false });
        const first = await Promise.race([ch.done, inflateFailed]);
        // A stream cut by the channel's end is a premature end to the decompressor: when the channel
        // ends badly (lost, the agent killed) about then, that end is the cause and wins.
        const status = first instanceof Error ? await Promise.race([ch.done, new Promise<null>((resolve) => setTimeout(resolve, 2000, null).unref())]) : first;
        if (!status) {
          ch.close();
          throw first as Error;
        }
        // A lost channel need not end its output (ssh2 ends it only once its buffer is drained, and a
        // codec sees only an end it is piped): waiting for the end would wait for ever, with the codec.
        // The stream is cut either way; the lost link is the error, what was in flight is dropped.
        if (status.lost) {
          if (opts.signal?.aborted) throw abortReason(opts.signal);
          throw status.lost;
        }
        if (!inflateError) await ended; // everything the agent wrote has gone into `out`
        const outcome = lastJson(errors()) as Outcome | null;
        if (status.code === 0 && outcome?.ok && !inflateError) {
          out.end();
          return;
        }
        if (opts.signal?.aborted) throw abortReason(opts.signal);
        if (outcome && !outcome.ok) throw toPeerError(new RemoteError(outcome.error.code, outcome.error.message, this.peerName), this.peerName);
        if (inflateError && status.code === 0) throw inflateError; // the agent finished: what it sent does not decompress
        throw new PeerError('agent', `The send on ${this.peerName} ended${endedHow(status)}: ${errors().trim().split('\n').slice(-3).join(' ') || 'no message'}.`);
      } finally {
        opts.signal?.removeEventListener('abort', abort);
        // every path ends the codec: a decompressor left waiting on a dead channel would never exit
        inflate?.destroy();
        this.lease.release(link);
      }
    })().catch((error: Error) => out.destroy(error));
    return out;
  }

  /** The stream goes to the peer's `agent receive` stdin; its answer is the last line of its stdout. */
  async receive(dataset: string, stream: Readable, opts: ReceiveOptions): Promise<ReceiveResult> {
    const link = await this.lease.acquire();
    let ch: Channel | null = null;
    let deflate: Duplex | null = null;
    const abort = () => ch?.close();
    opts.signal?.addEventListener('abort', abort, { once: true });
    try {
      const codec = wireCodec(opts.compress);
      ch = await link.data('receive', {
        ...link.opts.hello,
        driver: this.name,
        dataset,
        force: opts.force,
        recursive: opts.recursive,
        idleTimeoutMs: this.idleTimeoutMs,
        ...(codec ? { compress: codec } : {}),
      });
      const channel = ch;
      const answer = tail(channel.stdout, 64_000);
      const errors = tail(channel.stderr, 16_000);
      let sourceError: Error | null = null;
      stream.on('error', (e: Error) => {
        sourceError ??= e;
        // the receiver must see the stream cut, not ended
        channel.close();
      });
      // compressed here, decompressed by the agent (the codec is in the header)
      deflate = codec ? await codecStream(codec, 'compress') : null;
      if (deflate) {
        deflate.on('error', (e: Error) => {
          sourceError ??= e;
          channel.close();
        });
        stream.pipe(deflate).pipe(channel.stdin);
      } else stream.pipe(channel.stdin);
      const status = await channel.done;
      const outcome = lastJson(answer()) as Outcome | null;
      if (status.code === 0 && outcome?.ok) {
        const result = outcome.result as ReceiveResult;
        return { ...result, snapshot: reviveSnapshot(result.snapshot) };
      }
      if (sourceError) throw sourceError;
      if (opts.signal?.aborted) throw abortReason(opts.signal);
      if (outcome && !outcome.ok) throw toPeerError(new RemoteError(outcome.error.code, outcome.error.message, this.peerName), this.peerName);
      if (status.lost) throw status.lost;
      throw new PeerError('agent', `The receive on ${this.peerName} ended${endedHow(status)}: ${errors().trim().split('\n').slice(-3).join(' ') || 'no message'}.`);
    } finally {
      opts.signal?.removeEventListener('abort', abort);
      if (ch) stream.unpipe(deflate ?? ch.stdin);
      // every path ends the codec: a compressor whose channel died is left with a pipe no one drains
      deflate?.destroy();
      this.lease.release(link);
    }
  }
}

/** why an aborted transfer stopped: the caller's own Error, else a plain one */
function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('Aborted.');
}

/** how an agent's command ended, for a sentence: ` with status 1`, ` by signal KILL` (killed), or nothing */
function endedHow(status: ExitStatus): string {
  if (status.code !== null) return ` with status ${status.code}`;
  return status.signal ? ` by signal ${status.signal}` : '';
}

/** the codec a stream crosses the channel with; none is no codec at all (and no header field, for older agents) */
function wireCodec(codec: Codec | undefined): Exclude<Codec, 'none'> | null {
  return codec && codec !== 'none' ? codec : null;
}

/** the trail and state writer of a run's remote side */
export class RemotePeerSide implements PeerSide {
  constructor(private readonly lease: LinkLease) {}

  private async with<T>(fn: (link: AgentLink) => Promise<T>): Promise<T> {
    const link = await this.lease.acquire();
    try {
      return await fn(link);
    } finally {
      this.lease.release(link);
    }
  }

  async appendHistory(entry: HistoryEntry): Promise<void> {
    await this.with(async (link) => {
      await link.session();
      // Refused at hello: the receiver records the refusal itself (result 'refused').
      if (link.refused) await link.call('trail.refused', { service: entry.service, direction: entry.direction, startedAt: entry.startedAt });
      else await link.call('history.append', { entry });
    });
  }

  async recordState(service: string, state: RunState): Promise<void> {
    await this.with((link) => link.call('state.put', { service, state }));
  }

  /** the peer's copy of a service's configuration, or null */
  config(service: string): Promise<AutoSyncConfig | null> {
    return this.with((link) => link.call('config.get', { service }));
  }

  putConfig(config: AutoSyncConfig): Promise<void> {
    return this.with((link) => link.call('config.put', { config }));
  }

  /** the peer's tombstone of a service it destroyed, or null */
  tombstone(service: string): Promise<Tombstone | null> {
    return this.with((link) => link.call('config.tombstone', { service }));
  }

  /**
   * This appliance destroyed a service: the peer removes its copy (when the
   * tombstone buries it) and its record of it as incoming. `kept` says why
   * a copy stayed.
   */
  removeConfig(service: string, tombstone: Tombstone | null): Promise<{ removed: boolean; kept: string | null }> {
    return this.with((link) => link.call('config.remove', { service, tombstone }));
  }

  /** register a service of this appliance that replicates into the peer, which lists it as received (incoming.ts) */
  putIncoming(config: AutoSyncConfig): Promise<void> {
    return this.with((link) => link.call('incoming.put', { config }));
  }

  /** can the peer reach this appliance back (bound to it, and its agent answers)? asked before a service is kept on both */
  reachBack(): Promise<{ ok: boolean; reason: string | null }> {
    return this.with((link) => link.call('peer.reach'));
  }

  /** the peer's role and epoch for a service, or null when it has none */
  role(service: string): Promise<{ role: Role; epoch: number } | null> {
    return this.with((link) => link.call('service.role', { service }));
  }

  state(service: string): Promise<RunState | null> {
    return this.with((link) => link.call('state.get', { service }));
  }
}

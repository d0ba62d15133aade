/**
 * This appliance's side of the agent protocol (protocol.ts): a control
 * session of JSON lines, or one data channel (a send stream out, a receive
 * stream in), over whatever pair of streams carries it. `syncsh agent`
 * (src/agent.ts) runs it on stdin and stdout; tests run it in-process.
 *
 * `keyPeer` is whose key the session came in with (the authorized_keys
 * line's --peer): only that appliance may say hello on it.
 */
import { codecStream, codecUnavailable, parseCodec } from '../wire/codecs.js';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ConfigFile } from '../config-file.js';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import type { Services } from '../index.js';
import { validApplianceId } from '../appliance.js';
import { isDriverName } from '../datasets.js';
import type { HistoryEntry } from '../history.js';
import type { AutoSyncConfig, RunState } from '../auto-sync/model.js';
import { buries, type Tombstone } from '../auto-sync/tombstones.js';
import { fromPeerView } from '../auto-sync/endpoints.js';
import { withLock } from '../lock.js';
import type { Driver } from '../storage/driver.js';
import { authorizedKeysLine, checkPublicKey, installAuthorizedKey, publicKeyFingerprint } from './keys.js';
import {
  AGENT_TAG,
  DRIVER_METHODS,
  PROTOCOL_MAX,
  PROTOCOL_MIN,
  compatible,
  validServiceName,
  type DriverMethod,
  type ErrorCode,
  type Hello,
  type HelloReply,
  type Outcome,
  type ReceiveHeader,
  type SendHeader,
  type WireError,
} from './protocol.js';
import type { PeerService } from './index.js';
import { cdpAgentCall, pipeMirror } from '../cdp/agent.js';

/** a refusal or failure with the wire code the caller's PeerError is made from */
export class AgentError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const wire = (error: unknown): WireError => (error instanceof AgentError ? { code: error.code, message: error.message } : { code: 'failed', message: (error as Error)?.message ?? String(error) });

/** the streams of one agent session; `report` is where a send's outcome goes (its output carries the bytes: stderr) */
export interface AgentStreams {
  input: Readable;
  output: Writable;
  report?: Writable;
}

/** the refusal line the caller reads in place of a protocol (a forced command that asked for something else, a home that is not one) */
export const refusalLine = (code: ErrorCode, message: string): string => `${JSON.stringify({ agent: AGENT_TAG, error: { code, message } })}\n`;

export class Agent {
  private readonly me: string;
  private readonly peers: PeerService;
  /** who said hello */
  private caller: string | null = null;
  private state: 'new' | 'bound' | 'binding' | 'refused' = 'new';

  constructor(
    private readonly services: Services,
    private readonly keyPeer: string | null,
    private readonly address: string,
  ) {
    this.me = services.appliance.id;
    this.peers = services.peers;
  }

  /** null when the caller may go on (bound, or binding when allowed), else the refusal */
  private check(hello: Partial<Hello>, allowBind: boolean): AgentError | null {
    if (!compatible(hello.protocol)) {
      const speaks = PROTOCOL_MIN === PROTOCOL_MAX ? `version ${PROTOCOL_MAX}` : `versions ${PROTOCOL_MIN} to ${PROTOCOL_MAX}`;
      return new AgentError('protocol', `${this.me} speaks syncsh agent protocol ${speaks}, ${hello.from ?? 'the caller'} speaks version ${String(hello.protocol)}: upgrade syncsh on the older appliance.`);
    }
    if (typeof hello.from !== 'string' || !validApplianceId(hello.from)) return new AgentError('bad-request', `"${String(hello.from)}" is not an appliance id.`);
    if (this.keyPeer && this.keyPeer !== hello.from) return new AgentError('identity', `this key was given to the appliance ${this.keyPeer}; ${hello.from} may not use it.`);
    if (!this.peers.store.inboundPeer(hello.from) && !(allowBind && hello.purpose === 'bind')) {
      return new AgentError('unbound', `the appliance ${hello.from} is not bound to ${this.me}.`);
    }
    return null;
  }

  // ---- the control session ---------------------------------------------------

  /** the control session: one JSON reply line per request line, until the input ends */
  async control(io: AgentStreams): Promise<number> {
    const lines = createInterface({ input: io.input, crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line.trim()) continue;
      let id: number | null = null;
      let reply: { result?: unknown; error?: WireError };
      try {
        const req = JSON.parse(line) as { id?: unknown; method?: unknown; params?: unknown };
        id = typeof req.id === 'number' ? req.id : null;
        if (typeof req.method !== 'string') throw new AgentError('bad-request', 'A request needs a method.');
        reply = { result: (await this.dispatch(req.method, req.params ?? {})) ?? null };
      } catch (error) {
        reply = { error: wire(error instanceof SyntaxError ? new AgentError('bad-request', `Not a JSON request: ${error.message}`) : error) };
      }
      io.output.write(`${JSON.stringify({ id, ...reply })}\n`);
    }
    return 0;
  }

  private async dispatch(method: string, params: unknown): Promise<unknown> {
    const p = (params ?? {}) as Record<string, unknown>;
    if (method === 'hello') return this.hello(p as Partial<Hello>);
    if (this.state === 'new') throw new AgentError('bad-request', 'Say hello first.');
    if (method === 'ping') return {};
    // A binding removed while this session is open counts from the next request on.
    if (this.state === 'bound' && !this.peers.store.inboundPeer(this.caller!)) this.state = 'refused';
    if (this.state === 'refused') {
      if (method === 'trail.refused') return this.recordRefusal(p);
      throw new AgentError('unbound', `the appliance ${this.caller} is not bound to ${this.me}.`);
    }
    if (this.state === 'binding' && method !== 'peer.accept') throw new AgentError('unbound', `the appliance ${this.caller} is not bound to ${this.me} yet.`);
    switch (method) {
      case 'peer.accept':
        return this.accept(p);
      case 'peer.forget':
        return this.forget();
      case 'peer.reach':
        return this.reachBack();
      case 'driver':
        return this.driverCall(p);
      case 'config.get':
        return this.services.autoSync.store.get(serviceOf(p)) ?? null;
      case 'config.put':
        return this.putConfig(p.config as AutoSyncConfig);
      case 'config.tombstone':
        return this.services.autoSync.tombstones.get(serviceOf(p));
      case 'config.remove':
        return this.removeConfig(serviceOf(p), (p.tombstone ?? null) as Tombstone | null);
      case 'incoming.put':
        return this.putIncoming(p.config as AutoSyncConfig);
      case 'service.role': {
        const c = this.services.autoSync.store.get(serviceOf(p));
        return c ? { role: c.role, epoch: c.epoch } : null;
      }
      case 'state.get':
        return this.getState(serviceOf(p));
      case 'state.put':
        return this.putState(serviceOf(p), p.state as RunState);
      case 'history.append':
        return this.appendHistory(p.entry as HistoryEntry);
      case 'codec.check':
        // whether this end of a wire can run the codec a service is about to use (checked at create, not at a run)
        return { reason: await codecUnavailable(parseCodec(String(p.codec), 'codec'), this.me) };
      case 'cdp.attach':
      case 'cdp.detach':
      case 'cdp.update':
      case 'cdp.get':
      case 'cdp.owed':
        return cdpAgentCall(this.services, this.me, this.caller!, method, p);
      case 'trail.refused':
        throw new AgentError('bad-request', `The appliance ${this.caller} is bound: there is no refusal to record.`);
      default:
        throw new AgentError('bad-request', `Unknown request "${method}".`);
    }
  }

  private hello(h: Partial<Hello>): HelloReply {
    const refusal = this.check(h, true);
    if (refusal) {
      if (refusal.code !== 'unbound') throw refusal;
      // Kept open for one thing: the caller reporting which transfer was refused, for this side's trail.
      this.caller = h.from!;
      this.state = 'refused';
      throw refusal;
    }
    this.caller = h.from!;
    this.state = this.peers.store.inboundPeer(h.from!) ? 'bound' : 'binding';
    return { protocol: h.protocol!, id: this.me, hostname: this.services.appliance.hostname, version: this.services.appliance.version };
  }

  private async accept(p: Record<string, unknown>): Promise<unknown> {
    const transport = p.transport === 'local' ? 'local' : 'ssh';
    let publicKey: string | null = null;
    let file: string | null = null;
    if (transport === 'ssh') {
      publicKey = checkPublicKey(p.publicKey);
      file = this.peers.store.authorizedKeysFile();
      await installAuthorizedKey(file, authorizedKeysLine(this.peers.ownAgent(), this.caller!, publicKey), this.caller!);
    }
    await this.peers.store.putInbound({
      id: this.caller!,
      transport,
      address: this.address,
      publicKey,
      keyFingerprint: publicKey ? publicKeyFingerprint(publicKey) : null,
      authorizedKeys: file,
      boundAt: new Date().toISOString(),
    });
    this.state = 'bound';
    return { id: this.me, agent: this.peers.ownAgent(), authorizedKeys: file };
  }

  private async forget(): Promise<unknown> {
    const peer = this.peers.store.inboundPeer(this.caller!);
    const removedKeyLines = peer ? await this.peers.forgetInbound(peer) : 0;
    this.state = 'refused';
    return { removedKeyLines };
  }

  /** can this appliance reach the caller back: bound to it, and its agent answers (a reverse-capable service needs both ways) */
  private async reachBack(): Promise<{ ok: boolean; reason: string | null }> {
    const caller = this.caller!;
    if (!this.peers.store.find(caller)) return { ok: false, reason: `${this.me} is not bound to ${caller} (${caller} is bound to ${this.me}, not the other way round)` };
    try {
      await this.peers.ping(caller);
      return { ok: true, reason: null };
    } catch (error) {
      return { ok: false, reason: (error as Error).message };
    } finally {
      this.peers.close();
    }
  }

  private async driverCall(p: Record<string, unknown>): Promise<unknown> {
    const { driver, method, args } = p as { driver: unknown; method: unknown; args: unknown };
    if (typeof driver !== 'string' || !isDriverName(driver)) throw new AgentError('bad-request', `Unknown driver "${String(driver)}".`);
    if (typeof method !== 'string' || !Object.hasOwn(DRIVER_METHODS, method)) throw new AgentError('bad-request', `Unknown driver method "${String(method)}".`);
    const list = Array.isArray(args) ? args : [];
    if (list.length > DRIVER_METHODS[method as DriverMethod]) throw new AgentError('bad-request', `Too many arguments for ${method}.`);
    const d = method === 'unavailableReason' ? await this.services.storage.driver(driver) : await this.services.storage.usable(driver);
    const fn = d[method as DriverMethod] as ((...a: unknown[]) => Promise<unknown>) | undefined;
    // The optional methods (fs chunk negotiation, zfs resume, zvols) exist on some drivers only.
    if (typeof fn !== 'function') throw new AgentError('bad-request', `The ${driver} driver has no ${method}.`);
    return (
      (await fn.apply(
        d,
        list.map((a) => (a === null ? undefined : a)),
      )) ?? null
    );
  }

  private async putConfig(config: AutoSyncConfig): Promise<null> {
    if (!config || !validServiceName(config.name)) throw new AgentError('bad-request', 'A service configuration with a valid name is needed.');
    const store = this.services.autoSync.store;
    // the higher epoch wins, always: a caller behind this appliance's view never overwrites it
    const newer = (mine: AutoSyncConfig) => {
      if (config.epoch < mine.epoch) throw new AgentError('failed', `${this.me} holds auto-sync:${config.name} at epoch ${mine.epoch}, newer than ${config.epoch}: the configuration was not replaced.`);
      return config;
    };
    // a service destroyed here does not come back from the other appliance's older copy
    const tomb = this.services.autoSync.tombstones.get(config.name);
    if (buries(tomb, config)) throw new AgentError('failed', `auto-sync:${config.name} was destroyed on ${this.me} at ${tomb!.destroyedAt} (epoch ${tomb!.epoch}, this copy ${config.epoch}): it is not created again.`);
    if (store.get(config.name)) await store.update(config.name, newer);
    else await store.add(() => config);
    // kept in services.json from now on (reverse-capable), not as a received one
    await this.services.autoSync.incoming.remove(config.name, this.caller!);
    return null;
  }

  /** the caller destroyed a service: its copy here goes if the tombstone buries it, its incoming record goes */
  private async removeConfig(service: string, tomb: Tombstone | null): Promise<{ removed: boolean; kept: string | null }> {
    const mine = this.services.autoSync.store.get(service);
    let removed = await this.services.autoSync.incoming.remove(service, this.caller!);
    let kept: string | null = null;
    if (tomb && mine && [mine.source.host, mine.destination.host].includes(this.caller!)) {
      if (buries({ ...tomb, service }, mine)) {
        await this.services.autoSync.forgetCopy(service, `auto-sync:${service} was destroyed on ${this.caller}; this copy goes too`);
        removed = true;
      } else {
        kept =
          mine.createdAt !== tomb.createdAt
            ? `the auto-sync:${service} on ${this.me} is another service of that name (created ${mine.createdAt})`
            : `${this.me} holds auto-sync:${service} at epoch ${mine.epoch}, not older than the destroyed one's (${tomb.epoch - 1}): it took over since, and its view is the newer one`;
      }
    }
    return { removed, kept };
  }

  private async putIncoming(config: AutoSyncConfig): Promise<null> {
    if (!config || !validServiceName(config.name) || !config.source || !config.destination) throw new AgentError('bad-request', 'A service configuration with a valid name is needed.');
    // this appliance's view: the caller holds the source and runs it, the copy is here
    const ours = { ...fromPeerView(config, this.caller!), enabled: true, maintenance: null };
    if (ours.destination.host !== 'localhost' || ours.source.host !== this.caller) throw new AgentError('bad-request', `auto-sync:${config.name} does not replicate from ${this.caller} into ${this.me}.`);
    await this.services.autoSync.incoming.put(ours);
    return null;
  }

  /**
   * Where the caller's view of a service's state goes: the service store when
   * this appliance has no service of that name or has the same service (its
   * copy, naming the caller), else a separate file so that a namesake of this
   * appliance's own is never overwritten.
   */
  private ownsName(service: string): boolean {
    const c = this.services.autoSync.store.get(service);
    if (!c) return false;
    const inbound = this.peers.store.inboundPeer(this.caller!);
    return ![c.source.host, c.destination.host].some((h) => h === this.caller || (inbound && h === inbound.address));
  }

  private peerState(): ConfigFile<{ state: Record<string, RunState> }> {
    return new ConfigFile<{ state: Record<string, RunState> }>({ cwd: this.services.home.config, configName: 'peer-state', projectName: 'syncsh', defaults: { state: {} } });
  }

  private getState(service: string): RunState | null {
    if (this.ownsName(service)) return this.peerState().get('state')[`${this.caller}:${service}`] ?? null;
    return this.services.autoSync.store.runState(service);
  }

  private async putState(service: string, state: RunState): Promise<null> {
    if (!state || typeof state !== 'object') throw new AgentError('bad-request', 'A run state is needed.');
    if (this.ownsName(service)) {
      const conf = this.peerState();
      await withLock(path.join(this.services.home.locks, 'peer-state.lock'), "The state of peers' services", 'recording a state', () => {
        conf.set('state', { ...conf.get('state'), [`${this.caller}:${service}`]: state });
      });
    } else {
      await this.services.autoSync.store.updateRunState(service, () => state);
    }
    return null;
  }

  private appendHistory(entry: HistoryEntry): null {
    if (!entry || (entry.direction !== 'send' && entry.direction !== 'receive') || !validServiceName(entry.service)) {
      throw new AgentError('bad-request', 'A trail entry needs a direction (send or receive) and a valid service name.');
    }
    // From here the other appliance is the caller, whatever it called itself.
    this.services.autoSync.history(entry.service, entry.direction).append({ ...entry, peer: this.caller! });
    return null;
  }

  private recordRefusal(p: Record<string, unknown>): null {
    const service = serviceOf(p);
    const direction = p.direction === 'send' ? 'send' : 'receive';
    const now = new Date().toISOString();
    const startedAt = typeof p.startedAt === 'string' && !Number.isNaN(Date.parse(p.startedAt)) ? p.startedAt : now;
    this.services.autoSync.history(service, direction).append({
      direction,
      service,
      peer: this.caller!,
      startedAt,
      endedAt: now,
      result: 'refused',
      bytes: 0,
      rateBytesPerSec: 0,
      snapshot: null,
      error: `Refused: the appliance ${this.caller} is not bound to ${this.me}.`,
    });
    return null;
  }

  // ---- data channels ---------------------------------------------------------

  /** auto-cdp: the binding checked, the stream goes to this appliance's daemon (its mirror receiver) */
  async mirror(io: AgentStreams): Promise<number> {
    const report = (outcome: Outcome) => io.output.write(`${JSON.stringify(outcome)}\n`);
    let header: Hello;
    try {
      header = JSON.parse(await readHeaderLine(io.input)) as Hello;
    } catch (error) {
      report({ ok: false, error: { code: 'bad-request', message: `No valid header: ${(error as Error).message}` } });
      return 2;
    }
    const refusal = this.check(header, false);
    if (refusal) {
      report({ ok: false, error: wire(refusal) });
      return 2;
    }
    return pipeMirror(
      this.services.home,
      header.from,
      io.input,
      io.output,
      (message) => report({ ok: false, error: { code: 'failed', message } }),
      () => report({ ok: true, result: null }),
    );
  }

  /** one data channel: a header line, then a send stream out or a receive stream in, then the outcome */
  async data(sub: 'send' | 'receive', io: AgentStreams): Promise<number> {
    // send: the bytes are on the output, so the outcome goes to the report stream; receive: the outcome is the output's only line.
    const report = (outcome: Outcome) => (sub === 'send' ? (io.report ?? io.output) : io.output).write(`${JSON.stringify(outcome)}\n`);
    let header: SendHeader & ReceiveHeader;
    try {
      header = JSON.parse(await readHeaderLine(io.input));
    } catch (error) {
      report({ ok: false, error: { code: 'bad-request', message: `No valid header: ${(error as Error).message}` } });
      return 2;
    }
    const refusal = this.check(header, false);
    if (refusal) {
      report({ ok: false, error: wire(refusal) });
      return 2;
    }
    this.caller = header.from;
    try {
      if (typeof header.driver !== 'string' || !isDriverName(header.driver)) throw new AgentError('bad-request', `Unknown driver "${String(header.driver)}".`);
      const driver = await this.services.storage.usable(header.driver);
      const result = sub === 'send' ? await this.send(driver, header, io.output) : await this.receive(driver, header, io.input);
      report({ ok: true, result });
      return 0;
    } catch (error) {
      report({ ok: false, error: wire(error) });
      return 1;
    }
  }

  private async send(driver: Driver, h: SendHeader, out: Writable): Promise<{ bytes: number }> {
    const abort = new AbortController();
    const idleMs = h.idleTimeoutMs && h.idleTimeoutMs > 0 ? h.idleTimeoutMs : 120_000;
    const raw = driver.send(h.dataset, h.snapshot, {
      from: h.from_snapshot ?? undefined,
      recursive: Boolean(h.recursive),
      signal: abort.signal,
      ...(h.held ? { held: h.held } : {}),
      ...(typeof h.resume_token === 'string' ? { resumeToken: h.resume_token } : {}),
    });
    // compressed for the channel when the header names a codec (the caller decompresses)
    const deflate = h.compress && h.compress !== 'none' ? await codecStream(parseCodec(h.compress), 'compress') : null;
    if (deflate) raw.on('error', (e: Error) => deflate.destroy(e));
    const stream = deflate ? raw.pipe(deflate) : raw;
    const failed = new Promise<never>((_, reject) => {
      out.once('error', (e: Error) => reject(new Error(`The reader went away: ${e.message}`)));
      abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true });
    });
    failed.catch(() => undefined);
    let last = Date.now();
    const watch = setInterval(
      () => {
        if (Date.now() - last > idleMs) abort.abort(new Error(`${this.caller} took no data for ${Math.round(idleMs / 1000)} s: is the link down?`));
      },
      Math.min(1000, idleMs),
    );
    let bytes = 0;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        last = Date.now();
        if (!out.write(chunk)) await Promise.race([once(out, 'drain'), failed]);
        last = Date.now();
      }
      return { bytes };
    } catch (error) {
      (raw as Readable).destroy();
      (stream as Readable).destroy();
      throw error;
    } finally {
      clearInterval(watch);
      deflate?.destroy(); // ended by now on success; on any other path the compressor must not outlive the send
    }
  }

  private async receive(driver: Driver, h: ReceiveHeader, from: Readable): Promise<unknown> {
    const idleMs = h.idleTimeoutMs && h.idleTimeoutMs > 0 ? h.idleTimeoutMs : 120_000;
    const input = new PassThrough({ highWaterMark: 1 << 20 });
    let timer: NodeJS.Timeout | null = null;
    const arm = () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => input.destroy(new Error(`No data from ${this.caller} for ${Math.round(idleMs / 1000)} s: is the link down?`)), idleMs);
    };
    arm();
    const onError = (e: Error) => input.destroy(e);
    from.on('data', arm);
    from.on('error', onError);
    from.pipe(input);
    // the caller compressed it for the channel when the header names a codec
    const inflate = h.compress && h.compress !== 'none' ? await codecStream(parseCodec(h.compress), 'decompress') : null;
    if (inflate) input.on('error', (e: Error) => inflate.destroy(e));
    try {
      return await driver.receive(h.dataset, inflate ? input.pipe(inflate) : input, { force: Boolean(h.force), recursive: Boolean(h.recursive) });
    } finally {
      if (timer) clearTimeout(timer);
      from.off('data', arm);
      from.off('error', onError);
      from.unpipe(input);
      // a receive that stopped reading (refused, failed) leaves the decompressor blocked on its output
      inflate?.destroy();
    }
  }
}

function serviceOf(p: Record<string, unknown>): string {
  if (!validServiceName(p.service)) throw new AgentError('bad-request', `"${String(p.service)}" is not a service name.`);
  return p.service;
}

/** The first line of a stream; what follows it stays in the stream. */
export function readHeaderLine(input: Readable, max = 1 << 20): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = () => {
      input.off('readable', onReadable);
      input.off('end', onEnd);
      input.off('error', onError);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = input.read() as Buffer | null) !== null) {
        buf = Buffer.concat([buf, chunk]);
        const nl = buf.indexOf(0x0a);
        if (nl >= 0) {
          done();
          const rest = buf.subarray(nl + 1);
          if (rest.length) input.unshift(rest);
          resolve(buf.subarray(0, nl).toString('utf8'));
          return;
        }
        if (buf.length > max) {
          done();
          reject(new Error('the header line is too long'));
          return;
        }
      }
    };
    const onEnd = () => {
      done();
      reject(new Error('the stream ended before its header'));
    };
    const onError = (e: Error) => {
      done();
      reject(e);
    };
    input.on('readable', onReadable);
    input.on('end', onEnd);
    input.on('error', onError);
  });
}

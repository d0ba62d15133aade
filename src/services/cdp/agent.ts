/**
 * The agent's side of auto-cdp's control methods (`cdp.*`, peer protocol):
 * the master asks this appliance to take a target's part. Everything is
 * checked before anything is written: a refusal changes nothing here.
 */
import { once } from 'node:events';
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { Home } from '../home.js';
import { validServiceName } from '../peer/protocol.js';
import type { Services } from '../index.js';
import { mirrorOfZvol, type MirrorConfig } from './model.js';
import type { AttachRequest } from './index.js';
import { engineStopped, owedTo } from './owed.js';
import { cdpSocket } from './socket.js';

/** a daemon stops a demoted copy's engine within its round (1 s); the caller waits its --peer-timeout, 5 s by default */
const STEP_DOWN_WAIT_MS = 3_000;

export const CDP_METHODS = ['cdp.attach', 'cdp.detach', 'cdp.update', 'cdp.get', 'cdp.owed'] as const;

function checkConfig(config: unknown, caller: string): MirrorConfig {
  const c = config as MirrorConfig;
  if (!c || typeof c !== 'object' || !validServiceName(c.name) || typeof c.zvol !== 'string' || !Number.isSafeInteger(c.size) || c.size <= 0) {
    throw new Error('An auto-cdp configuration with a valid name, zvol and size is needed.');
  }
  if (c.role !== 'slave' || c.master?.host !== caller) throw new Error(`auto-cdp:${c.name} sent by ${caller} must make this appliance its slave, with ${caller} as master.`);
  return c;
}

export async function cdpAgentCall(services: Services, me: string, caller: string, method: string, p: Record<string, unknown>): Promise<unknown> {
  const store = services.cdp.store;
  switch (method) {
    case 'cdp.attach': {
      const req = p as unknown as AttachRequest;
      const config = checkConfig(req.config, caller);
      const mine = store.get(config.name);
      if (mine && mine.createdAt !== config.createdAt) throw new Error(`${me} already has an auto-cdp service named ${config.name} (${mine.role} of ${mine.zvol}).`);
      const other = mirrorOfZvol(store.list(), config.zvol);
      if (other && other.name !== config.name) throw new Error(`The zvol ${config.zvol} is already in auto-cdp:${other.name} (${other.role}); a zvol is in one mirror at most.`);
      let created = false;
      const existing = await services.zvols.one(config.zvol).catch((error: Error) => {
        if (/does not exist/.test(error.message)) return null;
        throw error;
      });
      if (existing) {
        if (existing.size !== config.size) throw new Error(`The zvol ${config.zvol} is ${existing.size} bytes, the mirrored zvol ${config.master!.zvol} ${config.size}: a target must have the same size.`);
        if (existing.used > 0 && !req.noFullSync && !mine) {
          throw new Error(`The zvol ${config.zvol} holds data (${existing.used} bytes used): a full sync would overwrite it. Give --no-full-sync to keep it as the base (only differing chunks are sent), or choose another --to-zvol.`);
        }
        const busy = services.folders.usedBy(existing.name);
        if (busy) throw new Error(`The zvol ${config.zvol} is used by auto-sync:${busy}: a mirror target has one writer, the mirror.`);
      } else {
        await services.zvols.create(config.zvol, { size: config.size, blockSize: Number(req.blockSize) || undefined });
        created = true;
      }
      await store.put(config);
      return { created };
    }
    case 'cdp.update': {
      const config = checkConfig(p.config, caller);
      const mine = store.get(config.name);
      if (!mine || mine.createdAt !== config.createdAt) throw new Error(`${me} has no copy of ${caller}'s auto-cdp:${config.name}.`);
      if (config.epoch < mine.epoch) throw new Error(`${me} holds auto-cdp:${config.name} at epoch ${mine.epoch}, newer than ${config.epoch}: the configuration was not replaced.`);
      await store.put({ ...config, zvol: mine.zvol });
      return null;
    }
    case 'cdp.detach': {
      if (!validServiceName(p.name)) throw new Error(`"${String(p.name)}" is not a service name.`);
      const mine = store.get(p.name);
      if (!mine || mine.createdAt !== p.createdAt || mine.master?.host !== caller) return { removed: false };
      return { removed: await store.remove(p.name) };
    }
    case 'cdp.get': {
      if (!validServiceName(p.name)) throw new Error(`"${String(p.name)}" is not a service name.`);
      return store.get(p.name) ?? null;
    }
    case 'cdp.owed': {
      // a hand role switch on the caller: what this copy holds that the caller's may lack (owed.ts)
      if (!validServiceName(p.name)) throw new Error(`"${String(p.name)}" is not a service name.`);
      const mine = store.get(p.name);
      if (!mine) return null;
      // switched to slave, its engine may still take writes until the daemon's round stops it
      if (mine.role !== 'master' && !(await engineStopped(services.home.root, p.name, STEP_DOWN_WAIT_MS))) return { chunks: null, running: true };
      return { chunks: owedTo(services.home.root, store.get(p.name) ?? mine, caller) };
    }
    default:
      throw new Error(`Unknown request "${method}".`);
  }
}

export { cdpSocket };

/**
 * a stream to the mirror receiver of the daemon listening at `sock`, told who the caller is
 * (the agent's `mirror` pipes it; a local-bind master's daemon uses it directly, daemon.ts)
 */
export async function connectReceiver(sock: string, caller: string): Promise<net.Socket> {
  const socket = net.connect(sock);
  try {
    await once(socket, 'connect');
  } catch (error) {
    socket.destroy();
    throw new Error(`The daemon of this appliance is not running (no mirror receiver at ${sock}: ${(error as Error).message}); start 'syncsh daemon' there.`);
  }
  socket.write(`${JSON.stringify({ from: caller })}\n`);
  return socket;
}

/**
 * The agent's `mirror` sub-command, once the binding is checked: connect to
 * this appliance's daemon (the one writer of its zvols), tell it who the
 * caller is, and pipe both ways until either side ends.
 */
export async function pipeMirror(home: Home, caller: string, input: Readable, output: Writable, refuse: (message: string) => void, accepted: () => void): Promise<number> {
  let socket: net.Socket;
  try {
    socket = await connectReceiver(cdpSocket(home), caller);
  } catch (error) {
    refuse((error as Error).message);
    return 1;
  }
  accepted();
  input.pipe(socket);
  socket.pipe(output);
  await new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
    input.once('end', () => socket.end());
    input.once('close', () => socket.end());
    socket.once('error', () => resolve());
  });
  return 0;
}

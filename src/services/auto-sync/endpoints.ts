/**
 * Endpoints of a service as this appliance sees them: which copy is here,
 * which appliance is the other one, and a config as the peer keeps it (each
 * appliance calls itself 'localhost' and names the other by its id).
 */
import { flip } from '../roles.js';
import type { AutoSyncConfig, Endpoint } from './model.js';
import { directionOf } from './model.js';

/** an endpoint as `show auto-sync` prints it: the dataset here, HOST:DATASET on another appliance */
export function endpointLabel(e: { host: string; dataset: string }): string {
  return e.host === 'localhost' ? e.dataset : `${e.host}:${e.dataset}`;
}

/** the other appliance of a service between two */
export function peerHostOf(config: Pick<AutoSyncConfig, 'source' | 'destination'>): string {
  return config.source.host === 'localhost' ? config.destination.host : config.source.host;
}

/** does this appliance hold the copy that is written to */
export const holdsSource = (config: AutoSyncConfig): boolean => config.source.host === 'localhost';

/** the seed's short names of a direction, as seen from this appliance */
export const shortDirection = (config: AutoSyncConfig): string => (config.direction === 'local-to-remote' ? 'L2R' : config.direction === 'remote-to-local' ? 'R2L' : 'L2L');

/** the endpoint on this appliance */
export function localEndpoint(config: AutoSyncConfig): Endpoint {
  return config.source.host === 'localhost' ? config.source : config.destination;
}
export function remoteEndpoint(config: AutoSyncConfig): Endpoint {
  return config.source.host === 'localhost' ? config.destination : config.source;
}

/** the config with its endpoints' hosts renamed by `map` (hosts not in it stay) */
export function rehost(config: AutoSyncConfig, map: Record<string, string>): AutoSyncConfig {
  const ep = (e: Endpoint): Endpoint => ({ ...e, host: map[e.host] ?? e.host });
  const source = ep(config.source);
  const destination = ep(config.destination);
  return { ...config, source, destination, direction: directionOf(source, destination) };
}

/** our config as the peer keeps it */
export function toPeerView(ours: AutoSyncConfig, selfId: string): AutoSyncConfig {
  const host = peerHostOf(ours);
  return { ...rehost(ours, { localhost: selfId, [host]: 'localhost' }), role: flip(ours.role) };
}

/** the peer's config as we keep it (every host there that is not 'localhost' is us) */
export function fromPeerView(theirs: AutoSyncConfig, peerHost: string): AutoSyncConfig {
  const ep = (e: Endpoint): Endpoint => ({ ...e, host: e.host === 'localhost' ? peerHost : 'localhost' });
  const source = ep(theirs.source);
  const destination = ep(theirs.destination);
  return { ...theirs, source, destination, direction: directionOf(source, destination), role: flip(theirs.role) };
}

/** Where an appliance's NBD exports are reached: apart from the server, so that showing them does not load it. */
import path from 'node:path';
import type { Home } from '../home.js';

export function nbdSocketPath(home: Home): string {
  return path.join(home.root, 'run', 'nbd.sock');
}

/** the URI a client uses for an export of this appliance, e.g. nbd+unix:///fs:tank/vm1?socket=/var/lib/syncsh/run/nbd.sock */
export function nbdUri(home: Home, name: string): string {
  return `nbd+unix:///${name}?socket=${nbdSocketPath(home)}`;
}

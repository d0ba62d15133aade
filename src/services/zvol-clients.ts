/**
 * Which NBD clients are attached, as the daemon last saw them:
 * `$SYNCSH_HOME/run/nbd-clients.json`, written by the daemon from
 * NbdServer's onClientsChanged (writeNbdClients) and read by `show zvol`
 * and `destroy zvol` in any process. A file left by a daemon that is gone
 * lists nobody.
 */
import { readFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Home } from './home.js';
import { writeJsonAtomic } from './storage/fs/files.js';
import { processAlive } from './storage/fs/lock.js';

export interface NbdClient {
  /** export name (the driver-qualified dataset) */
  export: string;
  /** who: `unix` or `ADDR:PORT` */
  client: string;
  /** ISO time it connected */
  since: string;
}

interface ClientsFile {
  pid: number;
  updatedAt: string;
  clients: NbdClient[];
}

export function nbdClientsFile(home: Home): string {
  return path.join(home.root, 'run', 'nbd-clients.json');
}

/** The daemon calls this from onClientsChanged. */
export function writeNbdClients(home: Home, clients: readonly { export: string; client: string; since: Date | string }[], pid = process.pid): void {
  mkdirSync(path.dirname(nbdClientsFile(home)), { recursive: true });
  const file: ClientsFile = {
    pid,
    updatedAt: new Date().toISOString(),
    clients: clients.map((c) => ({ export: c.export, client: c.client, since: typeof c.since === 'string' ? c.since : c.since.toISOString() })),
  };
  writeJsonAtomic(nbdClientsFile(home), file);
}

export function connectedClients(home: Home): NbdClient[] {
  let file: ClientsFile;
  try {
    file = JSON.parse(readFileSync(nbdClientsFile(home), 'utf8')) as ClientsFile;
  } catch {
    return [];
  }
  if (!Number.isInteger(file.pid) || !processAlive(file.pid) || !Array.isArray(file.clients)) return [];
  return file.clients.filter((c) => c && typeof c.export === 'string');
}

/**
 * Tombstones (tombstones.json): the reverse-capable services destroyed on
 * this appliance, so that their copy on the other appliance goes too and
 * never brings them back. A tombstone names the service by name and
 * creation time (a new service of the same name is another service) and
 * carries the epoch after the destroyed one's: as with any config, the
 * higher epoch wins, so a copy at a lower epoch is removed on contact
 * (contact.ts) and may not be put back here (the agent's config.put), while
 * a copy that moved on past it since (a disaster recovery there while this
 * appliance was away) is a newer view and stays.
 */
import path from 'node:path';
import type { Home } from '../home.js';
import { ConfigFile } from '../config-file.js';
import { withLock } from '../lock.js';
import type { AutoSyncConfig } from './model.js';

export interface Tombstone {
  service: string;
  /** the destroyed service's createdAt: its identity beside the name */
  createdAt: string;
  /** the destroyed epoch + 1 */
  epoch: number;
  destroyedAt: string;
  /** the other appliance, and whether its copy is known to be gone */
  peer: string;
  peerDone: boolean;
}

export const tombstoneOf = (config: AutoSyncConfig, peer: string, at = new Date()): Tombstone => ({
  service: config.name,
  createdAt: config.createdAt,
  epoch: config.epoch + 1,
  destroyedAt: at.toISOString(),
  peer,
  peerDone: false,
});

/** does the tombstone kill this copy: the same service, at a lower epoch */
export const buries = (t: Tombstone | null | undefined, config: AutoSyncConfig): boolean => Boolean(t && t.service === config.name && t.createdAt === config.createdAt && config.epoch < t.epoch);

export class TombstoneStore {
  private readonly conf: ConfigFile<{ tombstones: Record<string, Tombstone> }>;
  private readonly lockFile: string;

  constructor(home: Home) {
    this.conf = new ConfigFile({ cwd: home.config, configName: 'tombstones', projectName: 'syncsh', defaults: { tombstones: {} } });
    this.lockFile = path.join(home.locks, 'tombstones.lock');
  }

  get(service: string): Tombstone | null {
    return this.conf.get('tombstones')[service] ?? null;
  }

  async put(t: Tombstone): Promise<void> {
    await withLock(this.lockFile, 'The destroyed services', 'recording one', () => this.conf.set('tombstones', { ...this.conf.get('tombstones'), [t.service]: t }));
  }
}

/**
 * Incoming services (incoming.json): the services of other appliances that
 * replicate into this one (as Rockstor's Receive screen lists them), so
 * that `show auto-sync` here lists them read-only, with their receive trail
 * and status. The source appliance registers one when it creates it and
 * forgets it when it destroys it (agent: incoming.put, config.remove); the
 * record is this appliance's view of that config (source there, destination
 * here). Reverse-capable services are not here: their config is kept in
 * services.json on both appliances.
 */
import path from 'node:path';
import type { Home } from '../home.js';
import { ConfigFile } from '../config-file.js';
import { withLock } from '../lock.js';
import type { AutoSyncConfig } from './model.js';

export class IncomingStore {
  private readonly conf: ConfigFile<{ services: Record<string, AutoSyncConfig> }>;
  private readonly lockFile: string;

  constructor(home: Home) {
    this.conf = new ConfigFile({ cwd: home.config, configName: 'incoming', projectName: 'syncsh', defaults: { services: {} } });
    this.lockFile = path.join(home.locks, 'incoming.lock');
  }

  list(): AutoSyncConfig[] {
    return Object.values(this.conf.get('services')).sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): AutoSyncConfig | null {
    return this.conf.get('services')[name] ?? null;
  }

  async put(config: AutoSyncConfig): Promise<void> {
    await this.locked(() => this.conf.set('services', { ...this.conf.get('services'), [config.name]: config }));
  }

  /** forget `name` if `from` is the appliance it comes from; true when it was there */
  async remove(name: string, from: string): Promise<boolean> {
    return this.locked(() => {
      const all = { ...this.conf.get('services') };
      if (all[name]?.source.host !== from) return false;
      delete all[name];
      this.conf.set('services', all);
      return true;
    });
  }

  private locked<T>(fn: () => T): Promise<T> {
    return withLock(this.lockFile, 'The incoming services', 'recording one', fn);
  }
}

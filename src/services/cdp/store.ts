/**
 * cdp.json: the mirrors of this appliance, through the config-file module
 * (a damaged file is named and never overwritten, a last good copy is kept),
 * each change a read-modify-write under a lock so that the shell, the
 * daemon and the agent never lose one another's updates.
 */
import path from 'node:path';
import { ConfigFile } from '../config-file.js';
import { withLock } from '../lock.js';
import type { Home } from '../home.js';
import type { MirrorConfig } from './model.js';

type CdpFile = { mirrors: Record<string, MirrorConfig> };

export class MirrorStore {
  private readonly file: ConfigFile<CdpFile>;
  private readonly lockFile: string;

  constructor(home: Home) {
    this.file = new ConfigFile<CdpFile>({
      cwd: home.config,
      configName: 'cdp',
      projectName: 'syncsh',
      projectVersion: '1',
      schema: { mirrors: { type: 'object', additionalProperties: { type: 'object', required: ['name', 'zvol', 'size', 'mode', 'role', 'epoch', 'targets', 'createdAt'] }, default: {} } } as never,
      defaults: { mirrors: {} },
    });
    this.lockFile = path.join(home.locks, 'cdp.lock');
  }

  list(): MirrorConfig[] {
    return Object.values(this.file.get('mirrors')).sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): MirrorConfig | undefined {
    return this.file.get('mirrors')[name];
  }

  names(): string[] {
    return Object.keys(this.file.get('mirrors')).sort();
  }

  /** change the set under the lock; `fn` sees the current mirrors and returns the new ones (or throws: nothing changes) */
  async change<T>(purpose: string, fn: (mirrors: Record<string, MirrorConfig>) => { mirrors: Record<string, MirrorConfig>; result: T }): Promise<T> {
    return withLock(this.lockFile, 'The auto-cdp configuration', purpose, () => {
      const { mirrors, result } = fn({ ...this.file.get('mirrors') });
      this.file.set('mirrors', mirrors);
      return result;
    });
  }

  async put(config: MirrorConfig): Promise<void> {
    await this.change(`saving auto-cdp:${config.name}`, (m) => ({ mirrors: { ...m, [config.name]: config }, result: undefined }));
  }

  async update(name: string, fn: (c: MirrorConfig) => MirrorConfig): Promise<MirrorConfig> {
    return this.change(`changing auto-cdp:${name}`, (m) => {
      const c = m[name];
      if (!c) throw new Error(`There is no auto-cdp service named ':${name}'.`);
      const next = fn(c);
      return { mirrors: { ...m, [name]: next }, result: next };
    });
  }

  async remove(name: string): Promise<boolean> {
    return this.change(`removing auto-cdp:${name}`, (m) => {
      if (!m[name]) return { mirrors: m, result: false };
      const { [name]: _gone, ...rest } = m;
      return { mirrors: rest, result: true };
    });
  }
}

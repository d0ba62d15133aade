/**
 * Service configurations and run states, kept with conf (schema-validated,
 * atomic writes). conf re-reads the file on every access; each change takes a
 * lock around its read-modify-write so two syncsh processes never lose one
 * another's updates.
 */
import { ConfigFile } from '../config-file.js';
import path from 'node:path';
import { withLock } from '../lock.js';
import type { Home } from '../home.js';
import { EMPTY_RUN_STATE, serviceSchema, type AutoSyncConfig, type RunState } from './model.js';
import { upgradeMaintenance } from './maintenance.js';

/**
 * localeCompare's order, with one collator for the whole sort instead of one
 * per comparison. Names of lower-case letters, digits and '-' (every name
 * syncsh derives) sort the same by code unit, without the collator: making
 * one costs ICU's start-up, ~10 ms of a `syncsh -c` start.
 */
let collator: Intl.Collator | undefined;
const PLAIN_NAME = /^[a-z0-9-]*$/;
function sortByName(configs: AutoSyncConfig[]): AutoSyncConfig[] {
  if (configs.every((c) => PLAIN_NAME.test(c.name))) return configs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  collator ??= new Intl.Collator();
  const byName = collator;
  return configs.sort((a, b) => byName.compare(a.name, b.name));
}

type ServicesFile = { services: Record<string, AutoSyncConfig> };
type StateFile = { state: Record<string, RunState> };

export class ServiceStore {
  private readonly services: ConfigFile<ServicesFile>;
  private readonly states: ConfigFile<StateFile>;
  private readonly lockFile: string;

  constructor(home: Home) {
    this.services = new ConfigFile<ServicesFile>({
      cwd: home.config,
      configName: 'services',
      projectName: 'syncsh',
      projectVersion: '1',
      schema: { services: { type: 'object', additionalProperties: serviceSchema, default: {} } } as never,
      defaults: { services: {} },
    });
    this.states = new ConfigFile<StateFile>({
      cwd: home.config,
      configName: 'state',
      projectName: 'syncsh',
      defaults: { state: {} },
    });
    this.lockFile = path.join(home.locks, 'config.lock');
  }

  list(): AutoSyncConfig[] {
    return sortByName(Object.values(this.all()));
  }

  get(name: string): AutoSyncConfig | undefined {
    return this.all()[name];
  }

  /** every configuration, as this version reads it (older files upgraded in memory) */
  private all(): Record<string, AutoSyncConfig> {
    const raw = this.services.get('services');
    return Object.fromEntries(Object.entries(raw).map(([name, c]) => [name, { ...c, maintenance: upgradeMaintenance(c.maintenance as never, name) }]));
  }

  names(): string[] {
    return Object.keys(this.services.get('services')).sort();
  }

  /** Create or replace under the lock; `make` sees the current set so names stay unique. */
  async add(make: (existing: Record<string, AutoSyncConfig>) => AutoSyncConfig): Promise<AutoSyncConfig> {
    return this.locked('creating a service', () => {
      const all = this.services.get('services');
      const config = make(all);
      if (all[config.name]) throw new Error(`The service auto-sync:${config.name} already exists.`);
      this.services.set('services', { ...all, [config.name]: config });
      return config;
    });
  }

  /** many services in one write (bulk import; the names must be new) */
  async addMany(configs: AutoSyncConfig[]): Promise<void> {
    await this.locked('importing services', () => {
      const all = { ...this.services.get('services') };
      for (const c of configs) {
        if (all[c.name]) throw new Error(`The service auto-sync:${c.name} already exists.`);
        all[c.name] = c;
      }
      this.services.set('services', all);
    });
  }

  async update(name: string, change: (config: AutoSyncConfig) => AutoSyncConfig): Promise<AutoSyncConfig> {
    return this.locked(`changing auto-sync:${name}`, () => {
      const all = this.all();
      const current = all[name];
      if (!current) throw new Error(`No auto-sync service named :${name}.`);
      const next = change(current);
      this.services.set('services', { ...all, [name]: next });
      return next;
    });
  }

  async remove(name: string): Promise<void> {
    await this.locked(`destroying auto-sync:${name}`, () => {
      const all = { ...this.services.get('services') };
      delete all[name];
      this.services.set('services', all);
      const states = { ...this.states.get('state') };
      delete states[name];
      this.states.set('state', states);
    });
  }

  /** every service's run state in one read (listing 1,000 services must not read the file 1,000 times) */
  runStates(): Record<string, RunState> {
    const all = this.states.get('state');
    return Object.fromEntries(Object.entries(all).map(([name, state]) => [name, { ...EMPTY_RUN_STATE, ...state }]));
  }

  runState(name: string): RunState {
    return { ...EMPTY_RUN_STATE, ...this.states.get('state')[name] };
  }

  async updateRunState(name: string, change: (state: RunState) => RunState): Promise<RunState> {
    return this.locked(`recording the state of auto-sync:${name}`, () => {
      const all = this.states.get('state');
      const next = change({ ...EMPTY_RUN_STATE, ...all[name] });
      this.states.set('state', { ...all, [name]: next });
      return next;
    });
  }

  private locked<T>(purpose: string, fn: () => T): Promise<T> {
    return withLock(this.lockFile, 'The configuration', purpose, fn);
  }
}

/**
 * This appliance's identity: its id (shown in the prompt and to peers; may
 * start with a digit), hostname and version, kept in appliance.json.
 */
import Conf from 'conf';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Home } from './home.js';
import type { DriverName } from './storage/driver.js';

export interface ApplianceInfo {
  id: string;
  hostname: string;
  version: string;
  defaultDriver: DriverName;
}

type ApplianceFile = { id: string; defaultDriver: DriverName };

export const VERSION: string = (() => {
  try {
    return JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
  } catch {
    return '0.0.0';
  }
})();

export function validApplianceId(id: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(id);
}

export function loadAppliance(home: Home, env: NodeJS.ProcessEnv = process.env): ApplianceInfo {
  const store = new Conf<ApplianceFile>({ cwd: home.config, configName: 'appliance', projectName: 'syncsh' });
  let id = store.get('id');
  if (!id) {
    const wanted = env.SYNCSH_APPLIANCE_ID || os.hostname().toLowerCase().replace(/[^a-z0-9_.-]/g, '-');
    id = validApplianceId(wanted) ? wanted : `appliance-${randomBytes(3).toString('hex')}`;
    store.set('id', id);
  }
  if (!store.get('defaultDriver')) store.set('defaultDriver', 'fs');
  return { id, hostname: os.hostname(), version: VERSION, defaultDriver: store.get('defaultDriver') };
}

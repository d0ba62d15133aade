/** A throwaway appliance: its own SYNCSH_HOME in a temp dir, removed at teardown. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { createServices, type Services } from '../../src/services/index.js';

export interface TestAppliance {
  home: string;
  env: NodeJS.ProcessEnv;
  services: Services;
}

export function makeAppliance(t: ExecutionContext, id = 'node1'): TestAppliance {
  const home = mkdtempSync(path.join(os.tmpdir(), `syncsh-${id}-`));
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const env = { ...process.env, SYNCSH_HOME: home, SYNCSH_APPLIANCE_ID: id };
  return { home, env, services: createServices(env) };
}

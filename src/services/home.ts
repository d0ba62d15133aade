/**
 * The appliance home: every file syncsh keeps lives under it, so two
 * appliances on one machine are just two homes (SYNCSH_HOME).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';

export interface Home {
  root: string;
  /** conf files (appliance, services, state) */
  config: string;
  /** one log file per service */
  logs: string;
  /** run locks */
  locks: string;
  /** send and receive histories */
  history: string;
  /** progress of runs in flight */
  progress: string;
  /** fs driver pools */
  fsRoot: string;
  /** interactive shell history */
  historyFile: string;
}

export function resolveHome(env: NodeJS.ProcessEnv = process.env): Home {
  const root = path.resolve(env.SYNCSH_HOME || '/var/lib/syncsh');
  const home: Home = {
    root,
    config: root,
    logs: path.join(root, 'log'),
    locks: path.join(root, 'locks'),
    history: path.join(root, 'history'),
    progress: path.join(root, 'progress'),
    fsRoot: path.resolve(env.SYNCSH_FS_ROOT || path.join(root, 'fs')),
    historyFile: path.join(root, 'shell_history'),
  };
  for (const dir of [home.root, home.logs, home.locks, home.history, home.progress, home.fsRoot]) {
    try {
      mkdirSync(dir, { recursive: true });
    } catch (error) {
      throw new Error(`Cannot use ${dir} as the syncsh home (set SYNCSH_HOME to a writable directory): ${(error as Error).message}`);
    }
  }
  return home;
}

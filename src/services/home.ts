/**
 * The appliance home: every file syncsh keeps lives under it, so two
 * appliances on one machine are just two homes (SYNCSH_HOME).
 */
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
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

/**
 * What a directory is, before anything is written there: an appliance home
 * (its appliance.json says so, with its id), empty, missing, or something
 * else (with why it is not a home). Nothing else may become a home.
 */
export type HomeKind = { kind: 'home'; id: string } | { kind: 'empty' } | { kind: 'missing' } | { kind: 'other'; why: string };

export function homeKind(dir: string): HomeKind {
  let stat;
  try {
    stat = statSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'other', why: `it cannot be read (${(error as Error).message})` };
  }
  if (!stat.isDirectory()) return { kind: 'other', why: 'it is not a directory' };
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (error) {
    return { kind: 'other', why: `it cannot be read (${(error as Error).message})` };
  }
  if (!entries.length) return { kind: 'empty' };
  if (!entries.includes('appliance.json')) {
    const shown = entries.slice(0, 5).join(', ') + (entries.length > 5 ? `, … (${entries.length} entries)` : '');
    return { kind: 'other', why: `it has no appliance.json and is not empty (it holds ${shown})` };
  }
  try {
    const id = (JSON.parse(readFileSync(path.join(dir, 'appliance.json'), 'utf8')) as { id?: unknown }).id;
    if (typeof id === 'string' && id) return { kind: 'home', id };
    return { kind: 'other', why: 'its appliance.json names no appliance id' };
  } catch (error) {
    return { kind: 'other', why: `its appliance.json is not an appliance's (${(error as Error).message})` };
  }
}

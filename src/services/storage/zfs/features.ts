/**
 * What this `zfs` can do, read from its own usage texts (cheap, no pool
 * needed). zfs-fuse is pool v23: no `written`, no `diff`, no resumable
 * receive, no `send -c/-w`; it does have holds and `send -p`.
 */
import { probe } from '../exec.js';

export interface ZfsFeatures {
  /** `zfs hold` / `zfs release` (pool v18+) */
  hold: boolean;
  /** the `written` / `written@snap` properties */
  written: boolean;
  /** `zfs diff` */
  diff: boolean;
  /** `zfs send -p` (carry properties in a non-recursive stream) */
  sendProperties: boolean;
  /** `zfs receive -s` and the `receive_resume_token` property */
  resumable: boolean;
}

export async function detectZfsFeatures(zfs: string): Promise<ZfsFeatures> {
  // `zfs` alone prints every sub-command's usage; `zfs get` alone prints the property table
  const [commands, properties] = await Promise.all([probe(zfs, []), probe(zfs, ['get'])]);
  const usage = `${commands.stdout}\n${commands.stderr}`;
  const table = `${properties.stdout}\n${properties.stderr}`;
  const flagsOf = (command: string): string => usage.match(new RegExp(`^\\s*${command} \\[-([A-Za-z]+)\\]`, 'm'))?.[1] ?? '';
  return {
    hold: /^\s*hold\b/m.test(usage),
    written: /^\s*written\b/m.test(table),
    diff: /^\s*diff\b/m.test(usage),
    sendProperties: flagsOf('send').includes('p'),
    resumable: flagsOf('receive').includes('s') || /^\s*receive_resume_token\b/m.test(table),
  };
}

/** a one-line summary for logs and reports */
export const describeFeatures = (f: ZfsFeatures): string =>
  Object.entries(f)
    .map(([name, on]) => `${name}=${on ? 'yes' : 'no'}`)
    .join(' ');

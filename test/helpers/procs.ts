/**
 * The processes below this one, read from /proc: what a test checks to say
 * no child (a codec's program, an agent) outlived its run; and, when
 * something hangs, which processes wait where (one in state D waits in the
 * kernel, for a FUSE daemon such as zfs-fuse or nbdfuse, and no signal ends
 * it until that wait does). Does not load ava: the benchmarks import it.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface Proc {
  pid: number;
  ppid: number;
  /** the program's name as the kernel keeps it (at most 15 characters) */
  comm: string;
  /** R, S, D, T… as ps shows it */
  state: string;
}

function stat(pid: number): Proc | null {
  try {
    const line = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses: it ends at the last ')'
    const close = line.lastIndexOf(')');
    const [state, ppid] = line.slice(close + 2).split(' ');
    if (state === 'Z') return null; // exited, only waiting to be reaped
    return { pid, ppid: Number(ppid), comm: line.slice(line.indexOf('(') + 1, close), state };
  } catch {
    return null; // gone while we looked
  }
}

/** every live process */
const everyProcess = (): Proc[] =>
  readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => stat(Number(name)))
    .filter((p): p is Proc => p !== null);

/** every live process whose ancestors include `root` */
export function descendants(root = process.pid, all = everyProcess()): Proc[] {
  const children = new Map<number, Proc[]>();
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const found: Proc[] = [];
  const queue = [root];
  while (queue.length) for (const child of children.get(queue.shift()!) ?? []) found.push(child), queue.push(child.pid);
  return found;
}

/** the codec programs (zstd, lz4) running below this process */
export const codecChildren = (root = process.pid): Proc[] => descendants(root).filter((p) => p.comm === 'zstd' || p.comm === 'lz4');

/** a process's command line as its words ('' once it is gone) */
export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** one variable of a process's environment (undefined once it is gone, or not set) */
export function environ(pid: number, name: string): string | undefined {
  try {
    const entry = readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .find((e) => e.startsWith(`${name}=`));
    return entry?.slice(name.length + 1);
  } catch {
    return undefined;
  }
}

/**
 * The `syncsh agent send|receive` processes below this one (over SSH: under
 * sshd). Behind a forced-command key the agent's own argv has no sub-command:
 * it is in SSH_ORIGINAL_COMMAND, what the caller asked for.
 */
export const dataAgents = (sub: 'send' | 'receive', root = process.pid): Proc[] =>
  descendants(root).filter((p) => {
    const words = cmdline(p.pid);
    const at = words.indexOf('agent');
    if (at < 1) return false;
    const asked = environ(p.pid, 'SSH_ORIGINAL_COMMAND');
    return words[at + 1] === sub || (asked !== undefined && new RegExp(`\\bagent ${sub}\\b`).test(asked));
  });

/** SIGKILL each of `pids`; one gone meanwhile is skipped */
export function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

/** SIGKILL every process below `root`: what a hang leaves running */
export function killBelow(root = process.pid): void {
  killAll(descendants(root).map((p) => p.pid));
}

/** the kernel function a sleeping process waits in ('' when running or gone) */
function wchan(pid: number): string {
  try {
    const w = readFileSync(`/proc/${pid}/wchan`, 'utf8');
    return w === '0' ? '' : w;
  } catch {
    return '';
  }
}

/**
 * What to print when something hangs: the processes below `root`, then every
 * process on the machine waiting in the kernel (state D, kernel threads left
 * out), one line each.
 */
export function hangReport(root = process.pid): string[] {
  const all = everyProcess();
  const below = descendants(root, all);
  const waiting = all.filter((p) => p.state === 'D' && cmdline(p.pid).length);
  const line = (p: Proc) => `  ${p.pid} (parent ${p.ppid}) ${p.state}${wchan(p.pid) ? ` in ${wchan(p.pid)}` : ''}: ${cmdline(p.pid).join(' ').slice(0, 160) || p.comm}`;
  return [below.length ? `processes below ${root}:` : `no process below ${root}`, ...below.map(line), waiting.length ? 'processes waiting in the kernel (D):' : 'no process waits in the kernel (D)', ...waiting.map(line)];
}

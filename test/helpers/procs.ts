/**
 * The processes below this one, read from /proc: what a test checks to say
 * no child (a codec's program, an agent) outlived its run.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface Proc {
  pid: number;
  ppid: number;
  /** the program's name as the kernel keeps it (at most 15 characters) */
  comm: string;
}

function stat(pid: number): Proc | null {
  try {
    const line = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses: it ends at the last ')'
    const close = line.lastIndexOf(')');
    const [state, ppid] = line.slice(close + 2).split(' ');
    if (state === 'Z') return null; // exited, only waiting to be reaped
    return { pid, ppid: Number(ppid), comm: line.slice(line.indexOf('(') + 1, close) };
  } catch {
    return null; // gone while we looked
  }
}

/** every live process whose ancestors include `root` */
export function descendants(root = process.pid): Proc[] {
  const all = readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => stat(Number(name)))
    .filter((p): p is Proc => p !== null);
  const children = new Map<number, Proc[]>();
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const found: Proc[] = [];
  const queue = [root];
  while (queue.length) for (const child of children.get(queue.shift()!) ?? []) found.push(child), queue.push(child.pid);
  return found;
}

/** the codec programs (zstd, lz4) running below this process */
export const codecChildren = (root = process.pid): Proc[] => descendants(root).filter((p) => p.comm === 'zstd' || p.comm === 'lz4');

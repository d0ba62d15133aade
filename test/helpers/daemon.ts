/** A `syncsh daemon` child's stdout, line by line, with a wait for a line (tests synchronise on its lines). */
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { BIN } from './cli.js';
import type { Cleanup } from './netns.js';

/** `syncsh daemon` of the appliance home `home` (its env `env`), stopped at teardown (stopping it twice is harmless); with its NBD unix socket, once it listens there */
export async function startNbdDaemon(t: Cleanup, env: NodeJS.ProcessEnv, home: string): Promise<{ daemon: ResultPromise; socket: string }> {
  const daemon = execa('node', [BIN, 'daemon'], { env, reject: false });
  t.teardown(async () => {
    daemon.kill('SIGTERM');
    await daemon;
  });
  await daemonLines(daemon).wait(/NBD server listening on /);
  return { daemon, socket: path.join(home, 'run', 'nbd.sock') };
}

/** the daemon's stdout, line by line, with a wait for a line matching */
export function daemonLines(child: ResultPromise) {
  const lines: string[] = [];
  const waiters: { re: RegExp; from: number; resolve: (l: string) => void }[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
      for (const w of [...waiters]) {
        const hit = lines.slice(w.from).find((l) => w.re.test(l));
        if (hit) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(hit);
        }
      }
    }
  });
  return {
    lines,
    /** a line matching re, printed after `from` lines (default: any) */
    wait(re: RegExp, from = 0, ms = 20_000): Promise<string> {
      const hit = lines.slice(from).find((l) => re.test(l));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no daemon line matching ${re} in:\n${lines.join('\n')}`)), ms);
        waiters.push({ re, from, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
  };
}

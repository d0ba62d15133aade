/**
 * Drive the real shell in tmux, as a person would: type keys, read the
 * screen. Each terminal gets its own tmux server socket, killed at teardown.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ExecutionContext } from 'ava';

export interface Screen {
  /** type literal text (no Enter) */
  type(text: string): Promise<void>;
  /** send tmux key names: Enter, Tab, C-c, Left, Up, … */
  keys(...names: string[]): Promise<void>;
  /** the visible screen */
  capture(): Promise<string>;
  /** wait until the screen matches; fails with the last screen in the message */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  resize(columns: number, rows: number): Promise<void>;
  /** wait for the program to end; its exit status */
  waitForExit(timeoutMs?: number): Promise<number>;
  kill(): Promise<void>;
}

export async function tmuxAvailable(): Promise<string | null> {
  try {
    await execa('tmux', ['-V']);
    return null;
  } catch {
    return 'tmux is not installed (apt-get install tmux)';
  }
}

export async function openScreen(t: ExecutionContext, command: string[], opts: { env?: Record<string, string>; columns?: number; rows?: number; cwd?: string } = {}): Promise<Screen> {
  const socket = `syncsh-test-${randomBytes(4).toString('hex')}`;
  const tmux = (...args: string[]) => execa('tmux', ['-L', socket, ...args]);
  const env = Object.entries({ TERM: 'xterm-256color', ...opts.env }).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
  await tmux('-f', '/dev/null', 'set-option', '-g', 'remain-on-exit', 'on', ';', 'new-session', '-d', '-x', String(opts.columns ?? 100), '-y', String(opts.rows ?? 30), ...(opts.cwd ? ['-c', opts.cwd] : []), ...env, '--', ...command);
  const screen: Screen = {
    async type(text) {
      await tmux('send-keys', '-t', '0', '-l', text);
    },
    async keys(...names) {
      await tmux('send-keys', '-t', '0', ...names);
    },
    async capture() {
      return (await tmux('capture-pane', '-p', '-t', '0')).stdout;
    },
    async waitFor(pattern, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      let last = '';
      while (Date.now() < deadline) {
        last = await screen.capture();
        if (pattern.test(last)) return last;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`The screen never showed ${pattern}. It shows:\n${last}`);
    },
    async resize(columns, rows) {
      await tmux('resize-window', '-t', '0', '-x', String(columns), '-y', String(rows));
    },
    async waitForExit(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const [dead, status, pid] = (await tmux('list-panes', '-t', '0', '-F', '#{pane_dead} #{pane_dead_status} #{pane_pid}')).stdout.trim().split(' ');
        if (dead === '1' && status) return Number(status);
        // tmux 3.3a sometimes never reaps the pane's process (a lost SIGCHLD):
        // the pane is dead, the status stays empty, and the process is a zombie
        // whose status the kernel still holds
        const zombie = dead === '1' ? await zombieStatus(Number(pid)) : null;
        if (zombie !== null) return zombie;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`The program did not exit. The screen shows:\n${await screen.capture()}`);
    },
    async kill() {
      await tmux('kill-server').catch(() => undefined);
    },
  };
  t.teardown(() => screen.kill());
  return screen;
}

/** a zombie's exit status as a shell reports it (128+N for signal N), or null if `pid` is not a zombie */
async function zombieStatus(pid: number): Promise<number | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return null;
  // fields after the command name (which may hold spaces): state is field 3, exit_code field 52
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] !== 'Z') return null;
  const code = Number(fields[49]);
  return (code & 0x7f) === 0 ? code >> 8 : 128 + (code & 0x7f);
}

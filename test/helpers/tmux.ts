/**
 * Drive the real shell in tmux, as a person would: type keys, read the
 * screen. Each terminal gets its own tmux server socket, killed at teardown.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
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
        const [dead, status] = (await tmux('list-panes', '-t', '0', '-F', '#{pane_dead} #{pane_dead_status}')).stdout.trim().split(' ');
        // tmux may show the pane dead a moment before it has collected the exit status
        if (dead === '1' && status !== undefined && status !== '') return Number(status);
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

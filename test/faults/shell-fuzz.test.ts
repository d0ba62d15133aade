/**
 * Grammar fuzz through one real shell session (issue 15): 500 generated and
 * mutated lines typed into one `syncsh` reading stdin, in a throwaway home
 * with one service (fs:tank/docs => fs:tank/copy). Every line either runs or
 * gets a grammar error: no stack trace, no crash, no hang (after each line a
 * marker line, an unknown command, must get its error back in time).
 *
 * Kept away from real data: the shell runs as `nobody` (when the test is root)
 * with PATH holding no program at all, its cwd and every path-like value in
 * the sandbox; dialogs read EOF (stdin is the script); follow and dashboard
 * lines are left out (they run until cancelled, by design).
 */
import test from 'ava';
import fc from 'fast-check';
import { chownSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { BIN, assertBuilt } from '../helpers/cli.js';
import { tempDir } from '../helpers/fs-tree.js';
import { grammar } from '../../src/commands/index.js';
import { match } from '../../src/commands/grammar/match.js';
import { commandLine, fuzzCtx, safeLine } from './grammar-lines.js';

const LINES = Number(process.env.SYNCSH_SHELL_FUZZ_LINES ?? 500);
const LINE_TIMEOUT_MS = 30_000;
const STACK = /\n\s+at .+:\d+:\d+\)?|^(TypeError|RangeError|ReferenceError|SyntaxError|AssertionError)\b|Unhandled|ERR_[A-Z_]+\b.*\n\s+at /m;

/** lines that run until cancelled, or end the session */
function leftOut(line: string): boolean {
  try {
    const m = match(grammar(), line, fuzzCtx);
    return ['exit', 'quit', 'show auto-sync dashboard'].includes(m.command.path) || m.input.options.f === true;
  } catch {
    return false;
  }
}

function chownTree(dir: string, uid: number, gid: number): void {
  chownSync(dir, uid, gid);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) chownTree(p, uid, gid);
    else chownSync(p, uid, gid);
  }
}

test(`${LINES} fuzzed lines through one real shell session: each runs or gets a grammar error, no stack trace, no hang`, async (t) => {
  t.timeout(20 * 60_000);
  assertBuilt();
  const sandbox = tempDir(t, 'syncsh-fuzz-');
  const home = path.join(sandbox, 'home');
  const empty = path.join(sandbox, 'no-programs');
  mkdirSync(home);
  mkdirSync(empty);
  const root = process.getuid?.() === 0;
  const user = root ? { uid: 65534, gid: 65534 } : {};
  const env = { PATH: empty, HOME: sandbox, SYNCSH_HOME: home, SYNCSH_APPLIANCE_ID: 'fuzz', SYNCSH_PEER_CONNECT_TIMEOUT_MS: '1000', FORCE_COLOR: '0' };
  const cli = (line: string) => execa(process.execPath, [BIN, '-c', line], { env, extendEnv: false, cwd: sandbox, reject: false, ...user });
  if (root) chownTree(sandbox, 65534, 65534);
  for (const line of ['create folder fs:tank', 'create folder fs:tank/docs', 'create auto-sync --from-fs fs:tank/docs --to-fs fs:tank/copy --type hour --period 1 --recursive no -y']) {
    const r = await cli(line);
    t.is(r.exitCode, 0, `${line}: ${r.stderr}`);
  }
  t.true(statSync(home).isDirectory());

  const seed = Number(process.env.SYNCSH_FUZZ_SEED ?? Date.now() % 1_000_000);
  t.log(`seed ${seed} (SYNCSH_FUZZ_SEED=${seed} replays it)`);
  const lines = fc
    .sample(commandLine(), { seed, numRuns: LINES * 3 })
    .map((l) => safeLine(l, sandbox))
    .filter((l) => !leftOut(l))
    .slice(0, LINES);
  t.is(lines.length, LINES);

  const shell = execa(process.execPath, [BIN], { env, extendEnv: false, cwd: sandbox, reject: false, stdin: 'pipe', ...user });
  t.teardown(() => {
    shell.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  let waiting: { marker: string; done: () => void } | null = null;
  const check = () => {
    if (waiting && err.includes(waiting.marker)) waiting.done();
  };
  shell.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  shell.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    check();
  });
  let exited = false;
  void shell.then(() => (exited = true));

  const ran: string[] = [];
  for (const [i, line] of lines.entries()) {
    const marker = `fuzz-marker-${i}`;
    const fromOut = out.length;
    const fromErr = err.length;
    ran.push(line);
    shell.stdin!.write(`${line}\n${marker}\n`);
    const answered = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), LINE_TIMEOUT_MS);
      waiting = { marker: `'${marker}'`, done: () => (clearTimeout(timer), resolve(true)) };
      check();
    });
    waiting = null;
    const said = out.slice(fromOut) + err.slice(fromErr);
    if (!answered || exited) {
      t.fail(`${exited ? 'the shell exited' : `no answer within ${LINE_TIMEOUT_MS / 1000} s`} after line ${i}: ${JSON.stringify(line)}\n${said}`);
      return;
    }
    if (STACK.test(said)) {
      t.fail(`a stack trace after line ${i}: ${JSON.stringify(line)}\n${said}`);
      return;
    }
  }
  shell.stdin!.end();
  const r = await shell;
  t.false(STACK.test(String(r.stderr)), 'no stack trace at the end');
  t.log(`${ran.length} lines, ${(out.match(/\n/g) ?? []).length} lines of output`);
  t.pass();
});

/**
 * The SSH console's latency, with the real OpenSSH client, next to OpenSSH's
 * own sshd (started here on another loopback port with its own host key and
 * config) as the peer:
 *   - ssh start to the first prompt (syncsh, a pty) vs ssh start to `true` done (sshd)
 *   - ssh start to an exec'd command done: `show auto-sync` vs `true`
 *   - a line written to a log to the line in the client's output:
 *     `logtail -f` (the live view on a pty, and plain over exec) vs `tail -n0 -F` over sshd
 *
 *   npm run build && npx tsx bench/console-latency.ts      (BENCH_N connections, BENCH_LINES lines)
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { BIN, syncsh } from './common.js';
import { ServiceLog } from '../src/services/service-log.js';
import { freePort } from '../test/helpers/sshd.js';

const N = Number(process.env.BENCH_N) || 15;
const LINES = Number(process.env.BENCH_LINES) || 200;

const work = await mkdtemp(path.join(process.env.BENCH_DIR || os.tmpdir(), 'syncsh-console-bench-'));
const home = path.join(work, 'home');
const env = { ...process.env, SYNCSH_HOME: home, SYNCSH_APPLIANCE_ID: 'bench', TERM: 'xterm-256color' };
const children: ChildProcessWithoutNullStreams[] = [];

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const ms = () => Number(process.hrtime.bigint()) / 1e6;

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`Nothing listens on 127.0.0.1:${port}.`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** both servers are asked for the same key exchange (ssh2 has no sntrup761, which OpenSSH would pick and which costs more) */
const KEX = 'curve25519-sha256';

function sshArgs(port: number, user: string, key: string): string[] {
  return [
    '-F',
    '/dev/null',
    '-o',
    `KexAlgorithms=${KEX}`,
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-i',
    key,
    '-p',
    String(port),
    `${user}@127.0.0.1`,
  ];
}

/** an ssh client whose output is watched: resolves when `pattern` shows up after `from` */
function watched(label: string, args: string[]) {
  const child = spawn('ssh', args, { env });
  if (process.env.BENCH_DEBUG) process.stderr.write(`${label}: ssh ${args.join(' ')}\n`);
  children.push(child);
  let out = '';
  let waiters: { pattern: RegExp | string; from: number; resolve: (at: number) => void }[] = [];
  const check = () => {
    const now = ms();
    waiters = waiters.filter((w) => {
      const hit = typeof w.pattern === 'string' ? out.indexOf(w.pattern, w.from) >= 0 : w.pattern.test(out.slice(w.from));
      if (hit) w.resolve(now);
      return !hit;
    });
  };
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    check();
  });
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  return {
    child,
    closed,
    length: () => out.length,
    output: () => out,
    /** the time (ms) when `pattern` appears in the output from offset `from` on */
    seen(pattern: RegExp | string, from = 0, timeoutMs = 15_000): Promise<number> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${label}: ssh never printed ${pattern}. It printed:\n${out.slice(-2000)}`)), timeoutMs);
        waiters.push({ pattern, from, resolve: (at) => (clearTimeout(timer), resolve(at)) });
        check();
      });
    },
  };
}

/** a follower prints only what comes after it started: probe until it shows */
async function following(client: ReturnType<typeof watched>, write: (text: string) => void): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const probe = `probe-${i}-${Math.random().toString(36).slice(2, 8)}`;
    const from = client.length();
    write(probe);
    const seen = await Promise.race([
      client.seen(probe, from).then(
        () => true,
        () => false,
      ),
      new Promise((r) => setTimeout(() => r(false), 300)),
    ]);
    if (seen) return;
  }
  throw new Error(`The follower never showed what was written. It printed:\n${client.output().slice(-2000)}`);
}

async function timeRuns(run: () => Promise<void>): Promise<number[]> {
  await run(); // warm up: the first connection pays for loading code
  const times: number[] = [];
  for (let i = 0; i < N; i++) {
    const start = ms();
    await run();
    times.push(ms() - start);
  }
  return times;
}

/** writes LINES lines one after the other with `write`, each once the one before was seen; latencies in ms */
async function lineLatencies(client: ReturnType<typeof watched>, write: (text: string) => void): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < LINES; i++) {
    const marker = `bench-line-${i}-${Math.random().toString(36).slice(2, 8)}`;
    const from = client.length();
    const sent = ms();
    const seen = client.seen(marker, from);
    write(marker);
    latencies.push((await seen) - sent);
    // lines come apart and at no particular moment: not in step with the follower's polling
    await new Promise((r) => setTimeout(r, Math.random() * 200));
  }
  return latencies;
}

try {
  // ---- the appliance and syncsh serve
  await syncsh(env, 'create folder fs:bench');
  await syncsh(env, 'create folder fs:bench/src');
  await syncsh(env, 'create auto-sync --from-fs fs:bench/src --to-fs fs:bench/dst -y');
  const key = path.join(work, 'operator');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const publicKey = readFileSync(`${key}.pub`, 'utf8');
  const authorizedKeys = path.join(work, 'authorized_keys');
  writeFileSync(authorizedKeys, publicKey, { mode: 0o600 });

  const serve = spawn('node', [BIN, 'serve', '--listen', '127.0.0.1:0', '--authorized-keys', authorizedKeys], { env });
  children.push(serve);
  let serveOut = '';
  serve.stdout.on('data', (d: Buffer) => (serveOut += d));
  serve.stderr.on('data', (d: Buffer) => (serveOut += d));
  const deadline = Date.now() + 15_000;
  while (!/listening on 127\.0\.0\.1:\d+/.test(serveOut)) {
    if (Date.now() > deadline) throw new Error(`syncsh serve did not start:\n${serveOut}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const syncshPort = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(serveOut)![1]);

  // ---- the peer: OpenSSH's sshd on its own port, host key and config
  const sshdBin = ['/usr/sbin/sshd', '/usr/local/sbin/sshd'].find((p) => existsSync(p));
  if (!sshdBin) throw new Error('sshd is not installed (apt-get install openssh-server): it is the peer this benchmark compares with.');
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = path.join(work, 'sshd_host_ed25519');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  const sshdPort = await freePort();
  const sshdConfig = path.join(work, 'sshd_config');
  writeFileSync(
    sshdConfig,
    [
      `Port ${sshdPort}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${path.join(work, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      'PrintMotd no',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  const sshd = spawn(sshdBin, ['-D', '-e', '-f', sshdConfig], { env });
  children.push(sshd as ChildProcessWithoutNullStreams);
  await waitForPort(sshdPort);
  const user = os.userInfo().username;
  const toSyncsh = sshArgs(syncshPort, 'operator', key);
  const toSshd = sshArgs(sshdPort, user, key);

  // ---- ssh start to the first prompt / to `true` done
  const prompt = await timeRuns(async () => {
    const client = watched('prompt', ['-tt', ...toSyncsh]);
    await client.seen('syncsh@bench:/$');
    client.child.stdin.write('exit\r');
    await client.closed;
  });
  const sshdTrue = await timeRuns(async () => {
    const r = await execa('ssh', [...toSshd, 'true'], { env, stdin: 'ignore' });
    if (r.exitCode !== 0) throw new Error(r.stderr);
  });
  const execShow = await timeRuns(async () => {
    const r = await execa('ssh', [...toSyncsh, 'show auto-sync'], { env, stdin: 'ignore' });
    if (r.exitCode !== 0) throw new Error(r.stderr);
  });

  // ---- a line written to the log, seen by the client
  const log = ServiceLog.forService(path.join(home, 'log'), 'bench-src-000');
  const live = watched('live view', ['-tt', ...toSyncsh]);
  await live.seen('syncsh@bench:/$');
  live.child.stdin.write('show auto-sync :bench-src-000 logtail -f\r');
  await live.seen('q or Ctrl-C to stop');
  const liveLatency = await lineLatencies(live, (m) => log.write(m));
  live.child.stdin.write('q');
  await live.seen('-- stopped following the log');
  // keys typed in the moment between the end of the view and the next prompt can be lost
  // (the shell's doing, not the follow's): type exit until the session ends
  let closed = false;
  void live.closed.then(() => (closed = true));
  for (let i = 0; i < 20 && !closed; i++) {
    live.child.stdin.write('exit\r');
    await Promise.race([live.closed, new Promise((r) => setTimeout(r, 500))]);
  }
  if (!closed) throw new Error(`The live view's session did not end on exit. It printed:\n${live.output().slice(-2000)}`);

  const plain = watched('plain logtail', [...toSyncsh, 'show auto-sync :bench-src-000 logtail -f']);
  await following(plain, (m) => log.write(m));
  const plainLatency = await lineLatencies(plain, (m) => log.write(m));
  plain.child.kill();

  const tailFile = path.join(work, 'tail.log');
  writeFileSync(tailFile, '');
  const tail = watched('tail -F', [...toSshd, `tail -n0 -F ${tailFile}`]);
  await following(tail, (m) => appendFileSync(tailFile, `${m}\n`));
  const tailLatency = await lineLatencies(tail, (m) => appendFileSync(tailFile, `${m}\n`));
  tail.child.kill();

  const median = (v: number[]) => percentile(v, 50);
  const row = (what: string, ours: string, peer: string, ratio: string) => console.log(`${what.padEnd(44)}${ours.padStart(18)}${peer.padStart(22)}${ratio.padStart(8)}`);
  console.log(`\nSSH console latency: OpenSSH ${((await execa('ssh', ['-V'], { reject: false })).stderr || '').split(',')[0]} client, ${KEX}, ${N} connections, ${LINES} log lines, loopback`);
  row('', 'syncsh serve', 'OpenSSH sshd', 'ratio');
  row('ssh start -> first prompt | `true` done, p50', `${median(prompt).toFixed(0)} ms`, `${median(sshdTrue).toFixed(0)} ms`, (median(prompt) / median(sshdTrue)).toFixed(2));
  row('ssh start -> exec `show auto-sync` | `true`', `${median(execShow).toFixed(0)} ms`, `${median(sshdTrue).toFixed(0)} ms`, (median(execShow) / median(sshdTrue)).toFixed(2));
  for (const [what, values] of [
    ['logtail -f, live view (pty)', liveLatency],
    ['logtail -f, plain (exec)', plainLatency],
  ] as const) {
    row(`${what} | tail -F, p50`, `${percentile(values, 50).toFixed(1)} ms`, `${percentile(tailLatency, 50).toFixed(1)} ms`, (percentile(values, 50) / percentile(tailLatency, 50)).toFixed(1));
    row(`${what} | tail -F, p99`, `${percentile(values, 99).toFixed(1)} ms`, `${percentile(tailLatency, 99).toFixed(1)} ms`, (percentile(values, 99) / percentile(tailLatency, 99)).toFixed(1));
  }
  console.log('(ratio = syncsh / peer; ServiceLog.follow and tail -F are both woken by inotify)');
} finally {
  for (const child of children) child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  await rm(work, { recursive: true, force: true });
}

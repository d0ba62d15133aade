/**
 * Two appliances bound with local-bind, each running `syncsh daemon`, and a
 * mirror of fs:tank/vm1 from alpha to beta: what the auto-cdp system tests
 * of the write path share (real daemons, real NBD clients).
 */
import { execa, type ResultPromise } from 'execa';
import type { ExecutionContext } from 'ava';
import type { TargetStatus } from '../../src/services/cdp/status.js';
import { daemonLines } from '../helpers/daemon.js';
import type { Cleanup } from '../helpers/netns.js';
import { BIN } from '../helpers/cli.js';
import { ok, Fixture, makeAppliance, type Appliance } from '../peer/_fixture.js';

export const MIRROR = 'tank-vm1-000';

export const uri = (x: Appliance, zvol = 'fs:tank/vm1') => `nbd+unix:///${zvol}?socket=${x.home}/run/nbd.sock`;

export type Daemon = ReturnType<typeof startDaemon>;

/** `syncsh daemon` of an appliance, killed at teardown; `stop` kills it now */
export function startDaemon(t: Cleanup, x: Appliance, env: Record<string, string> = {}) {
  const child: ResultPromise = execa('node', [BIN, 'daemon'], { env: { ...x.env, ...env }, reject: false });
  let stopped = false;
  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGKILL') => {
    if (stopped) return;
    stopped = true;
    child.kill(signal);
    await child;
  };
  t.teardown(() => stop('SIGKILL'));
  return { child, lines: daemonLines(child), stop };
}

/** a daemon stopped (SIGSTOP: its links open but silent, as a cut cable leaves them); the function returned thaws it, as the teardown does, so that it can be killed */
export function freeze(t: Cleanup, d: Daemon): () => void {
  const pid = d.child.pid!;
  let cold = true;
  const thaw = () => {
    if (cold) process.kill(pid, 'SIGCONT');
    cold = false;
  };
  t.teardown(thaw);
  process.kill(pid, 'SIGSTOP');
  return thaw;
}

/** alpha and beta (fs only), each with fs:tank, alpha bound to beta with local-bind */
export async function pair(t: ExecutionContext, env: Record<string, string> = {}) {
  const f = new Fixture();
  t.teardown(() => f.close());
  return pairIn(f, env);
}

/**
 * pair's appliances in a fixture of the caller's (the fault campaign's), removed at its teardown;
 * `under`: the directory each home is made in (default the temp dir), e.g. a disk of its own whose power is cut
 */
export async function pairIn(f: Cleanup, env: Record<string, string> = {}, under: { a?: string; b?: string } = {}) {
  const a = makeAppliance(f, 'alpha', { SYNCSH_DRIVERS: 'fs', ...env }, under.a);
  const b = makeAppliance(f, 'beta', { SYNCSH_DRIVERS: 'fs', ...env }, under.b);
  await ok(a, 'create folder fs:tank');
  await ok(b, 'create folder fs:tank');
  await ok(a, `setup network local-bind ${b.home}`);
  return { a, b };
}

export interface MirrorOptions {
  mode?: 'sync' | 'async';
  /** of the zvol, as `create zvol --size` takes it */
  size?: string;
  /** more flags of `create auto-cdp` */
  create?: string;
}

/** a already bound to b: a mirrors fs:tank/vm1 (16 MiB unless asked) to b, both daemons running, beta level */
export async function mirrorBetween(t: Cleanup, a: Appliance, b: Appliance, opts: MirrorOptions = {}) {
  await ok(a, `create zvol fs:tank/vm1 --size ${opts.size ?? '16M'}`);
  await ok(a, `create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode ${opts.mode ?? 'sync'} ${opts.create ?? ''} -y`);
  const db = startDaemon(t, b);
  await db.lines.wait(/NBD/);
  const da = startDaemon(t, a);
  await da.lines.wait(/auto-cdp:tank-vm1-000: beta is level/, 0, 60_000);
  return { da, db };
}

/** alpha mirrors fs:tank/vm1 to beta over local-bind, both daemons running, beta level */
export async function mirrored(t: ExecutionContext, opts: MirrorOptions = {}) {
  t.timeout(8 * 60_000);
  const { a, b } = await pair(t);
  return { a, b, ...(await mirrorBetween(t, a, b, opts)) };
}

/** qemu-io on an export; the result, never thrown */
export const qemuIo = (target: string, ...cmds: string[]) => execa('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), target], { reject: false });

/** read-only qemu-io commands on an export: their output */
export async function qemuRead(target: string, ...cmds: string[]): Promise<string> {
  const r = await execa('qemu-io', ['-f', 'raw', '-r', ...cmds.flatMap((c) => ['-c', c]), target], { reject: false });
  return r.stdout + r.stderr;
}

/** qemu-img compare of both copies' exports: '0: Images are identical.' when equal */
export async function compare(a: Appliance, b: Appliance): Promise<string> {
  const r = await execa('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri(a), uri(b)], { reject: false });
  return `${r.exitCode}: ${r.stdout}${r.stderr}`.trim();
}

/** this copy's role and epoch (show auto-cdp --json) */
export const role = async (x: Appliance) => JSON.parse(await ok(x, `show auto-cdp :${MIRROR} --json`)).config as { role: string; epoch: number; targets: { host: string }[]; master: { host: string } | null };

export interface Shown {
  config: { targets: { paused: boolean }[] };
  status: { targets: TargetStatus[] } | null;
}

/** the daemon's figures (show auto-cdp --json) */
export async function status(a: Appliance): Promise<Shown['status']> {
  return (JSON.parse(await ok(a, `show auto-cdp :${MIRROR} --json`)) as Shown).status;
}

/** the daemon's figures once every target (or the first) satisfies `want`; fails after 3 minutes naming the last figures */
export async function statusUntil(a: Appliance, want: (x: TargetStatus) => boolean, every = false): Promise<NonNullable<Shown['status']>> {
  let last: Shown['status'] = null;
  for (const start = Date.now(); Date.now() - start < 180_000; ) {
    last = await status(a);
    if (last && (every ? last.targets.every(want) : want(last.targets[0]))) return last;
  }
  throw new Error(`the mirror's figures never got there; last: ${JSON.stringify(last)}`);
}

/** the first target's figures once `want` holds */
export const figuresUntil = async (x: Appliance, want: (f: TargetStatus) => boolean): Promise<TargetStatus> => (await statusUntil(x, want)).targets[0];

/**
 * Where the fs engine spends a sync: the same tree and the same two runs as
 * fs-vs-rsync.ts (a full sync, then an incremental one after 1% of the
 * files changed, and again: the steady state), each through the real CLI under `node --cpu-prof`, then a
 * summary of each profile: time by fs driver module (inclusive) and the
 * functions with the most self time.
 *   npm run build && BENCH_FILES=20000 BENCH_MB=1024 npx tsx bench/fs-profile.ts
 * BENCH_KEEP=1 keeps the work directory and the .cpuprofile files.
 * BENCH_CALLS=1 instead times each driver call of the two runs in this
 * process (the calls the run layer makes, without the CLI around them).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { createFsDriver } from '../src/services/storage/fs/index.js';
import { BIN, changeFraction, fsBenchSource, syncsh, timed } from './common.js';

const files = Number(process.env.BENCH_FILES) || 20_000;
const megabytes = Number(process.env.BENCH_MB) || 1024;
const top = Number(process.env.BENCH_TOP) || 25;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** `…/dist/services/storage/fs/receiver.js` -> `fs/receiver`; other code by package or area. */
function moduleOf(url: string): string | null {
  const fs = /\/storage\/fs\/([\w-]+)\.[jt]s$/.exec(url);
  if (fs) return `fs/${fs[1]}`;
  return null;
}

function summarize(profile: Profile, label: string): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const functions = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    total += dt;
    const leaf = byId.get(profile.samples[i])!;
    const f = leaf.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : ''}`.trim();
    self.set(key, (self.get(key) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)!.callFrame;
      const m = moduleOf(frame.url);
      if (!m) continue;
      const fn = `${m} ${frame.functionName || '(anonymous)'}:${frame.lineNumber + 1}`;
      for (const k of [m, fn]) {
        if (seen.has(k)) continue;
        seen.add(k);
        const into = k === m ? inclusive : functions;
        into.set(k, (into.get(k) ?? 0) + dt);
      }
    }
  }
  const rows = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `  ${v.toFixed(0).padStart(7)} ms  ${k}`)
      .join('\n');
  console.log(`\n== ${label}: ${total.toFixed(0)} ms sampled`);
  console.log(`fs driver modules (inclusive):\n${rows(inclusive, 30)}`);
  console.log(`fs driver functions (inclusive), top ${top}:\n${rows(functions, top)}`);
  console.log(`self time, top ${top}:\n${rows(self, top)}`);
}

/** The driver calls of one auto-sync run (run.ts), each timed. */
async function timedRun(root: string, marker: string, base: string | null): Promise<void> {
  const driver = createFsDriver(root);
  const times: [string, number, number, number][] = [];
  const step = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
    const cpu = process.cpuUsage();
    const r = await timed(fn);
    const used = process.cpuUsage(cpu);
    times.push([label, r.seconds, used.user / 1e6, used.system / 1e6]);
    return r.value;
  };
  await step('recover(dst)', () => driver.recover('bench/dst'));
  await step('listSnapshots x2', async () => (await driver.getDataset('bench/dst')) && driver.listSnapshots('bench/dst'));
  if (base) await step('changedSince(dst)', () => driver.changedSince('bench/dst', base));
  await step('createSnapshot(src)', () => driver.createSnapshot('bench/src', marker, { recursive: false }));
  await step('send | receive', () => driver.receive('bench/dst', driver.send('bench/src', marker, { from: base ?? undefined, recursive: false }), { force: false, recursive: false }));
  await step('holds', async () => {
    for (const ds of ['bench/src', 'bench/dst']) await driver.holdSnapshot(ds, marker, true);
  });
  const total = times.reduce((n, [, s]) => n + s, 0);
  const user = times.reduce((n, [, , u]) => n + u, 0);
  const sys = times.reduce((n, [, , , s]) => n + s, 0);
  // The kernel's share (sys) is mostly file creation, which on a busy shared disk varies tenfold between runs.
  console.log(`\n== driver calls, ${base ? 'incremental' : 'full'}: ${total.toFixed(2)} s wall, ${user.toFixed(2)} s user, ${sys.toFixed(2)} s sys`);
  for (const [label, seconds, u, s] of times) console.log(`  ${seconds.toFixed(3).padStart(8)} s  ${u.toFixed(3).padStart(7)} user ${s.toFixed(3).padStart(7)} sys  ${label}`);
}

const work = await mkdtemp(path.join(process.env.BENCH_DIR || os.tmpdir(), 'syncsh-profile-'));
const profiles = path.join(work, 'profiles');
try {
  const { env, paths } = await fsBenchSource(work, files, megabytes);
  if (process.env.BENCH_CALLS) {
    const root = path.join(env.SYNCSH_HOME, 'fs');
    await timedRun(root, 'm1', null);
    await changeFraction(paths, 0.01);
    await timedRun(root, 'm2', 'm1');
    // The steady state: a commit built on the spare version the one before kept (fs/versions.ts).
    await changeFraction(paths.slice(1), 0.01);
    await timedRun(root, 'm3', 'm2');
  } else {
    await syncsh(env, 'create auto-sync --from-fs fs:bench/src --to-fs fs:bench/dst --keep-src 2 --keep-dst 2 -y');
    const profiled = async (label: string) => {
      const dir = path.join(profiles, label);
      const run = await timed(() => execa('node', ['--cpu-prof', `--cpu-prof-dir=${dir}`, BIN, '-c', 'run auto-sync :bench-src-000'], { env }));
      console.log(`${label}: ${run.seconds.toFixed(2)} s wall — ${run.value.stdout.trim()}`);
      for (const f of await readdir(dir)) summarize(JSON.parse(await readFile(path.join(dir, f), 'utf8')) as Profile, label);
    };
    await profiled('full');
    await changeFraction(paths, 0.01);
    await profiled('incremental');
    await changeFraction(paths.slice(1), 0.01);
    await profiled('incremental-again'); // built on the spare version the one before kept
    const idle = await timed(() => execa('node', [BIN, '-c', 'help'], { env }));
    console.log(`\nCLI start-up alone (syncsh -c help): ${idle.seconds.toFixed(2)} s`);
  }
} finally {
  if (process.env.BENCH_KEEP) console.log(`kept ${work}`);
  else await rm(work, { recursive: true, force: true });
}

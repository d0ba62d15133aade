/**
 * The flow shared by bench/zfs-vs-send.ts and bench/btrfs-vs-send.ts: syncsh
 * (`node bin/syncsh.js -c 'run auto-sync :X'`, a fresh SYNCSH_HOME) against
 * the bare `send | receive` pipeline of the same driver, on the same source
 * data in the same run: a full sync of a generated tree, then an
 * incremental one after 5% of the files were rewritten. Each side takes its
 * own snapshot inside its timing (syncsh takes its marker in the run). Both
 * copies are then checked against the source, file by file (BENCH_VERIFY=0
 * skips that).
 *
 * BENCH_BASELINE=DIR/bin/syncsh.js also runs another build of syncsh (an
 * older commit, built in DIR) on its own home and destination in the same
 * phases, so old and new are timed side by side next to the pipeline.
 *
 * Needs `npm run build` first (the CLI runs dist/). Sizes: BENCH_MB (default
 * 1024), BENCH_FILES (default 4000); BENCH_DIR is where images and vdevs go;
 * BENCH_ORDER=bare-first times the bare pipeline before syncsh in each phase
 * (whoever goes second writes into a pool still flushing the first copy).
 * BENCH_IN_PROCESS=1 runs syncsh's side the way `syncsh daemon` runs a
 * scheduled service: `services.autoSync.run` in this process, its services
 * made before the timing (no process start, no module loading).
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { BIN, changeFraction, generateTree, printTable, syncsh, timed } from './common.js';
import { withCleanup, type CleanupBag } from './system.js';
import { createServices } from '../src/services/index.js';

export const MiB = 1 << 20;
export const megabytes = Number(process.env.BENCH_MB) || 1024;
export const files = Number(process.env.BENCH_FILES) || 4000;
export const workDir = process.env.BENCH_DIR || os.tmpdir();
/** another build's bin/syncsh.js to time beside this one (BENCH_BASELINE) */
export const baseline = process.env.BENCH_BASELINE;
/** how many copies the destination holds: syncsh's, the pipeline's, and the baseline's */
export const destinationCopies = baseline ? 3 : 2;

/** what one driver brings to the comparison */
export interface Contender {
  driver: 'zfs' | 'btrfs';
  /** the peer, as printed: `zfs send | zfs receive -F` */
  peer: string;
  /** driver-qualified source and syncsh destination, and the directories of source, syncsh copy and bare copy */
  source: string;
  destination: string;
  sourceDir: string;
  syncshDir(): Promise<string>;
  bareDir(): Promise<string>;
  /** the bare pipeline, snapshot included: full, then incremental from the previous one */
  bareFull(): Promise<void>;
  bareIncremental(): Promise<void>;
}

export function runComparison(title: string, setup: (bag: CleanupBag) => Promise<Contender>): Promise<void> {
  checkBuilt();
  return withCleanup(async (bag) => {
    const home = await mkdtemp(path.join(workDir, 'syncsh-bench-home-'));
    bag.add(() => rm(home, { recursive: true, force: true }));
    // every command the driver spawns, one JSON line each (src/services/storage/exec.ts)
    const commandLog = path.join(home, 'commands.log');
    const env = { ...process.env, SYNCSH_HOME: home, SYNCSH_APPLIANCE_ID: 'bench', SYNCSH_COMMAND_LOG: commandLog };
    const c = await setup(bag);

    console.log(`generating ${files} files, ${megabytes} MiB in ${c.sourceDir} …`);
    const paths = await generateTree(c.sourceDir, files, megabytes * MiB);
    const created = await syncsh(env, `create auto-sync --from-fs ${c.source} --to-fs ${c.destination} --keep-src 2 --keep-dst 2 --recursive no -y`);
    const name = created.stdout.match(/Created auto-sync:(\S+?):/)?.[1];
    if (!name) throw new Error(`no service name in: ${created.stdout}`);
    // the baseline build: its own home and destination, the same source
    let runBaseline: (() => Promise<unknown>) | null = null;
    if (baseline) {
      const oldHome = await mkdtemp(path.join(workDir, 'syncsh-bench-home-'));
      bag.add(() => rm(oldHome, { recursive: true, force: true }));
      const oldEnv = { ...process.env, SYNCSH_HOME: oldHome, SYNCSH_APPLIANCE_ID: 'bench' };
      const old = (command: string) => execa('node', [baseline, '-c', command], { env: oldEnv });
      const made = await old(`create auto-sync --from-fs ${c.source} --to-fs ${c.destination}-base --keep-src 2 --keep-dst 2 --recursive no -y`);
      const oldName = made.stdout.match(/Created auto-sync:(\S+?):/)?.[1];
      if (!oldName) throw new Error(`no service name in: ${made.stdout}`);
      runBaseline = () => old(`run auto-sync :${oldName}`);
    }
    const spawned: string[][][] = [];
    /** each command's time, as it ended */
    const took: { ended: string[]; ms: number; at: number }[][] = [];
    // as the daemon: one set of services made ahead, each run a call (its commands logged by this process)
    const daemon = process.env.BENCH_IN_PROCESS === '1' ? createServices(env) : null;
    if (daemon) process.env.SYNCSH_COMMAND_LOG = commandLog;
    const runOnce = async (): Promise<{ stdout: string }> => {
      if (!daemon) return syncsh(env, `run auto-sync :${name}`);
      const r = await daemon.autoSync.run(name);
      return { stdout: `in process: ${r.full ? 'full' : 'incremental'} run, ${r.bytes} bytes, ${r.durationMs} ms (${r.marker})` };
    };
    const run = async () => {
      await writeFile(commandLog, '');
      const r = await runOnce();
      const lines = (await readFile(commandLog, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as string[] | { ended: string[]; ms: number; at: number });
      spawned.push(lines.filter((l): l is string[] => Array.isArray(l)));
      took.push(lines.filter((l): l is { ended: string[]; ms: number; at: number } => !Array.isArray(l)));
      return r;
    };

    // whoever goes second receives into a pool still busy with the first copy: BENCH_ORDER=bare-first swaps them
    const bareFirst = process.env.BENCH_ORDER === 'bare-first';
    const both = async (theirs: () => Promise<void>) => {
      await settle();
      const before = bareFirst ? await timed(theirs) : null;
      if (bareFirst) await settle();
      const ours = await timed(run);
      await settle();
      const old = runBaseline ? (await timed(runBaseline)).seconds : null;
      if (runBaseline) await settle();
      return { ours, theirs: before ?? (await timed(theirs)), old };
    };
    const full = await both(() => c.bareFull());
    const changed = await changeFraction(paths, 0.05);
    const inc = await both(() => c.bareIncremental());
    const [fullOurs, fullTheirs, incOurs, incTheirs] = [full.ours, full.theirs, inc.ours, inc.theirs];

    console.log(fullOurs.value.stdout);
    console.log(incOurs.value.stdout);
    if (process.env.BENCH_VERIFY !== '0') {
      const want = await digest(c.sourceDir);
      for (const [who, dir] of [
        ['syncsh', await c.syncshDir()],
        [c.peer, await c.bareDir()],
      ] as const) {
        const got = await digest(dir);
        if (got.files !== want.files || got.hash !== want.hash) {
          throw new Error(`${who}'s copy differs from the source: ${got.files} files vs ${want.files}`);
        }
      }
      console.log(`both copies match the source: ${want.files} files, ${(want.bytes / MiB).toFixed(0)} MiB`);
    }
    for (const [phase, commands] of [
      ['full', spawned[0]],
      ['incremental', spawned[1]],
    ] as const) {
      const times = took[phase === 'full' ? 0 : 1];
      console.log(`commands a ${phase} run spawned: ${commands.length} (their times added up: ${times.reduce((a, c) => a + c.ms, 0)} ms)`);
      if (process.env.BENCH_COMMANDS === '1') for (const c of times.sort((x, y) => x.at - y.at)) console.log(`  at ${String(c.at).padStart(6)} ms, ${String(c.ms).padStart(6)} ms  ${c.ended.join(' ')}`);
    }
    if (runBaseline) {
      console.log(`\nbaseline (${baseline}) in the same phases:`);
      for (const [phase, r] of [
        ['full', full],
        ['incremental', inc],
      ] as const)
        console.log(`  ${phase.padEnd(12)} baseline ${r.old!.toFixed(2)} s (${(r.old! / r.theirs.seconds).toFixed(2)}x the pipeline), this build ${r.ours.seconds.toFixed(2)} s (${(r.ours.seconds / r.theirs.seconds).toFixed(2)}x)`);
    }
    printTable(`${title}: ${files} files, ${megabytes} MiB; then ${changed} files (5%) rewritten; ${bareFirst ? 'bare pipeline' : 'syncsh'} first${daemon ? '; syncsh in process, as its daemon runs a service' : ''}`, c.peer, [
      { phase: 'full', ours: fullOurs.seconds, theirs: fullTheirs.seconds },
      { phase: 'incremental (5% of files)', ours: incOurs.seconds, theirs: incTheirs.seconds },
    ]);
  });
}

function checkBuilt(): void {
  const dist = path.join(path.dirname(BIN), '..', 'dist', 'bundle', 'bin.js');
  if (!existsSync(dist)) throw new Error(`${dist} is missing: run 'npm run build' first.`);
  const age = (Date.now() - statSync(dist).mtimeMs) / 60_000;
  if (age > 60) console.warn(`note: dist/ was built ${age.toFixed(0)} minutes ago; run 'npm run build' if src/ changed since.`);
}

/** flush what the generation or the previous phase left dirty, so it is not counted in the next one */
async function settle(): Promise<void> {
  await execa('sync');
}

/** a digest of a tree: every file's relative path and content, in order */
async function digest(root: string): Promise<{ files: number; bytes: number; hash: string }> {
  const all = (await readdir(root, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
  const total = createHash('sha256');
  let bytes = 0;
  const buf = Buffer.allocUnsafe(4 * MiB);
  for (const rel of all) {
    const hash = createHash('sha256');
    const fh = await open(path.join(root, rel), 'r');
    try {
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (!bytesRead) break;
        hash.update(buf.subarray(0, bytesRead));
        bytes += bytesRead;
      }
    } finally {
      await fh.close();
    }
    total.update(`${rel}\0${hash.digest('hex')}\n`);
  }
  return { files: all.length, bytes, hash: total.digest('hex') };
}

/** `cmd` with its arguments, failing with its stderr */
export async function sh(file: string, ...args: string[]): Promise<string> {
  return (await execa(file, args)).stdout;
}

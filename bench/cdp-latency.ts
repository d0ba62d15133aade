/**
 * auto-cdp through the NBD export, side by side in one run (issue 12's goals):
 *   - 4 KiB random writes at queue depth 1 (fio --ioengine=nbd): latency p50 / p99
 *   - sequential 1 MiB writes at queue depth 4: throughput
 * on an unmirrored zvol and, in turn with it, a zvol mirrored async, then sync,
 * to a second appliance on this machine (local-bind, both daemons, loopback).
 * Goals: async p50 within 10% of unmirrored; sync throughput >= 0.5 of unmirrored.
 *
 *   npm run bench:cdp            (BENCH_FIO_S=seconds per fio run, default 8; BENCH_ROUNDS, default 3)
 *   BENCH_CDP_PROF=dir           the daemons write CPU profiles there (node --cpu-prof)
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { BIN, syncsh } from './common.js';
import { daemonLines } from '../test/helpers/daemon.js';

const seconds = Number(process.env.BENCH_FIO_S) || 8;
const rounds = Number(process.env.BENCH_ROUNDS) || 3;
const SIZE_MIB = 512;

const work = await mkdtemp(path.join(os.tmpdir(), 'syncsh-bench-cdp-'));
const env = (id: string) => ({ ...process.env, SYNCSH_HOME: path.join(work, id), SYNCSH_APPLIANCE_ID: id, SYNCSH_DRIVERS: 'fs' });
const alpha = env('alpha');
const beta = env('beta');
const daemons: ResultPromise[] = [];

const prof = process.env.BENCH_CDP_PROF;

function start(e: NodeJS.ProcessEnv) {
  const child = execa('node', [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(prof)}`] : []), BIN, 'daemon'], { env: e, reject: false });
  daemons.push(child);
  return Object.assign(daemonLines(child), { child });
}

/**
 * the daemon's figures say the target is level with a clean map (what the async run started
 * from); a target already level logs no new "is level" line
 */
async function levelAndClean(home: string): Promise<void> {
  const deadline = Date.now() + 600_000;
  for (;;) {
    const s = JSON.parse(await readFile(path.join(home, 'run', 'cdp-status.json'), 'utf8').catch(() => '{}')) as { mirrors?: Record<string, { targets: { state: string; lagBytes: number; dirtyChunks: number }[] }> };
    const t = s.mirrors?.['tank-vm1-000']?.targets[0];
    if (t && t.state === 'mirroring' && t.lagBytes === 0 && t.dirtyChunks === 0) return;
    if (Date.now() > deadline) throw new Error(`the target did not become level: ${JSON.stringify(t)}`);
    await delay(250); // the status file is rewritten every second: polling it is the signal
  }
}

interface Figures {
  p50: number;
  p99: number;
  mibs: number;
}

async function fio(uri: string): Promise<Figures> {
  const run = async (args: string[]) => {
    const r = await execa('fio', ['--name=cdp', '--ioengine=nbd', `--uri=${uri}`, `--size=${SIZE_MIB}M`, '--time_based', `--runtime=${seconds}`, '--output-format=json', ...args], { cwd: work });
    return JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0].write;
  };
  const rand = await run(['--rw=randwrite', '--bs=4k', '--iodepth=1']);
  const seq = await run(['--rw=write', '--bs=1M', '--iodepth=4']);
  const pct = rand.clat_ns.percentile as Record<string, number>;
  return { p50: pct['50.000000'] / 1000, p99: pct['99.000000'] / 1000, mibs: seq.bw / 1024 };
}

/** the median of each figure over rounds */
function median(list: Figures[]): Figures {
  const mid = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  return { p50: mid(list.map((f) => f.p50)), p99: mid(list.map((f) => f.p99)), mibs: mid(list.map((f) => f.mibs)) };
}

try {
  for (const e of [alpha, beta]) await syncsh(e, 'create folder fs:tank');
  await syncsh(alpha, `setup network local-bind ${beta.SYNCSH_HOME}`);
  // the unmirrored peer is a zvol of the same size on the same daemon, measured in turn with the mirrored one
  // (this machine's load swings by 10× within a minute: only figures taken side by side compare)
  await syncsh(alpha, `create zvol fs:tank/vm1 --size ${SIZE_MIB}M`);
  await syncsh(alpha, `create zvol fs:tank/plain --size ${SIZE_MIB}M`);
  const uri = (zvol: string) => `nbd+unix:///fs:tank/${zvol}?socket=${alpha.SYNCSH_HOME}/run/nbd.sock`;
  await syncsh(alpha, 'create auto-cdp --zvol fs:tank/vm1 --to-host beta --mode async -y');
  const lb = start(beta);
  await lb.wait(/NBD/);
  const la = start(alpha);
  await la.wait(/beta is level/, 0, 600_000);
  const plain: Figures[] = [];
  const measured = { async: [] as Figures[], sync: [] as Figures[] };
  for (const mode of ['async', 'sync'] as const) {
    if (mode === 'sync') {
      const from = la.lines.length;
      await syncsh(alpha, 'setup auto-cdp :tank-vm1-000 mode sync');
      await la.wait(/mode is now sync/, from);
    }
    for (let round = 1; round <= rounds; round++) {
      const u = await fio(uri('plain'));
      await levelAndClean(alpha.SYNCSH_HOME);
      const m = await fio(uri('vm1'));
      plain.push(u);
      measured[mode].push(m);
      console.log(`${mode} round ${round}: unmirrored p50 ${u.p50.toFixed(0)} µs, ${u.mibs.toFixed(0)} MiB/s; ${mode} p50 ${m.p50.toFixed(0)} µs, ${m.mibs.toFixed(0)} MiB/s`);
    }
  }
  const un = median(plain);
  const asyncF = median(measured.async);
  const syncF = median(measured.sync);
  const rows: [string, (f: Figures) => number][] = [
    ['4K randwrite qd1 p50 (µs)', (f) => f.p50],
    ['4K randwrite qd1 p99 (µs)', (f) => f.p99],
    ['seq write 1M qd4 (MiB/s)', (f) => f.mibs],
  ];
  console.log(`\nauto-cdp over loopback (local-bind), ${SIZE_MIB} MiB fs zvols, fio ${seconds} s per figure, medians of ${rounds} rounds (unmirrored: of ${2 * rounds})`);
  console.log(`${'measure'.padEnd(28)}${'unmirrored'.padStart(12)}${'async'.padStart(10)}${'sync'.padStart(10)}${'async/un'.padStart(10)}${'sync/un'.padStart(10)}`);
  for (const [name, get] of rows) {
    const u = get(un);
    console.log(`${name.padEnd(28)}${u.toFixed(0).padStart(12)}${get(asyncF).toFixed(0).padStart(10)}${get(syncF).toFixed(0).padStart(10)}${(get(asyncF) / u).toFixed(2).padStart(10)}${(get(syncF) / u).toFixed(2).padStart(10)}`);
  }
  console.log('goals: async p50 within 10% of unmirrored (async/un <= 1.10); sync throughput >= 0.5 of unmirrored');
} finally {
  for (const d of daemons) d.kill('SIGTERM');
  await Promise.allSettled(daemons);
  await rm(work, { recursive: true, force: true });
}

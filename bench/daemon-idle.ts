/**
 * The daemon with 1,000 services configured and none due, idle for 60 s:
 * CPU seconds and RSS, next to an idle Node process (the floor any Node
 * daemon pays); and `syncsh -c "show auto-sync"` latency with 1,000
 * services, next to `node -e ''` (process start alone).
 *   npm run bench:daemon            (BENCH_SERVICES, BENCH_IDLE_S to resize)
 */
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { createServices } from '../src/services/index.js';
import { BIN, timed } from './common.js';

const count = Number(process.env.BENCH_SERVICES) || 1000;
const idleSeconds = Number(process.env.BENCH_IDLE_S) || 60;
const ticks = 100; // USER_HZ on Linux

async function cpuAndRss(pid: number): Promise<{ cpu: number; rssMiB: number }> {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
  return { cpu: (Number(stat[11]) + Number(stat[12])) / ticks, rssMiB: rss / 1024 };
}

async function idle(child: ResultPromise, settleMs: number): Promise<{ cpu: number; rssMiB: number }> {
  await new Promise((r) => setTimeout(r, settleMs));
  const before = await cpuAndRss(child.pid!);
  await new Promise((r) => setTimeout(r, idleSeconds * 1000));
  const after = await cpuAndRss(child.pid!);
  child.kill('SIGTERM');
  await child.catch(() => undefined);
  return { cpu: after.cpu - before.cpu, rssMiB: after.rssMiB };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const home = await mkdtemp(path.join(os.tmpdir(), 'syncsh-bench-daemon-'));
try {
  const env = { ...process.env, SYNCSH_HOME: home, SYNCSH_APPLIANCE_ID: 'bench' };
  const services = createServices(env);
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/data');
  const base = await services.autoSync.plan({ fromFs: 'fs:tank/data', toFs: 'fs:tank/c0', cron: '0 0 1 1 *' });
  await services.autoSync.store.addMany(Array.from({ length: count }, (_, i) => ({ ...base, name: `tank-data-${String(i).padStart(4, '0')}`, destination: { host: 'localhost', dataset: `fs:tank/c${i}` } })));

  const showTimes: number[] = [];
  const nodeTimes: number[] = [];
  for (let i = 0; i < 7; i++) {
    showTimes.push((await timed(() => execa('node', [BIN, '-c', 'show auto-sync'], { env }))).seconds);
    nodeTimes.push((await timed(() => execa('node', ['-e', '']))).seconds);
  }

  console.log(`idling ${idleSeconds} s: the daemon with ${count} services, then a bare idle node process …`);
  const daemon = await idle(execa('node', [BIN, 'daemon'], { env }), 3000);
  const floor = await idle(execa('node', ['-e', 'setInterval(() => {}, 60_000)']), 500);

  console.log(`\nsyncsh daemon, ${count} services, none due, ${idleSeconds} s idle`);
  console.log(`${''.padEnd(34)}${'syncsh daemon'.padStart(16)}${'idle node'.padStart(14)}`);
  console.log(`${'CPU seconds used'.padEnd(34)}${daemon.cpu.toFixed(2).padStart(16)}${floor.cpu.toFixed(2).padStart(14)}`);
  console.log(`${'RSS (MiB)'.padEnd(34)}${daemon.rssMiB.toFixed(0).padStart(16)}${floor.rssMiB.toFixed(0).padStart(14)}`);
  console.log(`\nlatency, median of 7, ${count} services`);
  console.log(`${''.padEnd(34)}${'show auto-sync'.padStart(16)}${"node -e ''".padStart(14)}${'ratio'.padStart(8)}`);
  console.log(`${'seconds'.padEnd(34)}${median(showTimes).toFixed(3).padStart(16)}${median(nodeTimes).toFixed(3).padStart(14)}${(median(showTimes) / median(nodeTimes)).toFixed(1).padStart(8)}`);
} finally {
  await rm(home, { recursive: true, force: true });
}

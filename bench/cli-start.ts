/**
 * How long syncsh takes to start, next to a bare `node -e ''` in the same
 * run (issue 13: `syncsh -c "show auto-sync"` ≤ 0.25 s with 1,000 services;
 * the interactive shell's prompt ≤ 0.25 s after start).
 *
 * Each figure is the median of BENCH_RUNS (default 9) starts, the syncsh and
 * node ones interleaved so that the machine's load falls on both alike. The
 * prompt is timed on a real terminal (script(1) gives the shell a pty) until
 * the prompt line is on it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { BIN, timed } from './common.js';
import { createServices } from '../src/services/index.js';

const runs = Number(process.env.BENCH_RUNS) || 9;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * seconds from spawning the interactive shell on a pty to its prompt on the
 * screen, or (`editor`) to its line editor taking keys: the shell clears the
 * prompt it printed (\r ESC[2K, shell/repl.ts) once the editor is loaded
 */
async function promptSeconds(env: NodeJS.ProcessEnv, until: 'prompt' | 'editor' = 'prompt'): Promise<number> {
  const start = process.hrtime.bigint();
  const child = execa('script', ['-qfec', `stty cols 120 rows 40; exec node ${BIN}`, '/dev/null'], { env, stdin: 'pipe', buffer: false, reject: false });
  let seen = '';
  const at = await new Promise<bigint>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      seen += d.toString();
      // the prompt, after the banner: `syncsh@bench:/$ `
      const prompt = /syncsh@bench[^\n]*\$/.test(seen.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''));
      if (prompt && (until === 'prompt' || seen.includes('\r\x1b[2K'))) resolve(process.hrtime.bigint());
    });
    child.once('exit', () => reject(new Error(`the shell ended before its prompt; it wrote: ${seen}`)));
  });
  child.stdin!.write('exit\r');
  await child;
  return Number(at - start) / 1e9;
}

async function startSeconds(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return (await timed(() => execa('node', argv, { env }))).seconds;
}

const work = await mkdtemp(path.join(os.tmpdir(), 'syncsh-bench-cli-'));
try {
  const empty = { ...process.env, SYNCSH_HOME: path.join(work, 'empty'), SYNCSH_APPLIANCE_ID: 'bench' };
  const full = { ...process.env, SYNCSH_HOME: path.join(work, 'full'), SYNCSH_APPLIANCE_ID: 'bench' };
  await execa('node', [BIN, '-c', 'show auto-sync'], { env: empty });
  const services = createServices(full);
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/data');
  const base = await services.autoSync.plan({ fromFs: 'fs:tank/data', toFs: 'fs:tank/c0' });
  await services.autoSync.store.addMany(Array.from({ length: 1000 }, (_, i) => ({ ...base, name: `tank-data-${String(i).padStart(3, '0')}`, destination: { host: 'localhost', dataset: `fs:tank/c${i}` } })));

  const cases: { measure: string; run: () => Promise<number>; goal?: string }[] = [
    { measure: '-c "show auto-sync", empty home', run: () => startSeconds([BIN, '-c', 'show auto-sync'], empty) },
    { measure: '-c "show auto-sync", 1,000 svc', run: () => startSeconds([BIN, '-c', 'show auto-sync'], full) },
    { measure: 'shell prompt, 1,000 svc', run: () => promptSeconds(full) },
    { measure: 'shell editor takes keys, 1,000 svc', run: () => promptSeconds(full, 'editor'), goal: '-' },
  ];
  const times = new Map(cases.map((c) => [c.measure, [] as number[]]));
  const bare: number[] = [];
  for (let i = 0; i < runs; i++) {
    for (const c of cases) times.get(c.measure)!.push(await c.run());
    bare.push(await startSeconds(['-e', ''], empty));
  }
  const floor = median(bare);
  console.log(
    `\nsyncsh start-up, median of ${runs} (load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')})`,
  );
  console.log(`${'measure'.padEnd(36)}${'syncsh (s)'.padStart(12)}${"node -e '' (s)".padStart(16)}${'ratio'.padStart(8)}${'goal (s)'.padStart(10)}`);
  for (const c of cases) {
    const ours = median(times.get(c.measure)!);
    console.log(`${c.measure.padEnd(36)}${ours.toFixed(3).padStart(12)}${floor.toFixed(3).padStart(16)}${(ours / floor).toFixed(2).padStart(8)}${(c.goal ?? '0.25').padStart(10)}`);
  }
} finally {
  await rm(work, { recursive: true, force: true });
}

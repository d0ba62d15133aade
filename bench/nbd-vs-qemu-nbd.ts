/**
 * NBD throughput: syncsh's NbdServer serving a raw file (FileVolume) next
 * to qemu-nbd serving a raw file on the same disk, in the same run:
 *   - sequential 1 GiB write (nbdcopy from a page-cached random file) and
 *     read (nbdcopy to null:), in MiB/s;
 *   - 4 KiB random writes, fio's nbd engine, iodepth 16, in IOPS.
 * Each measure runs BENCH_ROUNDS times per server, alternating, median kept.
 *   npm run bench:nbd         (BENCH_NBD_MIB, BENCH_ROUNDS, BENCH_FIO_S to resize)
 * Goals (issue 11): sequential >= 0.7 of qemu-nbd, random-write IOPS >= 0.5.
 */
import { mkdtemp, rm, open, truncate, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { fileURLToPath } from 'node:url';
import { timed } from './common.js';

const mib = Number(process.env.BENCH_NBD_MIB) || 1024;
const rounds = Number(process.env.BENCH_ROUNDS) || 3;
const fioSeconds = Number(process.env.BENCH_FIO_S) || 10;
const SERVE = fileURLToPath(new URL('../test/fixtures/nbd-serve-file.ts', import.meta.url));

interface Served {
  uri: string;
  pid: number;
  stop(): Promise<void>;
}

/** CPU seconds the server process used so far (all its threads) */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  return (Number(stat[11]) + Number(stat[12])) / 100; // USER_HZ
}

/** the measure's figure and the server's CPU seconds while it ran */
async function withCpu(s: Served, fn: () => Promise<number>): Promise<[number, number]> {
  const before = await cpuSeconds(s.pid);
  const value = await fn();
  return [value, (await cpuSeconds(s.pid)) - before];
}

async function untilLine(child: ResultPromise, line: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    child.stdout!.on('data', (d: Buffer) => {
      seen += d.toString();
      if (seen.includes(line)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the server exited (${code}) before "${line}"`)));
  });
}

async function syncshServer(work: string, image: string): Promise<Served> {
  const sock = path.join(work, 'syncsh', 'nbd.sock');
  const child = execa('node', ['--import', 'tsx', SERVE, sock, `vol=${image}`], { stderr: 'inherit' });
  await untilLine(child, 'listening');
  return { uri: `nbd+unix:///vol?socket=${sock}`, pid: child.pid!, stop: async () => void (child.kill('SIGTERM'), await child.catch(() => undefined)) };
}

async function qemuServer(work: string, image: string): Promise<Served> {
  const sock = path.join(work, 'qemu.sock');
  const child = execa('qemu-nbd', ['-f', 'raw', '-k', sock, '-x', 'vol', '-t', '-e', '16', '--cache=writeback', '--aio=threads', image], { stdio: 'inherit' });
  // qemu-nbd has no ready line: the socket answering is the signal
  for (let i = 0; ; i++) {
    const probe = await execa('nbdinfo', ['--size', `nbd+unix:///vol?socket=${sock}`], { reject: false });
    if (probe.exitCode === 0) break;
    if (i > 200 || child.exitCode !== null) throw new Error(`qemu-nbd did not start: ${probe.stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { uri: `nbd+unix:///vol?socket=${sock}`, pid: child.pid!, stop: async () => void (child.kill('SIGTERM'), await child.catch(() => undefined)) };
}

async function freshImage(file: string): Promise<void> {
  await (await open(file, 'w')).close();
  await truncate(file, mib << 20);
}

async function seqWrite(src: string, s: Served): Promise<number> {
  const { seconds } = await timed(() => execa('nbdcopy', ['--flush', src, s.uri]));
  return mib / seconds;
}

async function seqRead(s: Served): Promise<number> {
  const { seconds } = await timed(() => execa('nbdcopy', [s.uri, 'null:']));
  return mib / seconds;
}

async function randWrite(s: Served): Promise<number> {
  const r = await execa('fio', ['--name=randwrite', '--ioengine=nbd', `--uri=${s.uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', `--size=${mib}M`, '--time_based', `--runtime=${fioSeconds}`, '--output-format=json'], {
    cwd: path.dirname(s.uri.split('socket=')[1]),
  }); // any state file fio leaves stays in the work dir
  return JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0].write.iops as number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const work = await mkdtemp(path.join(os.tmpdir(), 'syncsh-bench-nbd-'));
try {
  const src = path.join(work, 'random.src');
  console.log(`writing a ${mib} MiB random source file in ${work} …`);
  await execa('dd', ['if=/dev/urandom', `of=${src}`, 'bs=1M', `count=${mib}`, 'status=none']);
  const empty = () => ({ w: [] as number[], r: [] as number[], iops: [] as number[], wCpu: [] as number[], rCpu: [] as number[] });
  const results = { syncsh: empty(), qemu: empty() };
  for (let round = 0; round < rounds; round++) {
    for (const who of ['syncsh', 'qemu'] as const) {
      const image = path.join(work, `${who}.img`);
      await freshImage(image);
      const s = who === 'syncsh' ? await syncshServer(work, image) : await qemuServer(work, image);
      try {
        const [w, wCpu] = await withCpu(s, () => seqWrite(src, s));
        const [r, rCpu] = await withCpu(s, () => seqRead(s));
        results[who].w.push(w);
        results[who].r.push(r);
        results[who].wCpu.push((wCpu * 1024) / mib);
        results[who].rCpu.push((rCpu * 1024) / mib);
        results[who].iops.push(await randWrite(s));
      } finally {
        await s.stop();
      }
      const last = results[who];
      console.log(`round ${round + 1} ${who.padEnd(6)}: write ${last.w.at(-1)!.toFixed(0)} MiB/s, read ${last.r.at(-1)!.toFixed(0)} MiB/s, 4K randwrite ${last.iops.at(-1)!.toFixed(0)} IOPS`);
    }
  }
  const rows = [
    { phase: `sequential write ${mib} MiB (MiB/s)`, ours: median(results.syncsh.w), theirs: median(results.qemu.w), goal: 0.7 },
    { phase: `sequential read ${mib} MiB (MiB/s)`, ours: median(results.syncsh.r), theirs: median(results.qemu.r), goal: 0.7 },
    { phase: '4K random write qd16 (IOPS)', ours: median(results.syncsh.iops), theirs: median(results.qemu.iops), goal: 0.5 },
  ];
  const cpuRows = [
    { phase: 'server CPU s per GiB written', ours: median(results.syncsh.wCpu), theirs: median(results.qemu.wCpu) },
    { phase: 'server CPU s per GiB read', ours: median(results.syncsh.rCpu), theirs: median(results.qemu.rCpu) },
  ];
  console.log(`\nNBD over a unix socket, raw file on ${work}, median of ${rounds}`);
  console.log(`${'measure'.padEnd(36)}${'syncsh'.padStart(10)}${'qemu-nbd'.padStart(10)}${'ratio'.padStart(8)}${'goal'.padStart(8)}`);
  for (const r of rows) {
    const ratio = r.ours / r.theirs;
    console.log(`${r.phase.padEnd(36)}${r.ours.toFixed(0).padStart(10)}${r.theirs.toFixed(0).padStart(10)}${ratio.toFixed(2).padStart(8)}${`>=${r.goal}`.padStart(8)}${ratio >= r.goal ? '' : '  MISSED'}`);
  }
  console.log('(ratio = syncsh / qemu-nbd; above 1 means syncsh was faster)');
  for (const r of cpuRows) console.log(`${r.phase.padEnd(36)}${r.ours.toFixed(2).padStart(10)}${r.theirs.toFixed(2).padStart(10)}${(r.ours / r.theirs).toFixed(2).padStart(8)}`);
  console.log('(CPU: lower is better; what the figures above cost on a busy machine)');
} finally {
  await rm(work, { recursive: true, force: true });
}

/**
 * The first auto-sync to a seeded copy next to an unseeded full sync of the
 * same zvol, in the same run, through the CLI (local-to-local, a fresh
 * SYNCSH_HOME): bytes and time. Goal (issue 11): the seeded first sync
 * sends at most 0.05 of the bytes.
 *
 * A zvol of BENCH_ZVOL_MB (default 1024) random MiB is exported as an
 * image (`setup zvol … export-image`), a copy is created from it
 * (`create zvol … --from-image … --sha256`), then 1% of the chunks get a
 * 4 KiB write; one service syncs to the seeded copy, one to a copy made
 * from the same image without its seed file (a `dd` image: the first sync
 * compares chunk hashes, issue 11's partial resync), another to a new
 * dataset. The copies are checked against the source (BENCH_VERIFY=0 skips).
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { syncsh, timed } from './common.js';
import { withCleanup } from './system.js';
import { createServices } from '../src/services/index.js';

const MiB = 1 << 20;
const CHUNK = 64 << 10;
const megabytes = Number(process.env.BENCH_ZVOL_MB) || 1024;

async function sha(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

await withCleanup(async (bag) => {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR || os.tmpdir(), 'syncsh-bench-seed-'));
  bag.add(() => rm(work, { recursive: true, force: true }));
  const env = { ...process.env, SYNCSH_HOME: path.join(work, 'home'), SYNCSH_APPLIANCE_ID: 'bench', SYNCSH_DRIVERS: 'fs' };
  const cli = async (line: string) => {
    const r = await syncsh(env, line);
    return String(r.stdout);
  };
  await cli('create folder fs:bench');
  await cli(`create zvol fs:bench/vm --size ${megabytes}M`);
  const services = createServices(env);
  const fs = await services.storage.usable('fs');
  console.log(`filling a ${megabytes} MiB zvol with random data …`);
  let vol = await fs.openVolume!('bench/vm');
  for (let at = 0; at < megabytes * MiB; at += 8 * MiB) await vol.write(at, randomBytes(8 * MiB), { fua: false });
  await vol.close();

  const exported = await cli('setup zvol fs:bench/vm export-image vm.img');
  const hex = /sha256 ([0-9a-f]{64})/.exec(exported)?.[1];
  if (!hex) throw new Error(`export-image printed no sha256: ${exported}`);
  await cli(`create zvol fs:bench/seed --from-image vm.img --sha256 ${hex}`);
  // the same bytes without the seed file beside them: what `dd` of the disk would give
  copyFileSync(path.join(env.SYNCSH_HOME, 'images', 'vm.img'), path.join(env.SYNCSH_HOME, 'images', 'dd.img'));
  await cli(`create zvol fs:bench/raw --from-image dd.img --sha256 ${hex}`);

  const chunks = (megabytes * MiB) / CHUNK;
  const changed = Math.round(chunks / 100);
  vol = await fs.openVolume!('bench/vm');
  for (let i = 0; i < changed; i++) await vol.write(Math.floor((i * chunks) / changed) * CHUNK, randomBytes(4096), { fua: false });
  await vol.close();

  const lastBytes = async (service: string) => Number(/"lastBytes":(\d+)/.exec(JSON.stringify(JSON.parse(await cli(`show auto-sync :${service} --json`))))?.[1]);
  const created = async (line: string) => /Created auto-sync:([A-Za-z0-9_-]+)/.exec(await cli(line))?.[1] ?? '?';
  const seeded = await created('create auto-sync --from-fs fs:bench/vm --to-fs fs:bench/seed -y');
  const raw = await created('create auto-sync --from-fs fs:bench/vm --to-fs fs:bench/raw -y');
  const full = await created('create auto-sync --from-fs fs:bench/vm --to-fs fs:bench/copy -y');
  const s = await timed(() => cli(`run auto-sync :${seeded}`));
  const sBytes = await lastBytes(seeded);
  const r = await timed(() => cli(`run auto-sync :${raw}`));
  const rBytes = await lastBytes(raw);
  const f = await timed(() => cli(`run auto-sync :${full}`));
  const fBytes = await lastBytes(full);

  if (process.env.BENCH_VERIFY !== '0') {
    const live = (name: string) => path.join(env.SYNCSH_HOME, 'fs', 'bench', name, 'volume.img');
    const src = await sha(live('vm'));
    const ok = (await sha(live('seed'))) === src && (await sha(live('raw'))) === src && (await sha(live('copy'))) === src;
    console.log(ok ? 'verified: the three copies are the source, byte for byte' : 'MISMATCH: a copy differs from the source');
    if (!ok) process.exitCode = 1;
  }
  console.log(`\nzvol ${megabytes} MiB, seeded from its exported image, then ${changed} of ${chunks} chunks (1%) changed`);
  console.log(`${'phase'.padEnd(30)}${'time (s)'.padStart(12)}${'bytes sent'.padStart(16)}`);
  console.log(`${'first sync, unseeded (full)'.padEnd(30)}${f.seconds.toFixed(2).padStart(12)}${String(fBytes).padStart(16)}`);
  console.log(`${'first sync to the seeded copy'.padEnd(30)}${s.seconds.toFixed(2).padStart(12)}${String(sBytes).padStart(16)}`);
  console.log(`${'first sync to a dd image copy'.padEnd(30)}${r.seconds.toFixed(2).padStart(12)}${String(rBytes).padStart(16)}`);
  console.log(`${'ratio seeded / unseeded'.padEnd(30)}${(s.seconds / f.seconds).toFixed(4).padStart(12)}${(sBytes / fBytes).toFixed(4).padStart(16)}`);
  console.log(`${'ratio dd image / unseeded'.padEnd(30)}${(r.seconds / f.seconds).toFixed(4).padStart(12)}${(rBytes / fBytes).toFixed(4).padStart(16)}`);
  console.log('(goal: at most 0.05 of the bytes)');
});

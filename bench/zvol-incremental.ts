/**
 * A zvol's incremental sync after 1% of its chunks changed, next to the
 * full sync of the same zvol, in the same run, through the CLI
 * (`run auto-sync`, local-to-local, a fresh SYNCSH_HOME): time and bytes.
 * Goal (issue 11): the incremental costs at most 0.02 of the full sync.
 *
 * The zvol (BENCH_ZVOL_MB, default 4096) is filled with random data through
 * its BlockVolume (what the NBD server writes through), fully synced, then
 * one 4 KiB write lands in 1% of its 64 KiB chunks, spread over the volume,
 * and it is synced again. Both copies are checked against the source
 * (BENCH_VERIFY=0 skips that). BENCH_DIR is where the home goes.
 */
import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { syncsh, timed } from './common.js';
import { withCleanup } from './system.js';
import { createServices } from '../src/services/index.js';

const MiB = 1 << 20;
const CHUNK = 64 << 10;
const megabytes = Number(process.env.BENCH_ZVOL_MB) || 4096;

async function sha(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

await withCleanup(async (bag) => {
  const work = await mkdtemp(path.join(process.env.BENCH_DIR || os.tmpdir(), 'syncsh-bench-zvol-'));
  bag.add(() => rm(work, { recursive: true, force: true }));
  const env = { ...process.env, SYNCSH_HOME: path.join(work, 'home'), SYNCSH_APPLIANCE_ID: 'bench', SYNCSH_DRIVERS: 'fs' };
  await syncsh(env, 'create folder fs:bench');
  await syncsh(env, `create zvol fs:bench/vm --size ${megabytes}M`);
  const services = createServices(env);
  const fs = await services.storage.usable('fs');

  console.log(`filling a ${megabytes} MiB zvol with random data …`);
  const vol = await fs.openVolume!('bench/vm');
  for (let at = 0; at < megabytes * MiB; at += 8 * MiB) await vol.write(at, randomBytes(8 * MiB), { fua: false }); // fresh data: no dedupe flatters the full sync
  await vol.flush();
  await vol.close();

  await syncsh(env, 'create auto-sync --from-fs fs:bench/vm --to-fs fs:bench/copy -y');
  const state = async () => JSON.parse(String((await syncsh(env, 'show auto-sync :bench-vm-000 --json')).stdout)) as { run?: { lastBytes: number }; lastBytes?: number };
  const lastBytes = (s: Awaited<ReturnType<typeof state>>) => s.run?.lastBytes ?? s.lastBytes ?? NaN;

  const full = await timed(() => syncsh(env, 'run auto-sync :bench-vm-000'));
  const fullBytes = lastBytes(await state());

  const chunks = (megabytes * MiB) / CHUNK;
  const changed = Math.round(chunks / 100);
  const vol2 = await fs.openVolume!('bench/vm');
  for (let i = 0; i < changed; i++) {
    const c = Math.floor((i * chunks) / changed);
    await vol2.write(c * CHUNK + (i % 16) * 4096, randomBytes(4096), { fua: false });
  }
  await vol2.flush();
  await vol2.close();
  const inc = await timed(() => syncsh(env, 'run auto-sync :bench-vm-000'));
  const incBytes = lastBytes(await state());

  if (process.env.BENCH_VERIFY !== '0') {
    const live = (name: string) => path.join(env.SYNCSH_HOME, 'fs', 'bench', name, 'volume.img');
    const same = (await sha(live('vm'))) === (await sha(live('copy')));
    console.log(same ? 'verified: the copy is the source, byte for byte' : 'MISMATCH: the copy differs from the source');
    if (!same) process.exitCode = 1;
  }

  console.log(`\nzvol ${megabytes} MiB, ${changed} of ${chunks} chunks (1%) changed by a 4 KiB write each`);
  console.log(`${'phase'.padEnd(28)}${'time (s)'.padStart(12)}${'bytes sent'.padStart(16)}`);
  console.log(`${'full sync'.padEnd(28)}${full.seconds.toFixed(2).padStart(12)}${String(fullBytes).padStart(16)}`);
  console.log(`${'incremental (1% changed)'.padEnd(28)}${inc.seconds.toFixed(2).padStart(12)}${String(incBytes).padStart(16)}`);
  console.log(`${'ratio incremental / full'.padEnd(28)}${(inc.seconds / full.seconds).toFixed(4).padStart(12)}${(incBytes / fullBytes).toFixed(4).padStart(16)}`);
  console.log('(goal: at most 0.02 of the full sync in time and bytes)');
});

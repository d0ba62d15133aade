/**
 * kill -9 mid-resync (issue 12): the target's daemon is away while 256 MiB
 * of a 512 MiB mirrored zvol is rewritten (4096 dirty chunks); it comes
 * back, and in the middle of the resync the master's daemon (or the
 * target's) is killed with SIGKILL. Started again, the next resync is still
 * partial (at most the chunks that were dirty, never the whole zvol: the
 * maps survived; chunks acknowledged and not written for 5 s were cleared
 * already) and the two copies end byte for byte identical.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { gatedTest } from '../helpers/system.js';
import { nbdClientsMissing } from '../helpers/nbd.js';
import { ok, type Appliance } from '../peer/_fixture.js';
import type { MirrorStatus, TargetStatus } from '../../src/services/cdp/status.js';
import { compare, mirrored, qemuIo, startDaemon, uri } from './_mirror.js';

const test = await gatedTest(['qemu-utils'], nbdClientsMissing('qemu-io', 'qemu-img'));
const DIRTY = 4096;
/** chunks of the 512 MiB zvol: a full sync would send them all */
const ALL = 8192;

/** the master daemon's figures (its status file, read every 50 ms) once `ok` holds; fails after 3 minutes naming the last */
async function figuresUntil(a: Appliance, ok: (x: TargetStatus) => boolean): Promise<TargetStatus> {
  let last: TargetStatus | undefined;
  for (const start = Date.now(); Date.now() - start < 180_000; await new Promise((r) => setTimeout(r, 50))) {
    try {
      const f = JSON.parse(readFileSync(path.join(a.home, 'run', 'cdp-status.json'), 'utf8')) as { mirrors: Record<string, MirrorStatus> };
      last = f.mirrors['tank-vm1-000']?.targets[0];
      if (last && ok(last)) return last;
    } catch {
      // being replaced, or not written yet
    }
  }
  throw new Error(`the mirror's figures never got there; last: ${JSON.stringify(last)}`);
}

/** a level mirror whose target was away while DIRTY chunks changed, and is back and resyncing */
async function resyncing(t: Parameters<Parameters<typeof test.serial>[1]>[0]) {
  let { a, b, da, db } = await mirrored(t, { size: '512M', mode: 'async' });
  await ok(a, 'setup network fencing beta manual');
  await db.stop('SIGKILL');
  await da.lines.wait(/lost beta/);
  const file = path.join(a.home, 'random.bin');
  writeFileSync(file, randomBytes(DIRTY * 64 * 1024));
  await qemuIo(uri(a), `write -s ${file} 128M ${DIRTY * 64}k`);
  await figuresUntil(a, (x) => x.state === 'logging' && x.dirtyChunks === DIRTY);
  const from = da.lines.lines.length;
  db = startDaemon(t, b);
  t.regex(await da.lines.wait(/connected to beta/, from, 60_000), new RegExp(`; ${DIRTY} dirty chunk\\(s\\) to send`));
  // in the middle: some chunks acknowledged (and cleared), most still to go
  const mid = await figuresUntil(a, (x) => x.state === 'syncing' && (x.syncedPercent ?? 0) >= 5);
  t.true((mid.syncedPercent ?? 0) < 100, `caught at ${mid.syncedPercent}%`);
  return { a, b, da, db };
}

test.serial('kill -9 of the master daemon mid-resync: restarted, the next resync is still partial; the copies end identical', async (t) => {
  t.timeout(8 * 60_000);
  const { a, b, da } = await resyncing(t);
  await da.stop('SIGKILL');
  const again = startDaemon(t, a);
  const line = await again.lines.wait(/connected to beta; \d+ dirty chunk\(s\) to send/, 0, 60_000);
  const left = Number(/; (\d+) dirty/.exec(line)![1]);
  t.true(left <= DIRTY && left < ALL, `the next resync sends ${left} chunks (${DIRTY} were dirty, ${ALL} in all)`);
  await again.lines.wait(/beta is level/, 0, 120_000);
  t.is(await compare(a, b), '0: Images are identical.');
});

test.serial('kill -9 of the target daemon mid-resync: back again, the next resync is still partial; the copies end identical', async (t) => {
  t.timeout(8 * 60_000);
  const { a, b, da, db } = await resyncing(t);
  const from = da.lines.lines.length;
  await db.stop('SIGKILL');
  await da.lines.wait(/lost beta/, from);
  startDaemon(t, b);
  const line = await da.lines.wait(/connected to beta; \d+ dirty chunk\(s\) to send/, from, 60_000);
  const left = Number(/; (\d+) dirty/.exec(line)![1]);
  t.true(left <= DIRTY && left < ALL, `the next resync sends ${left} chunks (${DIRTY} were dirty, ${ALL} in all)`);
  await da.lines.wait(/beta is level/, from, 120_000);
  t.is(await compare(a, b), '0: Images are identical.');
  // the trail: the resync that was cut, with why, and the one that finished
  const trail = JSON.parse(await ok(a, 'show auto-cdp :tank-vm1-000 history --json')) as { result: string; snapshot: string | null; error: string | null }[];
  t.like(trail[0], { result: 'success', snapshot: `${left} chunk(s)`, error: null });
  t.like(trail[1], { result: 'failure', snapshot: null });
  t.truthy(trail[1].error);
});

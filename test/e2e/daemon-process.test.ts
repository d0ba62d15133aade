/**
 * The daemon as a process: SIGTERM mid-transfer stops it cleanly with the
 * destination at its previous snapshot; kill -9 mid-transfer, then a
 * restart, recovers and the retried run succeeds with nothing corrupted; a
 * `syncsh run` killed with kill -9 (no daemon) is on record after the next run.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { randomBytes, createHash } from 'node:crypto';
import path from 'node:path';
import { execa } from 'execa';
import { makeAppliance } from '../helpers/appliance.js';
import { BIN, syncsh } from '../helpers/cli.js';

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}.`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const sha = async (file: string) =>
  createHash('sha256')
    .update(await readFile(file))
    .digest('hex');

async function prepared(t: Parameters<typeof makeAppliance>[0]) {
  const a = makeAppliance(t);
  const run = async (cmd: string) => {
    const r = await syncsh(['-c', cmd], a.env);
    t.is(r.exitCode, 0, `${cmd}: ${r.stderr}`);
    return String(r.stdout);
  };
  await run('create folder fs:tank');
  await run('create folder fs:tank/data');
  const src = path.join(a.home, 'fs', 'tank', 'data');
  const dst = path.join(a.home, 'fs', 'tank', 'copy');
  await writeFile(path.join(src, 'file.txt'), 'v1');
  await run('create auto-sync --from-fs fs:tank/data --to-fs fs:tank/copy --type day --period 1 -y');
  await run('run auto-sync :tank-data-000');
  // A big change, and a single run due in a moment.
  await writeFile(path.join(src, 'big.bin'), randomBytes(192 << 20));
  await writeFile(path.join(src, 'file.txt'), 'v2');
  // In-process, so that a loaded machine cannot make the time pass before it is set.
  await a.services.autoSync.setProperty('tank-data-000', 'once_at', new Date(Date.now() + 1500).toISOString());
  const progress = path.join(a.home, 'progress', 'auto-sync-tank-data-000.json');
  const daemon = (args: string[] = []) => {
    const child = execa('node', [BIN, 'daemon', '--retry-delay', '1', ...args], { env: a.env, reject: false });
    t.teardown(() => {
      child.kill('SIGKILL');
    });
    return child;
  };
  return { ...a, src, dst, run, progress, daemon };
}

test('SIGTERM mid-transfer: the daemon stops cleanly and the destination stays at its previous snapshot', async (t) => {
  const { dst, progress, daemon, run } = await prepared(t);
  const child = daemon();
  await until('the transfer to start', () => existsSync(progress));
  child.kill('SIGTERM');
  const result = await child;
  t.is(result.exitCode, 0, String(result.stderr));
  t.regex(String(result.stdout), /daemon stopped/);
  const status = JSON.parse(await run('show auto-sync :tank-data-000 --json'));
  if (status.run.lastResult === 'failure') {
    t.is(await readFile(path.join(dst, 'file.txt'), 'utf8'), 'v1');
    t.false(existsSync(path.join(dst, 'big.bin')));
  } else {
    t.log('the transfer had reached its commit before SIGTERM; it completed');
    t.is(await readFile(path.join(dst, 'file.txt'), 'utf8'), 'v2');
  }
  t.false(status.run.inFlight);
});

test('kill -9 mid-transfer, restart: recovered, the retried run succeeds, nothing corrupted', async (t) => {
  const { src, dst, progress, daemon, run, home } = await prepared(t);
  const first = daemon();
  await until('the transfer to start', () => existsSync(progress));
  first.kill('SIGKILL');
  await first;
  t.true(JSON.parse(await run('show auto-sync :tank-data-000 --json')).run.inFlight);
  const second = daemon();
  await until(
    'the retried run to succeed',
    async () => {
      const s = JSON.parse(await run('show auto-sync :tank-data-000 --json'));
      return s.run.lastResult === 'success' && s.run.sequence >= 3;
    },
    90_000,
  );
  second.kill('SIGTERM');
  await second;
  t.is(await readFile(path.join(dst, 'file.txt'), 'utf8'), 'v2');
  t.is(await sha(path.join(dst, 'big.bin')), await sha(path.join(src, 'big.bin')));
  const log = await readFile(path.join(home, 'log', 'auto-sync-tank-data-000.log'), 'utf8');
  t.regex(log, /was interrupted \(process ended\)/);
  const history = JSON.parse(await run('show auto-sync :tank-data-000 history --json'));
  t.true(history.some((e: { result: string }) => e.result === 'success'));
});

test('kill -9 of a run outside the daemon: the next run records it as interrupted, then succeeds', async (t) => {
  const { src, dst, progress, run, home, env } = await prepared(t);
  const child = execa('node', [BIN, '-c', 'run auto-sync :tank-data-000'], { env, reject: false });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  await until('the transfer to start', () => existsSync(progress));
  child.kill('SIGKILL');
  await child;
  await run('run auto-sync :tank-data-000');
  const history = JSON.parse(await run('show auto-sync :tank-data-000 history --json')) as { direction: string; result: string; error: string | null }[];
  const sends = history.filter((e) => e.direction === 'send').map((e) => [e.result, e.error?.replace(/:.*/, '') ?? null]);
  t.deepEqual(sends, [
    ['success', null],
    ['failure', 'interrupted (process ended)'],
    ['success', null],
  ]);
  const state = JSON.parse(await run('show auto-sync :tank-data-000 --json')).run;
  t.false(state.inFlight);
  t.is(state.failures, 1);
  t.is(await sha(path.join(dst, 'big.bin')), await sha(path.join(src, 'big.bin')));
  t.regex(await readFile(path.join(home, 'log', 'auto-sync-tank-data-000.log'), 'utf8'), /FAILURE: auto-sync:tank-data-000: the run started .* was interrupted \(process ended\)/);
});

/** bytes in a directory tree */
async function du(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += (await stat(path.join(entry.parentPath, entry.name))).size;
  }
  return total;
}

test('kill -9 during the source snapshot, three times: the next run reclaims the packs it left on the source', async (t) => {
  const a = makeAppliance(t);
  const run = async (cmd: string, env: NodeJS.ProcessEnv = a.env) => syncsh(['-c', cmd], env);
  t.is((await run('create folder fs:tank')).exitCode, 0);
  t.is((await run('create folder fs:tank/data')).exitCode, 0);
  const src = path.join(a.home, 'fs', 'tank', 'data');
  const blocks = path.join(a.home, 'fs', '.syncsh', 'tank', 'datasets', 'tank+data', 'blocks');
  await writeFile(path.join(src, 'one.bin'), randomBytes(4 << 20));
  t.is((await run('create auto-sync --from-fs fs:tank/data --to-fs fs:tank/copy --type day --period 1 -y')).exitCode, 0);
  t.is((await run('run auto-sync :tank-data-000')).exitCode, 0);
  const steady = await du(blocks);
  await writeFile(path.join(src, 'two.bin'), randomBytes(4 << 20));
  for (let i = 0; i < 3; i++) {
    const killed = await run('run auto-sync :tank-data-000', { ...a.env, SYNCSH_FAILPOINTS: 'fs.snapshot.blocks-stored' });
    t.is(killed.signal, 'SIGKILL', `kill ${i + 1} happened during the snapshot`);
  }
  t.true((await du(blocks)) >= steady + (4 << 20), 'the last killed snapshot left its packs on the source');
  const next = await run('run auto-sync :tank-data-000');
  t.is(next.exitCode, 0, String(next.stderr));
  // one snapshot's worth of new blocks, not four
  t.true((await du(blocks)) < steady + (5 << 20), `the source's block store is back to its steady level (${await du(blocks)} bytes, steady ${steady} + 4 MiB)`);
  const log = await readFile(path.join(a.home, 'log', 'auto-sync-tank-data-000.log'), 'utf8');
  t.regex(log, /Recovered localhost\/tank\/data: /);
});

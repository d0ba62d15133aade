/**
 * Scenario (e): reverse-direction hand-overs and DR failover/failback in
 * cycles, with writes on both sides, between two local-bind appliances on
 * the fs driver (test/reverse/_pair.ts). Each cycle is one of:
 * - a hand-over: the source writes (and maybe runs), then `setup auto-sync
 *   :NAME reverse-direction -y`, driven from either side, is killed -9 at a
 *   random instant; each side's next contact (the daemon's tick) settles it;
 * - DR then failback: the master writes, runs, writes again and drops off;
 *   the other takes over (DR) and writes; the old master comes back and its
 *   first run, which meets the newer epoch and demotes it, is killed -9 at a
 *   random instant; the next contact settles it.
 * Checked: at most one master per epoch (right after the kill and once
 * settled), one epoch and no maintenance once settled, the source holds
 * everything written before the fault, what the demoted master wrote is in
 * an orphan, the next run from the master makes both copies equal, and
 * nothing is left journaled or staged.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { BIN } from '../../test/helpers/cli.js';
import type { Appliance, Fixture } from '../../test/peer/_fixture.js';
import { filesOf, orphansOf, reversePair, write, type PairDatasets } from '../../test/reverse/_pair.js';
import { sshReversePair, type SshAppliance } from '../../test/reverse/_ssh-pair.js';
import { findCommand, netnsMissing } from '../../test/helpers/netns.js';
import type { AutoSyncConfig } from '../../src/services/auto-sync/model.js';
import { sshdMissing } from '../../test/helpers/sshd.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';
import { makeStores, storeLeftovers, storeMissing } from './stores.js';
import { leftovers, type DriverName } from './world.js';

type Files = Record<string, string>;

/** `syncsh -c LINE` on x, killed -9 after `delay` ms unless it ended first */
async function killedAfter(x: Appliance, line: string, delay: number): Promise<{ killed: boolean; ms: number; said: string }> {
  const started = Date.now();
  const proc = execa(process.execPath, [BIN, '-c', line], { env: x.env, extendEnv: false, reject: false });
  let exited = false;
  void proc.then(() => (exited = true));
  while (!exited && Date.now() - started < delay) await new Promise((r) => setTimeout(r, 2));
  const killed = !exited && proc.kill('SIGKILL');
  const r = await proc;
  return { killed, ms: Date.now() - started, said: killed ? 'SIGKILL' : r.exitCode === 0 ? 'exit 0' : `exit ${r.exitCode}: ${String(r.stderr).trim().split('\n').at(-1)}` };
}

/** a sentence per epoch with more than one master */
function masters<X extends { id: string }>(p: { a: X; b: X }, config: (x: X) => AutoSyncConfig, when: string): string[] {
  const byEpoch = new Map<number, string[]>();
  for (const x of [p.a, p.b]) {
    const c = config(x);
    if (c.role === 'master') byEpoch.set(c.epoch, [...(byEpoch.get(c.epoch) ?? []), x.id]);
  }
  return [...byEpoch].filter(([, ids]) => ids.length > 1).map(([epoch, ids]) => `${when}: ${ids.join(' and ')} are both master at epoch ${epoch}`);
}

type Side = Pick<Appliance, 'id' | 'env' | 'home'>;

/**
 * What a crash may leave on x once the next run went through: fs' stages and journals; zfs' partial receives,
 * btrfs' swap leftovers (both copies looked at once, with alpha; orphans are kept by design); hand-over journals.
 */
async function pairLeftovers<X extends Side>(driver: DriverName, p: { a: X; b: X; ds(x: X): string }, x: X): Promise<string[]> {
  const out = driver === 'fs' ? leftovers(x) : x === p.a ? await storeLeftovers({ driver, src: p.a, dst: p.b, srcDataset: p.ds(p.a), dstDataset: p.ds(p.b) }, { retention: false }) : [];
  const journals = path.join(x.home, 'handovers');
  if (existsSync(journals) && readdirSync(journals).length) out.push(`${x.id}: hand-over journals left: ${readdirSync(journals).join(', ')}`);
  return out;
}

/** the two copies of a pair made on `driver`: fs' in each home, else a pool or image each (stores.ts) */
async function pairDatasets(f: Fixture, driver: DriverName): Promise<{ datasets?: PairDatasets }> {
  if (driver === 'fs') return {};
  const stores = await makeStores(f, driver);
  return { datasets: { driver, a: stores.srcDataset, b: stores.dstDataset } };
}

/** missing or changed files of `had` in `got` */
const lacks = (got: Files, had: Files) => Object.keys(had).filter((k) => got[k] !== had[k]);

export function reverseScenario(driver: DriverName = 'fs'): Scenario {
  return {
    name: `reverse-dr/${driver}/peer`,
    help: `hand-overs killed -9 at a random instant (driven from either side) and DR failovers whose failback run is killed -9, in cycles, writes on both sides, ${driver} driver${driver === 'fs' ? '' : ' (a pool or image each)'}, local-bind`,
    missing: async () => (driver === 'fs' ? null : storeMissing(driver)),
    async setup(f: Fixture): Promise<ScenarioRun> {
      const p = await reversePair(f, undefined, await pairDatasets(f, driver));
      const t0 = Date.now();
      const first = await p.a.cli(`run auto-sync :${p.name}`);
      if (first.exitCode !== 0) throw new Error(`the first run failed: ${first.stderr}`);
      // how long the killed commands take when left alone, from what ran through
      const estimate = { handover: (Date.now() - t0) * 3, failback: (Date.now() - t0) * 2 };
      let seq = 0;
      const config = (x: Appliance) => p.fresh(x).autoSync.config(p.name);
      const partner = (x: Appliance) => (x === p.a ? p.b : p.a);
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          seq++;
          const steps: string[] = [];
          const violations: string[] = [];
          const master = config(p.a).role === 'master' ? p.a : p.b;
          const other = partner(master);
          const kind = rng.pick(['handover', 'handover', 'failback'] as const);
          let before: Files;
          let orphanWanted: Files | null = null;
          if (kind === 'handover') {
            write(await p.dir(master), `h${seq}.txt`, `hand-over ${seq}, written on ${master.id}\n`);
            if (rng.next() < 0.5) {
              const r = await master.cli(`run auto-sync :${p.name}`);
              steps.push(`${master.id} wrote h${seq}.txt, ran: exit ${r.exitCode}`);
            } else steps.push(`${master.id} wrote h${seq}.txt`);
            before = await filesOf(p, master);
            const driver = rng.pick([master, other]);
            const delay = rng.int(0, estimate.handover);
            const k = await killedAfter(driver, `setup auto-sync :${p.name} reverse-direction -y`, delay);
            if (!k.killed) estimate.handover = Math.round(estimate.handover * 0.5 + k.ms * 0.5);
            steps.push(`reverse-direction on ${driver.id}, kill -9 at ${delay} ms: ${k.said}`);
            violations.push(...masters(p, config, 'right after the kill'));
            await p.fresh(driver).autoSync.contact(p.name);
            await p.fresh(partner(driver)).autoSync.contact(p.name);
          } else {
            write(await p.dir(master), `s${seq}.txt`, `synced before the DR of cycle ${seq}\n`);
            const r = await master.cli(`run auto-sync :${p.name}`);
            if (r.exitCode !== 0) throw new Error(`the run before the DR failed: ${r.stderr}`);
            write(await p.dir(master), `u${seq}.txt`, `${master.id} wrote this after its last run (cycle ${seq})\n`);
            orphanWanted = await filesOf(p, master);
            p.down(master);
            const dr = await other.cli(`setup auto-sync :${p.name} reverse-direction -y`);
            steps.push(`${master.id} wrote, ran, wrote u${seq}.txt and went down; DR on ${other.id}: exit ${dr.exitCode}`);
            if (dr.exitCode !== 0) {
              p.up(master);
              return { steps, violations: [`the DR on ${other.id} failed: ${String(dr.stderr).trim()}`], recovered: false, recoveryMs: null };
            }
            write(await p.dir(other), `t${seq}.txt`, `${other.id} wrote this as the new master (cycle ${seq})\n`);
            violations.push(...masters(p, config, 'after the DR'));
            p.up(master);
            before = await filesOf(p, other);
            const delay = rng.int(0, estimate.failback);
            const k = await killedAfter(master, `run auto-sync :${p.name}`, delay);
            if (!k.killed) estimate.failback = Math.round(estimate.failback * 0.5 + k.ms * 0.5);
            steps.push(`${other.id} wrote t${seq}.txt; ${master.id} back, its run (the failback) killed -9 at ${delay} ms: ${k.said}`);
            violations.push(...masters(p, config, 'right after the kill'));
            await p.fresh(master).autoSync.contact(p.name);
            await p.fresh(other).autoSync.contact(p.name);
          }

          // settled: one master at one epoch, no maintenance, the source mounted and holding what it had
          const ca = config(p.a);
          const cb = config(p.b);
          violations.push(...masters(p, config, 'once settled'));
          if (ca.epoch !== cb.epoch) violations.push(`once settled, the epochs differ: alpha ${ca.epoch}, beta ${cb.epoch}`);
          for (const [id, c] of [
            ['alpha', ca],
            ['beta', cb],
          ] as const)
            if (c.maintenance) violations.push(`once settled, ${id} is in maintenance: ${c.maintenance.reason}`);
          const now = [ca, cb].filter((c) => c.role === 'master').length === 1 ? (ca.role === 'master' ? p.a : p.b) : null;
          if (!now) {
            violations.push(`once settled, ${[ca, cb].filter((c) => c.role === 'master').length} masters`);
            return { steps, violations, recovered: false, recoveryMs: null };
          }
          if (kind === 'failback' && now !== other) violations.push(`after the failback ${now.id} is master, not the DR side ${other.id}`);
          const storeNow = await p.fresh(now).storage.usable(driver);
          if (!(await storeNow.getDataset(p.ds(now)))?.mounted) violations.push(`the source copy on ${now.id} is not mounted once settled`);
          const gone = lacks(await filesOf(p, now), before);
          if (gone.length) violations.push(`the source (${now.id}) lacks what was written before the fault: ${gone.join(', ')}`);
          if (orphanWanted) {
            const orphans = await orphansOf(p, master);
            let kept = false;
            for (const o of orphans) if (!lacks(await filesOf(p, master, o.dataset), orphanWanted).length) kept = true;
            if (!kept) violations.push(`what ${master.id} wrote before it was demoted is in none of its ${orphans.length} orphans`);
            steps.push(`settled: ${master.id} demoted, ${orphans.length} orphans`);
          } else steps.push(`settled: ${now.id} master at epoch ${config(now).epoch}`);

          // the next run, from the master: both copies equal
          const t1 = Date.now();
          const next = await now.cli(`run auto-sync :${p.name}`);
          const ms = Date.now() - t1;
          if (next.exitCode !== 0) {
            violations.push(`the next run on ${now.id} failed: ${String(next.stderr).trim().split('\n').at(-1)}`);
            return { steps, violations, recovered: false, recoveryMs: null };
          }
          const src = await filesOf(p, now);
          const dst = await filesOf(p, partner(now));
          const differ = [...new Set([...Object.keys(src), ...Object.keys(dst)])].filter((k) => src[k] !== dst[k]);
          if (differ.length) violations.push(`after the next run the copies differ: ${differ.slice(0, 4).join(', ')}`);
          for (const x of [p.a, p.b]) violations.push(...(await pairLeftovers(driver, p, x)));
          steps.push(`next run on ${now.id} OK in ${ms} ms`);
          return { steps, violations, recovered: true, recoveryMs: ms };
        },
      };
    },
  };
}

/**
 * Scenario (e'), over real OpenSSH between two network namespaces behind a
 * switch (test/reverse/_ssh-pair.ts), on fs or with a zfs-fuse pool or a
 * btrfs image each: DR, then the failback with the link cut. The master
 * writes, runs, writes again and is unplugged; the other takes over (DR) and
 * writes; the old master is plugged back and its first run (the failback: it
 * meets the newer epoch) has its link cut at a random instant for 0.2–5 s.
 * Then, with nobody helping, its next run settles it. Checked as in
 * reverse-dr: one master per epoch, the demoted master's writes in an
 * orphan, both copies equal after the new master's next run, nothing left.
 */
export function failbackCutScenario(driver: DriverName = 'fs'): Scenario {
  return {
    name: `failback-cut/${driver}/ssh`,
    help: `DR, then the failback run of the old master with its link cut (veth down at a switch) at a random instant, over OpenSSH in network namespaces, ${driver} driver${driver === 'fs' ? '' : ' (a pool or image each)'}`,
    missing: async () => (await sshdMissing()) ?? (await netnsMissing()) ?? ((await findCommand('nsenter')) ? null : 'nsenter (util-linux) is not installed') ?? (driver === 'fs' ? null : await storeMissing(driver)),
    async setup(f: Fixture): Promise<ScenarioRun> {
      const p = await sshReversePair(f, undefined, await pairDatasets(f, driver));
      const t0 = Date.now();
      const first = await p.cli(p.a, `run auto-sync :${p.name}`);
      if (first.exitCode !== 0) throw new Error(`the first run failed: ${first.all}`);
      let estimate = (Date.now() - t0) * 2;
      let seq = 0;
      const other = (x: SshAppliance) => (x === p.a ? p.b : p.a);
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          seq++;
          const violations: string[] = [];
          const s = p.config(p.a).role === 'master' ? p.a : p.b;
          const t = other(s);
          write(await p.dir(s), `s${seq}.txt`, `synced before the DR of cycle ${seq}\n`);
          const r = await p.cli(s, `run auto-sync :${p.name}`);
          if (r.exitCode !== 0) throw new Error(`the run before the DR failed: ${r.all}`);
          write(await p.dir(s), `u${seq}.txt`, `${s.id} wrote this after its last run (cycle ${seq})\n`);
          const unsynced = await filesOf(p, s);
          await p.down(s);
          const dr = await p.cli(t, `setup auto-sync :${p.name} reverse-direction -y`);
          const steps = [`${s.id} wrote, ran, wrote u${seq}.txt, unplugged; DR on ${t.id}: exit ${dr.exitCode}`];
          if (dr.exitCode !== 0) {
            await p.up(s);
            return { steps, violations: [`the DR on ${t.id} failed: ${dr.all.trim()}`], recovered: false, recoveryMs: null };
          }
          write(await p.dir(t), `t${seq}.txt`, `${t.id} wrote this as the new master (cycle ${seq})\n`);
          await p.up(s);
          // the failback run, its link cut at a random instant
          const delay = rng.int(0, estimate);
          const outage = rng.int(200, 5000);
          const started = Date.now();
          const run = s.start(`run auto-sync :${p.name}`);
          let exited = false;
          void run.then(() => (exited = true));
          while (!exited && Date.now() - started < delay) await new Promise((res) => setTimeout(res, 5));
          let cut = 'too late: the run had ended';
          if (!exited) {
            await p.down(s);
            await new Promise((res) => setTimeout(res, outage)); // the outage itself: how long the cable stays out
            await p.up(s);
            cut = `cut at ${delay} ms for ${outage} ms`;
          }
          const ran = await run;
          if (cut.startsWith('too late')) estimate = Math.round(estimate * 0.5 + (Date.now() - started) * 0.5);
          steps.push(`${t.id} wrote t${seq}.txt; ${s.id} back, its failback run's link ${cut}: exit ${ran.exitCode}`);
          violations.push(...masters(p, p.config, 'right after the cut'));
          // nobody helps: the old master's next run (its contact) settles it
          const again = await p.cli(s, `run auto-sync :${p.name}`);
          steps.push(`${s.id} ran again: exit ${again.exitCode}`);
          const [cs, ct] = [p.config(s), p.config(t)];
          violations.push(...masters(p, p.config, 'once settled'));
          if (cs.role !== 'non-master' || ct.role !== 'master') violations.push(`once settled ${s.id} is ${cs.role} and ${t.id} ${ct.role}`);
          if (cs.epoch !== ct.epoch) violations.push(`once settled, the epochs differ: ${s.id} ${cs.epoch}, ${t.id} ${ct.epoch}`);
          if (cs.maintenance || ct.maintenance) violations.push(`once settled, maintenance: ${(cs.maintenance ?? ct.maintenance)!.reason}`);
          const shown = await p.cli(s, `show auto-sync :${p.name} orphans --json`);
          const orphans = shown.exitCode === 0 ? (JSON.parse(shown.stdout) as { dataset: string }[]) : [];
          let kept = false;
          for (const o of orphans) if (!lacks(await filesOf(p, s, o.dataset), unsynced).length) kept = true;
          if (!kept) violations.push(`what ${s.id} wrote before it was demoted is in none of its ${orphans.length} orphans`);
          const t1 = Date.now();
          const next = await p.cli(t, `run auto-sync :${p.name}`);
          const ms = Date.now() - t1;
          if (next.exitCode !== 0) {
            violations.push(`the next run on ${t.id} failed: ${next.all.trim().split('\n').at(-1)}`);
            return { steps, violations, recovered: false, recoveryMs: null };
          }
          const [src, dst] = [await filesOf(p, t), await filesOf(p, s)];
          const differ = [...new Set([...Object.keys(src), ...Object.keys(dst)])].filter((k) => src[k] !== dst[k]);
          if (differ.length) violations.push(`after the next run the copies differ: ${differ.slice(0, 4).join(', ')}`);
          for (const x of [p.a, p.b]) violations.push(...(await pairLeftovers(driver, p, x)));
          steps.push(`settled: ${s.id} demoted, ${orphans.length} orphans; next run on ${t.id} OK in ${ms} ms`);
          return { steps, violations, recovered: true, recoveryMs: ms };
        },
      };
    },
  };
}

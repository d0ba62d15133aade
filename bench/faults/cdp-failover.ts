/**
 * Scenario (issue 15): failovers of a sync auto-cdp mirror under a writing
 * client. Two appliances bound both ways with local-bind, each running
 * `syncsh daemon`, fs:tank/vm1 mirrored in sync mode (--peer-timeout 1);
 * qemu-io writes to the master's export (block-writes.ts) and at a random
 * instant one daemon is hit:
 *  - the master's: its power cut. The operator promotes the slave (the old
 *    master's home moved away meanwhile, so its agent does not answer, as a
 *    machine without power would not); the old master comes back, meets the
 *    newer epoch, becomes slave and is resynced.
 *  - the slave's, killed or frozen (SIGSTOP: its end of the link goes
 *    silent, as a cut link's would; local-bind has no link to cut): the
 *    master goes on by its fencing policy for the slave, manual (writes
 *    acked, the slave logging) or none (EIO, the master steps down; once the
 *    slave is back the operator switches the old master back).
 * Invariant (sync mode acks a write when both copies hold it, README "A
 * write on the master"): every write acknowledged to the client is on the
 * new master's image, whatever its flags; every block holds one write's
 * data or its old data; one master per epoch. The pair ends each trial
 * level and identical, so roles alternate from trial to trial.
 *
 * `power-cut/cdp-sync/fs`: the same with each appliance's home on a disk of
 * its own whose power is cut (test/helpers/power-cut.ts) instead of a kill:
 * the victim's disk cut, its daemon and every process of its home killed,
 * the disk unmounted and kept off (its home missing: its agent does not
 * answer) until the failback, then mounted again (the journal replayed, what
 * no sync forced out lost) and its daemon restarted. Master or slave (fencing
 * manual or none); no freeze. What a kill -9 cannot show: every write the
 * mirror acknowledged is durable on the copy that takes over, and the copy
 * that lost its page cache is resynced whole (the copies identical after).
 */
import { existsSync, renameSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ok, type Appliance, type Fixture } from '../../test/peer/_fixture.js';
import { missingCommand } from '../../test/helpers/system.js';
import { makePowerCutDisk, powerCutMissing, type PowerCutDisk } from '../../test/helpers/power-cut.js';
import { descendants, environ, killAll } from '../../test/helpers/procs.js';
import { compare, freeze, MIRROR, mirrorBetween, pairIn, role, startDaemon, uri, type Daemon } from '../../test/cdp/_pair.js';
import { allowedSync, allowedValues, BLOCK, BLOCKS, check, commands, fates, readBack, spanEstimate, writer } from './block-writes.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';

/** whose daemon, killed (-9) or frozen (SIGSTOP: a link gone silent, as a cut one is), and the master's fencing policy for the slave */
type Fault = 'master' | 'slave/manual' | 'slave/none' | 'frozen/manual' | 'frozen/none';

/** SIGKILL of every process below this one of `home` (the number killed) (its daemon's children, the agents other appliances started there, its CLIs): what a power cut takes with the machine */
function killHome(home: string): number {
  const pids = descendants()
    .filter((p) => environ(p.pid, 'SYNCSH_HOME') === home)
    .map((p) => p.pid);
  killAll(pids);
  return pids.length;
}

/** what a role switch's output says for the steps: the epoch, and whether the peer was told */
const switched = (out: string) => `${/epoch \d+/.exec(out)?.[0] ?? out.trim()}${/was not told/.test(out) ? ' (the peer was not told)' : ''}`;

/** a failure's message cut short: a daemon line wait names every line printed, of which the first and the last few tell */
const brief = (why: string) => {
  const lines = why.split('\n');
  return lines.length <= 8 ? why : [...lines.slice(0, 3), `(${lines.length - 8} lines)`, ...lines.slice(-5)].join('\n');
};

/** one master per epoch, across the run: the violations of what both copies say now */
function epochBook() {
  const masters = new Map<number, string>();
  return async (xs: Appliance[]): Promise<string[]> => {
    const roles = await Promise.all(xs.map(async (x) => ({ x, r: await role(x) })));
    const out: string[] = [];
    const now = roles.filter(({ r }) => r.role === 'master');
    if (now.length !== 1) out.push(`${now.length} masters once the pair is level: ${roles.map(({ x, r }) => `${x.id} ${r.role} at epoch ${r.epoch}`).join(', ')}`);
    for (const { x, r } of now) {
      const was = masters.get(r.epoch);
      if (was && was !== x.id) out.push(`two masters at epoch ${r.epoch}: ${was}, then ${x.id}`);
      masters.set(r.epoch, x.id);
    }
    if (new Set(roles.map(({ r }) => r.epoch)).size > 1) out.push(`the copies are at different epochs once level: ${roles.map(({ x, r }) => `${x.id} ${r.epoch}`).join(', ')}`);
    return out;
  };
}

export function cdpFailoverScenario(hit: 'kill' | 'power-cut' = 'kill'): Scenario {
  const cut = hit === 'power-cut';
  return {
    name: cut ? 'power-cut/cdp-sync/fs' : 'failover/cdp-sync/fs',
    help: cut
      ? "power cut of the disk under the master's or the slave's appliance of a sync auto-cdp mirror while qemu-io writes (its processes killed, the disk kept off until the failback), then the failover: every acknowledged write on the new master, no block torn, one master per epoch, the copies identical after"
      : "kill -9 of the master's or the slave's daemon of a sync auto-cdp mirror, or SIGSTOP of the slave's, while qemu-io writes, then the failover: every acknowledged write on the new master, no block torn, one master per epoch",
    missing: async () => {
      const m = await missingCommand('qemu-io', 'qemu-img', 'nbdcopy', 'stdbuf');
      if (m) return `${m} is not installed (Debian packages qemu-utils, libnbd-bin)`;
      return cut ? powerCutMissing() : null;
    },
    async setup(f: Fixture): Promise<ScenarioRun> {
      const disks = cut ? [await makePowerCutDisk(f, 256), await makePowerCutDisk(f, 256)] : null;
      const { a, b } = await pairIn(f, {}, { a: disks?.[0].dir, b: disks?.[1].dir });
      const disk = new Map<Appliance, PowerCutDisk>(
        disks
          ? [
              [a, disks[0]],
              [b, disks[1]],
            ]
          : [],
      );
      await ok(b, `setup network local-bind ${a.home}`);
      const first = await mirrorBetween(f, a, b, { size: `${(BLOCKS * BLOCK) / 1024}K`, create: '--peer-timeout 1' });
      const daemons = new Map<Appliance, Daemon>([
        [a, first.da],
        [b, first.db],
      ]);
      const restart = async (x: Appliance) => {
        const d = startDaemon(f, x);
        daemons.set(x, d);
        await d.lines.wait(/NBD server listening on /, 0, 60_000);
        return d;
      };
      /** the master's log says `peer` is level, after its line `from` */
      const level = (master: Appliance, peer: Appliance, from: number) => daemons.get(master)!.lines.wait(new RegExp(`${MIRROR}: ${peer.id} is level`), from, 120_000);
      let thaw: () => void = () => undefined; // of the daemon frozen, one at a time
      const masters = epochBook();
      const estimate = spanEstimate(100); // mirrored writes of a few KiB take about a millisecond each here
      let master = a;
      let slave = b;
      let old: number[] = new Array(BLOCKS).fill(0);
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          const fault = rng.pick<Fault>(cut ? ['master', 'master', 'slave/manual', 'slave/none'] : ['master', 'master', 'slave/manual', 'slave/none', 'frozen/manual', 'frozen/none']);
          const frozen = fault.startsWith('frozen/');
          const cmds = commands(rng, rng.int(40, 200));
          const delay = Math.round(rng.next() * estimate.ms * 1.2);
          const early = rng.next() < 0.1;
          await ok(master, `setup network fencing ${slave.id} ${fault.endsWith('/manual') ? 'manual' : 'clear'}`);
          const steps = [`${master.id} master, ${cmds.length} commands (${cmds.filter((c) => c.kind === 'flush').length} flushes, ${cmds.filter((c) => c.kind === 'write' && c.fua).length} FUA writes) on its export`];
          const violations: string[] = [];
          const failed = (why: string): TrialOutcome => ({ steps, violations: [...violations, brief(why)], recovered: false, recoveryMs: null });

          const client = writer(uri(master), cmds);
          const { finished } = await client.until(delay, early);
          const victim = fault === 'master' ? master : slave;
          const from = daemons.get(master)!.lines.lines.length;
          const hit = daemons.get(victim)!;
          let killed = 0;
          if (cut) {
            // the power goes: nothing more reaches its disk, its processes die with it, the disk stays off (its home missing) until the failback
            await disk.get(victim)!.cut();
            // its daemon among them; all found before any dies, since a dead daemon's children are no longer below this process
            killed = killHome(victim.home);
            await hit.stop('SIGKILL');
          } else if (frozen) thaw = freeze(f, hit);
          else await hit.stop('SIGKILL');
          const hitAt = Date.now();
          if (cut) {
            try {
              await disk.get(victim)!.off();
            } catch (error) {
              return failed(`powering ${victim.id}'s disk off failed: ${(error as Error).message}`);
            }
          }
          const r = await client.io;
          if (finished && r.exitCode === 0) estimate.learn(client.span());
          const fate = fates(cmds, String(r.stdout));
          // with the master's daemon gone, of the writes it did not answer only the first can have reached a copy (a power cut
          // leaves the daemon alive for a moment, its disk failing every write: those it failed may have reached the slave)
          if (fault === 'master' && !cut && fate.indexOf('failed') >= 0) fate.fill('unsent', fate.indexOf('failed') + 1);
          const count = (x: string) => fate.filter((y) => y === x).length;
          steps.push(
            `${cut ? `power cut of ${victim.id}'s disk, its daemon and ${killed} processes of its home killed,` : `${frozen ? 'SIGSTOP' : 'kill -9'} of ${victim.id}'s daemon`} (${fault}) at ${hitAt - client.started} ms${finished ? ' (the client had finished)' : ''}: ${count('acked')} of ${fate.length} writes acknowledged, ${count('failed')} failed`,
          );

          // the operator's failover: the copy that is master from now on
          let next = master;
          if (fault === 'master') {
            // its home missing (moved away, or its disk off), so that its agent does not answer
            const away = `${master.home}-away`;
            if (!cut) renameSync(master.home, away);
            try {
              const promoted = await ok(slave, `setup auto-cdp :${MIRROR} role master -y`);
              steps.push(`${slave.id} promoted: ${switched(promoted)}`);
            } catch (error) {
              return failed(`promoting ${slave.id} with its master gone failed: ${(error as Error).message}`);
            } finally {
              if (!cut) renameSync(away, master.home);
            }
            next = slave;
          }
          const image = await readBack(uri(next));
          if (typeof image === 'string') return failed(`reading the new master's image failed: ${image}`);
          const recoveryMs = Date.now() - hitAt;
          const result = check(image, allowedSync(old, cmds, fate));
          violations.push(...result.violations.slice(0, 8).map((v) => `on ${next.id}'s image: ${v}`));
          steps.push(`${next.id}'s image read back ${recoveryMs} ms after the fault`);

          // failback: the copy hit back (its power on again), the pair level again
          try {
            if (cut) {
              await disk.get(victim)!.on();
              if (!existsSync(victim.home)) return failed(`${victim.id}'s home is missing after its power came back`);
              // what the resync has to carry: the blocks the cut took from it, and those written on the other copy since (or only on it)
              const file = await readFile(path.join(victim.live('tank/vm1'), 'volume.img'));
              const mine = Buffer.concat([file, Buffer.alloc(Math.max(0, image.length - file.length))]);
              let apart = 0;
              for (let at = 0; at < image.length; at += BLOCK) if (!mine.subarray(at, at + BLOCK).equals(image.subarray(at, at + BLOCK))) apart++;
              let lost = '';
              if (fault === 'master' && fate.indexOf('failed') > fate.lastIndexOf('acked')) {
                // its own disk, as a block device's after a power cut (power-cut/nbd-daemon/fs): every write acknowledged with FUA or
                // before an acknowledged flush there; the others acknowledged (sync: once both held them) a cut may take from it
                const own = check(mine, allowedValues(old, cmds, count('acked')));
                violations.push(...own.violations.slice(0, 8).map((v) => `on ${victim.id}'s own image once its power came back: ${v}`));
                // of the acknowledged writes, those neither FUA nor before an acknowledged flush (one is when the write after it is)
                let soft = 0;
                let seen = 0;
                for (const c of cmds) {
                  if (seen >= count('acked')) break;
                  if (c.kind === 'flush') soft = 0;
                  else if ((seen++, !c.fua)) soft++;
                }
                lost = `, ${check(mine, allowedSync(old, cmds, fate)).violations.length} blocks without their acknowledged write (of ${soft} acknowledged not flushed: the cut may take those)`;
              }
              steps.push(`${victim.id}'s power back on, its image ${apart} blocks apart from ${next.id}'s as read back${lost}`);
            }
            if (fault === 'master') {
              const mark = daemons.get(slave)!.lines.lines.length;
              await restart(master);
              await level(slave, master, mark);
              [master, slave] = [slave, master];
            } else {
              const mark = daemons.get(master)!.lines.lines.length;
              if (frozen) thaw();
              else await restart(slave);
              if (fault.endsWith('/none')) {
                // it stepped down at the EIO (if the client still wrote after the fault): switched back by hand
                if ((await role(master)).role === 'slave') {
                  await daemons.get(master)!.lines.wait(/: stopped/, from, 30_000);
                  steps.push(`${master.id} had stepped down; switched back: ${switched(await ok(master, `setup auto-cdp :${MIRROR} role master -y`))}`);
                }
              }
              await level(master, slave, mark);
            }
          } catch (error) {
            return failed(`the pair did not get level again: ${(error as Error).message}`);
          }
          const same = await compare(master, slave);
          if (same !== '0: Images are identical.') violations.push(`after the resync the copies differ: ${same}`);
          violations.push(...(await masters([master, slave])));
          old = result.values;
          steps.push(`level again, ${master.id} master`);
          return { steps, violations, recovered: true, recoveryMs };
        },
      };
    },
  };
}

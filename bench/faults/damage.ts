/**
 * Scenario (b): the stream damaged in transit. A proxy between the fs
 * driver's send and its receive flips a bit, drops a range, duplicates a
 * range or truncates, at a random offset of an incremental (or the first
 * full) stream. The receive must refuse it and leave the destination at its
 * previous snapshot with nothing staged; the clean stream sent next must land.
 * A damaged stream accepted with content the snapshot does not have is the
 * violation this hunts (silent corruption).
 */
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { createServices } from '../../src/services/index.js';
import type { Driver } from '../../src/services/storage/driver.js';
import { folderWith, makeAppliance, type Fixture } from '../../test/peer/_fixture.js';
import type { Rng, Scenario, ScenarioRun, TrialOutcome } from './campaign.js';
import { makeStores, storeLeftovers, storeMissing } from './stores.js';
import { destination, differs, leftovers, oneOf, writeRandomly, type DriverName, type Tree, type World } from './world.js';
import { readTree } from '../../test/helpers/fs-tree.js';

type Damage = 'flip' | 'drop' | 'duplicate' | 'truncate';

export function damage(stream: Buffer, how: Damage, rng: Rng): { bytes: Buffer; said: string } {
  const at = rng.int(0, Math.max(0, stream.length - 1));
  const len = Math.min(stream.length - at, rng.pick([1, 7, 512, 4096, 65_536]));
  switch (how) {
    case 'flip': {
      const copy = Buffer.from(stream);
      const bit = rng.int(0, 7);
      copy[at] ^= 1 << bit;
      return { bytes: copy, said: `flip bit ${bit} of byte ${at} of ${stream.length}` };
    }
    case 'drop':
      return { bytes: Buffer.concat([stream.subarray(0, at), stream.subarray(at + len)]), said: `drop ${len} bytes at ${at} of ${stream.length}` };
    case 'duplicate':
      return { bytes: Buffer.concat([stream.subarray(0, at + len), stream.subarray(at, at + len), stream.subarray(at + len)]), said: `duplicate ${len} bytes at ${at} of ${stream.length}` };
    case 'truncate':
      return { bytes: stream.subarray(0, at), said: `truncate to ${at} of ${stream.length} bytes` };
  }
}

/** a buffer as a stream of chunks of random sizes, as a socket would deliver it */
function chunked(bytes: Buffer, rng: Rng): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; ) {
    const n = rng.int(1, 256 * 1024);
    parts.push(bytes.subarray(i, i + n));
    i += n;
  }
  return Readable.from(parts);
}

/** snapshots a damaged-stream world keeps per dataset: the base of the next incremental and the one just sent */
const KEPT = 2;

export function damageScenario(driver: DriverName = 'fs'): Scenario {
  return {
    name: `damaged-stream/${driver}/local`,
    help: `the stream flipped, cut, duplicated or truncated between send and receive (${driver} driver${driver === 'fs' ? '' : ', two pools or images'})`,
    missing: async () => (driver === 'fs' ? null : storeMissing(driver)),
    async setup(f: Fixture): Promise<ScenarioRun> {
      const a = makeAppliance(f, 'alpha');
      let w: World;
      if (driver === 'fs') {
        await folderWith(a, 'tank', {});
        w = { kind: 'local', driver, srcDataset: 'tank/docs', src: a, dst: a, name: '', srcDir: await folderWith(a, 'tank/docs', {}), dstDataset: 'tank/copy', files: [] };
      } else {
        const stores = await makeStores(f, driver);
        const made = await (await a.services.storage.usable(driver)).createDataset(stores.srcDataset);
        w = { kind: 'local', driver, srcDataset: stores.srcDataset, src: a, dst: a, name: '', srcDir: made.mountpoint!, dstDataset: stores.dstDataset, files: [] };
      }
      const services = createServices(a.env);
      f.teardown(() => services.peers.close());
      const store: Driver = await services.storage.usable(driver);
      const sent: string[] = [];
      let last: Tree = new Map();
      let seq = 0;
      const dst = async () => ((await store.getDataset(w.dstDataset)) ? destination(w) : (new Map() as Tree));
      // what a refused or a clean receive may leave behind: fs' stages and journals; zfs' partial receives, btrfs' half-received subvolumes
      const left = async () => (driver === 'fs' ? leftovers(a) : storeLeftovers(w));
      // retention, as a service's would keep: the damaged-stream trials make a snapshot each
      const prune = async () => {
        while (sent.length > KEPT) {
          const old = sent.shift()!;
          for (const ds of [w.srcDataset, w.dstDataset]) if ((await store.listSnapshots(ds)).some((s) => s.name === old)) await store.destroySnapshot(ds, old, { recursive: false });
        }
      };
      return {
        async trial(rng: Rng): Promise<TrialOutcome> {
          const steps = [await writeRandomly(w, rng)];
          const snap = `s${++seq}`;
          const base = sent.at(-1);
          await store.createSnapshot(w.srcDataset, snap, { recursive: false });
          const expected = await readTree(w.srcDir);
          const send = () => store.send(w.srcDataset, snap, { recursive: false, ...(base ? { from: base } : {}) });
          const clean = await buffer(send());
          const how = rng.pick(['flip', 'flip', 'drop', 'duplicate', 'truncate'] as const);
          const { bytes, said } = damage(clean, how, rng);
          const violations: string[] = [];
          let accepted = false;
          try {
            await store.receive(w.dstDataset, chunked(bytes, rng), { recursive: false, force: false });
            accepted = true;
          } catch (error) {
            steps.push(`${said}${base ? ` (incremental from ${base})` : ' (full)'}: refused: ${(error as Error).message.split('\n')[0]}`);
          }
          const after = await dst();
          if (accepted) {
            steps.push(`${said}: accepted`);
            if (differs(after, expected).length) violations.push(`a damaged stream was accepted and the destination is not ${snap}: ${differs(after, expected).slice(0, 3).join('; ')}`);
          } else {
            const torn = oneOf(after, [last], 'after a refused stream, the destination');
            if (torn) violations.push(torn);
            violations.push(...(await left()));
          }
          const t0 = Date.now();
          let recovered = true;
          if (!accepted) {
            try {
              await store.receive(w.dstDataset, chunked(clean, rng), { recursive: false, force: false });
            } catch (error) {
              recovered = false;
              violations.push(`the clean stream after a damaged one was refused: ${(error as Error).message}`);
            }
          }
          const ms = Date.now() - t0;
          if (recovered) {
            const d = differs(await dst(), expected);
            if (d.length) violations.push(`after the clean stream the destination is not ${snap}: ${d.slice(0, 3).join('; ')}`);
            sent.push(snap);
            await prune();
            violations.push(...(await left()));
            last = expected;
            steps.push(`clean stream received in ${ms} ms`);
          } else await store.destroySnapshot(w.srcDataset, snap, { recursive: false });
          return { steps, violations, recovered, recoveryMs: recovered ? ms : null };
        },
      };
    },
  };
}

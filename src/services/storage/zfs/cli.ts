/**
 * Running `zfs` / `zpool` with translated errors, and reading properties
 * with `zfs get -H -p`: zfs-fuse's `zfs list` has no `-p`, while `zfs get -Hp`
 * gives exact numbers on every ZFS from v23 to OpenZFS 2.x.
 */
import { probe, run, type RunOptions } from '../exec.js';
import { runFact } from '../query-cache.js';
import { explainZfs, isZfsError, ZfsError } from './errors.js';
import { detectZfsFeatures, type ZfsFeatures } from './features.js';
import { poolOf } from './names.js';
import type { SendJournal } from './send-journal.js';

export type Props = Record<string, string>;

interface SendEntry {
  dataset: string;
  /** over or given up, cleaning up */
  ending: boolean;
  finished: Promise<void>;
}

export class ZfsCli {
  private featuresMade?: Promise<ZfsFeatures>;
  /** sends running or cleaning up after themselves (send.ts) */
  private readonly sends = new Set<SendEntry>();

  constructor(
    readonly zfsBin = 'zfs',
    readonly zpoolBin = 'zpool',
    private readonly featureOverrides: Partial<ZfsFeatures> = {},
    /** where sends that may hold are recorded, for recover to release what a killed one left (send-journal.ts); none: not recorded */
    readonly sendJournal: SendJournal | null = null,
  ) {}

  async zfs(args: readonly string[], opts?: RunOptions): Promise<string> {
    try {
      return await run(this.zfsBin, args, opts);
    } catch (error) {
      throw await this.poolAware(explainZfs(error));
    }
  }

  async zpool(args: readonly string[]): Promise<string> {
    try {
      return await run(this.zpoolBin, args);
    } catch (error) {
      throw explainZfs(error);
    }
  }

  features(): Promise<ZfsFeatures> {
    this.featuresMade ??= detectZfsFeatures(this.zfsBin).then((found) => ({ ...found, ...this.featureOverrides }));
    return this.featuresMade;
  }

  async poolExists(pool: string): Promise<boolean> {
    return (await probe(this.zpoolBin, ['list', '-H', '-o', 'name', pool])).ok;
  }

  /** throws "The pool 'x' does not exist." when the dataset's pool is unknown (asked once per run: issue 13) */
  async requirePool(dataset: string): Promise<void> {
    const pool = poolOf(dataset);
    if (!(await runFact(`zpool:${this.zpoolBin}:${pool}`, () => this.poolExists(pool)))) throw new ZfsError('no-pool', `The pool '${pool}' does not exist.`);
  }

  /** `zfs get` for several names at once: name -> property -> raw value ('-' when not applicable) */
  async getProps(names: readonly string[], props: readonly string[], opts: { depth?: number } = {}): Promise<Map<string, Props>> {
    const found = new Map<string, Props>();
    if (names.length === 0) return found;
    const depth = opts.depth === undefined ? [] : ['-r', '-d', String(opts.depth)];
    const out = await this.zfs(['get', ...depth, '-H', '-p', '-o', 'name,property,value', props.join(','), ...names]);
    for (const line of out.split('\n')) {
      if (!line) continue;
      const [name, property, ...rest] = line.split('\t');
      if (!name || !property) continue;
      const entry = found.get(name) ?? {};
      entry[property] = rest.join('\t');
      found.set(name, entry);
    }
    return found;
  }

  /** names of datasets (and with types including 'snapshot', snapshots) under `root` */
  async listNames(root: string | undefined, types: string, depth?: number): Promise<string[]> {
    const scope = root === undefined ? ['-r'] : depth === undefined ? ['-r', root] : ['-d', String(depth), root];
    const out = await this.zfs(['list', '-H', '-o', 'name', '-t', types, ...scope]);
    return out.split('\n').filter(Boolean);
  }

  async exists(name: string): Promise<boolean> {
    return (await probe(this.zfsBin, ['list', '-H', '-o', 'name', name])).ok;
  }

  /**
   * A send of `dataset` starts (send.ts). It calls `ending()` once it is over
   * or given up and is cleaning up after itself, and `done()` when that is
   * finished; settleSends waits for the ones that are ending.
   */
  trackSend(dataset: string): { ending(): void; done(): void } {
    let resolve!: () => void;
    const entry: SendEntry = { dataset, ending: false, finished: new Promise<void>((r) => (resolve = r)) };
    this.sends.add(entry);
    return {
      ending: () => void (entry.ending = true),
      done: () => {
        this.sends.delete(entry);
        resolve();
      },
    };
  }

  /**
   * Wait for the sends of `dataset` (or of a dataset above or below it) that
   * are over or given up to finish their clean-up: until then a send that did
   * not finish can leave temporary holds (send.ts). A send still streaming is
   * not waited for (it may take hours); `maxMs` bounds the wait.
   */
  async settleSends(dataset: string, maxMs = 20_000): Promise<void> {
    const related = (other: string) => other === dataset || other.startsWith(`${dataset}/`) || dataset.startsWith(`${other}/`);
    const ending = [...this.sends].filter((e) => e.ending && related(e.dataset)).map((e) => e.finished);
    if (ending.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(ending), new Promise((resolve) => (timer = setTimeout(resolve, maxMs)))]);
    clearTimeout(timer);
  }

  /** a "dataset does not exist" on a missing pool says so */
  private async poolAware(error: Error): Promise<Error> {
    if (!isZfsError(error, 'missing')) return error;
    const name = error.message.match(/'([^']+)'/)?.[1];
    if (name && !(await this.poolExists(poolOf(name)))) {
      return new ZfsError('no-pool', `The pool '${poolOf(name)}' does not exist.`, error.stderr);
    }
    return error;
  }
}

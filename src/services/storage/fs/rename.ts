/**
 * renameDataset: a dataset, its children and their snapshots move to a new
 * name in the same pool. What moves:
 *
 *   <root>/<from>                    -> <root>/<to>          live tree or its link (children's are inside it)
 *   .syncsh/<pool>/datasets/<enc n>  -> …/<enc n'>            metadata of the dataset and of each child
 *   dataset.json                        name rewritten        in each moved metadata directory
 *
 * Several renames, so the whole move is written down first as an intent
 * (.syncsh/<pool>/renames/<enc from>.json): from there on it is finished,
 * now or by recover() on either name. Each step can run again safely: a
 * source that is gone was already moved.
 *
 * Refused before anything moves, each with a sentence: bad names, the same
 * name, a pool (only datasets in a pool are renamed), another pool, a target
 * inside the dataset, a target that exists or whose mountpoint holds files,
 * a target parent that is missing, a volume or unmounted, a dataset that is
 * busy (an operation holds its lock, or a send is reading it) and an
 * unfinished earlier rename.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { LockBusyError } from '../../lock.js';
import type { Catalog, DatasetRecord } from './catalog.js';
import { errorCode, isEmptyDir, lstatOrNull, mode, readJson, removeTree, syncDir, writeJsonAtomic } from './files.js';
import { senders } from './gc.js';
import { stepCounter, type Faults } from './journal.js';
import { lockDatasets } from './lock.js';
import { checkDatasetName, decodeName, isDescendant, parentOf, poolOf } from './names.js';
import { relink } from './versions.js';

export interface RenameIntent {
  format: 1;
  from: string;
  to: string;
  /** the dataset and its children, parents first (their names under `from`) */
  names: string[];
  /** the live root's mode, when it had to be made writable to move it (restored after the move) */
  rootMode?: number;
}

export interface RenameContext {
  catalog: Catalog;
  faults: Faults;
  /** finish interrupted commits of these datasets */
  settle(names: string[]): Promise<void>;
}

const renamed = (name: string, from: string, to: string) => to + name.slice(from.length);

/** Everything that can be checked without the locks; throws a sentence. */
function check(catalog: Catalog, from: string, to: string): void {
  checkDatasetName(from);
  checkDatasetName(to);
  if (from === to) throw new Error(`The fs dataset ${from} cannot be renamed to its own name.`);
  if (!from.includes('/')) throw new Error(`${from} is a pool; a pool cannot be renamed, only the datasets in it.`);
  if (poolOf(to) !== poolOf(from)) {
    throw new Error(`The target ${to} is in the pool ${poolOf(to)}, not in ${poolOf(from)} where ${from} is; a dataset can only be renamed within its pool (replicate it to move it to another pool).`);
  }
  if (isDescendant(to, from)) throw new Error(`The fs dataset ${from} cannot be moved inside itself (${to}).`);
  catalog.require(from);
  const pending = pendingRenameTouching(catalog, [from, to]);
  if (pending) throw new Error(`An interrupted rename of ${pending.intent.from} to ${pending.intent.to} is not finished; run recover on ${pending.intent.from} first.`);
  const existing = catalog.all(poolOf(to)).find((n) => n === to || isDescendant(n, to));
  if (existing) throw new Error(`The target ${existing === to ? to : `${to} (its child ${existing})`} already exists; nothing was renamed.`);
  const parent = parentOf(to)!;
  const prec = catalog.record(parent);
  if (!prec) throw new Error(`The parent dataset ${parent} of the target ${to} does not exist; create it first.`);
  if (prec.kind === 'volume') throw new Error(`The parent dataset ${parent} of the target ${to} is a volume, which cannot hold datasets.`);
  if (!catalog.mounted(parent)) throw new Error(`The parent dataset ${parent} of the target ${to} is unmounted; mount it before renaming ${from} into it.`);
  const mp = catalog.layout.mountpoint(to);
  const st = lstatOrNull(mp);
  if (st && !st.isDirectory()) throw new Error(`The mountpoint ${mp} of ${to} is taken by a file; move it away first.`);
  if (st && !isEmptyDir(mp)) throw new Error(`The directory ${mp} already has files; move them away or choose another name than ${to}.`);
}

export async function renameDataset(ctx: RenameContext, from: string, to: string): Promise<void> {
  const { catalog } = ctx;
  const { layout } = catalog;
  check(catalog, from, to);
  const names = [from, ...catalog.descendants(from)];
  let lock;
  try {
    lock = lockDatasets(layout, [...names, ...names.map((n) => renamed(n, from, to))], 'a rename');
  } catch (error) {
    if (error instanceof LockBusyError) throw new Error(`${error.message} Nothing was renamed.`, { cause: error });
    throw error;
  }
  try {
    await ctx.settle(names);
    check(catalog, from, to); // again, now that nothing else can change them
    for (const n of names) {
      if (existsSync(layout.destroyingMarker(n))) throw new Error(`An interrupted destruction of ${n} is not finished; run recover on ${n} first.`);
      const pids = senders(catalog, n);
      if (pids.length) throw new Error(`The fs dataset ${n} is being sent (process ${pids.join(', ')}); nothing was renamed. Try again when the send is done.`);
    }
    // Metadata left by attempts to create the target that never registered it.
    for (const n of names) {
      const meta = layout.datasetMeta(renamed(n, from, to));
      if (existsSync(meta)) removeTree(meta);
    }
    const intent: RenameIntent = { format: 1, from, to, names };
    const root = lstatOrNull(layout.mountpoint(from));
    // Moving a directory to another parent rewrites its "..": it must be writable (for a non-root owner).
    if (root?.isDirectory() && (mode(root.mode) & 0o200) === 0 && parentOf(from) !== parentOf(to)) intent.rootMode = mode(root.mode);
    mkdirSync(layout.renamesDir(poolOf(from)), { recursive: true });
    writeJsonAtomic(layout.renameIntent(from), intent);
    syncDir(layout.renamesDir(poolOf(from)));
    // From here on the rename happens, now or by recover.
    finishRename(catalog, intent, ctx.faults);
  } finally {
    lock.release();
  }
}

/** Unfinished renames in the pool. */
function pendingRenames(catalog: Catalog, pool: string): RenameIntent[] {
  let files: string[];
  try {
    files = readdirSync(catalog.layout.renamesDir(pool));
  } catch {
    return [];
  }
  const out: RenameIntent[] = [];
  for (const f of files) {
    if (!f.endsWith('.json')) continue;
    const intent = readJson<RenameIntent>(path.join(catalog.layout.renamesDir(pool), f));
    if (intent && intent.from === decodeName(f.slice(0, -'.json'.length))) out.push(intent);
  }
  return out;
}

/** The names an unfinished rename touches (both ends): what recover locks to finish it. */
export function renameNames(intent: RenameIntent): string[] {
  return [...intent.names, ...intent.names.map((n) => renamed(n, intent.from, intent.to))];
}

/** An unfinished rename that moves one of `names`, or a dataset above or below one; with the name it touches. */
export function pendingRenameTouching(catalog: Catalog, names: string[]): { intent: RenameIntent; name: string } | null {
  if (!names.length) return null;
  for (const intent of pendingRenames(catalog, poolOf(names[0]))) {
    const ends = [intent.from, intent.to];
    const name = names.find((n) => ends.some((e) => n === e || isDescendant(n, e) || isDescendant(e, n)));
    if (name) return { intent, name };
  }
  return null;
}

/**
 * Carry out a written intent (call with the locks of renameNames held).
 * Every step looks before it moves, so running it again after a crash
 * finishes the rename. Returns a sentence for recover's report.
 */
export function finishRename(catalog: Catalog, intent: RenameIntent, faults: Faults = {}): string {
  const { layout } = catalog;
  const { from, to } = intent;
  const step = stepCounter(faults);

  // 1. The live tree (children's trees inside it move along).
  step();
  const [src, dst] = [layout.mountpoint(from), layout.mountpoint(to)];
  if (lstatOrNull(src)) {
    if (intent.rootMode !== undefined) chmodSync(src, intent.rootMode | 0o700);
    try {
      // Also replaces the empty directory that may stand at the target (checked before).
      withWritableDirs([path.dirname(src), path.dirname(dst)], () => renameSync(src, dst));
    } catch (error) {
      if (errorCode(error) !== 'ENOTEMPTY' && errorCode(error) !== 'EEXIST') throw error;
      throw new Error(`The files of ${from} cannot move to ${dst}: files appeared there. Move them away and run recover on ${from} to finish the rename.`, { cause: error });
    }
  }
  if (intent.rootMode !== undefined && lstatOrNull(dst)) chmodSync(dst, intent.rootMode);
  if (lstatOrNull(dst)) relink(layout, to, dst); // a relative link moved to another depth (beside a directory made before versions)

  // 2. Each dataset's metadata, parents first, and the name its record carries.
  for (const n of intent.names) {
    const m = renamed(n, from, to);
    const [oldMeta, newMeta] = [layout.datasetMeta(n), layout.datasetMeta(m)];
    step();
    if (existsSync(oldMeta) && !existsSync(newMeta)) renameSync(oldMeta, newMeta);
    step();
    const rec = readJson<DatasetRecord>(layout.recordFile(m));
    if (rec && rec.name !== m) writeJsonAtomic(layout.recordFile(m), { ...rec, name: m });
  }
  syncDir(layout.datasetsDir(poolOf(from)));

  // 3. Done: the intent goes last.
  step();
  try {
    unlinkSync(layout.renameIntent(from));
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
  }
  return `Renamed ${from} to ${to}${intent.names.length > 1 ? ` with ${intent.names.length - 1} child dataset(s)` : ''}.`;
}

/** Run `fn` with the directories writable by their owner, then give them their modes back. */
function withWritableDirs<T>(dirs: string[], fn: () => T): T {
  const restore: [string, number][] = [];
  for (const d of new Set(dirs)) {
    const m = mode(lstatSync(d).mode);
    if ((m & 0o300) !== 0o300) {
      chmodSync(d, m | 0o300);
      restore.push([d, m]);
    }
  }
  try {
    return fn();
  } finally {
    for (const [d, m] of restore) chmodSync(d, m);
  }
}

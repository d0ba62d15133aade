/**
 * The commit of a receive or rollback. Everything needed is staged first;
 * then the journal (the full list of changes) is written atomically: that
 * is the commit point. Its phases are replayed in order and the phase
 * reached is saved after each, so a crash anywhere is finished by running
 * the journal again (recover). Every step inside a phase is idempotent:
 * a staged file that is gone was already renamed into place, a missing
 * path was already removed, and so on.
 */
import { chmodSync, closeSync, existsSync, fdatasyncSync, lchownSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Catalog } from './catalog.js';
import { errorCode, lstatOrNull, mode as modeBits, readJson, removeTree, sameMtime, setMtime, syncDir, syncFileSystem, withWritableParent, writeJsonAtomic } from './files.js';
import { applyDelta, byPath, cacheOf, readManifest, referencedBytes, sameContent, withCache, writeManifest, type Entry, type Manifest, type ManifestDelta } from './manifest.js';
import type { Plan } from './plan.js';
import { failpoint } from '../../failpoints.js';
import { carryChildren, cloneTree, dropGoneChildLinks, dropSwappedOut, keepSwappedOut, swapIn, type Swap } from './versions.js';
import { applyPatch, resetDirtyMap, type ZvolRecord } from './zvol.js';

export interface Journal {
  /** 2: phases as in PHASES; 1 (written before versioned trees): PHASES_V1 */
  format: 1 | 2;
  op: 'receive' | 'rollback';
  dataset: string;
  /** where the plan is applied: the live tree itself, or (with `swap`) the next version, built beside it */
  liveDir: string;
  /** a versioned commit (versions.ts): clone the live version into liveDir, apply the plan there, swap */
  swap?: Swap;
  /** this operation's staging directory (files/, and for a receive manifest.json: a StagedManifest) */
  staging: string;
  snapshot: { name: string; id: string; createdAt: string };
  plan: Plan;
  /** receive into a dataset that did not exist: registered in the register phase */
  create?: { kind: 'filesystem' | 'volume'; volsize?: number; zvol?: ZvolRecord };
  /** the directory holding a newly created dataset root, whose mtime that creation changed */
  parentDir?: { path: string; mtimeNs: string };
  /** receive of a volume: its (possibly new) size */
  volsize?: number;
  /** incremental receive: the id of its base snapshot (the staged manifest is a delta from it) */
  baseId?: string;
}

export const PHASES = ['clone', 'remove', 'mkdir', 'place', 'meta', 'dirs', 'swap', 'register', 'cleanup'] as const;
type Phase = (typeof PHASES)[number];
/**
 * Whether a phase of `j` writes file data, not only names and metadata (which ext4's journal
 * orders before the progress file's own fsync): clone's copies of the files whose metadata
 * the commit sets, and place's patch of a zvol image.
 */
function writesData(phase: Phase, j: Journal): boolean {
  if (phase === 'clone') return !!j.swap && j.plan.meta.some((m) => m.type === 'file');
  return phase === 'place' && !!j.plan.patch;
}
/** the phases of a format-1 journal, whose progress file counts in these */
const PHASES_V1: readonly Phase[] = ['remove', 'mkdir', 'place', 'meta', 'dirs', 'register', 'cleanup'];

/**
 * A received manifest as staged: whole (full stream) or as the base's id
 * plus the changes (incremental stream; rebuilt from the local base, whose
 * stat caches still hold for every entry the commit does not touch).
 */
export interface StagedManifest {
  fields: Omit<Manifest, 'entries'>;
  entries?: Entry[];
  baseId?: string;
  delta?: ManifestDelta;
}

/** Test hook: stop a commit after this many journal steps, as if the process died there. */
export interface Faults {
  crashAfterJournalSteps?: number;
  /** 'throw' (default) raises SimulatedCrash in-process; 'kill' sends SIGKILL to this process */
  crash?: 'throw' | 'kill';
}

export class SimulatedCrash extends Error {
  constructor(step: number) {
    super(`Simulated crash after journal step ${step}.`);
    this.name = 'SimulatedCrash';
  }
}

/** One journal step per call, for a commit or a rename: crashes after `faults.crashAfterJournalSteps` of them. */
export function stepCounter(faults: Faults): () => void {
  let steps = 0;
  return () => {
    steps++;
    if (faults.crashAfterJournalSteps !== undefined && steps > faults.crashAfterJournalSteps) {
      if (faults.crash === 'kill') process.kill(process.pid, 'SIGKILL');
      throw new SimulatedCrash(faults.crashAfterJournalSteps);
    }
  };
}

export function faultsFromEnv(env: NodeJS.ProcessEnv = process.env): Faults {
  const n = Number(env.SYNCSH_FS_CRASH_AFTER_STEPS);
  return Number.isInteger(n) && n >= 0 && env.SYNCSH_FS_CRASH_AFTER_STEPS ? { crashAfterJournalSteps: n, crash: 'kill' } : {};
}

export function hasJournal(catalog: Catalog, dataset: string): boolean {
  return existsSync(catalog.layout.journalFile(dataset));
}

/**
 * Record the phase reached. The file keeps its length ({"phase":N} with one
 * digit) and is overwritten in place and synced: creating and renaming
 * files is what a commit of few changes spends most on, on a busy disk,
 * and a write of a few bytes within one block happens whole or not at all.
 */
function saveProgress(file: string, phase: number): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, JSON.stringify({ phase }), 0);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The commit point: from each journal written on, its operation is finished, now or by recover
 * (`written` is told of each). Everything they name (staged files, a zvol's patch, new packs) is
 * made durable first, once for all of them: a journal that outlives a power cut replays its
 * staged files into place, and would place what the page cache lost (empty files) as the
 * received snapshot.
 */
export async function writeJournals(catalog: Catalog, journals: readonly Journal[], written: () => void = () => undefined): Promise<void> {
  await syncFileSystem(catalog.layout.root); // staging and the stores are under it
  for (const journal of journals) {
    const file = catalog.layout.journalFile(journal.dataset);
    writeJsonAtomic(catalog.layout.journalProgressFile(journal.dataset), { phase: 0 });
    writeJsonAtomic(file, journal);
    syncDir(path.dirname(file));
    written();
  }
}

/**
 * Run (or finish) the dataset's journal; returns a sentence about what was
 * committed, or null when there is none. `received` is the manifest of the
 * receive being committed, when this process has it at hand (so the commit
 * need not rebuild it from staging).
 */
export async function runJournal(catalog: Catalog, dataset: string, faults: Faults = {}, received?: Manifest): Promise<string | null> {
  const j = readJson<Journal>(catalog.layout.journalFile(dataset));
  if (!j) return null;
  const progressFile = catalog.layout.journalProgressFile(dataset);
  const start = readJson<{ phase: number }>(progressFile)?.phase ?? 0;
  const step = stepCounter(faults);
  const live = (p: string) => (p ? path.join(j.liveDir, p) : j.liveDir);
  const filesDir = path.join(j.staging, 'files');
  const { swap } = j;

  const run: Record<Phase, () => Promise<void> | void> = {
    clone: () => {
      if (!swap) return;
      step();
      // Files whose metadata the commit sets are copied, not linked: the live version must not change.
      const copies = j.plan.meta.filter((m) => m.type === 'file').map((m) => m.path);
      if (swap.from && lstatOrNull(swap.from)) cloneTree(swap.from, j.liveDir, copies);
      else {
        removeTree(j.liveDir);
        mkdirSync(path.dirname(j.liveDir), { recursive: true });
        if (!j.plan.tree) mkdirSync(j.liveDir, { mode: 0o700 }); // a staged tree is moved in whole
      }
    },
    remove: () => {
      for (const p of j.plan.remove) {
        step();
        withWritableParent(live(p), () => removeTree(live(p)));
      }
    },
    mkdir: () => {
      for (const p of j.plan.mkdir) {
        step();
        const st = lstatOrNull(live(p));
        if (st?.isDirectory()) continue;
        withWritableParent(live(p), () => mkdirSync(live(p), { mode: 0o700 }));
      }
    },
    place: () => {
      if (j.plan.tree) {
        step();
        placeTree(filesDir, j.liveDir);
      }
      if (j.plan.patch) {
        step();
        applyPatch(catalog.layout, dataset, j.liveDir, j.plan.patch);
      }
      for (const { path: p, staged } of j.plan.place) {
        step();
        const from = path.join(filesDir, staged);
        try {
          withWritableParent(live(p), () => renameSync(from, live(p)));
        } catch (error) {
          // Renamed by the interrupted run: the staged name only ever disappears that way.
          if (errorCode(error) === 'ENOENT' && !existsSync(from) && lstatOrNull(live(p))) continue;
          throw error;
        }
      }
    },
    meta: () => {
      for (const m of j.plan.meta) {
        step();
        // Owner before mode: a change of owner clears the set-user-ID and set-group-ID bits.
        if (m.uid !== undefined) lchownSync(live(m.path), m.uid, m.gid!);
        if (m.type === 'file') chmodSync(live(m.path), m.mode);
        setMtime(live(m.path), m.mtimeNs, m.type === 'symlink');
      }
    },
    dirs: () => {
      for (const d of j.plan.dirs) {
        step();
        const st = lstatSync(live(d.path));
        const chown = d.uid !== undefined && (st.uid !== d.uid || st.gid !== d.gid);
        if (chown) lchownSync(live(d.path), d.uid!, d.gid!);
        if (chown || modeBits(st.mode) !== d.mode) chmodSync(live(d.path), d.mode);
        if (!sameMtime(st.mtimeMs, d.mtimeNs)) setMtime(live(d.path), d.mtimeNs, false);
      }
      if (j.parentDir) {
        step();
        setMtime(j.parentDir.path, j.parentDir.mtimeNs, false);
      }
    },
    swap: () => {
      if (!swap) return;
      step();
      carryChildren(catalog, dataset, swap, j.liveDir);
      dropGoneChildLinks(catalog, dataset, j.liveDir);
      swapIn(catalog.layout, dataset, swap, j.liveDir);
      // The rename moved the mtime of the directory holding the link, which is the parent dataset's.
      if (swap.parentMtimeNs) setMtime(path.dirname(swap.link), swap.parentMtimeNs, false);
      // Before register stats the files: unlinking an unchanged file's old name (a spare replaced) moves its ctime, which would make every stat cache stale.
      keepSwappedOut(catalog.layout, dataset, swap, j.liveDir); // no reader is sent there any more: the next commit builds on it
    },
    register: async () => {
      step();
      await register(catalog, j, received?.id === j.snapshot.id ? received : undefined);
    },
    cleanup: () => {
      step();
      removeTree(j.staging);
      if (swap) dropSwappedOut(catalog.layout, dataset, swap, j.liveDir); // a commit cut after its swap by a build that dropped it here
      unlinkSync(catalog.layout.journalFile(dataset));
      unlinkSync(progressFile);
    },
  };

  const order = j.format === 1 ? PHASES_V1 : PHASES;
  for (let phase = start; phase < order.length; phase++) {
    failpoint(`fs.commit.${order[phase]}`);
    await run[order[phase]]();
    // A phase that wrote file data (copies, a zvol's patch) has it on disk before its progress says done, or a replay after a power cut would skip it.
    if (writesData(order[phase], j)) await syncFileSystem(catalog.layout.root);
    if (phase < order.length - 1) saveProgress(progressFile, phase + 1);
  }
  return `${j.op === 'receive' ? 'Received' : 'Rolled back to'} ${dataset}@${j.snapshot.name}${start > 0 ? ` (resumed at its ${order[start]} phase)` : ''}.`;
}

/**
 * Move a staged tree in as the live tree: one rename, which also replaces
 * an empty directory. Should files have appeared in the live directory
 * since it was found empty, the staged entries are merged in one by one
 * instead, replacing what is in their way, as per-file placement would.
 * Gone from staging means already moved (by an interrupted run).
 */
function placeTree(staged: string, liveDir: string): void {
  if (!lstatOrNull(staged)) return;
  try {
    withWritableParent(liveDir, () => renameSync(staged, liveDir));
  } catch (error) {
    if (errorCode(error) !== 'ENOTEMPTY' && errorCode(error) !== 'EEXIST') throw error;
    mergeInto(staged, liveDir);
    rmdirSync(staged);
  }
}

function mergeInto(from: string, to: string): void {
  chmodSync(to, modeBits(lstatSync(to).mode) | 0o700); // the dirs phase sets the final modes
  for (const name of readdirSync(from)) {
    const src = path.join(from, name);
    const dst = path.join(to, name);
    const srcStat = lstatSync(src);
    const dstStat = lstatOrNull(dst);
    if (srcStat.isDirectory() && dstStat?.isDirectory()) {
      mergeInto(src, dst);
      rmdirSync(src);
      continue;
    }
    if (dstStat) removeTree(dst);
    if (srcStat.isDirectory()) chmodSync(src, modeBits(srcStat.mode) | 0o700); // moving a directory rewrites its ".."
    renameSync(src, dst);
  }
}

/** This appliance's stat of a live file, when it matches the entry (it was just written or proven equal). */
function liveCache(e: Entry, liveDir: string): Entry['cache'] {
  const st = lstatOrNull(e.path ? path.join(liveDir, e.path) : liveDir);
  return st?.isFile() && st.size === e.size && sameMtime(st.mtimeMs, e.mtimeNs) ? cacheOf(st, false) : undefined;
}

/** The received manifest with stat caches: entries the commit left alone keep the base's, the rest are stat'ed. */
function receivedManifest(catalog: Catalog, j: Journal, known?: Manifest): Manifest {
  const staged = known ? null : readJson<StagedManifest>(path.join(j.staging, 'manifest.json'));
  if (!known && !staged) throw new Error(`The staged manifest of ${j.dataset}@${j.snapshot.name} is missing from ${j.staging}; the commit cannot be finished.`);
  const baseId = known ? j.baseId : staged!.baseId;
  const base = baseId ? readManifest(catalog.layout.manifestFile(j.dataset, baseId), `${j.dataset} (${baseId})`) : null;
  const received = known ? known.entries : base ? applyDelta(base, staged!.delta!) : staged!.entries!;
  const baseMap = base ? byPath(base) : new Map<string, Entry>();
  // Every file of a tree plan was written anew.
  const touched = j.plan.tree ? null : new Set([...j.plan.place.map((p) => p.path), ...j.plan.meta.map((m) => m.path)]);
  // Entries may be shared with the base manifest: give changed ones new objects, never modify them.
  const entries = received.map((e) => {
    if (e.type !== 'file') return e;
    const before = baseMap.get(e.path);
    // Another name of a file may have changed with its first (one meta step for all): stat it.
    if (touched && !touched.has(e.path) && e.link === undefined && before?.cache && sameContent(before, e)) {
      if (!j.swap) return e.cache === before.cache ? e : withCache(e, before.cache);
      // Linked into the new version: the same inode, whose ctime the link moved; anything else is stat'ed in full below.
      return withCache(e, relinkedCache(before.cache, path.join(j.liveDir, e.path), e));
    }
    return withCache(e, liveCache(e, j.liveDir));
  });
  return { ...(known ?? staged!.fields), entries };
}

/** The cache of a file linked unchanged into a new version: the base's, with the ctime the link gave it, when it is still that inode and mtime. */
function relinkedCache(before: NonNullable<Entry['cache']>, file: string, e: Entry): Entry['cache'] {
  const st = lstatOrNull(file);
  if (!st?.isFile() || st.ino !== before.ino || st.mtimeMs !== before.mtimeMs || st.size !== e.size) return undefined;
  return cacheOf(st, before.racy === true);
}

async function register(catalog: Catalog, j: Journal, known?: Manifest): Promise<void> {
  const { dataset } = j;
  if (j.op === 'rollback') {
    const file = catalog.layout.manifestFile(dataset, j.snapshot.id);
    // The files now match this snapshot: its stat caches become the live files' (a new object: read manifests are shared).
    const manifest = readManifest(file, `${dataset}@${j.snapshot.name}`);
    const entries = manifest.entries.map((e) => (e.type === 'file' ? withCache(e, liveCache(e, j.liveDir)) : e.cache ? withCache(e, undefined) : e));
    writeManifest(file, { ...manifest, entries });
    await catalog.updateIndex(dataset, (index) => {
      index.head = j.snapshot.id;
    });
    resetDirtyMap(catalog, dataset, j.snapshot.id); // the image is that snapshot now
    return;
  }
  if (j.create && !catalog.record(dataset)) {
    catalog.register({ format: 1, name: dataset, kind: j.create.kind, ...(j.create.volsize !== undefined ? { volsize: j.create.volsize } : {}), ...(j.create.zvol ? { zvol: j.create.zvol } : {}), createdAt: new Date().toISOString() });
  } else if (j.volsize !== undefined) {
    const rec = catalog.require(dataset);
    if (rec.volsize !== j.volsize) catalog.register({ ...rec, volsize: j.volsize });
  }
  const manifestFile = catalog.layout.manifestFile(dataset, j.snapshot.id);
  const listed = catalog.index(dataset).snapshots.some((s) => s.id === j.snapshot.id);
  let referenced = 0;
  if (!listed) {
    const manifest = receivedManifest(catalog, j, known);
    referenced = referencedBytes(manifest);
    mkdirSync(catalog.layout.manifestsDir(dataset), { recursive: true });
    writeManifest(manifestFile, manifest);
  }
  await catalog.updateIndex(dataset, (index) => {
    if (!index.snapshots.some((s) => s.id === j.snapshot.id)) {
      index.snapshots.push({ name: j.snapshot.name, id: j.snapshot.id, createdAt: j.snapshot.createdAt, seq: index.nextSeq++, held: false, referenced });
    }
    index.head = j.snapshot.id;
  });
  resetDirtyMap(catalog, dataset, j.snapshot.id); // the image is that snapshot now
}

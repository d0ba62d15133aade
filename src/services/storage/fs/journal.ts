/**
 * The commit of a receive or rollback. Everything needed is staged first;
 * then the journal (the full list of changes) is written atomically: that
 * is the commit point. Its phases are replayed in order and the phase
 * reached is saved after each, so a crash anywhere is finished by running
 * the journal again (recover). Every step inside a phase is idempotent:
 * a staged file that is gone was already renamed into place, a missing
 * path was already removed, and so on.
 */
import { existsSync, lstatSync, mkdirSync, renameSync, unlinkSync, chmodSync } from 'node:fs';
import path from 'node:path';
import type { Catalog } from './catalog.js';
import { errorCode, lstatOrNull, mode as modeBits, readJson, removeTree, sameMtime, setMtime, syncDir, withWritableParent, writeJsonAtomic } from './files.js';
import { applyDelta, byPath, cacheOf, readManifest, referencedBytes, sameContent, writeManifest, type Entry, type Manifest, type ManifestDelta } from './manifest.js';
import type { Plan } from './plan.js';

export interface Journal {
  format: 1;
  op: 'receive' | 'rollback';
  dataset: string;
  liveDir: string;
  /** this operation's staging directory (files/, and for a receive manifest.json: a StagedManifest) */
  staging: string;
  snapshot: { name: string; id: string; createdAt: string };
  plan: Plan;
  /** receive into a dataset that did not exist: registered in the register phase */
  create?: { kind: 'filesystem' | 'volume'; volsize?: number };
  /** the directory holding a newly created dataset root, whose mtime that creation changed */
  parentDir?: { path: string; mtimeNs: string };
  /** receive of a volume: its (possibly new) size */
  volsize?: number;
}

export const PHASES = ['remove', 'mkdir', 'place', 'meta', 'dirs', 'register', 'cleanup'] as const;

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

export function faultsFromEnv(env: NodeJS.ProcessEnv = process.env): Faults {
  const n = Number(env.SYNCSH_FS_CRASH_AFTER_STEPS);
  return Number.isInteger(n) && n >= 0 && env.SYNCSH_FS_CRASH_AFTER_STEPS ? { crashAfterJournalSteps: n, crash: 'kill' } : {};
}

export function hasJournal(catalog: Catalog, dataset: string): boolean {
  return existsSync(catalog.layout.journalFile(dataset));
}

/** The commit point: from here on the operation is finished, now or by recover. */
export function writeJournal(catalog: Catalog, journal: Journal): void {
  const file = catalog.layout.journalFile(journal.dataset);
  writeJsonAtomic(catalog.layout.journalProgressFile(journal.dataset), { phase: 0 });
  writeJsonAtomic(file, journal);
  syncDir(path.dirname(file));
}

/** Run (or finish) the dataset's journal; returns a sentence about what was committed, or null when there is none. */
export async function runJournal(catalog: Catalog, dataset: string, faults: Faults = {}): Promise<string | null> {
  const j = readJson<Journal>(catalog.layout.journalFile(dataset));
  if (!j) return null;
  const progressFile = catalog.layout.journalProgressFile(dataset);
  const start = readJson<{ phase: number }>(progressFile)?.phase ?? 0;
  let steps = 0;
  const step = () => {
    steps++;
    if (faults.crashAfterJournalSteps !== undefined && steps > faults.crashAfterJournalSteps) {
      if (faults.crash === 'kill') process.kill(process.pid, 'SIGKILL');
      throw new SimulatedCrash(faults.crashAfterJournalSteps);
    }
  };
  const live = (p: string) => (p ? path.join(j.liveDir, p) : j.liveDir);
  const filesDir = path.join(j.staging, 'files');

  const phases: (() => Promise<void> | void)[] = [
    () => {
      for (const p of j.plan.remove) {
        step();
        withWritableParent(live(p), () => removeTree(live(p)));
      }
    },
    () => {
      for (const p of j.plan.mkdir) {
        step();
        const st = lstatOrNull(live(p));
        if (st?.isDirectory()) continue;
        withWritableParent(live(p), () => mkdirSync(live(p), { mode: 0o700 }));
      }
    },
    () => {
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
    () => {
      for (const m of j.plan.meta) {
        step();
        if (m.type === 'file') chmodSync(live(m.path), m.mode);
        setMtime(live(m.path), m.mtimeNs, m.type === 'symlink');
      }
    },
    () => {
      for (const d of j.plan.dirs) {
        step();
        const st = lstatSync(live(d.path));
        if (modeBits(st.mode) !== d.mode) chmodSync(live(d.path), d.mode);
        if (!sameMtime(st.mtimeMs, d.mtimeNs)) setMtime(live(d.path), d.mtimeNs, false);
      }
      if (j.parentDir) {
        step();
        setMtime(j.parentDir.path, j.parentDir.mtimeNs, false);
      }
    },
    async () => {
      step();
      await register(catalog, j);
    },
    () => {
      step();
      removeTree(j.staging);
      unlinkSync(catalog.layout.journalFile(dataset));
      unlinkSync(progressFile);
    },
  ];

  for (let phase = start; phase < phases.length; phase++) {
    await phases[phase]();
    if (phase < phases.length - 1) writeJsonAtomic(progressFile, { phase: phase + 1 });
  }
  return `${j.op === 'receive' ? 'Received' : 'Rolled back to'} ${dataset}@${j.snapshot.name}${start > 0 ? ` (resumed at its ${PHASES[start]} phase)` : ''}.`;
}

/** This appliance's stat of a live file, when it matches the entry (it was just written or proven equal). */
function liveCache(e: Entry, liveDir: string): Entry['cache'] {
  const st = lstatOrNull(e.path ? path.join(liveDir, e.path) : liveDir);
  return st?.isFile() && st.size === e.size && sameMtime(st.mtimeMs, e.mtimeNs) ? cacheOf(st, false) : undefined;
}

/** The received manifest with stat caches: entries the commit left alone keep the base's, the rest are stat'ed. */
function receivedManifest(catalog: Catalog, j: Journal): Manifest {
  const staged = readJson<StagedManifest>(path.join(j.staging, 'manifest.json'));
  if (!staged) throw new Error(`The staged manifest of ${j.dataset}@${j.snapshot.name} is missing from ${j.staging}; the commit cannot be finished.`);
  const base = staged.baseId ? readManifest(catalog.layout.manifestFile(j.dataset, staged.baseId), `${j.dataset} (${staged.baseId})`) : null;
  const entries = base ? applyDelta(base, staged.delta!) : staged.entries!;
  const baseMap = base ? byPath(base) : new Map<string, Entry>();
  const touched = new Set([...j.plan.place.map((p) => p.path), ...j.plan.meta.map((m) => m.path)]);
  for (const e of entries) {
    if (e.type !== 'file') continue;
    const before = baseMap.get(e.path);
    const cache = !touched.has(e.path) && before?.cache && sameContent(before, e) ? before.cache : liveCache(e, j.liveDir);
    if (cache) e.cache = cache;
  }
  return { ...staged.fields, entries };
}

async function register(catalog: Catalog, j: Journal): Promise<void> {
  const { dataset } = j;
  if (j.op === 'rollback') {
    const file = catalog.layout.manifestFile(dataset, j.snapshot.id);
    const manifest = readManifest(file, `${dataset}@${j.snapshot.name}`);
    for (const e of manifest.entries) {
      delete e.cache;
      if (e.type === 'file') e.cache = liveCache(e, j.liveDir);
    }
    writeManifest(file, manifest);
    await catalog.updateIndex(dataset, (index) => {
      index.head = j.snapshot.id;
    });
    return;
  }
  if (j.create && !catalog.record(dataset)) {
    catalog.register({ format: 1, name: dataset, kind: j.create.kind, ...(j.create.volsize !== undefined ? { volsize: j.create.volsize } : {}), createdAt: new Date().toISOString() });
  } else if (j.volsize !== undefined) {
    const rec = catalog.require(dataset);
    if (rec.volsize !== j.volsize) catalog.register({ ...rec, volsize: j.volsize });
  }
  const manifestFile = catalog.layout.manifestFile(dataset, j.snapshot.id);
  const listed = catalog.index(dataset).snapshots.some((s) => s.id === j.snapshot.id);
  let referenced = 0;
  if (!listed) {
    const manifest = receivedManifest(catalog, j);
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
}

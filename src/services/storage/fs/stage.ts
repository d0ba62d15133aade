/**
 * Staging: every file a commit moves in is built first, before anything in
 * the live tree is touched, with its final mode and mtime (a rename keeps
 * both). Zero blocks stay holes, so sparse files stay sparse.
 *
 * A Stager walks the files to build in manifest order, one open file at a
 * time, and goes as far as the block store has their blocks. A receive
 * hands it each block as it arrives (`arrived`): in a full stream the
 * blocks come in the same order, so each is written to its file straight
 * from the stream instead of being read back from the store. Whatever the
 * order, `finish` builds the rest from the store.
 *
 * Owner, mode and times are set through the open descriptor: for 20,000
 * small files every path lookup saved counts. The owner is set only where
 * it is not already the one a new file gets (this process's). Another name
 * of a file (a hard link) is staged as a hard link to its first name,
 * which is always built before it.
 */
import { chmodSync, closeSync, fchmodSync, fchownSync, ftruncateSync, futimesSync, lchownSync, linkSync, mkdirSync, openSync, statSync, symlinkSync, writeSync } from 'node:fs';
import { type BlockStore, CHUNK_SIZE } from './block-store.js';
import { zeroRun } from './block-list.js';
import { Breather, nsToSeconds, setMtime } from './files.js';
import { byPath, ownerKept, type Entry, type Manifest } from './manifest.js';
import type { Plan } from './plan.js';

/** The process's umask, read once: files and directories are created with their final mode when it lets them. */
const UMASK = process.umask();

/** The mode to create with, and whether it comes out as `mode` (else it is set afterwards). */
function createMode(mode: number, atLeast: number): { mode: number; exact: boolean } {
  const wanted = (mode | atLeast) & 0o777;
  return { mode: wanted, exact: wanted === mode && (wanted & UMASK) === 0 };
}

interface Item {
  entry: Entry;
  /** where it is built */
  file: string;
  /** another name of a file: where its first name is built */
  linkTo?: string;
}

interface OpenFile {
  item: Item;
  fd: number;
  /** the next chunk to write */
  chunk: number;
  /** the next name of its block list (runs of zero chunks are one name) */
  name: number;
}

export class Stager {
  private readonly items: Item[];
  private next = 0;
  private open: OpenFile | null = null;
  /** the block the open file needs next and the store does not have yet */
  private awaiting: string | null = null;
  private readonly buf = Buffer.allocUnsafe(CHUNK_SIZE);
  /** the target's chunk size (1 MiB, 64 KiB for a zvol) */
  private readonly chunk: number;
  /** the owner what this stager creates gets (this process's; the group of a set-group-ID staging directory) */
  private readonly uid: number;
  private readonly gid: number;

  /**
   * `plan.place` names the files to build under `filesDir`; a tree plan
   * builds the whole target tree there as it will stand (its directories
   * get their final mode and mtime at the end, the root's are set by the
   * commit, after the move).
   */
  constructor(
    private readonly plan: Plan,
    target: Manifest,
    private readonly filesDir: string,
    private readonly store: BlockStore,
    private readonly what: string,
  ) {
    this.chunk = target.chunkSize;
    if (plan.tree) {
      mkdirSync(filesDir, { recursive: true, mode: 0o700 });
      this.items = target.entries.filter((e) => e.path !== '').map((entry) => (entry.link === undefined ? { entry, file: `${filesDir}/${entry.path}` } : { entry, file: `${filesDir}/${entry.path}`, linkTo: `${filesDir}/${entry.link}` }));
    } else {
      mkdirSync(filesDir, { recursive: true });
      const byName = plan.place.length ? byPath(target) : new Map<string, Entry>();
      this.items = plan.place.map((p) => {
        const item: Item = { entry: byName.get(p.path)!, file: `${filesDir}/${p.staged}` };
        if (p.link !== undefined) item.linkTo = `${filesDir}/${p.link}`;
        return item;
      });
    }
    // Staged directories are created without a set-group-ID bit, so all inherit this directory's rule.
    const st = statSync(filesDir);
    this.uid = process.geteuid?.() ?? st.uid;
    this.gid = st.mode & 0o2000 ? st.gid : (process.getegid?.() ?? st.gid);
  }

  /** The owner to set on what was just created for `e`, or null when it already has it (or owners are not kept). */
  private ownerToSet(e: Entry): { uid: number; gid: number } | null {
    return ownerKept(e) && (e.uid !== this.uid || e.gid !== this.gid) ? { uid: e.uid!, gid: e.gid! } : null;
  }

  /** A verified block was just stored: when the open file waits for it, write it from `data` and go on. */
  arrived(hash: string, data: Buffer): void {
    if (!this.awaiting) this.advance(); // it paused for the event loop: catch up first
    if (hash !== this.awaiting) return;
    this.awaiting = null;
    this.writeChunk(this.open!, data);
    this.advance();
  }

  private get done(): boolean {
    return !this.open && this.next >= this.items.length;
  }

  /**
   * Build what the store has the blocks for; stops at the first block still
   * to come, or after 20 ms (the caller lets the event loop run and calls again).
   */
  advance(): void {
    const until = performance.now() + 20;
    while (!this.awaiting && performance.now() < until) {
      if (this.open) {
        if (!this.continueFile(this.open)) return;
        continue;
      }
      const item = this.items[this.next];
      if (!item) return;
      if (item.entry.type === 'dir') {
        // Owner rwx while it is filled; a directory mode without them, and its owner, are set at the end.
        mkdirSync(item.file, { mode: createMode(item.entry.mode, 0o700).mode });
        this.next++;
      } else if (item.entry.type === 'symlink') {
        symlinkSync(item.entry.target!, item.file);
        const owner = this.ownerToSet(item.entry);
        if (owner) lchownSync(item.file, owner.uid, owner.gid);
        setMtime(item.file, item.entry.mtimeNs, true);
        this.next++;
      } else if (item.linkTo !== undefined) {
        linkSync(item.linkTo, item.file);
        this.next++;
      } else {
        this.open = { item, fd: openSync(item.file, 'wx', createMode(item.entry.mode, 0).mode), chunk: 0, name: 0 };
      }
    }
  }

  /** Write the open file's chunks the store has; false when it waits for one. */
  private continueFile(f: OpenFile): boolean {
    const blocks = f.item.entry.blocks!;
    while (f.name < blocks.length) {
      const h = blocks[f.name];
      const zeros = zeroRun(h);
      if (zeros) {
        f.chunk += zeros;
        f.name++;
        continue;
      }
      if (!this.store.has(h)) {
        this.awaiting = h;
        return false;
      }
      const n = this.store.readInto(h, this.buf, this.what);
      this.writeChunk(f, this.buf.subarray(0, n));
    }
    this.closeFile(f);
    return true;
  }

  private writeChunk(f: OpenFile, data: Buffer): void {
    const { entry } = f.item;
    const at = f.chunk * this.chunk;
    if (data.length !== Math.min(this.chunk, entry.size - at)) {
      throw new Error(`The block ${entry.blocks![f.name]} of ${this.what} (${entry.path}) has the wrong length; the block store is damaged.`);
    }
    let off = 0;
    while (off < data.length) off += writeSync(f.fd, data, off, data.length - off, at + off);
    f.chunk++;
    f.name++;
  }

  private closeFile(f: OpenFile): void {
    const { entry } = f.item;
    this.open = null;
    this.next++;
    try {
      const last = entry.blocks!.at(-1);
      if (last !== undefined && zeroRun(last)) ftruncateSync(f.fd, entry.size);
      // Owner before mode: a change of owner clears the set-user-ID and set-group-ID bits.
      const owner = this.ownerToSet(entry);
      if (owner) fchownSync(f.fd, owner.uid, owner.gid);
      if (owner || !createMode(entry.mode, 0).exact) fchmodSync(f.fd, entry.mode);
      const t = nsToSeconds(BigInt(entry.mtimeNs));
      futimesSync(f.fd, t, t);
    } finally {
      closeSync(f.fd);
    }
  }

  /** Build everything left (all blocks must be in the store by now), then the directories' modes and times. */
  async finish(signal?: AbortSignal): Promise<void> {
    const breather = new Breather();
    for (;;) {
      signal?.throwIfAborted();
      this.advance();
      if (this.awaiting) {
        // Not in the store: reading it says so, naming the block and the snapshot.
        const h = this.awaiting;
        this.arrived(h, this.buf.subarray(0, this.store.readInto(h, this.buf, this.what)));
      }
      if (this.done) break;
      await breather.breathe();
    }
    if (this.plan.tree) {
      for (const d of this.plan.dirs) {
        if (d.path === '') continue;
        signal?.throwIfAborted();
        const dir = `${this.filesDir}/${d.path}`;
        if (d.uid !== undefined && (d.uid !== this.uid || d.gid !== this.gid)) lchownSync(dir, d.uid, d.gid!);
        if (!createMode(d.mode, 0o700).exact) chmodSync(dir, d.mode);
        setMtime(dir, d.mtimeNs, false);
        await breather.breathe();
      }
    }
  }

  /** Close the open file, if any (staging is about to be deleted). */
  abort(): void {
    if (this.open) closeSync(this.open.fd);
    this.open = null;
  }
}

/** Stage everything from the store (rollback). */
export async function stageFiles(plan: Plan, target: Manifest, filesDir: string, store: BlockStore, what: string, signal?: AbortSignal): Promise<void> {
  const stager = new Stager(plan, target, filesDir, store, what);
  try {
    await stager.finish(signal);
  } finally {
    stager.abort();
  }
}

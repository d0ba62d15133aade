/**
 * `tail -F` for one file: the lines appended to it, as they come, across
 * rotation (the file renamed away and a new one created), truncation, and a
 * file that does not exist yet.
 *
 * Woken by fs.watch on the file's directory (a watch on the directory, unlike
 * one on the file, survives the file being renamed away and sees the new file
 * appear). A slow poll is kept only as a safety net, for filesystems that miss
 * watch events (NFS, some FUSE and container mounts) and for a directory that
 * does not exist yet or was replaced.
 *
 * The file being read is held open, as tail -F does: when it is rotated, what
 * was written to it before the rename is read to its end before the new file.
 */
import { closeSync, fstatSync, openSync, readSync, statSync, watch, type FSWatcher, type Stats } from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';

/** how much is read from the file at a time */
const CHUNK = 64 * 1024;

/** the identity of a file: another one means the log was rotated */
const sameFile = (a: Stats, b: Stats) => a.ino === b.ino && a.dev === b.dev;

function statOrNull(file: string): Stats | null {
  try {
    return statSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw error;
  }
}

/** The file being read: its descriptor, where reading stands, and the line not finished yet. */
class OpenFile {
  private position: number;
  private decoder = new StringDecoder('utf8');
  private rest = '';

  constructor(
    private fd: number | null,
    readonly stats: Stats,
    fromEnd: boolean,
  ) {
    this.position = fromEnd ? stats.size : 0;
  }

  /** the next complete lines, up to one chunk of them; [] when there is nothing more to read */
  read(): string[] {
    if (this.fd === null) return [];
    const size = fstatSync(this.fd).size;
    if (size < this.position) {
      // truncated: read it again from its start; a line cut short by the truncation is shown as it was
      const cut = this.finish();
      this.position = 0;
      if (cut.length) return cut;
    }
    for (;;) {
      if (this.position >= size) return [];
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - this.position));
      const got = readSync(this.fd, buf, 0, buf.length, this.position);
      if (got === 0) return [];
      this.position += got;
      const parts = (this.rest + this.decoder.write(buf.subarray(0, got))).split('\n');
      this.rest = parts.pop() ?? '';
      if (parts.length) return parts;
    }
  }

  /** what is left of a line that will not be finished (the file was rotated away or truncated) */
  finish(): string[] {
    const last = this.rest + this.decoder.end();
    this.rest = '';
    this.decoder = new StringDecoder('utf8');
    return last ? [last] : [];
  }

  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}

/** open `file` if it exists (null otherwise), reading from its end (`fromEnd`) or its start */
function open(file: string, fromEnd: boolean): OpenFile | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    return new OpenFile(fd, fstatSync(fd), fromEnd);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/**
 * A watch on the directory of `file`, calling `poke` when something happens
 * to that name. It is set up again when the directory is replaced, and left
 * to the safety-net poll while the directory does not exist.
 */
class DirectoryWatch {
  private watcher: FSWatcher | null = null;
  private watched: Stats | null = null;
  private readonly dir: string;
  private readonly name: string;

  constructor(
    file: string,
    private readonly poke: () => void,
  ) {
    this.dir = path.dirname(file);
    this.name = path.basename(file);
  }

  /** make sure the directory as it is now is watched */
  ensure(): void {
    let now: Stats | null;
    try {
      now = statSync(this.dir);
    } catch {
      now = null; // not there (yet), or not to be looked at: the poll does the work
    }
    if (this.watcher && now && this.watched && sameFile(now, this.watched)) return;
    this.close();
    if (!now) return;
    try {
      const watcher = watch(this.dir, { persistent: true }, (_event, name) => {
        // no name on some platforms: anything may concern the file
        if (!name || name === this.name) this.poke();
      });
      // the directory went away under the watch (or the watch failed): the poll looks, and watches again
      watcher.on('error', () => {
        if (this.watcher === watcher) this.close();
        this.poke();
      });
      this.watcher = watcher;
      this.watched = now;
    } catch {
      // cannot be watched (gone since, no permission, no inotify left): the poll does the work
    }
  }

  close(): void {
    this.watcher?.close();
    this.watcher = null;
    this.watched = null;
  }
}

/**
 * The lines appended to `file` after the first call to next(), as they come,
 * until `signal` aborts. A file that shrinks (truncated) is read again from
 * its start; a file replaced by another (rotated) is read to its end, then the
 * new one from its start. `pollMs` is the safety-net poll: how long the
 * follower waits when no watch event comes.
 *
 * Aborting the signal ends the follow and releases the watch, the timer and
 * the file at once, even if the consumer never asks for the next line.
 */
export async function* followFile(file: string, signal: AbortSignal, pollMs = 1000): AsyncGenerator<string> {
  if (signal.aborted) return;
  let changed = true;
  let wake: (() => void) | null = null;
  const poke = () => {
    changed = true;
    wake?.();
  };
  const dir = new DirectoryWatch(file, poke);
  /** the file the name stands for; `rotated`, the one it stood for, while it is read to its end */
  let current: OpenFile | null = null;
  let rotated: OpenFile | null = null;
  const release = () => {
    wake?.();
    dir.close();
    current?.close();
    rotated?.close();
  };
  signal.addEventListener('abort', release, { once: true });
  try {
    // watch first, then look: a change between the two is not missed
    dir.ensure();
    current = open(file, true);
    while (!signal.aborted) {
      changed = false;
      for (const line of drain(current)) {
        yield line;
        if (signal.aborted) return;
      }
      // the name now stands for another file (rotated) or a first one (created): finish the old one, switch
      const now = statOrNull(file);
      if (now && !(current && sameFile(now, current.stats))) {
        rotated = current;
        current = null;
        for (const line of drain(rotated, true)) {
          yield line;
          if (signal.aborted) return;
        }
        rotated?.close();
        rotated = null;
        current = open(file, false);
        continue;
      }
      if (changed) continue;
      // nothing new: wait for a watch event, the safety-net poll, or the abort
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, pollMs);
        function done() {
          clearTimeout(timer);
          wake = null;
          resolve();
        }
        wake = done;
      });
      if (!signal.aborted) dir.ensure();
    }
  } finally {
    signal.removeEventListener('abort', release);
    release();
  }
}

/** every complete line `file` has now; with `last`, also the unfinished one at its end (it will not be finished) */
function* drain(file: OpenFile | null, last = false): Generator<string> {
  if (!file) return;
  for (let lines = file.read(); lines.length; lines = file.read()) yield* lines;
  if (last) yield* file.finish();
}

/**
 * The lines typed at the prompt, oldest first, kept in a file (one line per
 * entry) so they survive the session. Several sessions may share the file:
 * each appends its own lines, and trimming re-reads the file so no session
 * drops another's. A file that cannot be written leaves history in memory.
 */
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '');
  } catch {
    return [];
  }
}

export class History {
  private readonly lines: string[];
  /** lines in the file as far as this session knows, to tell when to trim it */
  private fileLines: number;
  private file: string | null;

  constructor(
    file: string | null,
    private readonly max = 1000,
  ) {
    this.file = file;
    const stored = file ? readLines(file) : [];
    this.fileLines = stored.length;
    this.lines = stored.slice(-max);
  }

  entries(): string[] {
    return [...this.lines];
  }

  /** skips empty lines and a repeat of the previous one */
  add(line: string): void {
    // one entry per line in the file, whatever was pasted
    const entry = line.replace(/[\r\n]+/g, ' ');
    if (!entry.trim() || entry === this.lines.at(-1)) return;
    this.lines.push(entry);
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
    this.persist(entry);
  }

  private persist(entry: string): void {
    if (!this.file) return;
    try {
      mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
      // private: lines may hold host names and paths the owner did not mean to share
      appendFileSync(this.file, `${entry}\n`, { mode: 0o600 });
      if (++this.fileLines > this.max) {
        const kept = readLines(this.file).slice(-this.max);
        writeFileSync(this.file, kept.map((l) => `${l}\n`).join(''), { mode: 0o600 });
        this.fileLines = kept.length;
      }
    } catch {
      // a read-only home must not break the shell: keep the history in memory
      this.file = null;
    }
  }
}

/**
 * One log file per service, in NMC's bracketed style:
 *   2026-11-21 04:44:52 [SUCCESS: localhost/tank/a => localhost/tank/b OK (3 sec) ]
 * Runs append; logtail reads the end; follow yields new lines as they come,
 * and keeps going when the file is rotated or truncated.
 */
import { appendFileSync, createReadStream, existsSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import path from 'node:path';
import { followFile } from './follow-file.js';
import { rotateBySize } from './history.js';

export function stamp(date = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())} ${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`;
}

export interface LogLimits {
  /** rotate when the log would pass this size (default 10 MiB) */
  maxBytes: number;
  /** rotated logs kept as FILE.1 … FILE.keep (default 5) */
  keep: number;
}

export const DEFAULT_LOG_LIMITS: LogLimits = { maxBytes: 10 << 20, keep: 5 };

export class ServiceLog {
  constructor(
    readonly file: string,
    private readonly limits: LogLimits = DEFAULT_LOG_LIMITS,
  ) {}

  static forService(logDir: string, name: string, limits?: LogLimits): ServiceLog {
    return new ServiceLog(path.join(logDir, `auto-sync-${name}.log`), limits);
  }

  /** Append a bracketed line: `[text ]`, as NMC writes them; rotates by size (rename, so followers see it). */
  write(text: string, date = new Date()): void {
    const line = `${stamp(date)} [${text} ]\n`;
    rotateBySize(this.file, this.limits.maxBytes, this.limits.keep, Buffer.byteLength(line));
    appendFileSync(this.file, line);
  }

  /** the whole log */
  async all(): Promise<string[]> {
    if (!existsSync(this.file)) return [];
    const lines: string[] = [];
    let rest = '';
    for await (const chunk of createReadStream(this.file, { encoding: 'utf8' })) {
      const parts = (rest + chunk).split('\n');
      rest = parts.pop() ?? '';
      lines.push(...parts);
    }
    if (rest) lines.push(rest);
    return lines;
  }

  /** the last n lines, reading only the end of the file */
  tail(n: number): string[] {
    if (!existsSync(this.file) || n <= 0) return [];
    const size = statSync(this.file).size;
    const fd = openSync(this.file, 'r');
    try {
      let start = size;
      let text = '';
      const block = 64 * 1024;
      while (start > 0) {
        const from = Math.max(0, start - block);
        const buf = Buffer.alloc(start - from);
        readSync(fd, buf, 0, buf.length, from);
        text = buf.toString('utf8') + text;
        start = from;
        if (text.split('\n').length > n + 1) break;
      }
      const lines = text.split('\n');
      if (lines.at(-1) === '') lines.pop();
      return lines.slice(-n);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Lines appended after the call, as they come (`tail -F`). A file that
   * shrinks (truncated) is read again from its start; a file that is replaced
   * (rotated: renamed away, another inode) is read to its end, then the new
   * one from its start; a log that does not exist yet is followed from its
   * creation. Woken by a watch on the log's directory; `pollMs` is only the
   * safety-net poll for filesystems that miss watch events. Ends, releasing
   * the watch, when the signal aborts.
   */
  follow(signal: AbortSignal, pollMs = 1000): AsyncGenerator<string> {
    return followFile(this.file, signal, pollMs);
  }
}

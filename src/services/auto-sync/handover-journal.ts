/**
 * The journal of a reverse-direction hand-over in flight (reverse.ts): which
 * appliance's copy was unmounted and at what epoch the hand-over started.
 * It is written before the first step and removed after the last, so a
 * crash at any step leaves it behind; the next contact with the peer
 * (contact.ts) reads it and either finishes the hand-over (an epoch moved
 * past it) or undoes it (no epoch moved): the unmounted copy is mounted
 * again and exactly one appliance is master.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { processAlive } from '../lock.js';

export interface HandOverEntry {
  service: string;
  /** the epoch of both configs when the hand-over started */
  epoch: number;
  /** which copy was the source, and is unmounted until the hand-over ends: here or on the peer */
  oldSource: 'here' | 'peer';
  /** the process that drives it; a live one is never second-guessed */
  pid: number;
  startedAt: string;
}

export class HandOverJournal {
  constructor(private readonly dir: string) {}

  private file(service: string): string {
    return path.join(this.dir, `${service}.json`);
  }

  get(service: string): HandOverEntry | null {
    try {
      return JSON.parse(readFileSync(this.file(service), 'utf8')) as HandOverEntry;
    } catch {
      return null;
    }
  }

  /** written whole or not at all (a rename), so a crash never leaves half an entry */
  put(entry: HandOverEntry): void {
    mkdirSync(this.dir, { recursive: true });
    const tmp = `${this.file(entry.service)}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(entry), { flush: true });
    renameSync(tmp, this.file(entry.service));
  }

  clear(service: string): void {
    rmSync(this.file(service), { force: true });
  }

  /** left by a process that is gone (a crash): never this process */
  static abandoned(entry: HandOverEntry): boolean {
    return entry.pid !== process.pid && !processAlive(entry.pid);
  }
}

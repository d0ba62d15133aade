/**
 * What the daemon's mirror engine reports while it runs a mirror: per
 * target, sync progress, dirty chunks, lag (bytes and seconds). One file
 * (`run/cdp-status.json`), written atomically by the daemon and read by
 * `show auto-cdp`; a file of a daemon that is gone reports nothing.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Home } from '../home.js';
import { replaceShownFile } from '../storage/fs/files.js';
import { processAlive } from '../storage/fs/lock.js';

export interface TargetStatus {
  host: string;
  /** chunks still to send to it (its dirty map) */
  dirtyChunks: number;
  /** of the whole zvol, in percent, while syncing */
  syncedPercent: number | null;
  /** async: bytes written here and not yet acknowledged there; and how old the oldest is */
  lagBytes: number;
  lagSeconds: number;
  /** the live state the engine sees (mirroring, logging with the reason, …) */
  state: string;
  reason: string | null;
  /** since the daemon started: bytes sent on its mirror links, and bytes of writes that crossed as references to blocks it held (dedupe.ts) */
  sentBytes?: number;
  dedupedBytes?: number;
}

export interface MirrorStatus {
  updatedAt: string;
  targets: TargetStatus[];
}

export function statusFile(home: Home): string {
  return path.join(home.root, 'run', 'cdp-status.json');
}

export function readMirrorStatus(home: Home): Record<string, MirrorStatus> {
  try {
    const f = JSON.parse(readFileSync(statusFile(home), 'utf8')) as { pid: number; mirrors: Record<string, MirrorStatus> };
    return f.pid && processAlive(f.pid) ? f.mirrors : {};
  } catch {
    return {};
  }
}

/** written every round of the daemon, beside the NBD requests it serves: not synced, not on the event loop (only `show` reads it) */
export function writeMirrorStatus(home: Home, mirrors: Record<string, MirrorStatus>): Promise<void> {
  return replaceShownFile(statusFile(home), JSON.stringify({ pid: process.pid, mirrors }));
}

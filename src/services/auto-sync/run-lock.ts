/**
 * Where a service's run lock lives: listing services asks whose it is without
 * loading the run itself (run.ts and the drivers' send and receive helpers it
 * brings, a good part of a `syncsh -c` start).
 */
import path from 'node:path';

export function runLockFile(lockDir: string, service: string): string {
  return path.join(lockDir, `auto-sync-${service}.lock`);
}

/**
 * The console's audit log (<home>/log/audit.log): who logged in from where,
 * who was refused, and every command typed or exec'd, one line each:
 *
 *   2026-11-21T04:44:52.120Z command user="alice" from=10.0.0.7:51234 conn=3 "show auto-sync"
 *
 * User names and commands are JSON strings, so nothing typed can forge a
 * line. Rotated by size like the service logs.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { rotateBySize } from '../services/history.js';

export type AuditEvent = 'login' | 'refused' | 'logout' | 'command';

export interface AuditWho {
  user: string;
  /** ip:port */
  from: string;
  /** the connection's number in this server */
  conn: number;
}

export class AuditLog {
  constructor(
    readonly file: string,
    private readonly maxBytes = 10 << 20,
    private readonly keep = 5,
  ) {
    mkdirSync(path.dirname(file), { recursive: true });
  }

  static inHome(logDir: string): AuditLog {
    return new AuditLog(path.join(logDir, 'audit.log'));
  }

  /** appends one line; `detail` is a command or a reason, quoted */
  record(event: AuditEvent, who: AuditWho, detail?: string, extra: Record<string, string | number> = {}, at = new Date()): void {
    const fields = [at.toISOString(), event, `user=${JSON.stringify(who.user)}`, `from=${who.from}`, `conn=${who.conn}`];
    for (const [k, v] of Object.entries(extra)) fields.push(`${k}=${typeof v === 'number' ? v : JSON.stringify(v)}`);
    if (detail !== undefined) fields.push(JSON.stringify(detail));
    const line = `${fields.join(' ')}\n`;
    rotateBySize(this.file, this.maxBytes, this.keep, Buffer.byteLength(line));
    appendFileSync(this.file, line, { mode: 0o600 });
  }
}

/** The send/receive trail as a table (history.ts entries), shared by `show auto-sync :NAME history` and `show auto-cdp :NAME history`. */
import type { HistoryEntry } from '../services/history.js';
import type { Output } from './grammar/types.js';
import { formatBytes, formatTime } from './values.js';

export function historyTable(entries: HistoryEntry[], detailHeader = 'SNAPSHOT / ERROR'): Output {
  return {
    kind: 'table',
    columns: [
      { key: 'startedAt', header: 'STARTED' },
      { key: 'direction', header: 'SIDE' },
      { key: 'peer', header: 'PEER', drop: 2 },
      { key: 'result', header: 'RESULT' },
      { key: 'bytes', header: 'BYTES', align: 'right' },
      { key: 'rate', header: 'RATE', align: 'right', drop: 1 },
      { key: 'detail', header: detailHeader, flexible: true },
    ],
    rows: entries.map((e) => ({
      startedAt: formatTime(e.startedAt),
      direction: e.direction,
      peer: e.peer,
      result: e.result,
      bytes: formatBytes(e.bytes),
      rate: `${formatBytes(e.rateBytesPerSec)}/s`,
      detail: e.error ?? e.snapshot ?? '-',
    })),
    data: entries,
    empty: 'No attempts yet.',
  };
}

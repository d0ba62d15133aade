/** One place decides how a log line stands out: plain logtail output and the live views agree on every kind of line. */
import test from 'ava';
import { highlightLog } from '../../src/shell/render.js';
import { paintLine, toneOf } from '../../src/shell/log-tone.js';

const line = (tag: string) => `2026-11-21 04:44:52 [${tag}: auto-sync:tank-a-000: something ]`;

test('every kind of line gets the same tone in plain output and in the live views', (t) => {
  const table = [
    ['FAILURE', 'failure'],
    ['ALERT (failure)', 'failure'],
    ['STALLED', 'failure'],
    ['ERROR', 'failure'],
    ['WARNING', 'warning'],
    ['SUCCESS', 'plain'],
    ['RECOVERED', 'plain'],
  ] as const;
  for (const [tag, tone] of table) {
    t.is(toneOf(line(tag)), tone, tag);
    t.is(highlightLog(line(tag), true), paintLine(line(tag), true), `plain logtail and live view agree on ${tag}`);
    t.is(highlightLog(line(tag), false), line(tag), `no colour when colour is off: ${tag}`);
  }
  t.not(highlightLog(line('STALLED'), true), line('STALLED'), 'a stall stands out in plain output too');
  t.not(highlightLog(line('WARNING'), true), line('WARNING'), 'so does a warning');
});

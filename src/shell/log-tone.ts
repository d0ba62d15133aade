/**
 * The one place that decides how a log line stands out, for every view of a
 * log: `show ... log` / plain logtail, the live logtail view and the
 * dashboard's log pane. Failures (FAILURE, ALERT, STALLED, ERROR) in bold
 * red, warnings in yellow. No ink here: `-c` loads this too.
 */
export type Tone = 'failure' | 'warning' | 'plain';

export function toneOf(line: string): Tone {
  if (/\[(FAILURE|ALERT|STALLED|ERROR)\b/.test(line)) return 'failure';
  if (/\[WARNING\b/.test(line)) return 'warning';
  return 'plain';
}

const ESC = '\u001b[';

/** the line with the ANSI colours of its tone (none when colour is off) */
export function paintLine(line: string, color: boolean): string {
  if (!color) return line;
  const tone = toneOf(line);
  if (tone === 'failure') return `${ESC}1;31m${line}${ESC}22;39m`;
  if (tone === 'warning') return `${ESC}33m${line}${ESC}39m`;
  return line;
}

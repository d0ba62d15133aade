/**
 * Runs ava (with the arguments given) and watches it, because a test that
 * hangs in the kernel (a process in state D, waiting on a wedged FUSE daemon)
 * cannot be ended by ava's own timeout: ava waits for its worker, CI's clock
 * runs out, and the log ends without saying what hung.
 *
 * When no output came for SYNCSH_TEST_QUIET_MIN minutes (default 10), it
 * prints which processes wait where; when the run has taken
 * SYNCSH_TEST_LIMIT_MIN minutes (default 80, inside CI's 90), it prints that
 * again, kills everything below it and fails. Otherwise it exits as ava does.
 */
import { execa } from 'execa';
import { hangReport, killBelow } from './helpers/procs.js';

const minutes = (name: string, fallback: number) => (Number(process.env[name]) || fallback) * 60_000;
const QUIET_MS = minutes('SYNCSH_TEST_QUIET_MIN', 10);
const LIMIT_MS = minutes('SYNCSH_TEST_LIMIT_MIN', 80);

const started = Date.now();
let lastOutput = Date.now();
let reported = false;

const ava = execa('ava', process.argv.slice(2), { preferLocal: true, stdin: 'inherit', stdout: 'pipe', stderr: 'pipe', buffer: false, reject: false });
for (const [from, to] of [
  [ava.stdout, process.stdout],
  [ava.stderr, process.stderr],
] as const)
  from.on('data', (chunk: Buffer) => {
    to.write(chunk);
    lastOutput = Date.now();
    reported = false;
  });

const say = (lines: string[]) => process.stderr.write(`${lines.map((l) => `watchdog: ${l}`).join('\n')}\n`);

const timer = setInterval(() => {
  const now = Date.now();
  if (now - started > LIMIT_MS) {
    say([`the tests have run ${Math.round((now - started) / 60_000)} min, past the limit of ${LIMIT_MS / 60_000}: stopping them`, ...hangReport()]);
    killBelow();
    process.exit(1);
  }
  if (!reported && now - lastOutput > QUIET_MS) {
    reported = true;
    say([`nothing printed for ${Math.round((now - lastOutput) / 60_000)} min; what runs now:`, ...hangReport()]);
  }
}, 15_000);

const result = await ava;
clearInterval(timer);
process.exit(result.exitCode ?? 1);

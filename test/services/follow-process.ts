/**
 * A process that follows a log, takes one line, lets go of the follow in the
 * way `mode` says, and must then exit on its own: a watcher, a timer or a
 * file left behind by the follow would keep it alive.
 *
 *   node --import=tsx test/services/follow-process.ts MODE FILE
 *
 * MODE: `abort` (the consumer aborts and loops on to the end), `abandon` (it
 * aborts while the follow is held at a line and never asks for the next one),
 * `break` (it leaves the loop without aborting), `waiting` (it aborts while
 * the follow waits for lines, no line taken). Prints `following` once the
 * follow has started, then what it got, then `ended`.
 */
import { ServiceLog } from '../../src/services/service-log.js';

const [mode, file] = process.argv.slice(2);
const log = new ServiceLog(file);
const abort = new AbortController();
// a safety-net poll far longer than the test waits: a timer left running would show
const follow = log.follow(abort.signal, 60_000);
const say = (text: string) => process.stdout.write(`${text}\n`);

// if the process is still there after a while, what keeps it alive (not itself: unref'd)
setTimeout(() => say(`still alive: ${process.getActiveResourcesInfo().join(', ')}`), 3000).unref();

const first = follow.next();
say('following');
if (mode === 'waiting') {
  setTimeout(() => abort.abort(), 100);
  const r = await first;
  say(r.done ? 'ended' : `got ${r.value}`);
} else if (mode === 'abandon') {
  const r = await first;
  say(`got ${r.value}`);
  abort.abort();
  say('ended');
} else {
  const r = await first;
  say(`got ${r.value}`);
  if (mode === 'abort') {
    abort.abort();
    for await (const line of follow) say(`got ${line}`);
  } else {
    await follow.return(undefined);
  }
  say('ended');
}

/**
 * Crash points for tests of crash safety: SYNCSH_FAILPOINTS=name[,name…]
 * makes the process kill itself with SIGKILL when it reaches one of them,
 * as a power cut or `kill -9` would at that step: no finally blocks, no
 * exit handlers, files as they are. `name:error` throws there instead, as a
 * lost link or a failing disk would: the caller's error paths run. Unset, a
 * failpoint is one lookup.
 *
 * A process that serves many sessions (`syncsh serve`) must not die for one
 * of them: it says so once at start-up (failpointsEndTheSession), and there a
 * failpoint throws FailpointReached instead, which ends the session that
 * reached it, as a crash ends a process, and nothing else.
 */
export class FailpointReached extends Error {
  constructor(readonly failpoint: string) {
    super(`The failpoint ${failpoint} was reached (SYNCSH_FAILPOINTS): this session ends here, as a crash would end it.`);
    this.name = 'FailpointReached';
  }
}

let reach = (name: string): void => {
  void name;
  process.kill(process.pid, 'SIGKILL');
};

/** from now on a failpoint ends the session that reaches it, not the process; call once, at start-up */
export function failpointsEndTheSession(): void {
  reach = (name) => {
    throw new FailpointReached(name);
  };
}

/** whether `error` (or what it was caused by) is a failpoint reached */
export function isFailpointReached(error: unknown): boolean {
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof FailpointReached) return true;
  return false;
}

export function failpoint(name: string, env: NodeJS.ProcessEnv = process.env): void {
  const set = env.SYNCSH_FAILPOINTS;
  if (!set) return;
  const points = set.split(',');
  if (points.includes(name)) reach(name);
  if (points.includes(`${name}:error`)) throw new Error(`Injected failure at ${name} (SYNCSH_FAILPOINTS).`);
}

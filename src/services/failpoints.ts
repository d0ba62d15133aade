/**
 * Crash points for tests of crash safety: SYNCSH_FAILPOINTS=name[,name…]
 * makes the process kill itself with SIGKILL when it reaches one of them,
 * as a power cut or `kill -9` would at that step: no finally blocks, no
 * exit handlers, files as they are. `name:error` throws there instead, as a
 * lost link or a failing disk would: the caller's error paths run. Unset, a
 * failpoint is one lookup.
 */
export function failpoint(name: string, env: NodeJS.ProcessEnv = process.env): void {
  const set = env.SYNCSH_FAILPOINTS;
  if (!set) return;
  const points = set.split(',');
  if (points.includes(name)) process.kill(process.pid, 'SIGKILL');
  if (points.includes(`${name}:error`)) throw new Error(`Injected failure at ${name} (SYNCSH_FAILPOINTS).`);
}

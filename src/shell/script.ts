/** Commands fed on stdin to one process: each line runs in turn; the exit code is the first failure's. */
import { createInterface } from 'node:readline';
import type { ShellSession } from './session.js';

export async function runScript(session: ShellSession): Promise<number> {
  let code = 0;
  const lines = createInterface({ input: session.term.input, crlfDelay: Infinity });
  for await (const line of lines) {
    const outcome = await session.execute(line);
    if (!outcome.ok && code === 0) code = outcome.code;
    if (outcome.exit) break;
  }
  return code;
}

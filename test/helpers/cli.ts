/** Run the real executable (bin/syncsh.js over dist/bundle/, built by `npm test`). */
import { execa, type Options } from 'execa';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/syncsh.js', import.meta.url));
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export function assertBuilt(): void {
  if (!existsSync(new URL('../../dist/bin.js', import.meta.url))) throw new Error('dist/ is missing: run `npm run build` (npm test does it).');
  if (!existsSync(new URL('../../dist/bundle/bin.js', import.meta.url))) throw new Error('dist/bundle/ is missing: run `npm run build` (npm test does it).');
}

export function syncsh(args: string[], env: NodeJS.ProcessEnv, opts: Options = {}) {
  assertBuilt();
  return execa('node', [BIN, ...args], { env, reject: false, ...opts });
}

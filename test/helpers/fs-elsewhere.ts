/**
 * The fs driver in another process, for tests that kill a receive or a
 * rollback with SIGKILL (a failpoint, a step count, or the test itself)
 * and look at what it left.
 */
import { execa } from 'execa';

const DRIVER_MODULE = new URL('../../src/services/storage/fs/index.ts', import.meta.url).href;

/** what a test's receive passes (not recursive, no force), as source text */
export const RECEIVE_OPTS = '{ force: false, recursive: false }';

/** `createFsDriver(root)` as `driver` in another process, running `body` (a module: `createReadStream` is imported); how it ended, never thrown */
export function driverElsewhere(root: string, body: string, env: Record<string, string> = {}) {
  const module = `import { createReadStream } from 'node:fs';
    const { createFsDriver } = await import(${JSON.stringify(DRIVER_MODULE)});
    const driver = createFsDriver(${JSON.stringify(root)});
    ${body}`;
  return execa('node', ['--import', 'tsx', '--input-type=module', '-e', module], { env, reject: false });
}

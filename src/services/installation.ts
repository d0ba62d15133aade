/**
 * Where this installation is: the directory of its package.json and bin/,
 * the nearest one above this module. That holds wherever the module runs
 * from: dist/services/ (tsc's output), src/services/ (tsx) or dist/bundle/
 * (the bundle bin/syncsh.js runs, scripts/bundle.mjs), whose chunks sit at
 * another depth than their sources.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(from, '..', '..');
  }
}

/** the installation's root directory */
export const INSTALL_ROOT = packageRoot(path.dirname(fileURLToPath(import.meta.url)));

/** bin/syncsh.js of this installation: what runs an agent here */
export const SYNCSH_SCRIPT = path.join(INSTALL_ROOT, 'bin', 'syncsh.js');

/** this installation's package.json */
export const PACKAGE_JSON = path.join(INSTALL_ROOT, 'package.json');

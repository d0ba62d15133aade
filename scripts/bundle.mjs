/**
 * `npm run build`, after tsc: bundles the program (dist/bin.js, and through
 * its lazy import()s the agent, the daemon, the demo, serve…) into
 * dist/bundle/, which bin/syncsh.js runs (issue 13, "CLI start": resolving
 * and loading ~100 small modules was the largest cost of a start).
 *
 * Code splitting keeps every import() a chunk of its own, loaded only when
 * used; the packages in node_modules stay external, loaded as they are. The
 * unbundled dist/ stays beside it: tests import its modules directly.
 * dist/bundle/meta.json (esbuild's metafile) says which dist/ modules each
 * chunk holds (test/shell/start-modules.test.ts). The source maps lead back
 * to src/ through tsc's (node --enable-source-maps); Node reads them only then.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const outdir = `${root}dist/bundle`;

const result = await build({
  absWorkingDir: root,
  entryPoints: ['dist/bin.js'],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  metafile: true,
  logLevel: 'warning',
  write: false,
});
// built in memory, then put in place at once: a syncsh started while this runs (a test's agent) finds
// the old bundle or the new one, barely ever none; no chunk of an older build is left behind
rmSync(outdir, { recursive: true, force: true });
for (const file of result.outputFiles) {
  mkdirSync(path.dirname(file.path), { recursive: true });
  writeFileSync(file.path, file.contents);
}
writeFileSync(`${outdir}/meta.json`, JSON.stringify(result.metafile));

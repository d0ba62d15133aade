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
 * chunk holds (test/shell/start-modules.test.ts).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const outdir = `${root}dist/bundle`;

rmSync(outdir, { recursive: true, force: true });
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
  metafile: true,
  logLevel: 'warning',
});
writeFileSync(`${outdir}/meta.json`, JSON.stringify(result.metafile));

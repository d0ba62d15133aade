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

/**
 * The packages stay external, but for ink (issue 13, "the shell answers keys
 * right away"): ink 6.8 imports `throttle` from 'es-toolkit/compat', whose
 * index loads ~415 modules, most of a second of CPU before the line editor
 * takes a key. Bundled, ink keeps of es-toolkit what it uses (es-toolkit says
 * sideEffects: false), and its ~150 other modules are one chunk, loaded at the
 * line editor's import('ink') as before. ink is bundled with all it imports
 * (its nested copies of chalk, signal-exit…, found where npm put them), so the
 * bundle does not count on a layout of node_modules, but for
 * - react, ink's peer: syncsh's own import of it, external, is the one React
 *   (react-reconciler, bundled, requires it through the banner's require);
 * - react-devtools-core and ws: ink's devtools, imported only with DEV=true.
 * signal-exit: the bundled ink has its own copy of signal-exit v3, not the one
 * console/serve.ts holds; v3 keeps its handlers on a process-wide emitter,
 * which every copy shares, so that hold still keeps ink's copy loaded.
 */
const UNBUNDLED_FROM_INK = new Set(['react', 'react-devtools-core', 'ws']);
const dist = path.join(root, 'dist') + path.sep;
const externalPackagesButInk = {
  name: 'external-packages-but-ink',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('node:')) return undefined;
      const name = args.path.split('/', args.path.startsWith('@') ? 2 : 1).join('/');
      // what is not syncsh's (dist/) is ink's: the only package bundled
      const inInk = !args.importer.startsWith(dist);
      if ((name === 'ink' && !inInk) || (inInk && !UNBUNDLED_FROM_INK.has(name))) return undefined;
      return { path: args.path, external: true };
    });
  },
};

const result = await build({
  absWorkingDir: root,
  entryPoints: ['dist/bin.js'],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  plugins: [externalPackagesButInk],
  sourcemap: true,
  metafile: true,
  // CommonJS bundled from ink (react-reconciler, signal-exit) requires what stays external: react, node's modules
  banner: { js: "import { createRequire as __syncshCreateRequire } from 'node:module'; const require = __syncshCreateRequire(import.meta.url);" },
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

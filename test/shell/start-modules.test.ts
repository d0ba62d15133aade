/**
 * What a start loads (issue 13, "CLI start"): a one-shot `syncsh -c "show
 * auto-sync"` must not load the terminal UI (ink, react, blessed), the
 * dialogs (@inquirer), SSH (ssh2), execa, a storage driver or the run; the
 * interactive shell still loads its line editor (ink). The modules are
 * recorded by test/fixtures/record-modules.mjs, not timed: bench/cli-start.ts
 * has the figures. bin/syncsh.js runs the bundle (dist/bundle/, code-split):
 * a loaded chunk stands for the dist/ modules esbuild's metafile says it holds.
 */
import test from 'ava';
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeAppliance } from '../helpers/appliance.js';
import { assertBuilt, BIN, ROOT, syncsh } from '../helpers/cli.js';

const RECORDER = fileURLToPath(new URL('../fixtures/record-modules.mjs', import.meta.url));

/** node_modules packages that are no business of a one-shot command that only lists (conf and ajv: its files are read as plain JSON when they are their last good copy, config-file.ts) */
const NOT_FOR_ONE_SHOT = ['ink', 'react', 'react-reconciler', 'yoga-layout', 'blessed', 'blessed-contrib', '@inquirer/core', '@inquirer/prompts', 'ssh2', 'execa', 'conf', 'ajv'];
/** syncsh's own modules a listing does not need: the drivers, the run, the line editor, the live views */
const OWN_NOT_FOR_ONE_SHOT = [
  'services/storage/fs/index.js',
  'services/storage/zfs/index.js',
  'services/storage/btrfs/index.js',
  'services/auto-sync/run.js',
  'shell/line-editor.js',
  'shell/dashboard.js',
  'shell/logtail-view.js',
  'shell/repl.js',
  'console/server.js',
];

/** a module's package in node_modules (the outermost: ink's nested copies count as ink), from its path */
const packageOf = (p: string) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(p)?.[1];

/** dist/bundle/meta.json (esbuild's metafile, scripts/bundle.mjs): for each chunk, the dist/ modules it holds (and the bundled packages' modules, by their path) */
function bundledModules(): Map<string, string[]> {
  const meta = JSON.parse(readFileSync(path.join(ROOT, 'dist', 'bundle', 'meta.json'), 'utf8')) as { outputs: Record<string, { inputs: Record<string, { bytesInOutput: number }> }> };
  const chunks = new Map<string, string[]>();
  for (const [chunk, { inputs }] of Object.entries(meta.outputs)) {
    const held = Object.entries(inputs)
      .filter(([, i]) => i.bytesInOutput > 0)
      .map(([input]) => input.replace(/^dist\//, ''));
    chunks.set(path.resolve(ROOT, chunk), held);
  }
  return chunks;
}

/**
 * The packages (by name) and syncsh's own modules (relative to dist/) in a
 * recording: a chunk of the bundle counts as every module it holds (ink is
 * bundled); `unbundled` lists the dist/ modules loaded outside the bundle;
 * `modulesOf` counts the modules loaded of each package, bundled or not.
 */
function parse(file: string): { packages: Set<string>; own: Set<string>; chunks: number; unbundled: string[]; modulesOf: Map<string, number> } {
  const packages = new Set<string>();
  const modulesOf = new Map<string, number>();
  const count = (name: string) => {
    packages.add(name);
    modulesOf.set(name, (modulesOf.get(name) ?? 0) + 1);
  };
  const own = new Set<string>();
  const unbundled: string[] = [];
  let chunks = 0;
  const dist = path.join(ROOT, 'dist') + path.sep;
  const bundle = bundledModules();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line || line.startsWith('node:')) continue;
    const p = line.startsWith('file:') ? fileURLToPath(line) : line;
    const name = packageOf(p);
    if (name) count(name);
    else if (bundle.has(p)) {
      chunks++;
      for (const held of bundle.get(p)!) {
        const bundled = packageOf(held);
        if (bundled) count(bundled);
        else own.add(held);
      }
    } else if (p.startsWith(dist)) {
      unbundled.push(p.slice(dist.length));
      own.add(p.slice(dist.length));
    }
  }
  return { packages, own, chunks, unbundled, modulesOf };
}

function recording(t: import('ava').ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'syncsh-modules-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'modules.txt');
}

test('-c "show auto-sync" loads no terminal UI, dialogs, SSH, execa, driver or run', async (t) => {
  assertBuilt();
  const { env, services } = makeAppliance(t);
  await services.folders.create('fs:tank');
  await services.folders.create('fs:tank/data');
  const base = await services.autoSync.plan({ fromFs: 'fs:tank/data', toFs: 'fs:tank/c0' });
  await services.autoSync.store.addMany(Array.from({ length: 3 }, (_, i) => ({ ...base, name: `tank-data-00${i}`, destination: { host: 'localhost', dataset: `fs:tank/c${i}` } })));
  // a home some command has run in (a fresh one's first read makes its files with conf)
  t.is((await syncsh(['-c', 'show auto-sync'], env)).exitCode, 0);
  const out = recording(t);
  const r = await execa('node', ['--import', RECORDER, BIN, '-c', 'show auto-sync'], { env: { ...env, SYNCSH_RECORD_MODULES: out }, reject: false });
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /tank-data-002/);
  const { packages, own, chunks, unbundled } = parse(out);
  t.true(chunks > 0 && own.has('main.js'), 'the recording holds syncsh’s own modules, from the bundle');
  t.deepEqual(unbundled, [], 'bin/syncsh.js runs the bundle, not dist/ module by module');
  // the own-module check means something: the bundle holds the modules it names, in chunks of their own
  const all = new Set([...bundledModules().values()].flat());
  t.deepEqual(
    OWN_NOT_FOR_ONE_SHOT.filter((m) => !all.has(m)),
    [],
    'every module named is in the bundle',
  );
  t.deepEqual(
    NOT_FOR_ONE_SHOT.filter((p) => packages.has(p)),
    [],
    `loaded: ${[...packages].join(' ')}`,
  );
  t.deepEqual(
    OWN_NOT_FOR_ONE_SHOT.filter((m) => own.has(m)),
    [],
  );
});

test('the interactive shell loads its line editor (ink, react), but not blessed, the dialogs or ssh2', async (t) => {
  assertBuilt();
  try {
    await execa('script', ['--version']);
  } catch {
    if (process.env.CI) throw new Error('script(1) is missing (util-linux)');
    t.pass('script(1) is not installed: skipped outside CI');
    return;
  }
  const { env } = makeAppliance(t, 'modules');
  const out = recording(t);
  const child = execa('script', ['-qfec', `stty cols 120 rows 40; exec node --import ${RECORDER} ${BIN}`, '/dev/null'], {
    env: { ...env, SYNCSH_RECORD_MODULES: out },
    stdin: 'pipe',
    buffer: false,
    reject: false,
  });
  let seen = '';
  let typed = false;
  child.stdout!.on('data', (d: Buffer) => {
    seen += d.toString();
    // once the prompt is on the screen, a typed exit ends the shell (keys typed while the editor loads reach it)
    if (!typed && /syncsh@modules[^\n]*\$/.test(seen.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''))) {
      typed = true;
      child.stdin!.write('exit\r');
    }
  });
  const timer = setTimeout(() => child.kill(), 60_000);
  const r = await child;
  clearTimeout(timer);
  t.is(r.exitCode, 0, seen);
  const { packages, modulesOf } = parse(out);
  t.true(packages.has('ink') && packages.has('react'), `loaded: ${[...packages].join(' ')}`);
  // ink imports throttle from es-toolkit/compat, whose index is ~415 modules, most of a second of CPU
  // before the editor takes a key: the bundle keeps of it what ink uses (scripts/bundle.mjs)
  t.true((modulesOf.get('es-toolkit') ?? 0) < 20, `es-toolkit modules loaded: ${modulesOf.get('es-toolkit')}`);
  t.deepEqual(
    ['blessed', 'blessed-contrib', '@inquirer/core', '@inquirer/prompts', 'ssh2'].filter((p) => packages.has(p)),
    [],
  );
});

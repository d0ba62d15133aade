/**
 * Libraries loaded on their first use, so that a command that never spawns a
 * program, opens an SSH connection or parses a cron expression does not pay
 * for loading them: execa and ssh2 alone were a third of a `syncsh -c` start
 * (bench/cli-start.ts). Those loaded with require() keep their callers'
 * APIs synchronous.
 */
import { createRequire } from 'node:module';
import type * as Execa from 'execa';
import type * as Ssh2 from 'ssh2';
import type * as Croner from 'croner';
import type Ignore from 'ignore';
import type * as ConfModule from 'conf';

// resolves from dist/, src/ or the bundle (dist/bundle/) alike: each finds the package's node_modules above it
const require = createRequire(import.meta.url);

function onFirstUse<T>(id: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= require(id) as T);
}

export const ssh2 = onFirstUse<typeof Ssh2>('ssh2');

/**
 * conf is an ES module: require() loads it where Node can require ES modules
 * (20.19+, 22.12+); on a Node that cannot, it is imported up front instead.
 */
const confUpFront = (process.features as { require_module?: boolean }).require_module ? undefined : await import('conf');
const confRequired = onFirstUse<typeof ConfModule>('conf');
export const conf = (): typeof ConfModule => confUpFront ?? confRequired();
export const croner = onFirstUse<typeof Croner>('croner');
const ignoreModule = onFirstUse<unknown>('ignore');

/**
 * execa's module, imported at the first command spawned. execa is an ES
 * module with ES-only dependencies, which require() does not load under
 * every loader (tsx's), so it is imported asynchronously.
 */
let execaModule: Promise<typeof Execa> | undefined;
export const loadExeca = () => (execaModule ??= import('execa'));

/** the ignore package's factory (gitignore-style matching); its CommonJS export is the factory, or has it as default */
export const ignore = ((...args: Parameters<typeof Ignore>) => {
  const m = ignoreModule() as typeof Ignore | { default: typeof Ignore };
  return (typeof m === 'function' ? m : m.default)(...args);
}) as typeof Ignore;

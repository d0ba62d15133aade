/**
 * blessed and blessed-contrib, for the dashboard. blessed's first screen
 * (and program) installs handlers on the process: uncaughtException (destroy
 * every screen, print, exit 1), SIGTERM, SIGINT and SIGQUIT (exit 0) and
 * exit. On the appliance's own terminal that is what restores it when the
 * shell is killed; in `syncsh serve` one dashboard must not decide how the
 * process ends for every other session, so serve calls keepOffTheProcess at
 * start-up: blessed's two `bind`s then keep its bookkeeping of instances and
 * install nothing. The handler names blessed's destroy removes are set to
 * functions that were never added, so its removal is a no-op. Import
 * blessed through this module only.
 */
import { createRequire } from 'node:module';

export type Blessed = typeof import('blessed');

interface Bookkeeping {
  global: unknown;
  total: number;
  instances: { index?: number }[];
  _bound?: boolean;
  bind(instance: unknown): void;
  [handler: string]: unknown;
}

// resolves from dist/, src/ or the bundle (dist/bundle/) alike: each finds the package's node_modules above it
const require = createRequire(import.meta.url);
const blessed = require('blessed') as Blessed;
const contrib = require('blessed-contrib') as unknown;

const never = () => undefined;

/** bind that records the instance as blessed's does, and leaves the process alone */
function quietBind(owner: Bookkeeping, handlers: string[]): void {
  owner.bind = (instance: unknown) => {
    const item = instance as { index?: number };
    owner.global ??= item;
    if (!owner.instances.includes(item)) {
      owner.instances.push(item);
      item.index = owner.total;
      owner.total++;
    }
    for (const name of handlers) owner[name] ??= never;
    owner._bound = true;
  };
}

/** from now on no blessed screen touches the process; call once, at start-up, before any screen */
export function keepOffTheProcess(): void {
  const { Screen, Program } = blessed as unknown as { Screen: Bookkeeping; Program: Bookkeeping };
  quietBind(Screen, ['_exceptionHandler', '_sigtermHandler', '_sigintHandler', '_sigquitHandler', '_exitHandler']);
  quietBind(Program, ['_exitHandler']);
}

export { blessed, contrib };
